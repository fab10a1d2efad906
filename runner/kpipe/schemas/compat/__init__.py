"""Schema evolution: can consumers on one version of an event's JSON Schema read data written with another?

Pure functions over parsed schema documents; no I/O. The rules follow Confluent Schema Registry's JSON Schema
checker (`json-schema-provider/.../json/diff`, STRICT policy, the default) so that, read the same way, a schema
kpipe accepts is one the registry accepts. Rule ids are the registry's `Difference.Type` names.

Modules: `versions` (modes, directions, who deploys first), `closing` (kpipe's reading of schemas without
additionalProperties), `differ` (the comparison, built from `walk` and the rule sets `unions`, `scalars`,
`objects`, `arrays`), `nodes` and `values` (what a schema node is), `wording` (what each rule says).

Every comparison is writer → reader: "can a consumer holding `reader` read an event validated by `writer`?"

    BACKWARD  reader = new, writer = old   consumers upgrade first
    FORWARD   reader = old, writer = new   producers upgrade first
    FULL      both;  *_TRANSITIVE against every earlier version, else against the latest only;  NONE: nothing

Content models decide what adding or removing a property means. An object is *open* when additionalProperties is
absent or true (and there are no patternProperties), *closed* when it is false, and *partially open* when extra
properties must match a schema (additionalProperties: {...} or patternProperties):

    property removed from the reader   open: fine      closed: PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL
    property added to the reader       writer closed: fine unless required without a default
                                       writer open: *_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL (the writer may already
                                       have put any value under that name), unless its schema is {}

kpipe's reading (`declared_only=True`, what `validate --against` uses): an object that declares properties and
says nothing about additionalProperties is compared as closed, because kpipe's producers serialise the
compiled model, which drops undeclared properties; so adding an optional property passes BACKWARD, and
removing one does not. Only `additionalProperties: true` is open there.
"""

from kpipe.schemas.compat.closing import IMPLICITLY_CLOSED, close_declared
from kpipe.schemas.compat.nodes import Direction, SchemaPath
from kpipe.schemas.compat.versions import MODES, Mode, Violation, check_compatibility, describe

__all__ = [
    "IMPLICITLY_CLOSED",
    "MODES",
    "Direction",
    "Mode",
    "SchemaPath",
    "Violation",
    "check_compatibility",
    "close_declared",
    "describe",
]

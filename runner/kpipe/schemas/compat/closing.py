"""kpipe's reading of a schema that says nothing about additionalProperties: closed, as its producers write it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

IMPLICITLY_CLOSED = "x-kpipe-declared-only"
"""Marks an object closed by `close_declared` (not by its author), so messages say why it counts as closed."""

SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
SUBSCHEMAS = ("additionalProperties", "items", "additionalItems", "not", "contains", "if", "then", "else")
OPENNESS = ("additionalProperties", "patternProperties", "unevaluatedProperties")


def close_declared(schema: Any) -> Any:
    """A copy of `schema` in which every object that declares properties and says nothing about extra ones is
    closed (additionalProperties: false, marked IMPLICITLY_CLOSED). That is what kpipe's producers put on the
    wire: the compiled model drops undeclared properties before serialising. An object without properties
    stays open: kpipe keeps it as a free-form map."""
    if not isinstance(schema, Mapping):
        return schema
    out = dict(schema)
    for key in SUBSCHEMA_MAPS:
        if isinstance(out.get(key), Mapping):
            out[key] = {name: close_declared(sub) for name, sub in out[key].items()}
    for key in SUBSCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [close_declared(sub) for sub in out[key]]
    for key in SUBSCHEMAS:
        if key in out:
            value = out[key]
            out[key] = (
                [close_declared(v) for v in value] if isinstance(value, list) else close_declared(value)
            )
    if isinstance(out.get("properties"), Mapping) and out["properties"] and not (OPENNESS & out.keys()):
        out["additionalProperties"] = False
        out[IMPLICITLY_CLOSED] = True
    return out

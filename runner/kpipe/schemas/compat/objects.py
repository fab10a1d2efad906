"""Rules for objects: properties added, removed or made required, and content models."""

from __future__ import annotations

from kpipe.schemas.compat.closing import IMPLICITLY_CLOSED
from kpipe.schemas.compat.nodes import (
    Node,
    has_default_value,
    is_any,
    is_open,
    join_path,
    partial_schema,
    properties_of,
)
from kpipe.schemas.compat.values import LOWER, UPPER
from kpipe.schemas.compat.walk import Walk


class ObjectRules(Walk):
    """Properties, required, and the content model (additionalProperties and its kin)."""

    def object(self, w: Node, r: Node, path: str) -> None:
        wprops, rprops = properties_of(w.raw), properties_of(r.raw)
        wreq, rreq = set(w.raw.get("required") or ()), set(r.raw.get("required") or ())

        def prop(node: Node, name: str) -> Node:
            return Node(node.raw["properties"][name], (*node.loc, "properties", name))

        for name in [*wprops, *(n for n in rprops if n not in wprops)]:
            field = join_path(path, name)
            if name in wprops and name in rprops:
                if name in rreq and name not in wreq and not has_default_value(prop(r, name), self.rdoc):
                    self.add(
                        "REQUIRED_ATTRIBUTE_ADDED", field, prop(w, name), Node(None, (*r.loc, "required"))
                    )
                self.compare(prop(w, name), prop(r, name), field)
            elif name in wprops:
                self.removed(r, name, field, prop(w, name))
            else:
                self.added(w, name, field, prop(r, name), name in rreq)
        self.additional(w, r, path)
        self.bound(w, r, path, "maxProperties", "MAX_PROPERTIES", UPPER)
        self.bound(w, r, path, "minProperties", "MIN_PROPERTIES", LOWER)

    def removed(self, r: Node, name: str, field: str, wprop: Node) -> None:
        """A property the writer declares and the reader does not; only the reader's content model matters."""
        if is_open(r.raw):
            return  # PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL
        partial = partial_schema(r, name)
        if partial is not None:
            if self.trial(wprop, partial, field):
                rule = "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                self.add(rule, field, wprop, partial, keyword=partial.loc[len(r.loc)])
            return  # else PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
        if wprop.raw is not False:  # else PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL
            implicit = r.raw.get(IMPLICITLY_CLOSED) is True
            key = "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL" + ("/declared-only" if implicit else "")
            self.add(key, field, wprop, None)

    def added(self, w: Node, name: str, field: str, rprop: Node, required: bool) -> None:
        """A property the reader declares and the writer does not; only the writer's content model matters."""
        has_default = has_default_value(rprop, self.rdoc)
        if is_open(w.raw):
            if is_any(rprop.raw):
                return  # PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL
            kind = (
                "OPTIONAL_PROPERTY"
                if not required
                else "REQUIRED_PROPERTY_WITH_DEFAULT"
                if has_default
                else ("REQUIRED_PROPERTY")
            )
            if self.W == "new":  # forward: the new, open schema stopped declaring what old consumers read
                fix = f"keep '{name}' in the new schema, or close it with additionalProperties: false"
            elif w.raw.get("additionalProperties") is True:
                fix = (
                    "the old schema says additionalProperties: true, so its producers kept undeclared properties; "
                    "if none was ever sent, drop additionalProperties: true (kpipe then holds the schema to what "
                    f"it declares) as a change of its own under compatibility: NONE; or declare '{name}' as {{}}"
                )
            else:
                fix = (
                    "close the schema first (additionalProperties: false, as a change of its own under "
                    f"compatibility: NONE): then adding an optional '{name}' passes BACKWARD; or declare "
                    f"'{name}' as {{}} (any value)"
                )
            self.add(
                "ADDED_TO_OPEN_CONTENT_MODEL",
                field,
                None,
                rprop,
                rule=f"{kind}_ADDED_TO_OPEN_CONTENT_MODEL",
                fix=fix,
            )
            return
        partial = partial_schema(w, name)
        if partial is not None and self.trial(partial, rprop, field):
            rule = "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
            self.add(rule, field, partial, rprop, keyword=partial.loc[len(w.loc)])
        if required and not has_default:
            self.add("REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", field, None, rprop)
        # else REQUIRED_PROPERTY_WITH_DEFAULT_ / OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL

    def additional(self, w: Node, r: Node, path: str) -> None:
        wa, ra = w.raw.get("additionalProperties", True), r.raw.get("additionalProperties", True)
        at_w, at_r = Node(wa, (*w.loc, "additionalProperties")), Node(ra, (*r.loc, "additionalProperties"))
        if ra is False and wa is not False:
            if r.raw.get(IMPLICITLY_CLOSED) is True:
                self.add("ADDITIONAL_PROPERTIES_REMOVED/declared-only", path, w if wa is True else at_w, at_r)
                return
            if self.R == "new":
                fix = (
                    "closing is safe when no producer ever sent undeclared properties (kpipe's producers drop "
                    "them): make this one change under compatibility: NONE, then restore the mode"
                )
            else:
                fix = "keep the new schema closed (additionalProperties: false)"
            self.add("ADDITIONAL_PROPERTIES_REMOVED", path, w if wa is True else at_w, at_r, fix=fix)
        elif wa is False or ra is True or is_any(ra):
            return  # ADDITIONAL_PROPERTIES_ADDED / _EXTENDED, or unchanged
        elif wa is True:
            self.add("ADDITIONAL_PROPERTIES_NARROWED", path, w, at_r)
        else:
            self.compare(at_w, at_r, join_path(path, "*"))

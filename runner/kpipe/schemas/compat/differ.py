"""The complete comparison: every rule set, and the dispatch on the shapes of the two schemas."""

from __future__ import annotations

from kpipe.schemas.compat.arrays import ArrayRules
from kpipe.schemas.compat.nodes import Node, family, shape_of
from kpipe.schemas.compat.objects import ObjectRules
from kpipe.schemas.compat.scalars import ScalarRules
from kpipe.schemas.compat.unions import UnionRules
from kpipe.schemas.compat.values import LOWER, UPPER


class Differ(ObjectRules, ArrayRules, ScalarRules, UnionRules):
    """One writer → reader comparison: the walk, with a rule set per kind of schema."""

    def compare_resolved(self, w: Node, r: Node, path: str) -> None:
        ws, rs = shape_of(w), shape_of(r)
        if rs[0] == "any" or ws[0] == "never":
            return
        if ws[0] != "union" and rs[0] == "union":
            self.into_union(w, r, rs[1], rs[2], path)
        elif ws[0] == "union" and rs[0] != "union":
            self.from_union(ws[1], ws[2], w, r, path)
        elif ws[0] == "union":
            self.union_to_union(w, ws[1], ws[2], r, rs[1], rs[2], path)
        elif ws[0] == "typed" and rs[0] == "typed":
            self.typed(w, ws[1], r, rs[1], path)
        else:
            self.type_changed(w, r, path)

    def typed(self, w: Node, wkind: str, r: Node, rkind: str, path: str) -> None:
        if family(wkind) != family(rkind):
            self.type_changed(w, r, path)
            return
        if wkind == "number" and rkind == "integer":
            self.add("TYPE_NARROWED", path, w, Node(r.raw, (*r.loc, "type")))
        self.enum(w, r, path)
        if wkind == "object":
            self.object(w, r, path)
        elif wkind == "array":
            self.array(w, r, path)
        elif wkind == "string":
            self.bound(w, r, path, "maxLength", "MAX_LENGTH", UPPER)
            self.bound(w, r, path, "minLength", "MIN_LENGTH", LOWER)
            self.pattern(w, r, path)
        elif family(wkind) == "number":
            self.numbers(w, r, path)

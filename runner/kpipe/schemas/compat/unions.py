"""Rules for combined schemas."""

from __future__ import annotations

from kpipe.schemas.compat.nodes import Node, canonical, kind_text, same_family, shape_of
from kpipe.schemas.compat.values import max_matching
from kpipe.schemas.compat.walk import Walk


class UnionRules(Walk):
    """anyOf / oneOf / allOf, and type lists such as [string, "null"], on either side."""

    def into_union(self, w: Node, r: Node, crit: str, branches: list[Node], path: str) -> None:
        if len(branches) == 1 and not self.trial(w, branches[0], path):
            return
        if crit == "allOf":
            # Schema Registry calls any new allOf a TYPE_CHANGED; kpipe checks the writer against each part.
            for b in branches:
                self.compare(w, b, path)
            return
        if len(branches) > 1 and crit in ("anyOf", "oneOf"):
            if any(not self.trial(w, b, path) for b in branches):
                return  # SUM_TYPE_EXTENDED
            same = [b for b in branches if same_family(w, b)]
            if len(same) == 1:
                self.compare_resolved(w, same[0], path)  # say what the matching branch rejects
                return
        self.type_changed(w, r, path)

    def from_union(self, crit: str, branches: list[Node], w: Node, r: Node, path: str) -> None:
        if len(branches) == 1 and not self.trial(branches[0], r, path):
            return
        if crit == "allOf" and any(not self.trial(b, r, path) for b in branches):
            return  # PRODUCT_TYPE_NARROWED
        if crit == "allOf" or shape_of(r)[0] != "typed":
            self.type_changed(w, r, path)
            return
        dropped = []
        for b in branches:
            if not self.trial(b, r, path):
                continue
            if same_family(b, r):
                self.compare_resolved(b, r, path)
            else:
                dropped.append(kind_text(b))
        if dropped:
            self.add("SUM_TYPE_NARROWED", path, w, r, what=" or ".join(dropped))

    def union_to_union(
        self, w: Node, wcrit: str, wb: list[Node], r: Node, rcrit: str, rb: list[Node], path: str
    ) -> None:
        wb = list({canonical(b.raw): b for b in wb}.values())
        rb = list({canonical(b.raw): b for b in rb}.values())
        if wcrit != rcrit:
            one_w, one_r = len(wb) == 1, len(rb) == 1
            widened = (
                rcrit == "anyOf" or (one_w and (one_r or rcrit == "oneOf")) or (one_r and wcrit == "allOf")
            )
            if not widened:
                self.add("COMBINED_TYPE_CHANGED", path, w, r, was=wcrit, now=rcrit)
                return
        if rcrit == "allOf" and len(rb) > len(wb):
            self.add("PRODUCT_TYPE_EXTENDED", path, w, r)
        edges = {i: [j for j, rj in enumerate(rb) if not self.trial(wi, rj, path)] for i, wi in enumerate(wb)}
        match = max_matching(edges)
        unmatched = [i for i in range(len(wb)) if i not in match]
        if len(wb) > len(rb) and wcrit in ("anyOf", "oneOf"):
            dropped = [kind_text(wb[i]) for i in unmatched] or ["one of its alternatives"]
            self.add("SUM_TYPE_NARROWED", path, w, r, what=" or ".join(dropped))
            return
        if len(match) >= min(len(wb), len(rb)):
            return
        free = [j for j in range(len(rb)) if j not in match.values()]
        for i in unmatched:
            same = [j for j in free if same_family(wb[i], rb[j])]
            if len(same) == 1:
                self.compare_resolved(wb[i], rb[same[0]], path)  # name the real difference
            else:
                self.add(
                    "COMBINED_TYPE_SUBSCHEMAS_CHANGED", path, wb[i], r, crit=wcrit, what=kind_text(wb[i])
                )

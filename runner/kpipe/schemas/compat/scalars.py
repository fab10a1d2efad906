"""Rules for enum/const and the bounds of strings and numbers."""

from __future__ import annotations

from decimal import Decimal

from kpipe.schemas.compat.nodes import Node
from kpipe.schemas.compat.values import (
    LOWER,
    NUMBER_LIMITS,
    UPPER,
    allowed_values,
    as_number,
    contains_value,
    limits,
    plain,
    same_values,
    show,
)
from kpipe.schemas.compat.walk import Walk


class ScalarRules(Walk):
    """enum and const, and the bounds of strings and numbers."""

    def enum(self, w: Node, r: Node, path: str) -> None:
        wv, rv = allowed_values(w.raw), allowed_values(r.raw)
        if rv is None or (wv is not None and same_values(wv, rv)):
            return  # ENUM_ARRAY_EXTENDED when the reader lists more, or none at all
        keyword = "const" if "const" in r.raw else "enum"
        at = Node(r.raw, (*r.loc, keyword))
        if wv is None:
            self.add("ENUM_ARRAY_NARROWED/new", path, w, at, values=show(rv), keyword=keyword)
            return
        missing = [v for v in wv if not contains_value(rv, v)]
        if not missing and not ("const" in w.raw and "const" in r.raw):
            return
        narrowed = all(contains_value(wv, v) for v in rv) and not ("const" in w.raw and "const" in r.raw)
        rule = "ENUM_ARRAY_NARROWED" if narrowed else "ENUM_ARRAY_CHANGED"
        self.add(rule, path, w, at, values=show(missing), keyword=keyword)

    def bound(self, w: Node, r: Node, path: str, keyword: str, name: str, side: str) -> None:
        self.limit(
            w, r, path, keyword, name, side, as_number(w.raw.get(keyword)), as_number(r.raw.get(keyword))
        )

    def limit(
        self,
        w: Node,
        r: Node,
        path: str,
        keyword: str,
        name: str,
        side: str,
        was: Decimal | None,
        now: Decimal | None,
    ) -> None:
        if now is None or was == now:
            return  # *_REMOVED, or unchanged
        at = Node(r.raw, (*r.loc, keyword))
        if was is None:
            self.add("BOUND_ADDED", path, w, at, rule=f"{name}_ADDED", keyword=keyword, now=plain(now))
        elif (side == UPPER and now < was) or (side == LOWER and now > was):
            change = "DECREASED" if side == UPPER else "INCREASED"
            self.add(
                "BOUND_TIGHTENED",
                path,
                w,
                at,
                rule=f"{name}_{change}",
                keyword=keyword,
                was=plain(was),
                now=plain(now),
            )

    def pattern(self, w: Node, r: Node, path: str) -> None:
        was, now = w.raw.get("pattern"), r.raw.get("pattern")
        if now is None or was == now:
            return
        at = Node(r.raw, (*r.loc, "pattern"))
        self.add("PATTERN_ADDED" if was is None else "PATTERN_CHANGED", path, w, at, was=was, now=now)

    def numbers(self, w: Node, r: Node, path: str) -> None:
        wl, rl = limits(w.raw), limits(r.raw)
        for keyword, name, side in NUMBER_LIMITS:
            self.limit(w, r, path, keyword, name, side, wl[keyword], rl[keyword])
        was, now = as_number(w.raw.get("multipleOf")), as_number(r.raw.get("multipleOf"))
        if now is None or was == now or (was is not None and now != 0 and was % now == 0):
            return  # MULTIPLE_OF_REMOVED / _REDUCED: every multiple of the old step is one of the new
        if was is None:
            rule = "MULTIPLE_OF_ADDED"
        else:
            rule = "MULTIPLE_OF_EXPANDED" if was != 0 and now % was == 0 else "MULTIPLE_OF_CHANGED"
        self.add("MULTIPLE_OF", path, w, Node(r.raw, (*r.loc, "multipleOf")), rule=rule, now=plain(now))

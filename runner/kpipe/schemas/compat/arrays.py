"""Rules for arrays: items, positional items and bounds."""

from __future__ import annotations

from kpipe.schemas.compat.nodes import Node, is_any, tuple_items
from kpipe.schemas.compat.values import ARRAY_LIMITS
from kpipe.schemas.compat.walk import Walk


class ArrayRules(Walk):
    """items, positional items, and the array bounds."""

    def array(self, w: Node, r: Node, path: str) -> None:
        wt, wrest = tuple_items(w)
        rt, rrest = tuple_items(r)
        if wt or rt:
            self.tuple(w, wt, wrest, r, rt, rrest, path)
        else:
            self.compare(wrest, rrest, f"{path}[]")
        for keyword, name, side in ARRAY_LIMITS:
            self.bound(w, r, path, keyword, name, side)
        if r.raw.get("uniqueItems") is True and w.raw.get("uniqueItems") is not True:
            self.add("UNIQUE_ITEMS_ADDED", path, w, Node(True, (*r.loc, "uniqueItems")))

    def tuple(
        self,
        w: Node,
        wt: list[Node],
        wrest: Node | None,
        r: Node,
        rt: list[Node],
        rrest: Node | None,
        path: str,
    ) -> None:
        """Positional items (prefixItems, or draft 7's items: [...]): like properties, with the rest as content model."""
        writer_open = wrest is None or is_any(wrest.raw)
        reader_open = rrest is None or is_any(rrest.raw)
        for i in range(max(len(wt), len(rt))):
            here = f"{path}[{i}]"
            if i < len(wt) and i < len(rt):
                self.compare(wt[i], rt[i], here)
            elif i < len(wt):  # only the writer lists it
                if reader_open or wt[i].raw is False:
                    continue
                if rrest.raw is False:
                    self.add("ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL", here, wt[i], None)
                elif self.trial(wt[i], rrest, here):
                    self.add("ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", here, wt[i], rrest)
            elif writer_open:  # only the reader lists it
                if not is_any(rt[i].raw):
                    self.add("ITEM_ADDED_TO_OPEN_CONTENT_MODEL", here, None, rt[i])
            elif wrest.raw is not False and self.trial(wrest, rt[i], here):
                self.add("ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", here, wrest, rt[i])
        if reader_open:
            return
        if rrest.raw is False:
            if wrest is None or wrest.raw is not False:
                self.add("ADDITIONAL_ITEMS_REMOVED", path, wrest or w, rrest)
        elif writer_open:
            self.add("ADDITIONAL_ITEMS_NARROWED", path, w, rrest)
        elif wrest.raw is not False:
            self.compare(wrest, rrest, f"{path}[]")

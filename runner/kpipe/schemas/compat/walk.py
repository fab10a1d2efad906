"""The walk over a writer and a reader schema: recording findings, resolving references, guarding recursion."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from kpipe.schemas.compat.nodes import Direction, Finding, Node, SchemaPath, is_any, kind_text, pointer
from kpipe.schemas.compat.wording import TEXT


class Walk:
    def __init__(self, writer_doc: Mapping, reader_doc: Mapping, direction: Direction):
        self.wdoc, self.rdoc = writer_doc, reader_doc
        # Messages speak of versions, not of writers and readers.
        self.W, self.R = ("old", "new") if direction == "backward" else ("new", "old")
        self.found: list[Finding] = []
        self.active: set[tuple[SchemaPath, SchemaPath]] = set()

    # -- recording --------------------------------------------------------------------------------------------
    def add(
        self, key: str, path: str, w: Node | None, r: Node | None, *, rule: str = "", **fields: Any
    ) -> None:
        """Record a finding; `w`/`r` locate the offending thing in the writer's/reader's document (None: absent)."""
        message, fix = TEXT[key]
        fields = {"W": self.W, "R": self.R, "at": path or "(root)", "name": path.rsplit(".", 1)[-1]} | fields
        if "fix" in fields:  # already worded by the caller
            fix = fields.pop("fix").replace("{", "{{").replace("}", "}}")
        self.found.append(
            Finding(
                rule or key.split("/")[0],
                path,
                message.format(**fields),
                fix.format(**fields) if fix else None,
                w.loc if w else None,
                r.loc if r else None,
            )
        )

    def trial(self, w: Node, r: Node, path: str) -> list[Finding]:
        """The findings of one comparison, without recording them (to try a union's branches)."""
        saved, self.found = self.found, []
        try:
            self.compare(w, r, path)
            return self.found
        finally:
            self.found = saved

    def resolve(self, node: Node, doc: Mapping, path: str, writer: bool) -> Node | None:
        for _ in range(64):
            ref = node.raw.get("$ref") if isinstance(node.raw, Mapping) else None
            if not isinstance(ref, str):
                return node
            target = pointer(doc, ref)
            if target is None:
                side = self.W if writer else self.R
                self.add(
                    "UNRESOLVED_REFERENCE",
                    path,
                    node if writer else None,
                    None if writer else node,
                    ref=ref,
                    side=side,
                )
                return None
            node = Node(target[1], target[0])
        return Node(True, node.loc)  # a chain of references that never reaches a schema

    @contextmanager
    def entered(self, w: Node, r: Node) -> Iterator[bool]:
        """Guard against recursive schemas: a pair already being compared is taken as compatible."""
        key = (w.loc, r.loc)
        if key in self.active:
            yield False
            return
        self.active.add(key)
        try:
            yield True
        finally:
            self.active.discard(key)

    # -- dispatch ---------------------------------------------------------------------------------------------
    def compare(self, w: Node | None, r: Node | None, path: str) -> None:
        if r is None or is_any(r.raw):
            return  # SCHEMA_REMOVED: the reader accepts anything here
        if w is None:
            self.add("SCHEMA_ADDED", path, None, r)
            return
        was_ref = any(isinstance(n.raw, Mapping) and "$ref" in n.raw for n in (w, r))
        w_res, r_res = self.resolve(w, self.wdoc, path, True), self.resolve(r, self.rdoc, path, False)
        if w_res is None or r_res is None:
            return
        if not was_ref:
            self.compare_resolved(w_res, r_res, path)
            return
        with self.entered(w_res, r_res) as fresh:
            if fresh:
                self.compare_resolved(w_res, r_res, path)

    def compare_resolved(self, w: Node, r: Node, path: str) -> None:
        """Compare two resolved schemas (the Differ dispatches on their shapes)."""
        raise NotImplementedError

    def type_changed(self, w: Node, r: Node, path: str) -> None:
        self.add("TYPE_CHANGED", path, w, r, was=kind_text(w), now=kind_text(r))

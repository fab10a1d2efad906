"""Versions compared under a compatibility mode: which violations, in which direction, and who deploys first."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from kpipe.schemas.compat.closing import close_declared
from kpipe.schemas.compat.differ import Differ
from kpipe.schemas.compat.nodes import Direction, Node, SchemaPath

Mode = Literal[
    "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE", "NONE"
]
MODES: tuple[str, ...] = Mode.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Violation:
    """One incompatible change.

    `schema_path` is a key path into the document named by `schema_path_in` ("new", or "old" when the offending
    thing exists only in the old version), for turning into file:line:col. `deploy_first` is the upgrade order
    that would still be safe for this change — "producers" when only the backward check fails, "consumers" when
    only the forward one does — or None when neither order is safe. `previous_index` is the position in
    `previous` of the version this was found against.
    """

    path: str
    rule: str
    message: str
    deploy_first: Literal["consumers", "producers"] | None
    fix: str | None
    direction: Direction
    schema_path: SchemaPath
    schema_path_in: Literal["new", "old"] = "new"
    previous_index: int | None = None


def check_compatibility(
    new: Mapping, previous: Sequence[Mapping], mode: Mode, *, declared_only: bool = False
) -> list[Violation]:
    """Every violation of `mode` by `new` against `previous` (oldest → newest).

    `declared_only` is kpipe's reading of a schema that says nothing about additionalProperties: kpipe's
    producers write only the properties it declares, so its events hold nothing else, and the schema is
    compared as closed. Without it, the registry's reading: such a schema is open."""
    if declared_only:
        new, previous = close_declared(new), [close_declared(p) for p in previous]
    if mode not in MODES:
        raise ValueError(f"unknown compatibility mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode == "NONE" or not previous:
        return []
    transitive = mode.endswith("_TRANSITIVE")
    base = mode.removesuffix("_TRANSITIVE")
    directions: list[Direction] = ["backward", "forward"] if base == "FULL" else [base.lower()]  # type: ignore[list-item]
    targets = range(len(previous)) if transitive else [len(previous) - 1]

    found: dict[tuple[str, str, str], Violation] = {}
    # Newest first, so a problem that several versions share is reported against the most recent one.
    for index in reversed(targets):
        old = previous[index]
        backward = _violations(writer=old, reader=new, direction="backward")
        forward = _violations(writer=new, reader=old, direction="forward")
        by_direction = {"backward": (backward, forward), "forward": (forward, backward)}
        for direction in directions:
            mine, other = by_direction[direction]
            for v in _with_deploy_order(mine, other):
                found.setdefault((v.direction, v.rule, v.path), replace(v, previous_index=index))
    return list(found.values())


def describe(v: Violation) -> str:
    """`customer.zip: REQUIRED_ATTRIBUTE_ADDED: <message> (fix: ...)` on one line."""
    fix = f" (fix: {v.fix})" if v.fix else ""
    return f"{v.path or '(root)'}: {v.rule}: {v.message}{fix}"


def _with_deploy_order(mine: list[Violation], other: list[Violation]) -> list[Violation]:
    blocked = {v.path for v in other}
    out = []
    for v in mine:
        order = None if v.path in blocked else ("producers" if v.direction == "backward" else "consumers")
        out.append(replace(v, deploy_first=order))
    return out


def _violations(writer: Mapping, reader: Mapping, direction: Direction) -> list[Violation]:
    differ = Differ(writer, reader, direction)
    differ.compare(Node(writer, ()), Node(reader, ()), "")
    out: list[Violation] = []
    seen: set[tuple[str, str]] = set()
    for f in differ.found:
        if (f.rule, f.path) in seen:
            continue
        seen.add((f.rule, f.path))
        new_loc, old_loc = (f.rloc, f.wloc) if direction == "backward" else (f.wloc, f.rloc)
        where, side = (new_loc, "new") if new_loc is not None else (old_loc or (), "old")
        out.append(Violation(f.path, f.rule, f.message, None, f.fix, direction, where, side))  # type: ignore[arg-type]
    return out

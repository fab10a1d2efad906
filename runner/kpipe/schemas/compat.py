"""Schema evolution: can consumers on one version of an event's JSON Schema read data written with another?

Pure functions over parsed schema documents; no I/O. The rules follow Confluent Schema Registry's JSON Schema
checker (`json-schema-provider/.../json/diff`, STRICT policy, the default) so a schema kpipe accepts is one the
registry accepts. Rule ids are the registry's `Difference.Type` names.

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

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from urllib.parse import unquote

Mode = Literal[
    "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE", "NONE"
]
Direction = Literal["backward", "forward"]
MODES: tuple[str, ...] = Mode.__args__  # type: ignore[attr-defined]

SchemaPath = tuple[str | int, ...]


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


IMPLICITLY_CLOSED = "x-kpipe-declared-only"
"""Marks an object closed by `close_declared` (not by its author), so messages say why it counts as closed."""

_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMAS = ("additionalProperties", "items", "additionalItems", "not", "contains", "if", "then", "else")
_OPENNESS = ("additionalProperties", "patternProperties", "unevaluatedProperties")


def close_declared(schema: Any) -> Any:
    """A copy of `schema` in which every object that declares properties and says nothing about extra ones is
    closed (additionalProperties: false, marked IMPLICITLY_CLOSED). That is what kpipe's producers put on the
    wire: the compiled model drops undeclared properties before serialising. An object without properties
    stays open: kpipe keeps it as a free-form map."""
    if not isinstance(schema, Mapping):
        return schema
    out = dict(schema)
    for key in _SUBSCHEMA_MAPS:
        if isinstance(out.get(key), Mapping):
            out[key] = {name: close_declared(sub) for name, sub in out[key].items()}
    for key in _SUBSCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [close_declared(sub) for sub in out[key]]
    for key in _SUBSCHEMAS:
        if key in out:
            value = out[key]
            out[key] = (
                [close_declared(v) for v in value] if isinstance(value, list) else close_declared(value)
            )
    if isinstance(out.get("properties"), Mapping) and out["properties"] and not (_OPENNESS & out.keys()):
        out["additionalProperties"] = False
        out[IMPLICITLY_CLOSED] = True
    return out


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
    differ = _Differ(writer, reader, direction)
    differ.compare(_Node(writer, ()), _Node(reader, ()), "")
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


# ---------------------------------------------------------------------------------------------------------------
# The walk


@dataclass(frozen=True)
class _Node:
    raw: Any  # a schema: a mapping or a boolean
    loc: SchemaPath


@dataclass(frozen=True)
class _Finding:
    rule: str
    path: str
    message: str
    fix: str | None
    wloc: SchemaPath | None
    rloc: SchemaPath | None


_COMBINATORS = ("anyOf", "oneOf", "allOf")
_KIND_KEYWORDS: dict[str, tuple[str, ...]] = {
    "object": ("properties", "required", "additionalProperties", "patternProperties", "propertyNames")
    + ("minProperties", "maxProperties", "dependencies", "dependentRequired", "dependentSchemas")
    + ("unevaluatedProperties",),
    "array": ("items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems", "contains")
    + ("minContains", "maxContains", "unevaluatedItems"),
    "string": ("minLength", "maxLength", "pattern", "format", "contentEncoding", "contentMediaType"),
    "number": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"),
}
# Keywords that make a schema more than "anything" (title, description, default, examples... do not).
_CONSTRAINING = {"type", "enum", "const", "not", "$ref", *_COMBINATORS, *sum(_KIND_KEYWORDS.values(), ())}
_UPPER, _LOWER = "upper", "lower"


def _is_any(raw: Any) -> bool:
    return raw is True or (isinstance(raw, Mapping) and not (_CONSTRAINING & raw.keys()))


def _value_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _kinds(raw: Mapping) -> list[str]:
    declared = raw.get("type")
    if isinstance(declared, str):
        return [declared]
    if isinstance(declared, list):
        return list(dict.fromkeys(declared))
    inferred = [kind for kind, keywords in _KIND_KEYWORDS.items() if keywords & raw.keys()]
    if inferred:
        return inferred
    values = raw["enum"] if isinstance(raw.get("enum"), list) else [raw["const"]] if "const" in raw else []
    return list(dict.fromkeys(_value_kind(v) for v in values))


def _family(kind: str) -> str:
    return "number" if kind == "integer" else kind


def _only_kind(raw: Mapping, kind: str) -> dict:
    """The part of a multi-type schema that applies to one of its types (as a validator sees it)."""
    foreign = {k for other, kws in _KIND_KEYWORDS.items() if other != _family(kind) for k in kws}
    part = {k: v for k, v in raw.items() if k not in foreign} | {"type": kind}
    if isinstance(part.get("enum"), list):
        part["enum"] = [v for v in part["enum"] if _family(_value_kind(v)) == _family(kind)]
    return part


def _shape(node: _Node) -> tuple:
    """("any",) | ("never",) | ("typed", kind) | ("union", criterion, [branches])."""
    raw = node.raw
    if raw is False:
        return ("never",)
    if _is_any(raw) or not isinstance(raw, Mapping):
        return ("any",)
    combinators = [c for c in _COMBINATORS if isinstance(raw.get(c), list)]
    rest = {k: v for k, v in raw.items() if k not in _COMBINATORS}
    if combinators:
        parts = [_Node({c: raw[c]}, node.loc) for c in combinators]
        if not _is_any(rest) and (set(rest) - {"not"}):
            parts.insert(0, _Node(rest, node.loc))
        if len(parts) == 1:
            crit = combinators[0]
            return ("union", crit, [_Node(s, (*node.loc, crit, i)) for i, s in enumerate(raw[crit])])
        return ("union", "allOf", parts)
    kinds = _kinds(raw)
    if len(kinds) > 1:
        return ("union", "anyOf", [_Node(_only_kind(raw, k), node.loc) for k in kinds])
    return ("typed", kinds[0]) if kinds else ("any",)


def _kind_text(node: _Node) -> str:
    shape = _shape(node)
    if shape[0] == "typed":
        return shape[1]
    if shape[0] == "union":
        return " or ".join(dict.fromkeys(_kind_text(b) for b in shape[2]))
    return "anything" if shape[0] == "any" else "nothing"


def _has_default(node: _Node, doc: Mapping) -> bool:
    raw = node.raw
    for _ in range(32):
        if not isinstance(raw, Mapping):
            return False
        if "default" in raw:
            return True
        target = _pointer(doc, raw["$ref"]) if isinstance(raw.get("$ref"), str) else None
        if target is None:
            return False
        raw = target[1]
    return False


def _pointer(doc: Mapping, ref: str) -> tuple[SchemaPath, Any] | None:
    """Resolve a same-document reference ("#", "#/$defs/Money"); None when it points elsewhere or nowhere."""
    if not ref.startswith("#"):
        return None
    loc: list[str | int] = []
    here: Any = doc
    for token in [t for t in ref[1:].split("/") if t != ""] if ref != "#" else []:
        key = unquote(token).replace("~1", "/").replace("~0", "~")
        if isinstance(here, Mapping) and key in here:
            here, step = here[key], key
        elif isinstance(here, list) and key.isdigit() and int(key) < len(here):
            here, step = here[int(key)], int(key)
        else:
            return None
        loc.append(step)
    return tuple(loc), here


def _canonical(raw: Any) -> str:
    return json.dumps(raw, sort_keys=True, default=str)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


# What each rule says: (message, fix). {W}/{R} become "old"/"new" for the writer's and reader's version,
# {at} is the field path. A key after "/" picks a wording variant of the same rule.
_TEXT: dict[str, tuple[str, str | None]] = {
    "UNRESOLVED_REFERENCE": (
        "cannot resolve $ref '{ref}' in the {side} schema",
        "only references within the same document (#/$defs/...) are supported",
    ),
    "SCHEMA_ADDED": ("the {R} schema constrains '{at}', which the {W} schema left unconstrained", None),
    "TYPE_CHANGED": (
        "'{at}' is {was} in the {W} schema but {now} in the {R} schema",
        "add a new field instead of changing the type of '{at}'",
    ),
    "TYPE_NARROWED": (
        "'{at}' is number in the {W} schema but integer in the {R} schema; {W} events may hold fractions",
        "keep type: number",
    ),
    "SUM_TYPE_NARROWED": (
        "'{at}' may be {what} in {W} events, which the {R} schema no longer accepts",
        "keep {what} among the accepted types",
    ),
    "COMBINED_TYPE_CHANGED": (
        "'{at}' changed from {was} in the {W} schema to {now} in the {R} one",
        "keep {was}",
    ),
    "PRODUCT_TYPE_EXTENDED": (
        "the {R} schema adds allOf conditions to '{at}' that {W} events need not meet",
        None,
    ),
    "COMBINED_TYPE_SUBSCHEMAS_CHANGED": (
        "the {crit} alternative '{what}' of '{at}' in the {W} schema has no compatible one in the {R} schema",
        None,
    ),
    "ENUM_ARRAY_NARROWED/new": (
        "the {R} schema restricts '{at}' to {values}, which {W} events need not respect",
        "drop the {keyword}",
    ),
    "ENUM_ARRAY_NARROWED": (
        "{W} events may carry {values} in '{at}', which the {R} schema does not allow",
        "keep {values} in the {keyword}",
    ),
    "ENUM_ARRAY_CHANGED": (
        "{W} events may carry {values} in '{at}', which the {R} schema does not allow",
        "keep {values} in the {keyword}",
    ),
    "BOUND_ADDED": (
        "the {R} schema adds {keyword}: {now} to '{at}'; {W} events were not held to it",
        "drop {keyword}",
    ),
    "BOUND_TIGHTENED": (
        "{keyword} of '{at}' tightened from {was} in the {W} schema to {now} in the {R} schema",
        "keep {keyword} at {was} or loosen it",
    ),
    "PATTERN_ADDED": (
        "the {R} schema adds pattern {now!r} to '{at}'; {W} events need not match it",
        "drop it",
    ),
    "PATTERN_CHANGED": (
        "pattern of '{at}' changed from {was!r} to {now!r}; {W} events need not match the new one",
        "keep pattern {was!r}",
    ),
    "MULTIPLE_OF": (
        "the {R} schema requires '{at}' to be a multiple of {now}; {W} events need not be",
        "make multipleOf a divisor of the {W} one, or drop it",
    ),
    "REQUIRED_ATTRIBUTE_ADDED": (
        "the {R} schema makes '{at}' required, but {W} events may lack it",
        "give '{name}' a default, or keep it optional",
    ),
    "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL": (
        "'{at}' is no longer declared in the {R} schema, and {W} events' values for it do not match its {keyword}",
        "keep '{name}' in the {R} schema",
    ),
    "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL": (
        "'{at}' is missing from the {R} schema, which is closed (additionalProperties: false), "
        "but {W} events may carry it",
        "keep '{name}' (mark it deprecated), or drop additionalProperties: false from the {R} schema",
    ),
    "ADDED_TO_OPEN_CONTENT_MODEL": (
        "'{at}' is declared only in the {R} schema, but the {W} schema is open (no additionalProperties: false), "
        "so {W} events may already carry any value under '{name}'",
        None,
    ),
    "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL": (
        "'{at}' is declared only in the {R} schema and rejects values the {W} schema's {keyword} allowed there",
        "declare '{name}' with a schema that accepts what the {W} schema allowed",
    ),
    "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL": (
        "the {R} schema requires '{at}', which {W} events never carry",
        "give '{name}' a default, or make it optional",
    ),
    "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL/declared-only": (
        "'{at}' is missing from the {R} schema, but {W} events carry it; a schema without additionalProperties "
        "counts as closed (kpipe's producers write only declared properties), so a name stays declared while "
        "events in the topic may hold it, lest a later version reuse it with another meaning",
        "keep '{name}' declared and mark it deprecated: true (a required one made optional first, which is "
        "BACKWARD compatible: deploy the consumers first)",
    ),
    "ADDITIONAL_PROPERTIES_REMOVED/declared-only": (
        "the {R} schema declares no additionalProperties, so its producers write only what it declares, but the "
        "{W} schema (additionalProperties: true) let events carry undeclared properties of '{at}'",
        "keep additionalProperties: true, or drop it under compatibility: NONE once no producer sends "
        "undeclared properties",
    ),
    "ADDITIONAL_PROPERTIES_REMOVED": (
        "the {R} schema closes '{at}' with additionalProperties: false, but the {W} schema allowed extra properties",
        "keep '{at}' open",
    ),
    "ADDITIONAL_PROPERTIES_NARROWED": (
        "the {R} schema constrains extra properties of '{at}', which the {W} schema left unconstrained",
        None,
    ),
    "UNIQUE_ITEMS_ADDED": (
        "the {R} schema requires unique items in '{at}'; {W} events may repeat them",
        None,
    ),
    "ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL": (
        "'{at}' is missing from the {R} schema, which allows no further items, but {W} events may carry it",
        "keep the item",
    ),
    "ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL": (
        "'{at}' is no longer listed in the {R} schema and {W} events' values there fail its further-items schema",
        "keep the item",
    ),
    "ITEM_ADDED_TO_OPEN_CONTENT_MODEL": (
        "'{at}' is declared only in the {R} schema, but {W} events may hold anything there",
        "declare it as {{}}",
    ),
    "ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL": (
        "'{at}' is declared only in the {R} schema and rejects what the {W} schema allowed there",
        None,
    ),
    "ADDITIONAL_ITEMS_REMOVED": (
        "the {R} schema allows no items in '{at}' beyond those listed, but {W} events may have more",
        "keep further items allowed",
    ),
    "ADDITIONAL_ITEMS_NARROWED": (
        "the {R} schema constrains further items of '{at}', which the {W} schema left unconstrained",
        None,
    ),
}


class _Differ:
    def __init__(self, writer_doc: Mapping, reader_doc: Mapping, direction: Direction):
        self.wdoc, self.rdoc = writer_doc, reader_doc
        # Messages speak of versions, not of writers and readers.
        self.W, self.R = ("old", "new") if direction == "backward" else ("new", "old")
        self.found: list[_Finding] = []
        self.active: set[tuple[SchemaPath, SchemaPath]] = set()

    # -- recording --------------------------------------------------------------------------------------------
    def add(
        self, key: str, path: str, w: _Node | None, r: _Node | None, *, rule: str = "", **fields: Any
    ) -> None:
        """Record a finding; `w`/`r` locate the offending thing in the writer's/reader's document (None: absent)."""
        message, fix = _TEXT[key]
        fields = {"W": self.W, "R": self.R, "at": path or "(root)", "name": path.rsplit(".", 1)[-1]} | fields
        if "fix" in fields:  # already worded by the caller
            fix = fields.pop("fix").replace("{", "{{").replace("}", "}}")
        self.found.append(
            _Finding(
                rule or key.split("/")[0],
                path,
                message.format(**fields),
                fix.format(**fields) if fix else None,
                w.loc if w else None,
                r.loc if r else None,
            )
        )

    def trial(self, w: _Node, r: _Node, path: str) -> list[_Finding]:
        """The findings of one comparison, without recording them (to try a union's branches)."""
        saved, self.found = self.found, []
        try:
            self.compare(w, r, path)
            return self.found
        finally:
            self.found = saved

    def resolve(self, node: _Node, doc: Mapping, path: str, writer: bool) -> _Node | None:
        for _ in range(64):
            ref = node.raw.get("$ref") if isinstance(node.raw, Mapping) else None
            if not isinstance(ref, str):
                return node
            target = _pointer(doc, ref)
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
            node = _Node(target[1], target[0])
        return _Node(True, node.loc)  # a chain of references that never reaches a schema

    @contextmanager
    def entered(self, w: _Node, r: _Node) -> Iterator[bool]:
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
    def compare(self, w: _Node | None, r: _Node | None, path: str) -> None:
        if r is None or _is_any(r.raw):
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

    def compare_resolved(self, w: _Node, r: _Node, path: str) -> None:
        ws, rs = _shape(w), _shape(r)
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

    def type_changed(self, w: _Node, r: _Node, path: str) -> None:
        self.add("TYPE_CHANGED", path, w, r, was=_kind_text(w), now=_kind_text(r))

    # -- combined schemas (anyOf / oneOf / allOf, and type lists such as [string, "null"]) ---------------------
    def into_union(self, w: _Node, r: _Node, crit: str, branches: list[_Node], path: str) -> None:
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
            same = [b for b in branches if _same_family(w, b)]
            if len(same) == 1:
                self.compare_resolved(w, same[0], path)  # say what the matching branch rejects
                return
        self.type_changed(w, r, path)

    def from_union(self, crit: str, branches: list[_Node], w: _Node, r: _Node, path: str) -> None:
        if len(branches) == 1 and not self.trial(branches[0], r, path):
            return
        if crit == "allOf" and any(not self.trial(b, r, path) for b in branches):
            return  # PRODUCT_TYPE_NARROWED
        if crit == "allOf" or _shape(r)[0] != "typed":
            self.type_changed(w, r, path)
            return
        dropped = []
        for b in branches:
            if not self.trial(b, r, path):
                continue
            if _same_family(b, r):
                self.compare_resolved(b, r, path)
            else:
                dropped.append(_kind_text(b))
        if dropped:
            self.add("SUM_TYPE_NARROWED", path, w, r, what=" or ".join(dropped))

    def union_to_union(
        self, w: _Node, wcrit: str, wb: list[_Node], r: _Node, rcrit: str, rb: list[_Node], path: str
    ) -> None:
        wb = list({_canonical(b.raw): b for b in wb}.values())
        rb = list({_canonical(b.raw): b for b in rb}.values())
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
        match = _max_matching(edges)
        unmatched = [i for i in range(len(wb)) if i not in match]
        if len(wb) > len(rb) and wcrit in ("anyOf", "oneOf"):
            dropped = [_kind_text(wb[i]) for i in unmatched] or ["one of its alternatives"]
            self.add("SUM_TYPE_NARROWED", path, w, r, what=" or ".join(dropped))
            return
        if len(match) >= min(len(wb), len(rb)):
            return
        free = [j for j in range(len(rb)) if j not in match.values()]
        for i in unmatched:
            same = [j for j in free if _same_family(wb[i], rb[j])]
            if len(same) == 1:
                self.compare_resolved(wb[i], rb[same[0]], path)  # name the real difference
            else:
                self.add(
                    "COMBINED_TYPE_SUBSCHEMAS_CHANGED", path, wb[i], r, crit=wcrit, what=_kind_text(wb[i])
                )

    # -- one type on each side --------------------------------------------------------------------------------
    def typed(self, w: _Node, wkind: str, r: _Node, rkind: str, path: str) -> None:
        if _family(wkind) != _family(rkind):
            self.type_changed(w, r, path)
            return
        if wkind == "number" and rkind == "integer":
            self.add("TYPE_NARROWED", path, w, _Node(r.raw, (*r.loc, "type")))
        self.enum(w, r, path)
        if wkind == "object":
            self.object(w, r, path)
        elif wkind == "array":
            self.array(w, r, path)
        elif wkind == "string":
            self.bound(w, r, path, "maxLength", "MAX_LENGTH", _UPPER)
            self.bound(w, r, path, "minLength", "MIN_LENGTH", _LOWER)
            self.pattern(w, r, path)
        elif _family(wkind) == "number":
            self.numbers(w, r, path)

    def enum(self, w: _Node, r: _Node, path: str) -> None:
        wv, rv = _allowed_values(w.raw), _allowed_values(r.raw)
        if rv is None or (wv is not None and _same_values(wv, rv)):
            return  # ENUM_ARRAY_EXTENDED when the reader lists more, or none at all
        keyword = "const" if "const" in r.raw else "enum"
        at = _Node(r.raw, (*r.loc, keyword))
        if wv is None:
            self.add("ENUM_ARRAY_NARROWED/new", path, w, at, values=_show(rv), keyword=keyword)
            return
        missing = [v for v in wv if not _contains(rv, v)]
        if not missing and not ("const" in w.raw and "const" in r.raw):
            return
        narrowed = all(_contains(wv, v) for v in rv) and not ("const" in w.raw and "const" in r.raw)
        rule = "ENUM_ARRAY_NARROWED" if narrowed else "ENUM_ARRAY_CHANGED"
        self.add(rule, path, w, at, values=_show(missing), keyword=keyword)

    def bound(self, w: _Node, r: _Node, path: str, keyword: str, name: str, side: str) -> None:
        self.limit(w, r, path, keyword, name, side, _number(w.raw.get(keyword)), _number(r.raw.get(keyword)))

    def limit(
        self,
        w: _Node,
        r: _Node,
        path: str,
        keyword: str,
        name: str,
        side: str,
        was: Decimal | None,
        now: Decimal | None,
    ) -> None:
        if now is None or was == now:
            return  # *_REMOVED, or unchanged
        at = _Node(r.raw, (*r.loc, keyword))
        if was is None:
            self.add("BOUND_ADDED", path, w, at, rule=f"{name}_ADDED", keyword=keyword, now=_plain(now))
        elif (side == _UPPER and now < was) or (side == _LOWER and now > was):
            change = "DECREASED" if side == _UPPER else "INCREASED"
            self.add(
                "BOUND_TIGHTENED",
                path,
                w,
                at,
                rule=f"{name}_{change}",
                keyword=keyword,
                was=_plain(was),
                now=_plain(now),
            )

    def pattern(self, w: _Node, r: _Node, path: str) -> None:
        was, now = w.raw.get("pattern"), r.raw.get("pattern")
        if now is None or was == now:
            return
        at = _Node(r.raw, (*r.loc, "pattern"))
        self.add("PATTERN_ADDED" if was is None else "PATTERN_CHANGED", path, w, at, was=was, now=now)

    def numbers(self, w: _Node, r: _Node, path: str) -> None:
        wl, rl = _limits(w.raw), _limits(r.raw)
        for keyword, name, side in _NUMBER_LIMITS:
            self.limit(w, r, path, keyword, name, side, wl[keyword], rl[keyword])
        was, now = _number(w.raw.get("multipleOf")), _number(r.raw.get("multipleOf"))
        if now is None or was == now or (was is not None and now != 0 and was % now == 0):
            return  # MULTIPLE_OF_REMOVED / _REDUCED: every multiple of the old step is one of the new
        if was is None:
            rule = "MULTIPLE_OF_ADDED"
        else:
            rule = "MULTIPLE_OF_EXPANDED" if was != 0 and now % was == 0 else "MULTIPLE_OF_CHANGED"
        self.add("MULTIPLE_OF", path, w, _Node(r.raw, (*r.loc, "multipleOf")), rule=rule, now=_plain(now))

    # -- objects ----------------------------------------------------------------------------------------------
    def object(self, w: _Node, r: _Node, path: str) -> None:
        wprops, rprops = _properties(w.raw), _properties(r.raw)
        wreq, rreq = set(w.raw.get("required") or ()), set(r.raw.get("required") or ())

        def prop(node: _Node, name: str) -> _Node:
            return _Node(node.raw["properties"][name], (*node.loc, "properties", name))

        for name in [*wprops, *(n for n in rprops if n not in wprops)]:
            field = _join(path, name)
            if name in wprops and name in rprops:
                if name in rreq and name not in wreq and not _has_default(prop(r, name), self.rdoc):
                    self.add(
                        "REQUIRED_ATTRIBUTE_ADDED", field, prop(w, name), _Node(None, (*r.loc, "required"))
                    )
                self.compare(prop(w, name), prop(r, name), field)
            elif name in wprops:
                self.removed(r, name, field, prop(w, name))
            else:
                self.added(w, name, field, prop(r, name), name in rreq)
        self.additional(w, r, path)
        self.bound(w, r, path, "maxProperties", "MAX_PROPERTIES", _UPPER)
        self.bound(w, r, path, "minProperties", "MIN_PROPERTIES", _LOWER)

    def removed(self, r: _Node, name: str, field: str, wprop: _Node) -> None:
        """A property the writer declares and the reader does not; only the reader's content model matters."""
        if _is_open(r.raw):
            return  # PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL
        partial = _partial_schema(r, name)
        if partial is not None:
            if self.trial(wprop, partial, field):
                rule = "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                self.add(rule, field, wprop, partial, keyword=partial.loc[len(r.loc)])
            return  # else PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
        if wprop.raw is not False:  # else PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL
            implicit = r.raw.get(IMPLICITLY_CLOSED) is True
            key = "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL" + ("/declared-only" if implicit else "")
            self.add(key, field, wprop, None)

    def added(self, w: _Node, name: str, field: str, rprop: _Node, required: bool) -> None:
        """A property the reader declares and the writer does not; only the writer's content model matters."""
        has_default = _has_default(rprop, self.rdoc)
        if _is_open(w.raw):
            if _is_any(rprop.raw):
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
        partial = _partial_schema(w, name)
        if partial is not None and self.trial(partial, rprop, field):
            rule = "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
            self.add(rule, field, partial, rprop, keyword=partial.loc[len(w.loc)])
        if required and not has_default:
            self.add("REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", field, None, rprop)
        # else REQUIRED_PROPERTY_WITH_DEFAULT_ / OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL

    def additional(self, w: _Node, r: _Node, path: str) -> None:
        wa, ra = w.raw.get("additionalProperties", True), r.raw.get("additionalProperties", True)
        at_w, at_r = _Node(wa, (*w.loc, "additionalProperties")), _Node(ra, (*r.loc, "additionalProperties"))
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
        elif wa is False or ra is True or _is_any(ra):
            return  # ADDITIONAL_PROPERTIES_ADDED / _EXTENDED, or unchanged
        elif wa is True:
            self.add("ADDITIONAL_PROPERTIES_NARROWED", path, w, at_r)
        else:
            self.compare(at_w, at_r, _join(path, "*"))

    # -- arrays -----------------------------------------------------------------------------------------------
    def array(self, w: _Node, r: _Node, path: str) -> None:
        wt, wrest = _tuple_items(w)
        rt, rrest = _tuple_items(r)
        if wt or rt:
            self.tuple(w, wt, wrest, r, rt, rrest, path)
        else:
            self.compare(wrest, rrest, f"{path}[]")
        for keyword, name, side in _ARRAY_LIMITS:
            self.bound(w, r, path, keyword, name, side)
        if r.raw.get("uniqueItems") is True and w.raw.get("uniqueItems") is not True:
            self.add("UNIQUE_ITEMS_ADDED", path, w, _Node(True, (*r.loc, "uniqueItems")))

    def tuple(
        self,
        w: _Node,
        wt: list[_Node],
        wrest: _Node | None,
        r: _Node,
        rt: list[_Node],
        rrest: _Node | None,
        path: str,
    ) -> None:
        """Positional items (prefixItems, or draft 7's items: [...]): like properties, with the rest as content model."""
        writer_open = wrest is None or _is_any(wrest.raw)
        reader_open = rrest is None or _is_any(rrest.raw)
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
                if not _is_any(rt[i].raw):
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


_NUMBER_LIMITS = (
    ("maximum", "MAXIMUM", _UPPER),
    ("minimum", "MINIMUM", _LOWER),
    ("exclusiveMaximum", "EXCLUSIVE_MAXIMUM", _UPPER),
    ("exclusiveMinimum", "EXCLUSIVE_MINIMUM", _LOWER),
)
_ARRAY_LIMITS = (
    ("maxItems", "MAX_ITEMS", _UPPER),
    ("minItems", "MIN_ITEMS", _LOWER),
    ("maxContains", "MAX_CONTAINS", _UPPER),
    ("minContains", "MIN_CONTAINS", _LOWER),
)


def _limits(raw: Mapping) -> dict[str, Decimal | None]:
    out = {keyword: _number(raw.get(keyword)) for keyword, _, _ in _NUMBER_LIMITS}
    # Draft 4 spelled exclusive bounds as booleans beside maximum/minimum.
    for bound, flag in (("maximum", "exclusiveMaximum"), ("minimum", "exclusiveMinimum")):
        if raw.get(flag) is True:
            out[flag], out[bound] = out[bound], None
    return out


def _properties(raw: Mapping) -> Mapping:
    props = raw.get("properties")
    return props if isinstance(props, Mapping) else {}


def _allowed_values(raw: Mapping) -> list | None:
    if "const" in raw:
        return [raw["const"]]
    return list(raw["enum"]) if isinstance(raw.get("enum"), list) else None


def _contains(values: list, value: Any) -> bool:
    return any(_same_values([value], [v]) for v in values)


def _same_family(a: _Node, b: _Node) -> bool:
    sa, sb = _shape(a), _shape(b)
    return sa[0] == sb[0] == "typed" and _family(sa[1]) == _family(sb[1])


def _is_open(raw: Mapping) -> bool:
    additional = raw.get("additionalProperties", True)
    unevaluated = raw.get("unevaluatedProperties", True)
    return (
        additional is True and not raw.get("patternProperties") and (unevaluated is True or unevaluated == {})
    )


def _partial_schema(node: _Node, name: str) -> _Node | None:
    """The schema a partially open object applies to an undeclared property `name`, if any."""
    for pattern, schema in (node.raw.get("patternProperties") or {}).items():
        try:
            if re.search(pattern, name):
                return _Node(schema, (*node.loc, "patternProperties", pattern))
        except re.error:
            continue
    additional = node.raw.get("additionalProperties", True)
    if isinstance(additional, Mapping):
        return _Node(additional, (*node.loc, "additionalProperties"))
    unevaluated = node.raw.get("unevaluatedProperties")
    if additional is True and isinstance(unevaluated, Mapping) and unevaluated:
        return _Node(unevaluated, (*node.loc, "unevaluatedProperties"))
    return None


def _tuple_items(node: _Node) -> tuple[list[_Node], _Node | None]:
    """(positional item schemas, schema of the remaining items or None) for draft 7 and 2020-12 spellings."""
    raw = node.raw
    if isinstance(raw.get("prefixItems"), list):
        listed = [_Node(s, (*node.loc, "prefixItems", i)) for i, s in enumerate(raw["prefixItems"])]
        rest = _Node(raw["items"], (*node.loc, "items")) if "items" in raw else None
        return listed, rest
    if isinstance(raw.get("items"), list):
        listed = [_Node(s, (*node.loc, "items", i)) for i, s in enumerate(raw["items"])]
        rest = (
            _Node(raw["additionalItems"], (*node.loc, "additionalItems"))
            if "additionalItems" in raw
            else None
        )
        return listed, rest
    return [], (_Node(raw["items"], (*node.loc, "items")) if "items" in raw else None)


def _max_matching(edges: dict[int, list[int]]) -> dict[int, int]:
    """Maximum bipartite matching (left → right) by augmenting paths; unions are small."""
    owner: dict[int, int] = {}

    def augment(left: int, seen: set[int]) -> bool:
        for right in edges[left]:
            if right in seen:
                continue
            seen.add(right)
            if right not in owner or augment(owner[right], seen):
                owner[right] = left
                return True
        return False

    for left in edges:
        augment(left, set())
    return {left: right for right, left in owner.items()}


def _same_values(a: list, b: list) -> bool:
    # JSON equality: 1 == 1.0, but True is not 1.
    return sorted(_canonical(_json_value(v)) for v in a) == sorted(_canonical(_json_value(v)) for v in b)


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _show(values: list) -> str:
    return ", ".join(json.dumps(v, default=str) for v in values)


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f") if value == value.to_integral_value() else str(value)

"""Schema nodes and what a node is: its kinds, its shape (any, never, typed, union), references and content model."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

SchemaPath = tuple[str | int, ...]
Direction = Literal["backward", "forward"]


@dataclass(frozen=True)
class Node:
    raw: Any  # a schema: a mapping or a boolean
    loc: SchemaPath


@dataclass(frozen=True)
class Finding:
    rule: str
    path: str
    message: str
    fix: str | None
    wloc: SchemaPath | None
    rloc: SchemaPath | None


COMBINATORS = ("anyOf", "oneOf", "allOf")
KIND_KEYWORDS: dict[str, tuple[str, ...]] = {
    "object": ("properties", "required", "additionalProperties", "patternProperties", "propertyNames")
    + ("minProperties", "maxProperties", "dependencies", "dependentRequired", "dependentSchemas")
    + ("unevaluatedProperties",),
    "array": ("items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems", "contains")
    + ("minContains", "maxContains", "unevaluatedItems"),
    "string": ("minLength", "maxLength", "pattern", "format", "contentEncoding", "contentMediaType"),
    "number": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"),
}
# Keywords that make a schema more than "anything" (title, description, default, examples... do not).
CONSTRAINING = {"type", "enum", "const", "not", "$ref", *COMBINATORS, *sum(KIND_KEYWORDS.values(), ())}


def is_any(raw: Any) -> bool:
    return raw is True or (isinstance(raw, Mapping) and not (CONSTRAINING & raw.keys()))


def value_kind(value: Any) -> str:
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


def kinds_of(raw: Mapping) -> list[str]:
    declared = raw.get("type")
    if isinstance(declared, str):
        return [declared]
    if isinstance(declared, list):
        return list(dict.fromkeys(declared))
    inferred = [kind for kind, keywords in KIND_KEYWORDS.items() if keywords & raw.keys()]
    if inferred:
        return inferred
    values = raw["enum"] if isinstance(raw.get("enum"), list) else [raw["const"]] if "const" in raw else []
    return list(dict.fromkeys(value_kind(v) for v in values))


def family(kind: str) -> str:
    return "number" if kind == "integer" else kind


def only_kind(raw: Mapping, kind: str) -> dict:
    """The part of a multi-type schema that applies to one of its types (as a validator sees it)."""
    foreign = {k for other, kws in KIND_KEYWORDS.items() if other != family(kind) for k in kws}
    part = {k: v for k, v in raw.items() if k not in foreign} | {"type": kind}
    if isinstance(part.get("enum"), list):
        part["enum"] = [v for v in part["enum"] if family(value_kind(v)) == family(kind)]
    return part


def shape_of(node: Node) -> tuple:
    """("any",) | ("never",) | ("typed", kind) | ("union", criterion, [branches])."""
    raw = node.raw
    if raw is False:
        return ("never",)
    if is_any(raw) or not isinstance(raw, Mapping):
        return ("any",)
    combinators = [c for c in COMBINATORS if isinstance(raw.get(c), list)]
    rest = {k: v for k, v in raw.items() if k not in COMBINATORS}
    if combinators:
        parts = [Node({c: raw[c]}, node.loc) for c in combinators]
        if not is_any(rest) and (set(rest) - {"not"}):
            parts.insert(0, Node(rest, node.loc))
        if len(parts) == 1:
            crit = combinators[0]
            return ("union", crit, [Node(s, (*node.loc, crit, i)) for i, s in enumerate(raw[crit])])
        return ("union", "allOf", parts)
    kinds = kinds_of(raw)
    if len(kinds) > 1:
        return ("union", "anyOf", [Node(only_kind(raw, k), node.loc) for k in kinds])
    return ("typed", kinds[0]) if kinds else ("any",)


def kind_text(node: Node) -> str:
    shape = shape_of(node)
    if shape[0] == "typed":
        return shape[1]
    if shape[0] == "union":
        return " or ".join(dict.fromkeys(kind_text(b) for b in shape[2]))
    return "anything" if shape[0] == "any" else "nothing"


def has_default_value(node: Node, doc: Mapping) -> bool:
    raw = node.raw
    for _ in range(32):
        if not isinstance(raw, Mapping):
            return False
        if "default" in raw:
            return True
        target = pointer(doc, raw["$ref"]) if isinstance(raw.get("$ref"), str) else None
        if target is None:
            return False
        raw = target[1]
    return False


def pointer(doc: Mapping, ref: str) -> tuple[SchemaPath, Any] | None:
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


def canonical(raw: Any) -> str:
    return json.dumps(raw, sort_keys=True, default=str)


def join_path(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def properties_of(raw: Mapping) -> Mapping:
    props = raw.get("properties")
    return props if isinstance(props, Mapping) else {}


def same_family(a: Node, b: Node) -> bool:
    sa, sb = shape_of(a), shape_of(b)
    return sa[0] == sb[0] == "typed" and family(sa[1]) == family(sb[1])


def is_open(raw: Mapping) -> bool:
    additional = raw.get("additionalProperties", True)
    unevaluated = raw.get("unevaluatedProperties", True)
    return (
        additional is True and not raw.get("patternProperties") and (unevaluated is True or unevaluated == {})
    )


def partial_schema(node: Node, name: str) -> Node | None:
    """The schema a partially open object applies to an undeclared property `name`, if any."""
    for pattern, schema in (node.raw.get("patternProperties") or {}).items():
        try:
            if re.search(pattern, name):
                return Node(schema, (*node.loc, "patternProperties", pattern))
        except re.error:
            continue
    additional = node.raw.get("additionalProperties", True)
    if isinstance(additional, Mapping):
        return Node(additional, (*node.loc, "additionalProperties"))
    unevaluated = node.raw.get("unevaluatedProperties")
    if additional is True and isinstance(unevaluated, Mapping) and unevaluated:
        return Node(unevaluated, (*node.loc, "unevaluatedProperties"))
    return None


def tuple_items(node: Node) -> tuple[list[Node], Node | None]:
    """(positional item schemas, schema of the remaining items or None) for draft 7 and 2020-12 spellings."""
    raw = node.raw
    if isinstance(raw.get("prefixItems"), list):
        listed = [Node(s, (*node.loc, "prefixItems", i)) for i, s in enumerate(raw["prefixItems"])]
        rest = Node(raw["items"], (*node.loc, "items")) if "items" in raw else None
        return listed, rest
    if isinstance(raw.get("items"), list):
        listed = [Node(s, (*node.loc, "items", i)) for i, s in enumerate(raw["items"])]
        rest = (
            Node(raw["additionalItems"], (*node.loc, "additionalItems")) if "additionalItems" in raw else None
        )
        return listed, rest
    return [], (Node(raw["items"], (*node.loc, "items")) if "items" in raw else None)

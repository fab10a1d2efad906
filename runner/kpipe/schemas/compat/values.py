"""Values and bounds: numbers, enum values, limits, and the matching of union branches."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from kpipe.schemas.compat.nodes import canonical

UPPER, LOWER = "upper", "lower"


def as_number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


NUMBER_LIMITS = (
    ("maximum", "MAXIMUM", UPPER),
    ("minimum", "MINIMUM", LOWER),
    ("exclusiveMaximum", "EXCLUSIVE_MAXIMUM", UPPER),
    ("exclusiveMinimum", "EXCLUSIVE_MINIMUM", LOWER),
)
ARRAY_LIMITS = (
    ("maxItems", "MAX_ITEMS", UPPER),
    ("minItems", "MIN_ITEMS", LOWER),
    ("maxContains", "MAX_CONTAINS", UPPER),
    ("minContains", "MIN_CONTAINS", LOWER),
)


def limits(raw: Mapping) -> dict[str, Decimal | None]:
    out = {keyword: as_number(raw.get(keyword)) for keyword, _, _ in NUMBER_LIMITS}
    # Draft 4 spelled exclusive bounds as booleans beside maximum/minimum.
    for bound, flag in (("maximum", "exclusiveMaximum"), ("minimum", "exclusiveMinimum")):
        if raw.get(flag) is True:
            out[flag], out[bound] = out[bound], None
    return out


def allowed_values(raw: Mapping) -> list | None:
    if "const" in raw:
        return [raw["const"]]
    return list(raw["enum"]) if isinstance(raw.get("enum"), list) else None


def contains_value(values: list, value: Any) -> bool:
    return any(same_values([value], [v]) for v in values)


def max_matching(edges: dict[int, list[int]]) -> dict[int, int]:
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


def same_values(a: list, b: list) -> bool:
    # JSON equality: 1 == 1.0, but True is not 1.
    return sorted(canonical(json_value(v)) for v in a) == sorted(canonical(json_value(v)) for v in b)


def json_value(v: Any) -> Any:
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def show(values: list) -> str:
    return ", ".join(json.dumps(v, default=str) for v in values)


def plain(value: Decimal) -> str:
    return format(value.normalize(), "f") if value == value.to_integral_value() else str(value)

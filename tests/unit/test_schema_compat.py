"""Schema evolution verdicts, table-driven: each case is a change, a mode, and what Schema Registry would say."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kpipe.schemas.compat import MODES, check_compatibility, describe


def obj(props: dict[str, Any], required: tuple[str, ...] = (), closed: bool = False, **extra: Any) -> dict:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return schema | extra


ID = {"type": "string"}
AMOUNT = {"type": "number"}
OPEN = obj({"id": ID, "amount": AMOUNT}, ("id",))
CLOSED = obj({"id": ID, "amount": AMOUNT}, ("id",), closed=True)


def with_prop(base: dict, name: str, schema: Any, required: bool = False) -> dict:
    out = copy.deepcopy(base)
    out["properties"][name] = schema
    if required:
        out.setdefault("required", []).append(name)
    return out


def without_prop(base: dict, name: str) -> dict:
    out = copy.deepcopy(base)
    del out["properties"][name]
    out["required"] = [r for r in out.get("required", []) if r != name]
    return out


def field(schema: Any) -> dict:
    """An open object with one property `x` of the given schema."""
    return obj({"x": schema})


# (id, old, new, mode, expected rule ids — empty means compatible, message fragment or None)
CASES: list[tuple[str, Any, dict, str, set[str], str | None]] = [
    ("identical-full", OPEN, OPEN, "FULL_TRANSITIVE", set(), None),
    (
        "metadata-changed-full",
        field({"type": "string"}),
        field({"type": "string", "title": "X", "description": "why", "default": "a", "examples": ["b"]}),
        "FULL",
        set(),
        None,
    ),
    # --- open content model (additionalProperties absent) ---
    (
        "open-add-optional-backward",
        OPEN,
        with_prop(OPEN, "currency", ID),
        "BACKWARD",
        {"OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"},
        "old schema is open",
    ),
    ("open-add-optional-forward", OPEN, with_prop(OPEN, "currency", ID), "FORWARD", set(), None),
    (
        "open-add-optional-full",
        OPEN,
        with_prop(OPEN, "currency", ID),
        "FULL",
        {"OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"},
        None,
    ),
    (
        "open-add-empty-schema-full",
        OPEN,
        with_prop(OPEN, "note", {"description": "anything"}),
        "FULL",
        set(),
        None,
    ),
    (
        "open-add-required-backward",
        OPEN,
        with_prop(OPEN, "currency", ID, required=True),
        "BACKWARD",
        {"REQUIRED_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"},
        None,
    ),
    (
        "open-add-required-default-backward",
        OPEN,
        with_prop(OPEN, "currency", {"type": "string", "default": "EUR"}, required=True),
        "BACKWARD",
        {"REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_OPEN_CONTENT_MODEL"},
        None,
    ),
    ("open-remove-optional-backward", OPEN, without_prop(OPEN, "amount"), "BACKWARD", set(), None),
    (
        "open-remove-optional-forward",
        OPEN,
        without_prop(OPEN, "amount"),
        "FORWARD",
        {"OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"},
        "new schema is open",
    ),
    (
        "open-remove-required-forward",
        OPEN,
        without_prop(OPEN, "id"),
        "FORWARD",
        {"REQUIRED_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"},
        None,
    ),
    # --- closed content model (additionalProperties: false) ---
    ("closed-add-optional-backward", CLOSED, with_prop(CLOSED, "currency", ID), "BACKWARD", set(), None),
    (
        "closed-add-optional-forward",
        CLOSED,
        with_prop(CLOSED, "currency", ID),
        "FORWARD",
        {"PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"},
        "old schema, which is closed",
    ),
    (
        "closed-add-required-backward",
        CLOSED,
        with_prop(CLOSED, "currency", ID, required=True),
        "BACKWARD",
        {"REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL"},
        "requires 'currency'",
    ),
    (
        "closed-add-required-default-backward",
        CLOSED,
        with_prop(CLOSED, "currency", {"type": "string", "default": "EUR"}, required=True),
        "BACKWARD",
        set(),
        None,
    ),
    (
        "closed-remove-backward",
        CLOSED,
        without_prop(CLOSED, "amount"),
        "BACKWARD",
        {"PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"},
        "'amount' is missing from the new schema",
    ),
    ("closed-remove-forward", CLOSED, without_prop(CLOSED, "amount"), "FORWARD", set(), None),
    ("close-model-backward", OPEN, CLOSED, "BACKWARD", {"ADDITIONAL_PROPERTIES_REMOVED"}, None),
    ("close-model-forward", OPEN, CLOSED, "FORWARD", set(), None),
    ("open-model-backward", CLOSED, OPEN, "BACKWARD", set(), None),
    # --- partially open (additionalProperties: {schema}) ---
    (
        "partial-add-narrower-backward",
        obj({"id": ID}, additionalProperties={"type": "string"}),
        obj({"id": ID, "tag": {"type": "string", "maxLength": 10}}, additionalProperties={"type": "string"}),
        "BACKWARD",
        {"PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"},
        "additionalProperties",
    ),
    (
        "partial-add-covered-exactly-backward",
        obj({"id": ID}, additionalProperties={"type": "string"}),
        obj({"id": ID, "tag": {"type": "string"}}, additionalProperties={"type": "string"}),
        "BACKWARD",
        set(),
        None,
    ),
    (
        "partial-add-not-covered-backward",
        obj({"id": ID}, additionalProperties={"type": "string"}),
        obj({"id": ID, "n": {"type": "integer"}}, additionalProperties={"type": "string"}),
        "BACKWARD",
        {"PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"},
        None,
    ),
    # --- required-ness of an existing property ---
    (
        "make-required-backward",
        OPEN,
        with_prop(OPEN, "amount", AMOUNT, required=True),
        "BACKWARD",
        {"REQUIRED_ATTRIBUTE_ADDED"},
        "makes 'amount' required",
    ),
    (
        "make-required-with-default-backward",
        OPEN,
        with_prop(OPEN, "amount", {"type": "number", "default": 0}, required=True),
        "BACKWARD",
        set(),
        None,
    ),
    ("make-optional-backward", OPEN, obj({"id": ID, "amount": AMOUNT}), "BACKWARD", set(), None),
    (
        "make-optional-forward",
        OPEN,
        obj({"id": ID, "amount": AMOUNT}),
        "FORWARD",
        {"REQUIRED_ATTRIBUTE_ADDED"},
        None,
    ),
    # --- types ---
    (
        "integer-to-number-backward",
        field({"type": "integer"}),
        field({"type": "number"}),
        "BACKWARD",
        set(),
        None,
    ),
    (
        "integer-to-number-forward",
        field({"type": "integer"}),
        field({"type": "number"}),
        "FORWARD",
        {"TYPE_NARROWED"},
        "fractions",
    ),
    (
        "number-to-integer-backward",
        field({"type": "number"}),
        field({"type": "integer"}),
        "BACKWARD",
        {"TYPE_NARROWED"},
        None,
    ),
    (
        "string-to-number-full",
        field({"type": "string"}),
        field({"type": "number"}),
        "FULL",
        {"TYPE_CHANGED"},
        "is string in the old schema but number in the new schema",
    ),
    (
        "object-to-string-backward",
        field(obj({"a": ID})),
        field({"type": "string"}),
        "BACKWARD",
        {"TYPE_CHANGED"},
        None,
    ),
    # --- nullable ---
    (
        "nullable-added-backward",
        field({"type": "string"}),
        field({"type": ["string", "null"]}),
        "BACKWARD",
        set(),
        None,
    ),
    (
        "nullable-added-forward",
        field({"type": "string"}),
        field({"type": ["string", "null"]}),
        "FORWARD",
        {"SUM_TYPE_NARROWED"},
        "may be null in new events",
    ),
    (
        "anyof-null-removed-backward",
        field({"anyOf": [{"type": "string"}, {"type": "null"}]}),
        field({"type": "string"}),
        "BACKWARD",
        {"SUM_TYPE_NARROWED"},
        "which the new schema no longer accepts",
    ),
    (
        "anyof-null-to-type-list-full",
        field({"anyOf": [{"type": "string"}, {"type": "null"}]}),
        field({"type": ["string", "null"]}),
        "FULL",
        set(),
        None,
    ),
    (
        "nullable-maxlength-decreased-backward",
        field({"type": ["string", "null"], "maxLength": 10}),
        field({"type": ["string", "null"], "maxLength": 5}),
        "BACKWARD",
        {"MAX_LENGTH_DECREASED"},
        "from 10",
    ),
    (
        "union-alternative-added-backward",
        field({"oneOf": [{"type": "string"}, {"type": "integer"}]}),
        field({"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "boolean"}]}),
        "BACKWARD",
        set(),
        None,
    ),
    (
        "union-alternative-removed-backward",
        field({"oneOf": [{"type": "string"}, {"type": "integer"}]}),
        field({"oneOf": [{"type": "string"}]}),
        "BACKWARD",
        {"SUM_TYPE_NARROWED"},
        "integer",
    ),
    (
        "allof-added-backward",
        field({"type": "string"}),
        field({"allOf": [{"type": "string"}, {"maxLength": 3}]}),
        "BACKWARD",
        {"MAX_LENGTH_ADDED"},
        None,
    ),
    ("allof-removed-backward", field({"allOf": [ID, {"maxLength": 3}]}), field(ID), "BACKWARD", set(), None),
    # --- enum / const ---
    (
        "enum-value-added-backward",
        field({"type": "string", "enum": ["a", "b"]}),
        field({"type": "string", "enum": ["a", "b", "c"]}),
        "BACKWARD",
        set(),
        None,
    ),
    (
        "enum-value-added-forward",
        field({"type": "string", "enum": ["a", "b"]}),
        field({"type": "string", "enum": ["a", "b", "c"]}),
        "FORWARD",
        {"ENUM_ARRAY_NARROWED"},
        '"c"',
    ),
    (
        "enum-value-removed-backward",
        field({"type": "string", "enum": ["a", "b", "c"]}),
        field({"type": "string", "enum": ["a", "b"]}),
        "BACKWARD",
        {"ENUM_ARRAY_NARROWED"},
        '"c"',
    ),
    (
        "enum-value-swapped-full",
        field({"enum": ["a", "b"]}),
        field({"enum": ["a", "c"]}),
        "FULL",
        {"ENUM_ARRAY_CHANGED"},
        None,
    ),
    (
        "enum-added-backward",
        field({"type": "string"}),
        field({"type": "string", "enum": ["a"]}),
        "BACKWARD",
        {"ENUM_ARRAY_NARROWED"},
        "restricts 'x'",
    ),
    (
        "enum-dropped-backward",
        field({"type": "string", "enum": ["a"]}),
        field({"type": "string"}),
        "BACKWARD",
        set(),
        None,
    ),
    (
        "const-changed-backward",
        field({"const": "user.created"}),
        field({"const": "user.signed_up"}),
        "BACKWARD",
        {"ENUM_ARRAY_CHANGED"},
        "user.created",
    ),
    # --- numeric bounds ---
    (
        "maximum-decreased-backward",
        field({"type": "number", "maximum": 100}),
        field({"type": "number", "maximum": 50}),
        "BACKWARD",
        {"MAXIMUM_DECREASED"},
        "from 100",
    ),
    (
        "maximum-decreased-forward",
        field({"type": "number", "maximum": 100}),
        field({"type": "number", "maximum": 50}),
        "FORWARD",
        set(),
        None,
    ),
    (
        "maximum-added-backward",
        field({"type": "number"}),
        field({"type": "number", "maximum": 50}),
        "BACKWARD",
        {"MAXIMUM_ADDED"},
        None,
    ),
    (
        "maximum-removed-backward",
        field({"type": "number", "maximum": 5}),
        field({"type": "number"}),
        "BACKWARD",
        set(),
        None,
    ),
    (
        "minimum-increased-backward",
        field({"type": "integer", "minimum": 0}),
        field({"type": "integer", "minimum": 1}),
        "BACKWARD",
        {"MINIMUM_INCREASED"},
        None,
    ),
    (
        "exclusive-minimum-added-backward",
        field({"type": "number"}),
        field({"type": "number", "exclusiveMinimum": 0}),
        "BACKWARD",
        {"EXCLUSIVE_MINIMUM_ADDED"},
        None,
    ),
    (
        "exclusive-maximum-increased-full",
        field({"type": "number", "exclusiveMaximum": 1}),
        field({"type": "number", "exclusiveMaximum": 2}),
        "FULL",
        {"EXCLUSIVE_MAXIMUM_DECREASED"},
        None,
    ),
    (
        "multiple-of-reduced-backward",
        field({"type": "number", "multipleOf": 0.1}),
        field({"type": "number", "multipleOf": 0.01}),
        "BACKWARD",
        set(),
        None,
    ),
    (
        "multiple-of-expanded-backward",
        field({"type": "number", "multipleOf": 0.01}),
        field({"type": "number", "multipleOf": 0.1}),
        "BACKWARD",
        {"MULTIPLE_OF_EXPANDED"},
        None,
    ),
    # --- strings ---
    (
        "max-length-decreased-backward",
        field({"type": "string", "maxLength": 10}),
        field({"type": "string", "maxLength": 5}),
        "BACKWARD",
        {"MAX_LENGTH_DECREASED"},
        None,
    ),
    (
        "max-length-decreased-forward",
        field({"type": "string", "maxLength": 10}),
        field({"type": "string", "maxLength": 5}),
        "FORWARD",
        set(),
        None,
    ),
    (
        "min-length-added-backward",
        field({"type": "string"}),
        field({"type": "string", "minLength": 1}),
        "BACKWARD",
        {"MIN_LENGTH_ADDED"},
        None,
    ),
    (
        "pattern-changed-full",
        field({"type": "string", "pattern": "^a"}),
        field({"type": "string", "pattern": "^b"}),
        "FULL",
        {"PATTERN_CHANGED"},
        "'^a'",
    ),
    (
        "pattern-added-backward",
        field({"type": "string"}),
        field({"type": "string", "pattern": "^a"}),
        "BACKWARD",
        {"PATTERN_ADDED"},
        None,
    ),
    (
        "pattern-removed-backward",
        field({"type": "string", "pattern": "^a"}),
        field({"type": "string"}),
        "BACKWARD",
        set(),
        None,
    ),
    # --- arrays ---
    (
        "min-items-increased-backward",
        field({"type": "array", "items": ID, "minItems": 1}),
        field({"type": "array", "items": ID, "minItems": 2}),
        "BACKWARD",
        {"MIN_ITEMS_INCREASED"},
        None,
    ),
    (
        "max-items-decreased-forward",
        field({"type": "array", "items": ID, "maxItems": 5}),
        field({"type": "array", "items": ID, "maxItems": 3}),
        "FORWARD",
        set(),
        None,
    ),
    (
        "unique-items-added-backward",
        field({"type": "array", "items": ID}),
        field({"type": "array", "items": ID, "uniqueItems": True}),
        "BACKWARD",
        {"UNIQUE_ITEMS_ADDED"},
        None,
    ),
    (
        "tuple-item-added-to-closed-backward",
        field({"type": "array", "prefixItems": [ID], "items": False}),
        field({"type": "array", "prefixItems": [ID, AMOUNT], "items": False}),
        "BACKWARD",
        set(),
        None,
    ),
    (
        "tuple-item-removed-from-closed-backward",
        field({"type": "array", "prefixItems": [ID, AMOUNT], "items": False}),
        field({"type": "array", "prefixItems": [ID], "items": False}),
        "BACKWARD",
        {"ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL"},
        None,
    ),
    # --- NONE ---
    ("none-ignores-type-change", field({"type": "string"}), field({"type": "number"}), "NONE", set(), None),
    ("none-ignores-removal", CLOSED, without_prop(CLOSED, "amount"), "NONE", set(), None),
]


@pytest.mark.parametrize(
    ("old", "new", "mode", "rules", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_verdict(old: dict, new: dict, mode: str, rules: set[str], fragment: str | None) -> None:
    found = check_compatibility(new, [old], mode)  # type: ignore[arg-type]
    assert {v.rule for v in found} == rules, [describe(v) for v in found]
    if fragment:
        assert any(fragment in v.message for v in found), [v.message for v in found]


# --- nested paths, $ref, locations -------------------------------------------------------------------------------

ORDER_V1 = {
    "type": "object",
    "$defs": {
        "Money": {"type": "object", "properties": {"value": {"type": "integer"}, "currency": ID}},
        "Address": {"type": "object", "properties": {"zip": {"type": "string"}}},
    },
    "properties": {
        "items": {
            "type": "array",
            "items": {"type": "object", "properties": {"price": {"$ref": "#/$defs/Money"}}},
        },
        "customer": {"type": "object", "properties": {"address": {"$ref": "#/$defs/Address"}}},
    },
}


def test_nested_paths_through_arrays_and_refs() -> None:
    new = copy.deepcopy(ORDER_V1)
    new["$defs"]["Money"]["properties"]["value"] = {"type": "number"}
    new["$defs"]["Address"]["properties"]["zip"] = {"type": "integer"}
    forward = check_compatibility(new, [ORDER_V1], "FORWARD")
    by_path = {v.path: v for v in forward}
    assert set(by_path) == {"items[].price.value", "customer.address.zip"}
    assert by_path["items[].price.value"].rule == "TYPE_NARROWED"
    assert by_path["customer.address.zip"].rule == "TYPE_CHANGED"
    # Located in the new document, at the definition the $ref points to.
    assert by_path["customer.address.zip"].schema_path == ("$defs", "Address", "properties", "zip")
    assert by_path["customer.address.zip"].schema_path_in == "new"
    backward = check_compatibility(new, [ORDER_V1], "BACKWARD")
    assert [(v.path, v.rule) for v in backward] == [("customer.address.zip", "TYPE_CHANGED")]


def test_removed_property_is_located_in_the_old_document() -> None:
    [v] = check_compatibility(without_prop(CLOSED, "amount"), [CLOSED], "BACKWARD")
    assert (v.schema_path, v.schema_path_in) == (("properties", "amount"), "old")


def test_added_keyword_is_located_at_the_keyword() -> None:
    [v] = check_compatibility(
        field({"type": "number", "maximum": 5}), [field({"type": "number"})], "BACKWARD"
    )
    assert (v.schema_path, v.schema_path_in) == (("properties", "x", "maximum"), "new")


RECURSIVE = {
    "$ref": "#/$defs/Node",
    "$defs": {
        "Node": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 20},
                "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
            },
        }
    },
}


def test_recursive_schema_terminates_and_still_finds_changes() -> None:
    assert check_compatibility(RECURSIVE, [RECURSIVE], "FULL_TRANSITIVE") == []
    tighter = copy.deepcopy(RECURSIVE)
    tighter["$defs"]["Node"]["properties"]["name"]["maxLength"] = 10
    [v] = check_compatibility(tighter, [RECURSIVE], "BACKWARD")
    assert (v.rule, v.path) == ("MAX_LENGTH_DECREASED", "name")


def test_unresolvable_ref_is_reported_not_raised() -> None:
    broken = field({"$ref": "other.json#/Money"})
    [v] = check_compatibility(broken, [field({"type": "string"})], "BACKWARD")
    assert v.rule == "UNRESOLVED_REFERENCE" and "other.json" in v.message


# --- transitive modes ---------------------------------------------------------------------------------------------

# v1 → v2 adds a required field with a default; v2 → v3 drops the default. Each step is fine, v1 → v3 is not:
# v1 events lack 'currency' and v3 gives no default for it.
V1 = obj({"id": ID}, ("id",), closed=True)
V2 = obj({"id": ID, "currency": {"type": "string", "default": "EUR"}}, ("id", "currency"), closed=True)
V3 = obj({"id": ID, "currency": {"type": "string"}}, ("id", "currency"), closed=True)

TRANSITIVE = [
    ("v1-v2-backward", [V1], V2, "BACKWARD", set()),
    ("v2-v3-backward", [V1, V2], V3, "BACKWARD", set()),
    (
        "v1-v3-backward-transitive",
        [V1, V2],
        V3,
        "BACKWARD_TRANSITIVE",
        {"REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL"},
    ),
    (
        "v1-v3-full-transitive",
        [V1, V2],
        V3,
        "FULL_TRANSITIVE",
        {"REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"},
    ),
    ("v1-v3-full-latest-only", [V1, V2], V3, "FULL", set()),
    # Reversed history checks the forward direction the same way.
    ("v3-v1-forward", [V3, V2], V1, "FORWARD", set()),
    (
        "v3-v1-forward-transitive",
        [V3, V2],
        V1,
        "FORWARD_TRANSITIVE",
        {"REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL"},
    ),
    ("none-transitive-history", [V1, V2], V3, "NONE", set()),
]


@pytest.mark.parametrize(
    ("previous", "new", "mode", "rules"), [c[1:] for c in TRANSITIVE], ids=[c[0] for c in TRANSITIVE]
)
def test_transitive(previous: list[dict], new: dict, mode: str, rules: set[str]) -> None:
    assert {v.rule for v in check_compatibility(new, previous, mode)} == rules  # type: ignore[arg-type]


def test_transitive_violation_names_the_version_it_failed_against() -> None:
    [v] = check_compatibility(V3, [V1, V2], "BACKWARD_TRANSITIVE")
    assert v.previous_index == 0 and v.path == "currency"


def test_only_the_latest_version_is_checked_without_transitive() -> None:
    # Against v1 this would fail; the latest (v2) is what counts.
    assert check_compatibility(V3, [V1, V2], "BACKWARD") == []
    assert {v.rule for v in check_compatibility(V3, [V2, V1], "BACKWARD")} == {
        "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL"
    }


def test_no_previous_versions_means_nothing_to_check() -> None:
    assert check_compatibility(V3, [], "FULL_TRANSITIVE") == []


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="BACKWARD"):
        check_compatibility(V1, [V1], "SIDEWAYS")  # type: ignore[arg-type]
    assert "FULL_TRANSITIVE" in MODES


# --- deploy order, fixes, describe ----------------------------------------------------------------------------------


def test_deploy_first_names_the_safe_order_when_there_is_one() -> None:
    [v] = check_compatibility(with_prop(OPEN, "currency", ID), [OPEN], "BACKWARD")
    assert v.direction == "backward" and v.deploy_first == "producers"  # forward-compatible: producers first
    assert v.fix and "additionalProperties: false" in v.fix and "passes BACKWARD" in v.fix
    [v] = check_compatibility(with_prop(CLOSED, "currency", ID), [CLOSED], "FORWARD")
    assert v.direction == "forward" and v.deploy_first == "consumers"
    [v1, v2] = check_compatibility(field({"type": "number"}), [field({"type": "string"})], "FULL")
    assert {v1.direction, v2.direction} == {"backward", "forward"}
    assert v1.deploy_first is None and v2.deploy_first is None  # no order makes a type change safe


def test_required_without_default_suggests_a_default() -> None:
    [v] = check_compatibility(with_prop(CLOSED, "currency", ID, required=True), [CLOSED], "BACKWARD")
    assert v.fix == "give 'currency' a default, or make it optional"
    assert describe(v).startswith(
        "currency: REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL: the new schema requires"
    )


def test_forward_removal_from_open_model_suggests_closing_it() -> None:
    [v] = check_compatibility(without_prop(OPEN, "amount"), [OPEN], "FORWARD")
    assert "additionalProperties: false" in (v.fix or "")


def test_real_order_event_evolution() -> None:
    old = {
        "type": "object",
        "required": ["order_id", "status", "total_amount"],
        "properties": {
            "order_id": {"type": "string"},
            "status": {"type": "string", "enum": ["created", "paid", "shipped"]},
            "total_amount": {"type": "number", "exclusiveMinimum": 0},
            "version": {"type": "integer", "default": 1},
        },
    }
    new = copy.deepcopy(old)
    new["properties"]["status"]["enum"].append("delivered")
    new["required"].append("version")  # has a default: fine
    assert check_compatibility(new, [old], "BACKWARD_TRANSITIVE") == []
    assert {v.rule for v in check_compatibility(new, [old], "FULL")} == {"ENUM_ARRAY_NARROWED"}

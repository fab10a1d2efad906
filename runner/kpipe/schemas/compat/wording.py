"""What each rule says to the user, worded by version ("old", "new") rather than writer and reader."""

from __future__ import annotations

# What each rule says: (message, fix). {W}/{R} become "old"/"new" for the writer's and reader's version,
# {at} is the field path. A key after "/" picks a wording variant of the same rule.
TEXT: dict[str, tuple[str, str | None]] = {
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

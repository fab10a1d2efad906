"""The "Evolving schemas" table in docs/pipeline-format.md says what the compatibility checker does."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest

from kpipe.schemas.compat import check_compatibility

DOC = Path(__file__).resolve().parents[2] / "docs" / "pipeline-format.md"

BASE = {
    "type": "object",
    "required": ["id", "amount"],
    "properties": {
        "id": {"type": "string"},
        "amount": {"type": "number"},
        "note": {"type": "string", "maxLength": 10},
        "count": {"type": "integer"},
        "status": {"type": "string", "enum": ["a", "b"]},
    },
}


def _add(schema: dict, required: bool = False, **prop: object) -> None:
    schema["properties"]["coupon"] = dict(prop)
    if required:
        schema["required"].append("coupon")


# Each row of the table as a change to BASE (the constraint rows use note's maxLength).
CHANGES: dict[str, Callable[[dict], object]] = {
    "add an optional property": lambda s: _add(s, type="string"),
    "add an optional property with a default": lambda s: _add(s, type="string", default=""),
    "add a required property with a default": lambda s: _add(s, True, type="string", default=""),
    "add a required property without a default": lambda s: _add(s, True, type="string"),
    "add a property that accepts anything (`{}`)": lambda s: _add(s),
    "remove an optional property": lambda s: s["properties"].pop("note"),
    "remove a required property": lambda s: (s["properties"].pop("amount"), s["required"].remove("amount")),
    "make an optional property required": lambda s: s["required"].append("note"),
    "make a required property optional": lambda s: s["required"].remove("amount"),
    "widen a type (integer → number)": lambda s: s["properties"]["count"].update(type="number"),
    "narrow a type (number → integer)": lambda s: s["properties"]["amount"].update(type="integer"),
    "change a type (string → integer)": lambda s: s["properties"]["id"].update(type="integer"),
    "add an enum value": lambda s: s["properties"]["status"]["enum"].append("c"),
    "remove an enum value": lambda s: s["properties"]["status"]["enum"].remove("b"),
    "add a constraint (`maxLength`, `pattern`, `minimum`, …)": lambda s: s["properties"]["id"].update(
        maxLength=5
    ),
    "remove a constraint": lambda s: s["properties"]["note"].pop("maxLength"),
    "change a description, title or examples": lambda s: s["properties"]["note"].update(description="x"),
}
COLUMNS = [(model, mode) for model in ("open", "closed") for mode in ("BACKWARD", "FORWARD", "FULL")]


def _table() -> dict[str, list[str]]:
    text = DOC.read_text(encoding="utf-8").split("## Evolving schemas", 1)[1]
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[1] in ("yes", "no"):
            rows[cells[0]] = cells[1:]
    return rows


def test_the_table_has_every_change() -> None:
    assert list(_table()) == list(CHANGES)


@pytest.mark.parametrize("change", list(CHANGES))
def test_each_verdict_is_what_the_checker_says(change: str) -> None:
    verdicts = _table()[change]
    for (model, mode), verdict in zip(COLUMNS, verdicts, strict=True):
        old = copy.deepcopy(BASE)
        if model == "closed":
            old["additionalProperties"] = False
        new = copy.deepcopy(old)
        CHANGES[change](new)
        problems = check_compatibility(new, [old], mode)  # type: ignore[arg-type]
        got = "no" if problems else "yes"
        assert got == verdict, f"{change} / {model} {mode}: the doc says {verdict}, the checker {problems}"

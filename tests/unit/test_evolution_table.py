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
# "declared" is the schema a user writes from the docs (no additionalProperties), which kpipe compares as
# closed; a schema closed explicitly must get the same verdicts. "open" says additionalProperties: true.
COLUMNS = [(model, mode) for model in ("declared", "open") for mode in ("BACKWARD", "FORWARD", "FULL")]
SPELLINGS = {"declared": [None, False], "open": [True]}


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
        for additional in SPELLINGS[model]:
            old = copy.deepcopy(BASE)
            if additional is not None:
                old["additionalProperties"] = additional
            new = copy.deepcopy(old)
            CHANGES[change](new)
            problems = check_compatibility(new, [old], mode, declared_only=True)  # type: ignore[arg-type]
            got = "no" if problems else "yes"
            assert got == verdict, (
                f"{change} / {model} ({additional}) {mode}: the doc says {verdict}, the checker {problems}"
            )


def test_the_usual_change_passes_and_the_dangerous_ones_fail_under_the_default_mode() -> None:
    """The second-day change (one optional property) passes BACKWARD on a schema written from the docs; removing
    a required property or changing a type does not, and names neither side as safe to deploy first."""
    old = copy.deepcopy(BASE)
    added = copy.deepcopy(old)
    _add(added, type="string")
    assert check_compatibility(added, [old], "BACKWARD", declared_only=True) == []
    for change in ("remove a required property", "change a type (string → integer)"):
        new = copy.deepcopy(old)
        CHANGES[change](new)
        problems = check_compatibility(new, [old], "BACKWARD", declared_only=True)
        assert problems, change
        assert {p.deploy_first for p in problems} == {None}, change


def test_what_the_declared_reading_rests_on_undeclared_properties_never_reach_the_wire() -> None:
    """kpipe's producers serialise the compiled model (serde.to_json_bytes, as Producer.send does); a schema
    without additionalProperties drops what it does not declare, nested objects too. A declared free-form map
    keeps its keys, so close_declared leaves it open."""
    import json

    from kpipe.runtime.serde import to_json_bytes
    from kpipe.schemas.compat import close_declared
    from kpipe.schemas.schema_models import compile_schema

    document = copy.deepcopy(BASE)
    document["properties"]["card"] = {"type": "object", "properties": {"last4": {"type": "string"}}}
    document["properties"]["labels"] = {"type": "object"}
    model, diagnostics = compile_schema(document, name="Payment", file="payment.yaml")
    assert model is not None, diagnostics
    event = {
        "id": "p-1",
        "amount": 3,
        "coupon": "X",
        "card": {"last4": "4242", "pan": "4111"},
        "labels": {"a": 1},
    }
    on_the_wire = json.loads(to_json_bytes(model.model_validate(event)))
    assert on_the_wire == {"id": "p-1", "amount": 3, "card": {"last4": "4242"}, "labels": {"a": 1}}
    closed = close_declared(document)
    assert closed["additionalProperties"] is False
    assert closed["properties"]["card"]["additionalProperties"] is False
    assert "additionalProperties" not in closed["properties"]["labels"]
    assert close_declared({**BASE, "additionalProperties": True})["additionalProperties"] is True


class _RecordingFakeProducerClient:
    """A fake of confluent_kafka.Producer that keeps the bytes produce() was given."""

    def __init__(self) -> None:
        self.values: list[bytes] = []

    def produce(self, topic: str, value: bytes, key: object = None, headers: object = None) -> None:
        self.values.append(value)

    def poll(self, timeout: float = 0) -> int:
        return 0


def test_producer_send_writes_only_declared_properties() -> None:
    """The guarantee the declared reading rests on, through Producer.send itself (dict, JSON text, nested)."""
    import json

    from kpipe.compilation.compiled import ClientConfig, ProducerSettings, Setting
    from kpipe.runtime.producer import Producer
    from kpipe.schemas.schema_models import compile_schema

    document = copy.deepcopy(BASE)
    document["properties"]["card"] = {"type": "object", "properties": {"last4": {"type": "string"}}}
    model, diagnostics = compile_schema(document, name="Payment", file="payment.yaml")
    assert model is not None, diagnostics
    client = _RecordingFakeProducerClient()
    settings = ProducerSettings(
        name="api",
        topic="payments",
        key_field="id",
        schema_name="Payment",
        client=ClientConfig((Setting("bootstrap.servers", "127.0.0.1:1", "declared"),)),
    )
    producer = Producer(settings, model, client_factory=lambda config: client)
    event = {"id": "p-1", "amount": 3, "coupon": "X", "card": {"last4": "4242", "pan": "4111"}}
    producer.send(event)
    producer.send(json.dumps(event))
    expected = {"id": "p-1", "amount": 3, "card": {"last4": "4242"}}
    assert [json.loads(v) for v in client.values] == [expected, expected]

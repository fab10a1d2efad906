"""Issue 20.5: events are JSON every Kafka peer can read, and no number past Python's limits is a traceback.

Files: an integer of 4,301 digits or more (or a hex one past 4,096 bits) in a pipeline, values or schema file
is a positioned error. Events: NaN, Infinity and -Infinity are refused by Producer.send and by the JSON-lines
reader of `kpipe produce` (kpipe.runtime.serde.parse_json_event), and a consumer's schema model refuses them,
so the event is dead-lettered (tests/integration/test_hostile_events.py runs both on the broker).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from hostile import run_kpipe
from kpipe.compilation.compiled import ClientConfig, ProducerSettings, Setting
from kpipe.errors import EventInvalid
from kpipe.runtime.producer import Producer
from kpipe.runtime.serde import EventNotJson, parse_json_event, validated
from kpipe.schemas.schema_models import compile_schema

HUGE = "9" * 4301


@pytest.mark.parametrize("number", [HUGE, "-" + HUGE, "0x" + "f" * 1100, "0" + "7" * 1400, "1_" + HUGE])
def test_a_huge_integer_in_a_pipeline_file_is_a_positioned_error(project: Path, number: str) -> None:
    (project / "pipelines" / "p.yaml").write_text(f"topics:\n  orders:\n    partitions: {number}\n")
    for fmt in ("text", "json", "github"):
        result = run_kpipe(project, "validate", "pipelines/", "--format", fmt)
        assert result.code == 1, result.text
        assert "number too large" in result.text
        where = {"text": "pipelines/p.yaml:3:17:", "json": '"line": 3', "github": "p.yaml,line=3,col=17::"}[
            fmt
        ]
        assert where in result.text, result.text


def test_a_huge_integer_in_a_values_file_is_a_positioned_error(project: Path) -> None:
    (project / "pipelines" / "p.yaml").write_text("topics:\n  orders: {partitions: {{ n }}}\n")
    (project / "values.yaml").write_text(f"n: {HUGE}\n")
    result = run_kpipe(project, "validate", "pipelines/", "--values", "values.yaml")
    assert result.code == 1, result.text
    assert "values.yaml:1:4: error: number too large" in result.err, result.err


def test_a_huge_integer_in_a_schema_file_is_a_positioned_error(project: Path) -> None:
    (project / "schemas").mkdir()
    (project / "schemas" / "order.json").write_text(
        '{"type": "object", "properties": {"n": {"type": "integer", "maximum": ' + HUGE + "}}}"
    )
    (project / "pipelines" / "p.yaml").write_text(
        "schemas:\n  Order: ../schemas/order.json\ntopics:\n  orders: {partitions: 1, schema: Order}\n"
    )
    result = run_kpipe(project, "validate", "pipelines/")
    assert result.code == 1, result.text
    assert "schemas/order.json:1:" in result.err and "number too large" in result.err


def test_a_huge_number_rendered_by_a_template_is_a_positioned_error(project: Path) -> None:
    (project / "pipelines" / "p.yaml").write_text("topics:\n  orders: {partitions: {{ '9' * 5000 }}}\n")
    result = run_kpipe(project, "validate", "pipelines/")
    assert result.code == 1, result.text
    assert result.err.startswith("pipelines/p.yaml:2:"), result.err


# -- events ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "column"),
    [
        ('{"id": "a", "amount": NaN}', 23),
        ('{"id": "a", "amount": Infinity}', 23),
        ('{"id": "a", "amount": -Infinity}', 23),
        ('{"id": "NaN", "amount": [1, NaN]}', 29),
        ('{"id": "a", "amount": 1e999}', 23),
        ('{"id": "a", "amount": ' + HUGE + "}", 23),
    ],
)
def test_the_json_lines_reader_refuses_what_json_is_not(line: str, column: int) -> None:
    with pytest.raises(EventNotJson) as refused:
        parse_json_event(line)
    assert refused.value.column == column
    assert isinstance(refused.value, EventInvalid)


def test_the_json_lines_reader_reads_standard_json() -> None:
    assert parse_json_event('{"id": "NaN", "amount": 1.5, "n": -3, "e": 1e3}') == {
        "id": "NaN",
        "amount": 1.5,
        "n": -3,
        "e": 1000.0,
    }


def _model() -> type[BaseModel]:
    schema = {"type": "object", "properties": {"id": {"type": "string"}, "amount": {"type": "number"}}}
    model, problems = compile_schema(schema, name="Payment", file="payment.json")
    assert not problems and model is not None
    return model


class _Recording:
    def __init__(self, sent: list[bytes]) -> None:
        self.sent = sent

    def produce(self, topic: str, value: bytes, key: Any = None, headers: Any = None) -> None:
        self.sent.append(value)

    def poll(self, timeout: float = 0) -> int:
        return 0


def _producer(model: Any, sent: list[bytes]) -> Producer:
    settings = ProducerSettings(
        name="api",
        topic="payments",
        key_field=None,
        schema_name=None,
        client=ClientConfig((Setting("bootstrap.servers", "127.0.0.1:1", "declared"),)),
    )
    return Producer(settings, model, client_factory=lambda config: _Recording(sent))


class UserModel(BaseModel):  # a user's pydantic model, which allows NaN unless told otherwise
    id: str
    amount: float
    more: list[float] = []


@pytest.mark.parametrize("model", [None, "generated", UserModel])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_producer_send_refuses_nan_and_infinities(model: Any, bad: float) -> None:
    sent: list[bytes] = []
    producer = _producer(_model() if model == "generated" else model, sent)
    events = [{"id": "a", "amount": bad}]
    if model != "generated":  # the schema has no 'more': its model drops the field, so nothing would be sent
        events.append({"id": "a", "amount": 1.0, "more": [1.0, bad]})
    for event in events:
        with pytest.raises(EventInvalid):
            producer.send(event)
    producer.send({"id": "a", "amount": 2.5})
    assert len(sent) == 1 and b"null" not in sent[0]


@pytest.mark.parametrize("raw", [b'{"id": "a", "amount": NaN}', b'{"id": "a", "amount": Infinity}'])
def test_a_consumer_s_schema_model_refuses_nan(raw: bytes) -> None:
    """What the worker does with each event of a topic that has a schema: invalid, so dead-lettered."""
    model = _model()
    with pytest.raises(EventInvalid):
        validated(model, raw, "topic 'payments'")
    with pytest.raises(ValueError):
        model.model_validate_json(raw)  # the worker's decoding (runtime.worker.loop) raises: invalid event


@pytest.mark.parametrize("model", [None, UserModel])
def test_producer_send_refuses_an_integer_no_peer_can_read(model: Any) -> None:
    class Counted(BaseModel):
        id: str
        amount: float
        n: int = 0

    sent: list[bytes] = []
    producer = _producer(Counted if model is UserModel else None, sent)
    with pytest.raises(EventInvalid):
        producer.send({"id": "a", "amount": 1.0, "n": 10**4301})
    producer.send({"id": "a", "amount": 1.0, "n": 10**4000, "digits": "9" * 5000})  # a string may be long
    assert len(sent) == 1

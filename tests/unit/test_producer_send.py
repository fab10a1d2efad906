"""Producer.send without a broker: validation, key extraction, serialisation, and what reaches produce()."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import pytest
from pydantic import BaseModel, Field

from kpipe.compilation.compiled import ClientConfig, ProducerSettings, Setting
from kpipe.errors import EventInvalid
from kpipe.runtime.producer import Producer
from kpipe.runtime.serde import describe_validation_error, key_of, to_json_bytes


class Status(str, Enum):  # noqa: UP042 - the (str, Enum) form users still write
    CREATED = "created"


class Order(BaseModel):
    order_id: str
    customer_id: str
    total_amount: float = Field(gt=0)
    status: Status = Status.CREATED
    timestamp: datetime


class Other(BaseModel):
    customer_id: str


def settings(key_field: str | None = "customer_id") -> ProducerSettings:
    conf = {"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": "1000"}
    return ProducerSettings(
        name="order-api",
        topic="orders",
        key_field=key_field,
        schema_name="Order",
        client=ClientConfig(tuple(Setting(k, v, "declared") for k, v in conf.items())),
    )


@pytest.fixture
def sent() -> list[dict[str, Any]]:
    return []


class RecordingClient:
    """Stands in for confluent_kafka.Producer: records what reaches produce()."""

    def __init__(self, sent: list[dict[str, Any]]) -> None:
        self.sent = sent

    def produce(self, topic: str, value: bytes, key: Any = None, headers: Any = None) -> None:
        self.sent.append({"topic": topic, "value": value, "key": key, "headers": headers})

    def poll(self, timeout: float = 0) -> int:
        return 0


def recording(settings: ProducerSettings, model: Any, sent: list[dict[str, Any]]) -> Producer:
    return Producer(settings, model, client_factory=lambda config: RecordingClient(sent))


ORDER = {"order_id": "o-1", "customer_id": "c-7", "total_amount": 12.5, "timestamp": "2024-01-15T10:30:00Z"}


def test_dict_is_validated_keyed_and_serialised(sent: list[dict[str, Any]]) -> None:
    producer = recording(settings(), Order, sent)
    producer.send(ORDER, headers={"trace": "t1"})
    assert sent[0]["topic"] == "orders" and sent[0]["key"] == "c-7" and sent[0]["headers"] == {"trace": "t1"}
    body = json.loads(sent[0]["value"])
    assert body["timestamp"] == "2024-01-15T10:30:00Z"
    # Fields left at their default are not sent: the consumer's model fills in the same default, and a
    # JSON Schema property that is not nullable would reject an explicit null.
    assert "status" not in body
    assert Order.model_validate_json(sent[0]["value"]).status is Status.CREATED
    assert producer.sent == 1


def test_model_instance_is_sent_as_is(sent: list[dict[str, Any]]) -> None:
    producer = recording(settings(), Order, sent)
    order = Order(
        order_id="o-2", customer_id="c-9", total_amount=1, timestamp=datetime(2024, 1, 1, tzinfo=UTC)
    )
    producer.send(order)
    assert sent[0]["key"] == "c-9"
    assert json.loads(sent[0]["value"])["timestamp"] == "2024-01-01T00:00:00Z"


def test_explicit_key_wins(sent: list[dict[str, Any]]) -> None:
    producer = recording(settings(), Order, sent)
    producer.send(ORDER, key=42)
    assert sent[0]["key"] == "42"


def test_invalid_event_names_the_field_and_sends_nothing(sent: list[dict[str, Any]]) -> None:
    producer = recording(settings(), Order, sent)
    with pytest.raises(EventInvalid) as info:
        producer.send({**ORDER, "total_amount": -1})
    message = str(info.value)
    assert "producer 'order-api'" in message and "'total_amount'" in message and "greater than 0" in message
    assert "\n" not in message
    assert sent == [] and producer.sent == 0


def test_missing_field_is_named(sent: list[dict[str, Any]]) -> None:
    producer = recording(settings(), Order, sent)
    with pytest.raises(EventInvalid, match="field 'order_id': Field required"):
        producer.send({k: v for k, v in ORDER.items() if k != "order_id"})


def test_instance_of_another_model_is_refused(sent: list[dict[str, Any]]) -> None:
    producer = recording(settings(), Order, sent)
    with pytest.raises(EventInvalid, match="sends 'Order' events to 'orders', got a 'Other'"):
        producer.send(Other(customer_id="c"))


def test_missing_key_is_refused_unless_given(sent: list[dict[str, Any]]) -> None:
    producer = recording(settings(), None, sent)
    with pytest.raises(EventInvalid, match="no value for key field 'customer_id'"):
        producer.send({"order_id": "o-1", "customer_id": None})
    producer.send({"order_id": "o-1"}, key="c-1")
    assert sent[0]["key"] == "c-1"


def test_schemaless_topic_takes_bytes_str_and_dicts(sent: list[dict[str, Any]]) -> None:
    producer = recording(settings(key_field=None), None, sent)
    producer.send(b"\x00raw")
    producer.send("text")
    producer.send({"a": datetime(2024, 1, 1, tzinfo=UTC)})
    assert [s["value"] for s in sent] == [b"\x00raw", b"text", b'{"a":"2024-01-01T00:00:00+00:00"}']
    assert all(s["key"] is None for s in sent)


def test_send_after_close_is_an_error() -> None:
    producer = Producer(settings(), Order)
    producer.close(timeout=1)
    with pytest.raises(RuntimeError, match="closed"):
        producer.send(ORDER)


def test_key_of_and_serde_helpers() -> None:
    assert key_of({"id": 5}, "id") == "5"
    assert key_of(Order.model_validate(ORDER), "status") == "created"
    with pytest.raises(EventInvalid):
        key_of({}, "id")
    with pytest.raises(EventInvalid, match="cannot be serialised"):
        to_json_bytes({"x": float("inf")})  # not JSON


def test_validation_error_summary_is_one_line_and_bounded() -> None:
    class Many(BaseModel):
        a: int
        b: int
        c: int
        d: int

    try:
        Many.model_validate({})
    except Exception as exc:
        text = describe_validation_error(exc)  # type: ignore[arg-type]
    assert text.startswith("field 'a': Field required; field 'b'")
    assert text.endswith("(and 1 more)")


def test_key_field_named_as_in_json_is_found_on_an_aliased_attribute(sent: list[dict[str, Any]]) -> None:
    # A JSON Schema property such as "customer-id" compiles to the attribute customer_id with that alias.
    from kpipe.runtime.serde import key_of
    from kpipe.schemas.schema_models import compile_schema

    model, problems = compile_schema(
        {"type": "object", "required": ["customer-id"], "properties": {"customer-id": {"type": "string"}}},
        name="Aliased",
        file="aliased.yaml",
    )
    assert model is not None, problems
    producer = recording(settings(key_field="customer-id"), model, sent)
    producer.send({"customer-id": "c-42"})
    assert sent[0]["key"] == "c-42"
    assert json.loads(sent[0]["value"]) == {"customer-id": "c-42"}
    assert key_of(model.model_validate({"customer-id": "c-7"}), "customer-id") == "c-7"


def test_delivery_report_only_error_from_yaml_is_accepted() -> None:
    # confluent-kafka rejects the string "true" for this one key; compiled configs hold strings.
    conf = {"bootstrap.servers": "127.0.0.1:1", "delivery.report.only.error": "true"}
    quiet = ProducerSettings(
        name="p",
        topic="orders",
        key_field=None,
        schema_name=None,
        client=ClientConfig(tuple(Setting(k, v, "passthrough") for k, v in conf.items())),
    )
    Producer(quiet, None, on_delivery=lambda err, msg: None).close(timeout=0.1)


def test_a_full_local_queue_is_waited_out_not_an_error(sent: list[dict[str, Any]]) -> None:
    class FullOnce(RecordingClient):
        polls = 0

        def produce(self, *args: Any, **kwargs: Any) -> None:
            if not self.polls:
                raise BufferError("Local: Queue full")
            super().produce(*args, **kwargs)

        def poll(self, timeout: float = 0) -> int:
            self.polls += 1  # serving delivery reports frees room
            return 0

    producer = Producer(settings(), Order, client_factory=lambda config: FullOnce(sent))
    producer.send(ORDER)
    assert len(sent) == 1 and sent[0]["key"] == "c-7" and producer.sent == 1


def test_an_event_with_a_lone_surrogate_is_invalid_not_a_crash(sent: list[dict[str, Any]]) -> None:
    # json.loads('"\\ud800"') is a str that no UTF-8 encoder takes: the event is refused like any invalid one.
    producer = recording(settings(), Order, sent)
    with pytest.raises(EventInvalid, match="cannot be serialised to JSON") as refused:
        producer.send({**ORDER, "order_id": "\ud800"})
    str(refused.value).encode("utf-8")  # the message itself can be printed
    schemaless = recording(settings(key_field=None), None, sent)
    for event in ("\udc80", Order.model_validate({**ORDER, "order_id": "\ud800"})):
        with pytest.raises(EventInvalid, match="cannot be serialised to JSON"):
            schemaless.send(event)
    assert sent == [] and producer.sent == schemaless.sent == 0
    producer.send(ORDER)
    assert len(sent) == 1

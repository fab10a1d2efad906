"""Declared emits: the check step's name rules, the compiled field, and the Emitter refusing undeclared or
invalid events before anything reaches the producer."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import BaseModel

from builders import assemble_texts, check_texts
from fakes import FakeProducer
from kpipe.check.rules import check_project
from kpipe.compilation import compiler
from kpipe.compilation.compiled import ClientConfig, ProducerSettings, Setting
from kpipe.diagnostics import Diagnostic
from kpipe.errors import UndeclaredEmit
from kpipe.model.assemble import Declarations
from kpipe.runtime.handler import Emitter
from kpipe.runtime.producer import Producer
from kpipe.runtime.serde import EventInvalid
from kpipe.runtime.worker.control import Control
from kpipe.runtime.worker.emits import EmitSettler

PROJECT = (
    "topics:\n  orders:\n    partitions: 3\n  payments:\n    partitions: 3\n    key: order_id\n"
    "consumers:\n  billing:\n    topics: [orders]\n    handler: app.billing:handle\n"
)


def _project(text: str) -> tuple[Declarations, list[Diagnostic]]:
    return assemble_texts(text, names=["p.yaml"])


def _check(text: str) -> list[str]:
    return check_texts(text, names=["p.yaml"])


def test_declared_emits_compile_into_the_group_settings() -> None:
    spec, _ = _project(PROJECT + "    emits: [payments]\n")
    assert _check(PROJECT + "    emits: [payments]\n") == []
    assert compiler.compile_consumer_group(spec, "billing").emits == ("payments",)
    spec, _ = _project(PROJECT)
    assert compiler.compile_consumer_group(spec, "billing").emits == ()


def test_an_unknown_emitted_topic_is_an_error_with_a_did_you_mean() -> None:
    spec, _ = _project(PROJECT + "    emits: [payment]\n")
    [found] = check_project(spec, {})
    assert (
        found.format()
        == "p.yaml:11:13: error: consumer group 'billing': emits refers to unknown topic 'payment'"
    )
    assert found.hint == "did you mean 'payments'?"


def test_emitting_into_the_groups_own_input_is_a_warning() -> None:
    [warning] = _check(PROJECT + "    emits: [orders]\n")
    assert warning.startswith(
        "p.yaml:11:13: warning: consumer group 'billing' emits to 'orders', one of its own"
    )


def test_a_topic_listed_twice_under_emits_is_an_error() -> None:
    spec, problems = _project(PROJECT + "    emits: [payments, payments]\n")
    assert [p.message for p in problems] == [
        "consumer group 'billing': 'emits': topic 'payments' is listed twice"
    ]


class Payment(BaseModel):
    order_id: str
    amount: int


def sent(producer: FakeProducer) -> list[tuple[str, bytes, Any]]:
    return [(s["topic"], s["value"], s["key"]) for s in producer.sent]


def _emitter(producer: FakeProducer) -> Emitter:
    return Emitter(
        producer,
        {"payments": "order_id", "audit": None},
        emits=("payments", "audit"),
        models={"payments": Payment, "audit": None},
        group="billing",
    )


def test_an_emit_to_an_undeclared_topic_raises_before_sending() -> None:
    producer = FakeProducer()
    with pytest.raises(UndeclaredEmit) as raised:
        _emitter(producer).emit("payment", {"order_id": "o-1", "amount": 3}, None, None)
    assert str(raised.value) == (
        "consumer group 'billing' emits to 'payment', which it does not declare (emits: audit, payments); "
        "did you mean 'payments'?"
    )
    assert producer.sent == []


def test_emitted_events_are_validated_against_the_target_topics_schema() -> None:
    producer = FakeProducer()
    emitter = _emitter(producer)
    with pytest.raises(EventInvalid) as raised:
        emitter.emit("payments", {"order_id": "o-1", "amount": "three"}, None, None)
    assert str(raised.value) == (
        "invalid event for emit to 'payments' (schema 'Payment'): "
        "field 'amount': Input should be a valid integer, unable to parse string as an integer"
    )
    assert producer.sent == []
    emitter.emit("payments", {"order_id": "o-1", "amount": "3"}, None, None)
    emitter.emit("payments", Payment(order_id="o-2", amount=4), None, None)
    emitter.emit("audit", {"anything": True}, None, None)  # no schema: sent as given
    assert sent(producer) == [
        ("payments", b'{"order_id":"o-1","amount":3}', "o-1"),
        ("payments", b'{"order_id":"o-2","amount":4}', "o-2"),
        ("audit", b'{"anything":true}', None),
    ]


def test_a_model_of_another_type_is_checked_by_its_fields() -> None:
    class Other(BaseModel):
        order_id: str

    with pytest.raises(EventInvalid, match="field 'amount': Field required"):
        _emitter(FakeProducer()).emit("payments", Other(order_id="o-1"), None, None)


def test_an_emitter_without_declared_emits_is_unrestricted() -> None:
    producer = FakeProducer()
    Emitter(producer, {}).emit("anywhere", {"a": 1}, None, None)
    assert sent(producer) == [("anywhere", b'{"a":1}', None)]


def _kpipe_producer(client: FakeProducer) -> Producer:
    settings = ProducerSettings(
        name="audit", topic="audit", key_field=None, schema_name=None,
        client=ClientConfig((Setting("bootstrap.servers", "unused:9092", "declared"),)),
    )  # fmt: skip
    return Producer(settings, None, client_factory=client.build)


def test_an_emitter_without_a_producer_sends_through_kpipe_producers_and_settles_them() -> None:
    # A group with no dead letters and no emits has no producer of its own; its handler can still send through
    # an application's kpipe Producer, whose deliveries the worker waits for before committing.
    client = FakeProducer()
    emitter = Emitter(None, {}, emits=(), group="billing")
    emitter.emit(_kpipe_producer(client), {"order_id": "o-1"}, None, None)
    assert emitter.unsettled and emitter.emitted == 1
    assert [s["topic"] for s in client.sent] == ["audit"] and client.waiting
    taken = emitter.take_unsettled()
    assert taken is not None and not emitter.unsettled
    emitter.settle_external(taken, 1.0)
    assert client.waiting == [] and emitter.failures == []
    assert emitter.take_unsettled() is None  # nothing emitted since


def test_an_emit_made_while_a_settle_flushes_is_left_to_the_next_settle() -> None:
    # A handler thread of the concurrent loop emits through a kpipe Producer while the worker settles the
    # emits before a commit. That event belongs to a message not yet finished, so this settle need not wait
    # for it, but the next one must: the worker may not commit that message's offset before it is delivered.
    client = FakeProducer()
    emitter = Emitter(None, {}, emits=(), group="billing")
    audit = _kpipe_producer(client)
    emitter.emit(audit, {"order_id": "o-1"}, None, None)
    flush = audit.flush

    def flush_while_a_handler_emits(timeout: float) -> Any:
        summary = flush(timeout)
        audit.flush = flush  # once
        emitter.emit(audit, {"order_id": "o-2"}, None, None)  # the other thread, between flush and commit
        return summary

    audit.flush = flush_while_a_handler_emits
    settler = EmitSettler(emitter, None, _Membership(), Control())
    assert settler.settle() and client.waiting == [(None, "audit")]  # o-1 settled, o-2 still in flight
    assert emitter.unsettled and emitter.emitted == 2
    assert settler.settle() and client.waiting == []  # the next settle waits for o-2


def test_a_settle_that_leaves_an_emit_undelivered_halts_and_every_later_settle_refuses() -> None:
    client = FakeProducer()
    emitter = Emitter(client, {}, group="billing")
    emitter.emit("payments", {"order_id": "o-1"}, None, None)
    client.poll = client.flush = lambda timeout=0: len(client.waiting)  # the broker never acknowledges
    control = Control()
    control.stop()
    control.requested_at = time.monotonic() - 3600  # stopping, and waited long enough for acknowledgements
    settler = EmitSettler(emitter, client, _Membership(), control)
    assert not settler.settle() and control.error == (
        "events emitted by the handler were not delivered: 1 still in flight"
    )
    assert not settler.settle()  # nothing emitted since, but the lost event still forbids a commit


class _Membership:
    """Stands in for the group membership a long settle keeps alive."""

    def __init__(self) -> None:
        self.kept = 0

    def keep_alive(self) -> None:
        self.kept += 1


def test_an_emitter_without_a_producer_refuses_emits_by_topic_name_as_undeclared() -> None:
    with pytest.raises(UndeclaredEmit) as raised:
        Emitter(None, group="billing").emit("payments", {"order_id": "o-1"}, None, None)
    assert str(raised.value) == (
        "consumer group 'billing' emits to 'payments', which it does not declare (emits: none); "
        "add 'payments' to the group's emits"
    )


def test_declared_emits_without_a_producer_to_send_them_are_refused() -> None:
    with pytest.raises(ValueError, match=r"emits \['payments'\] need a producer"):
        Emitter(None, emits=("payments",))

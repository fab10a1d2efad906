"""The worker's batch processing against a fake consumer and producer: which offsets become committable."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message, TopicPartition
from pydantic import BaseModel

from helpers import wait_for
from kpipe.compilation.compiled import ClientConfig, CommitPolicy, ConsumerGroupSettings, ErrorPolicy, Setting
from kpipe.runtime.handler import Emitter, HandlerContext
from kpipe.runtime.protocol import WORKER_EXIT_CLUSTER, WORKER_EXIT_HALT
from kpipe.runtime.worker import GroupWorker


class Event(BaseModel):
    key: str
    n: int


class FakeConsumer:
    def __init__(self) -> None:
        self.stored: list[tuple[str, int, int]] = []
        self.commits: list[list[tuple[str, int, int]]] = []
        self.paused: list[TopicPartition] = []
        self.resumed: list[TopicPartition] = []
        self.polls = 0

    def store_offsets(self, message: Any = None, offsets: Any = None) -> None:
        self.stored.append((message.topic(), message.partition(), message.offset() + 1))

    def commit(self, message: Any = None, offsets: Any = None, asynchronous: bool = True) -> Any:
        self.commits.append(sorted((tp.topic, tp.partition, tp.offset) for tp in offsets))
        return offsets

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("t", 0), TopicPartition("t", 1)]

    def pause(self, tps: list[TopicPartition]) -> None:
        self.paused.extend(tps)

    def resume(self, tps: list[TopicPartition]) -> None:
        self.resumed.extend(tps)

    def consume(self, n: int, timeout: float) -> list:
        self.polls += 1
        return []


class FakeProducer:
    """Acks (or fails) every produced message on the next poll/flush."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.sent: list[dict[str, Any]] = []
        self._waiting: list[Any] = []

    def produce(
        self, topic: str, value: Any, key: Any = None, headers: Any = None, on_delivery: Any = None
    ) -> None:
        self.sent.append({"topic": topic, "value": value, "key": key, "headers": dict(headers or [])})
        self._waiting.append((on_delivery, topic))

    def poll(self, timeout: float = 0) -> int:
        waiting, self._waiting = self._waiting, []
        for callback, topic in waiting:
            err = KafkaError(KafkaError._MSG_TIMED_OUT) if self.fail else None
            callback(err, Message(topic=topic))
        return len(waiting)

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return 0

    def __len__(self) -> int:
        return len(self._waiting)


def make_worker(
    handler: Any,
    strategy: str = "batch",
    *,
    action: str = "dead_letter",
    retries: int = 0,
    batch_size: int = 100,
    producer: FakeProducer | None = None,
) -> GroupWorker:
    settings = ConsumerGroupSettings(
        group_id="g",
        topics=("t",),
        handler="m:f",
        instances=1,
        commit=CommitPolicy(strategy, batch_size=batch_size, interval_ms=60_000),  # type: ignore[arg-type]
        on_error=ErrorPolicy(action, retries, 1, 2, "t.dlq" if action == "dead_letter" else None),  # type: ignore[arg-type]
        client=ClientConfig((Setting("bootstrap.servers", "unused:9092", "declared"),)),
    )
    worker = GroupWorker(settings, {"t": Event}, handler, rng=lambda: 0.5)
    worker._consumer = FakeConsumer()
    worker._commit_deadline = float("inf")
    worker.assigned = {("t", 0), ("t", 1)}
    if producer is not None:
        worker._producer = producer
        worker._emitter = Emitter(producer, {"out": "key"})
        worker._ctx = HandlerContext("g", worker._emitter)
    return worker


def messages(count: int, partition: int = 0, bad: set[int] = frozenset()) -> list[Message]:  # type: ignore[assignment]
    out = []
    for i in range(count):
        value = b"{not json" if i in bad else json.dumps({"key": f"k{i % 3}", "n": i}).encode()
        out.append(Message(topic="t", partition=partition, offset=i, key=f"k{i % 3}".encode(), value=value))
    return out


def test_batch_commits_every_batch_size_and_the_rest_on_shutdown() -> None:
    seen: list[int] = []
    worker = make_worker(lambda e, ctx: seen.append(e.n), batch_size=10)
    worker._process(messages(25))
    assert seen == list(range(25))
    assert worker._consumer.commits == [[("t", 0, 10)], [("t", 0, 20)]]
    worker._commit_all("shutdown")
    assert worker._consumer.commits[-1] == [("t", 0, 25)]
    assert worker.handled == 25


def test_per_message_commits_after_each_message() -> None:
    worker = make_worker(lambda e, ctx: None, "per_message")
    worker._process(messages(3))
    assert worker._consumer.commits == [[("t", 0, 1)], [("t", 0, 2)], [("t", 0, 3)]]


def test_auto_stores_each_processed_offset_and_none_after_a_stop() -> None:
    def handler(event: Event, ctx: HandlerContext) -> None:
        if event.n == 4:
            raise RuntimeError("boom")

    worker = make_worker(handler, "auto", action="stop", retries=1)
    worker._process(messages(8))
    assert worker._consumer.stored == [("t", 0, i + 1) for i in range(4)]
    assert worker.exit_code == WORKER_EXIT_HALT
    assert "t[0]@4" in (worker.error or "") and "after 2 attempts" in (worker.error or "")


def test_stop_action_leaves_the_failed_offset_uncommitted() -> None:
    calls: list[int] = []

    def handler(event: Event, ctx: HandlerContext) -> None:
        calls.append(event.n)
        if event.n == 5:
            raise ValueError("bad order")

    worker = make_worker(handler, action="stop", retries=2)
    worker._process(messages(10))
    worker._commit_all("shutdown")
    assert worker._consumer.commits == [[("t", 0, 5)]]
    assert calls == [0, 1, 2, 3, 4, 5, 5, 5]
    assert worker.exit_code == WORKER_EXIT_HALT


def test_skip_counts_the_failure_and_moves_on() -> None:
    worker = make_worker(lambda e, ctx: 1 / (e.n - 2), action="skip")
    worker._process(messages(5))
    worker._commit_all("shutdown")
    assert worker.skipped == 1 and worker.handled == 4
    assert worker._consumer.commits == [[("t", 0, 5)]]


def test_schema_invalid_goes_to_dead_letter_without_retry_with_headers() -> None:
    producer = FakeProducer()
    calls: list[int] = []
    worker = make_worker(lambda e, ctx: calls.append(e.n), retries=3, producer=producer)
    worker._process(messages(4, partition=1, bad={2}))
    worker._commit_all("shutdown")
    assert calls == [0, 1, 3]
    assert len(producer.sent) == 1
    sent = producer.sent[0]
    assert sent["topic"] == "t.dlq" and sent["value"] == b"{not json" and sent["key"] == b"k2"
    assert sent["headers"]["kpipe.error.type"] == b"schema"
    assert sent["headers"]["kpipe.source.partition"] == b"1"
    assert sent["headers"]["kpipe.source.offset"] == b"2"
    assert sent["headers"]["kpipe.group"] == b"g"
    assert worker.dead_lettered == 1
    assert worker._consumer.commits == [[("t", 1, 4)]]


def test_handler_failure_is_retried_then_dead_lettered() -> None:
    producer = FakeProducer()
    attempts: list[int] = []

    def handler(event: Event, ctx: HandlerContext) -> None:
        attempts.append(event.n)
        if ctx.key == "k1":
            raise KeyError("no customer")

    worker = make_worker(handler, retries=2, producer=producer)
    worker._process(messages(3))
    assert attempts == [0, 1, 1, 1, 2]
    assert producer.sent[0]["headers"]["kpipe.error.type"] == b"handler"
    assert b"KeyError" in producer.sent[0]["headers"]["kpipe.error.message"]
    worker._commit_all("shutdown")
    assert worker._consumer.commits == [[("t", 0, 3)]]


def test_failed_dead_letter_write_stops_without_committing_that_offset() -> None:
    worker = make_worker(lambda e, ctx: 1 / (e.n - 3), producer=FakeProducer(fail=True))
    worker._process(messages(6))
    assert worker.exit_code == WORKER_EXIT_CLUSTER
    assert "_MSG_TIMED_OUT" in (worker.error or "")
    worker._commit_all("shutdown")
    assert worker._consumer.commits == [[("t", 0, 3)]]


def test_stop_finishes_the_message_in_hand_and_processes_no_more() -> None:
    seen: list[int] = []
    worker = make_worker(lambda e, ctx: (seen.append(e.n), e.n == 3 and worker.stop()))
    worker._process(messages(10))
    worker._commit_all("shutdown")
    assert seen == [0, 1, 2, 3]
    assert worker._consumer.commits == [[("t", 0, 4)]]


def test_auto_stores_offsets_of_emitting_messages_only_after_the_emits_are_acked() -> None:
    producer = FakeProducer()
    worker = make_worker(
        lambda e, ctx: e.n == 1 and ctx.emit("out", {"key": "x", "n": e.n}), "auto", producer=producer
    )
    worker._process(messages(3))
    assert producer.sent[0]["key"] == "x" and producer.sent[0]["topic"] == "out"
    assert worker._consumer.stored == [("t", 0, 1), ("t", 0, 2), ("t", 0, 3)]
    assert worker.exit_code is None


def test_failed_emit_stops_the_worker_before_storing_its_offset() -> None:
    producer = FakeProducer(fail=True)
    worker = make_worker(lambda e, ctx: e.n == 1 and ctx.emit("out", {"key": "x"}), "auto", producer=producer)
    worker._process(messages(3))
    assert worker._consumer.stored == [("t", 0, 1)]
    assert worker.exit_code == WORKER_EXIT_CLUSTER


def test_long_retry_wait_keeps_group_membership_by_pausing_and_polling() -> None:
    state = {"fails": 1}

    def handler(event: Event, ctx: HandlerContext) -> None:
        if state["fails"]:
            state["fails"] -= 1
            raise RuntimeError("transient")

    worker = make_worker(handler, action="stop", retries=1)
    worker._policy = ErrorPolicy("stop", retries=1, backoff_ms=300, max_backoff_ms=300)
    worker._max_poll_interval = 0.03  # keepalive polls every 10 ms of waiting
    worker._process(messages(1))
    worker._resume()
    consumer = worker._consumer
    assert consumer.polls >= 3
    assert {(tp.topic, tp.partition) for tp in consumer.paused} == {("t", 0), ("t", 1)}
    assert {(tp.topic, tp.partition) for tp in consumer.resumed} == {("t", 0), ("t", 1)}
    assert worker.handled == 1 and worker.exit_code is None


def test_messages_of_partitions_revoked_during_a_wait_are_dropped() -> None:
    seen: list[int] = []

    def handler(event: Event, ctx: HandlerContext) -> None:
        if event.n == 1:
            worker._on_revoke(None, [TopicPartition("t", 0)])  # as a keepalive poll would
            raise RuntimeError("fails while the partition moves away")
        seen.append(event.n)

    worker = make_worker(handler, action="stop", retries=1)
    worker._in_batch = True
    worker._process(messages(4))
    assert seen == [0]
    assert worker.exit_code is None
    assert worker._consumer.commits == [[("t", 0, 1)]]  # committed on revocation: only offset 0 was processed


@pytest.mark.parametrize("strategy", ["auto", "batch", "per_message"])
def test_tombstone_on_schema_topic_is_a_schema_error(strategy: str) -> None:
    worker = make_worker(lambda e, ctx: None, strategy, action="skip")
    worker._process([Message(topic="t", partition=0, offset=0, value=None)])
    assert worker.skipped == 1


def test_a_commit_blocked_past_the_cluster_timeout_is_reported_to_on_stuck() -> None:
    # librdkafka's synchronous commit can block for minutes once the broker is gone, out of reach of stop()
    # and of signal handlers; the watchdog must notice (worker_main's on_stuck then exits for a restart).
    release = threading.Event()
    stuck: list[str] = []

    class BlockingConsumer(FakeConsumer):
        def commit(self, message: Any = None, offsets: Any = None, asynchronous: bool = True) -> Any:
            release.wait(10)
            return super().commit(message, offsets, asynchronous)

    worker = make_worker(lambda e, ctx: None, "per_message")
    consumer = worker._consumer = BlockingConsumer()
    worker._cluster_timeout = 0.3
    worker._on_stuck = stuck.append
    watchdog = threading.Thread(target=worker._watch_blocked_calls, daemon=True)
    processing = threading.Thread(target=worker._process, args=(messages(1),), daemon=True)
    watchdog.start()
    processing.start()
    try:
        wait_for(lambda: stuck, timeout=10, message="the blocked commit was not reported")
        assert stuck == [
            "a commit has been blocked for over 0.3 s: the cluster is unreachable; nothing more is committed "
            "(unprocessed and uncommitted events will be delivered again)"
        ]
        assert consumer.commits == []
    finally:
        release.set()
        processing.join(5)
        worker._watchdog_done.set()
        watchdog.join(5)
    assert consumer.commits == [[("t", 0, 1)]]  # reported once; the commit itself went through when unblocked
    assert len(stuck) == 1


def test_partitions_paused_while_a_commit_waits_between_batches_are_resumed() -> None:
    # Regression: the interval commit outside a batch waited for emitted events long enough to pause the
    # partitions (to keep the group membership), and only the end of a non-empty batch resumed them; paused
    # partitions return no messages, so the worker went on "running" and never read again.
    class SlowProducer(FakeProducer):
        def __init__(self) -> None:
            super().__init__()
            self.rounds = 0

        def flush(self, timeout: float = 0) -> int:
            self.rounds += 1
            if self.rounds >= 3:
                self.poll()
            return len(self._waiting)

    worker = make_worker(lambda e, ctx: ctx.emit("out", {"key": "k", "n": e.n}), producer=SlowProducer())
    worker._max_poll_interval = 0.0  # every wait is "long": the membership poll pauses the partitions
    worker._process(messages(3))
    worker._commit_deadline = 0.0  # the batch interval has passed: _loop commits between batches
    consumer = worker._consumer
    calls = 0

    def consume(n: int, timeout: float) -> list:
        nonlocal calls
        calls += 1
        if calls >= 3:
            worker.stop()
        return []

    consumer.consume = consume  # type: ignore[method-assign]
    worker._loop()
    assert consumer.commits == [[("t", 0, 3)]]
    assert consumer.paused  # the commit's wait did pause them...
    assert sorted((tp.topic, tp.partition) for tp in consumer.resumed) == [
        ("t", 0),
        ("t", 1),
    ]  # ...and resumed
    assert worker._paused == []


class FakeKpipeProducer:
    """Stands in for kpipe.runtime.producer.Producer as a handler's emit target: sends are delivered on flush."""

    def __init__(self, fail: bool = False) -> None:
        from types import SimpleNamespace

        self.settings = SimpleNamespace(name="audit")
        self.fail = fail
        self.failed = 0
        self.queued: list[Any] = []
        self.delivered: list[Any] = []

    def send(self, event: Any, key: Any = None, headers: Any = None) -> None:
        self.queued.append(event)

    def flush(self, timeout: float) -> Any:
        from kpipe.runtime.producer import DeliveryError, DeliverySummary

        events, self.queued = self.queued, []
        errors: tuple[DeliveryError, ...] = ()
        if self.fail:
            self.failed += len(events)
            errors = (DeliveryError("k", "_MSG_TIMED_OUT", "Local: Message timed out"),)
        else:
            self.delivered += events
        return DeliverySummary("audit", "audit", len(events), len(self.delivered), self.failed, 0, errors)


@pytest.mark.parametrize("fail", [False, True])
def test_events_emitted_through_a_kpipe_producer_are_delivered_before_the_offset_is_stored(
    fail: bool,
) -> None:
    audit = FakeKpipeProducer(fail=fail)
    stored_when_delivered: list[int] = []

    def handler(event: Any, ctx: HandlerContext) -> None:
        ctx.emit(audit, {"n": event.n})

    worker = make_worker(handler, "auto", producer=FakeProducer())
    consumer = worker._consumer
    original_store = consumer.store_offsets

    def store(message: Any = None, offsets: Any = None) -> None:
        stored_when_delivered.append(len(audit.delivered))
        original_store(message, offsets)

    consumer.store_offsets = store  # type: ignore[method-assign]
    worker._process(messages(2))
    if fail:
        assert consumer.stored == []  # the emitted events were lost: nothing after them may be committed
        assert worker.exit_code == WORKER_EXIT_CLUSTER
        assert "emit through producer 'audit': 2 not delivered: Local: Message timed out" in (
            worker.error or ""
        )
    else:
        assert consumer.stored == [("t", 0, 1), ("t", 0, 2)]
        assert all(
            n >= 1 for n in stored_when_delivered
        )  # each store came after the flush delivered the emit

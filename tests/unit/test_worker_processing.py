"""The worker's processing against a fake consumer and producer, built through its constructor's client
factories: which offsets become committable, and what happens to failures."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from pydantic import BaseModel

from fakes import FakeConsumer, FakeProducer
from helpers import returns_within, wait_for
from kpipe.compilation.compiled import ClientConfig, CommitPolicy, ConsumerGroupSettings, ErrorPolicy, Setting
from kpipe.compilation.compiler import commit_settings
from kpipe.observe.health import readiness
from kpipe.runtime.handler import HandlerContext
from kpipe.runtime.protocol import (
    WORKER_EXIT_CLUSTER,
    WORKER_EXIT_DEAD_LETTER,
    WORKER_EXIT_HALT,
    WORKER_EXIT_OK,
    WorkerStatus,
)
from kpipe.runtime.slots import WorkerView
from kpipe.runtime.worker import EmitTargets, GroupWorker, Hooks, Limits, Outside
from kpipe.testing.clock import VirtualClock

ASSIGNMENT = [TopicPartition("t", 0), TopicPartition("t", 1)]


class Event(BaseModel):
    key: str
    n: int


class Harness:
    """A GroupWorker of group 'g' on topic 't', built with fake clients through its constructor."""

    def __init__(
        self,
        handler: Any,
        strategy: str = "batch",
        *,
        action: str = "dead_letter",
        retries: int = 0,
        backoff_ms: int = 1,
        batch_size: int = 100,
        interval_ms: int = 60_000,
        client: dict[str, str] | None = None,
        consumer: FakeConsumer | None = None,
        producer: FakeProducer | None = None,
        timeout_ms: int | None = None,
        clock: Any = None,
        topics: tuple[str, ...] = ("t",),
        emitting: bool = True,
        **options: Any,
    ) -> None:
        """topics: the group's topics (each with the Event schema). emitting=False: a group with no producer
        (no emits, no dead letters), whose hot path has nothing to wait for."""
        commit = CommitPolicy(strategy, batch_size=batch_size, interval_ms=interval_ms)  # type: ignore[arg-type]
        conf = {
            "bootstrap.servers": "unused:9092",
            **(client or {}),
            "group.id": "g",
            **commit_settings(commit),
        }
        dlq = "t.dlq" if action == "dead_letter" else None
        producer_client = ClientConfig((Setting("bootstrap.servers", "unused:9092", "declared"),))
        settings = ConsumerGroupSettings(
            group_id="g",
            topics=topics,
            handler="m:f",
            instances=1,
            commit=commit,
            on_error=ErrorPolicy(action, retries, backoff_ms, max(2, backoff_ms), dlq, timeout_ms),  # type: ignore[arg-type]
            client=ClientConfig(tuple(Setting(k, v, "declared") for k, v in conf.items())),
            producer_client=producer_client if emitting else None,
            emits=("out",) if emitting else (),
        )
        self.consumer = consumer if consumer is not None else FakeConsumer()
        self.producer = producer if producer is not None else FakeProducer()  # falsy when empty
        self.worker = GroupWorker(
            settings, dict.fromkeys(topics, Event), handler,
            outside=Outside(
                consumer=self.consumer.build, producer=self.producer.build, rng=lambda: 0.5,
                **({"clock": clock} if clock is not None else {}),
            ),
            emit_targets=EmitTargets(key_fields={"out": "key"}), **options,
        )  # fmt: skip
        self.consumer.when_idle = self.worker.stop

    def run(self, *batches: Any) -> int:
        """Deliver the batches, then stop: the worker commits what it processed on shutdown."""
        self.consumer.batches.extend(batches)
        return self.worker.run()

    @property
    def commits(self) -> list[list[tuple[str, int, int]]]:
        return self.consumer.commits


def messages(count: int, partition: int = 0, bad: set[int] = frozenset()) -> list[Message]:  # type: ignore[assignment]
    out = []
    for i in range(count):
        value = b"{not json" if i in bad else json.dumps({"key": f"k{i % 3}", "n": i}).encode()
        out.append(Message(topic="t", partition=partition, offset=i, key=f"k{i % 3}".encode(), value=value))
    return out


def test_batch_commits_every_batch_size_and_the_rest_on_shutdown() -> None:
    seen: list[int] = []
    h = Harness(lambda e, ctx: seen.append(e.n), batch_size=10)
    assert h.run(messages(25)) == WORKER_EXIT_OK
    assert seen == list(range(25))
    assert h.commits == [[("t", 0, 10)], [("t", 0, 20)], [("t", 0, 25)]]  # the last one on shutdown
    assert h.worker.handled == 25
    assert h.consumer.closed


def test_batch_counts_batch_size_across_batches_smaller_than_it() -> None:
    # batch_size 5 over batches of 3: a commit every 5 processed messages, not only when the interval passes.
    h = Harness(lambda e, ctx: None, batch_size=5)
    msgs = messages(12)
    assert h.run(msgs[0:3], msgs[3:6], msgs[6:9], msgs[9:12]) == WORKER_EXIT_OK
    assert h.commits == [[("t", 0, 5)], [("t", 0, 10)], [("t", 0, 12)]]  # the last one on shutdown


def test_batch_restarts_its_count_after_a_commit_by_interval() -> None:
    clock = VirtualClock()
    h = Harness(lambda e, ctx: None, batch_size=5, interval_ms=1000, clock=clock,
                consumer=FakeConsumer(clock=clock))  # fmt: skip
    msgs = messages(9)
    # 3 messages, then the interval passes between batches (a commit by time), then 6 more: the count starts
    # again after that commit, so the next commit by count comes at 3 + 5 = 8, not at 5.
    assert h.run(msgs[0:3], 2.0, msgs[3:6], msgs[6:9]) == WORKER_EXIT_OK
    assert h.commits == [[("t", 0, 3)], [("t", 0, 8)], [("t", 0, 9)]]


def interleaved(topics: tuple[str, ...], count: int) -> list[Message]:
    """count messages per partition 0 and 1 of each topic, the partitions' runs interleaved as fetches mix them."""
    out = []
    for start in range(0, count, 3):
        for topic in topics:
            for partition in (0, 1):
                for i in range(start, min(start + 3, count)):
                    value = json.dumps({"key": f"k{i}", "n": i}).encode()
                    out.append(Message(topic=topic, partition=partition, offset=i, key=b"k", value=value))
    return out


# Commits expected from interleaved(topics, 5): every 4 messages per topic, then the rest on shutdown.
BATCH_COMMITS = {
    ("t",): [[("t", 0, 3), ("t", 1, 1)], [("t", 0, 5), ("t", 1, 3)], [("t", 1, 5)]],
    ("t", "u"): [
        [("t", 0, 3), ("t", 1, 3), ("u", 0, 2)],
        [("t", 0, 5), ("t", 1, 5), ("u", 0, 3), ("u", 1, 3)],
        [("u", 0, 5), ("u", 1, 5)],
    ],
}


@pytest.mark.parametrize("topics", list(BATCH_COMMITS))
def test_batch_commits_each_partitions_highest_processed_offset_in_a_group_of_one_topic_or_more(
    topics: tuple[str, ...],
) -> None:
    # A group of one topic notes offsets by partition alone (commit.OffsetNotes); the commits are the same.
    per_topic = [TopicPartition(t, p) for t in topics for p in (0, 1)]
    h = Harness(lambda e, ctx: None, "batch", batch_size=4 * len(topics), action="stop", topics=topics,
                emitting=False, consumer=FakeConsumer(assignment=per_topic))  # fmt: skip
    assert h.run(interleaved(topics, 5)) == WORKER_EXIT_OK
    assert h.commits == BATCH_COMMITS[topics]


@pytest.mark.parametrize("topics", list(BATCH_COMMITS))
def test_auto_stores_each_partitions_highest_processed_offset_once_per_batch(topics: tuple[str, ...]) -> None:
    per_topic = [TopicPartition(t, p) for t in topics for p in (0, 1)]
    msgs = interleaved(topics, 5)
    h = Harness(lambda e, ctx: None, "auto", action="stop", topics=topics, emitting=False,
                consumer=FakeConsumer(assignment=per_topic))  # fmt: skip
    assert h.run(msgs[:2], msgs[2:7], msgs[7:]) == WORKER_EXIT_OK
    # The first batch stores each offset; after it, quick batches store once per batch: each partition's
    # highest offset + 1 processed in that batch, nothing else.
    first = [(m.topic(), m.partition(), m.offset() + 1) for m in msgs[:2]]
    assert h.consumer.stored[:2] == first
    expected = [sorted({(m.topic(), m.partition()): m.offset() + 1 for m in batch}.items()) for batch in
                (msgs[2:7], msgs[7:])]  # fmt: skip
    stored = [((t, p), o) for t, p, o in h.consumer.stored[2:]]
    assert sorted(stored[: len(expected[0])]) == expected[0]
    assert sorted(stored[len(expected[0]) :]) == expected[1]


@pytest.mark.parametrize("strategy", ["auto", "batch"])
def test_offsets_noted_in_a_batch_for_a_partition_lost_meanwhile_are_not_committed(strategy: str) -> None:
    # Lost in mid-batch (as a poll during a retry wait could find): what its messages noted before is dropped,
    # not stored or committed; the other partition's offsets are.
    def handler(event: Event, ctx: HandlerContext) -> None:
        if event.n == 1 and ctx.partition == 1:
            h.consumer.lose_now([TopicPartition("t", 0)])

    h = Harness(handler, strategy, batch_size=100, action="stop", emitting=False)
    msgs = interleaved(("t",), 3)
    warm_up = [
        m for m in msgs if (m.partition(), m.offset()) == (1, 0)
    ]  # auto: the batches after it are quick
    assert h.run(warm_up, [m for m in msgs if m not in warm_up]) == WORKER_EXIT_OK
    done = [*h.consumer.stored, *(c for commit in h.commits for c in commit)]
    assert [d for d in done if d[:2] == ("t", 0)] == []
    assert max(o for t, p, o in done if p == 1) == 3


def test_per_message_commits_after_each_message() -> None:
    h = Harness(lambda e, ctx: None, "per_message")
    h.run(messages(3))
    assert h.commits == [[("t", 0, 1)], [("t", 0, 2)], [("t", 0, 3)]]


def test_per_message_commits_asynchronously_and_not_again_what_the_broker_confirmed() -> None:
    h = Harness(lambda e, ctx: None, "per_message")
    h.run(messages(3))
    # Each commit returned before its answer, which came through on_commit in a later consume(): no final commit.
    assert h.commits == [[("t", 0, 1)], [("t", 0, 2)], [("t", 0, 3)]]
    assert h.worker.commits == 3


def test_per_message_holds_commits_back_while_16_are_unanswered_and_sends_them_after_the_next_fetch() -> None:
    h = Harness(lambda e, ctx: None, "per_message")
    h.run(messages(20))  # one batch: no answer can come before the next consume()
    assert h.commits[:16] == [[("t", 0, i + 1)] for i in range(16)]
    # Offsets 16-19 were held back; the answers came with the next consume(), then one commit covered them
    # (and, unanswered when the worker stopped, it was made again synchronously).
    assert h.commits[16:] == [[("t", 0, 20)], [("t", 0, 20)]]


def test_per_message_commits_synchronously_on_shutdown_what_the_broker_refused() -> None:
    synchronous: list[bool] = []

    class RefusingConsumer(FakeConsumer):
        """Asynchronous commits are answered with an error inside the next consume()."""

        def __init__(self) -> None:
            super().__init__()
            self.refused: list[list[TopicPartition]] = []

        def consume(self, num_messages: int = 1, timeout: float = -1) -> list:
            while self.refused:
                assert self.config is not None
                self.config["on_commit"](KafkaError(KafkaError.REBALANCE_IN_PROGRESS), self.refused.pop(0))
            return super().consume(num_messages, timeout)

        def commit(self, message: Any = None, offsets: Any = None, asynchronous: bool = True) -> Any:
            synchronous.append(not asynchronous)
            self.commits.append(sorted((tp.topic, tp.partition, tp.offset) for tp in offsets))
            if asynchronous:
                self.refused.append(list(offsets))
                return None
            return offsets

    h = Harness(lambda e, ctx: None, "per_message", consumer=RefusingConsumer())
    h.run(messages(2))
    assert h.commits == [[("t", 0, 1)], [("t", 0, 2)], [("t", 0, 2)]]
    # The refused offset 2 is committed again on shutdown, synchronously.
    assert synchronous == [False, False, True]
    assert h.worker.counters.commit_failures == 2
    assert h.worker.commits == 1


def test_per_message_commits_again_after_a_failure_only_once_the_emits_before_are_acknowledged() -> None:
    # After a failed commit, per_message commits again what is processed and not confirmed, once interval_ms
    # has passed. That commit also covers messages whose own commit was held back (16 unanswered) before their
    # emitted events were waited for: it must wait for them too, as every commit does.
    clock = VirtualClock()
    unacked_at_commit: list[tuple[int, int]] = []

    class FailingOnceConsumer(FakeConsumer):
        commits_tried = 0

        def commit(self, message: Any = None, offsets: Any = None, asynchronous: bool = True) -> Any:
            self.commits_tried += 1
            if self.commits_tried == 1:
                raise KafkaException(KafkaError(KafkaError._WAIT_COORD))
            unacked_at_commit.extend((tp.offset, len(h.producer)) for tp in offsets)
            return super().commit(message, offsets, asynchronous)

    def handler(event: Event, ctx: HandlerContext) -> None:
        if event.n == 17:  # its commit is held back: 16 commits are unanswered within this batch
            ctx.emit("out", {"key": "x", "n": event.n})
            clock.advance(2.0)  # past interval_ms: the commit after the failure is due at the batch's end

    h = Harness(
        handler, "per_message", interval_ms=1000, clock=clock, consumer=FailingOnceConsumer(clock=clock)
    )
    assert h.run(messages(18)) == WORKER_EXIT_OK
    assert (18, 0) in unacked_at_commit
    assert [unacked for _offset, unacked in unacked_at_commit] == [0] * len(unacked_at_commit)


def test_auto_stores_each_processed_offset_and_none_after_a_stop() -> None:
    def handler(event: Event, ctx: HandlerContext) -> None:
        if event.n == 4:
            raise RuntimeError("boom")

    h = Harness(handler, "auto", action="stop", retries=1)
    assert h.run(messages(8)) == WORKER_EXIT_HALT
    assert h.consumer.stored == [("t", 0, i + 1) for i in range(4)]
    assert h.worker.exit_code == WORKER_EXIT_HALT
    assert "t[0]@4" in (h.worker.error or "") and "after 2 attempts" in (h.worker.error or "")


def test_stop_action_leaves_the_failed_offset_uncommitted() -> None:
    calls: list[int] = []

    def handler(event: Event, ctx: HandlerContext) -> None:
        calls.append(event.n)
        if event.n == 5:
            raise ValueError("bad order")

    h = Harness(handler, action="stop", retries=2)
    assert h.run(messages(10)) == WORKER_EXIT_HALT
    assert h.commits == [[("t", 0, 5)]]
    assert calls == [0, 1, 2, 3, 4, 5, 5, 5]


def test_skip_counts_the_failure_and_moves_on() -> None:
    h = Harness(lambda e, ctx: 1 / (e.n - 2), action="skip")
    h.run(messages(5))
    assert h.worker.skipped == 1 and h.worker.handled == 4
    assert h.commits == [[("t", 0, 5)]]


def test_schema_invalid_goes_to_dead_letter_without_retry_with_headers() -> None:
    calls: list[int] = []
    h = Harness(lambda e, ctx: calls.append(e.n), retries=3)
    h.run(messages(4, partition=1, bad={2}))
    assert calls == [0, 1, 3]
    assert len(h.producer.sent) == 1
    sent = h.producer.sent[0]
    assert sent["topic"] == "t.dlq" and sent["value"] == b"{not json" and sent["key"] == b"k2"
    assert sent["headers"]["kpipe.error.type"] == b"schema"
    assert sent["headers"]["kpipe.source.partition"] == b"1"
    assert sent["headers"]["kpipe.source.offset"] == b"2"
    assert sent["headers"]["kpipe.group"] == b"g"
    assert h.worker.dead_lettered == 1
    assert h.commits == [[("t", 1, 4)]]


def test_handler_failure_is_retried_then_dead_lettered() -> None:
    attempts: list[int] = []

    def handler(event: Event, ctx: HandlerContext) -> None:
        attempts.append(event.n)
        if ctx.key == "k1":
            raise KeyError("no customer")

    h = Harness(handler, retries=2)
    h.run(messages(3))
    assert attempts == [0, 1, 1, 1, 2]
    assert h.producer.sent[0]["headers"]["kpipe.error.type"] == b"handler"
    assert h.producer.sent[0]["headers"]["kpipe.attempts"] == b"3"  # the first call and two retries
    assert b"KeyError" in h.producer.sent[0]["headers"]["kpipe.error.message"]
    assert h.commits == [[("t", 0, 3)]]


def test_an_undeclared_emit_is_not_retried_it_goes_straight_to_on_error() -> None:
    attempts: list[int] = []

    def handler(event: Event, ctx: HandlerContext) -> None:
        attempts.append(event.n)
        if event.n == 1:
            ctx.emit("not-declared", {"key": "x", "n": event.n})  # can never succeed: no retry helps

    h = Harness(handler, retries=3)
    h.run(messages(3))
    assert attempts == [0, 1, 2]
    [dead_letter] = h.producer.sent
    assert dead_letter["topic"] == "t.dlq" and dead_letter["headers"]["kpipe.error.type"] == b"handler"
    assert b"UndeclaredEmit" in dead_letter["headers"]["kpipe.error.message"]
    assert dead_letter["headers"]["kpipe.attempts"] == b"1"
    assert h.worker.status().totals().retried == 0
    assert h.commits == [[("t", 0, 3)]]


def test_failed_dead_letter_write_stops_without_committing_that_offset() -> None:
    h = Harness(lambda e, ctx: 1 / (e.n - 3), producer=FakeProducer(fail=True))
    assert (
        h.run(messages(6)) == WORKER_EXIT_DEAD_LETTER
    )  # "dead letter not written", not "cluster unreachable"
    assert "writing it to dead-letter topic 't.dlq' failed: _MSG_TIMED_OUT" in (h.worker.error or "")
    assert h.commits == [[("t", 0, 3)]]


def test_a_dead_letter_write_waits_for_room_when_the_producer_queue_is_full() -> None:
    class FullOnce(FakeProducer):
        def __init__(self) -> None:
            super().__init__()
            self.refused = 0

        def produce(self, *args: Any, **kwargs: Any) -> None:
            if not self.refused:
                self.refused += 1
                raise BufferError("Local: Queue full")
            super().produce(*args, **kwargs)

    h = Harness(lambda e, ctx: 1 / (e.n - 1), producer=FullOnce())
    assert h.run(messages(3)) == WORKER_EXIT_OK
    assert h.producer.refused == 1 and len(h.producer.sent) == 1
    assert h.worker.dead_lettered == 1 and h.commits == [[("t", 0, 3)]]


def test_stop_finishes_the_message_in_hand_and_processes_no_more() -> None:
    seen: list[int] = []
    h = Harness(lambda e, ctx: (seen.append(e.n), e.n == 3 and h.worker.stop()))
    assert h.run(messages(10)) == WORKER_EXIT_OK
    assert seen == [0, 1, 2, 3]
    assert h.commits == [[("t", 0, 4)]]


def test_auto_in_a_slow_batch_stores_offsets_of_emitting_messages_only_after_the_emits_are_acked() -> None:
    # The first batch, like a slow one, stores each processed offset at once, or after the emits before it.
    h = Harness(lambda e, ctx: e.n == 1 and ctx.emit("out", {"key": "x", "n": e.n}), "auto")
    assert h.run(messages(3)) == WORKER_EXIT_OK
    assert h.producer.sent[0]["key"] == "x" and h.producer.sent[0]["topic"] == "out"
    assert h.consumer.stored == [("t", 0, 1), ("t", 0, 2), ("t", 0, 3)]


def test_failed_emit_in_a_slow_batch_stops_the_worker_before_storing_its_offset() -> None:
    h = Harness(
        lambda e, ctx: e.n == 1 and ctx.emit("out", {"key": "x"}), "auto", producer=FakeProducer(fail=True)
    )
    assert h.run(messages(3)) == WORKER_EXIT_CLUSTER
    assert h.consumer.stored == [("t", 0, 1)]


def test_auto_stores_a_quick_batch_of_emitting_messages_once_its_emits_are_acked() -> None:
    unacked_at_store: list[int] = []

    class RecordingConsumer(FakeConsumer):
        def store_offsets(self, message: Any = None, offsets: Any = None) -> None:
            unacked_at_store.append(len(h.producer))
            super().store_offsets(message, offsets)

    h = Harness(lambda e, ctx: e.n == 3 and ctx.emit("out", {"key": "x", "n": e.n}), "auto",
                consumer=RecordingConsumer())  # fmt: skip
    msgs = messages(5)
    assert h.run(msgs[:2], msgs[2:]) == WORKER_EXIT_OK
    assert [m["topic"] for m in h.producer.sent] == ["out"]
    # The first batch offset by offset; the second, quick, once (its highest offset), after the emit's ack.
    assert h.consumer.stored == [("t", 0, 1), ("t", 0, 2), ("t", 0, 5)]
    assert unacked_at_store == [0, 0, 0]


def test_auto_stores_nothing_of_a_quick_batch_whose_emitted_event_was_lost() -> None:
    h = Harness(
        lambda e, ctx: e.n == 3 and ctx.emit("out", {"key": "x"}), "auto", producer=FakeProducer(fail=True)
    )
    msgs = messages(5)
    assert h.run(msgs[:2], msgs[2:]) == WORKER_EXIT_CLUSTER
    # Which message's emit was lost is unknown: none of that batch is stored, all of it is delivered again.
    assert h.consumer.stored == [("t", 0, 1), ("t", 0, 2)]


def test_auto_commits_a_quick_batch_on_a_revocation_that_comes_while_its_emits_settle() -> None:
    # The batch's end waits for its emitted events; a keep-alive poll meanwhile revokes partition 0. The
    # commit on revocation must take in the batch's processed offsets (once the emits are acknowledged), or
    # the partition's next owner reads the whole batch again.
    clock = VirtualClock()
    log: list[Any] = []

    class SlowProducer(FakeProducer):
        """Acknowledges on the second flush; each flush takes 2 s (past a third of max.poll.interval.ms)."""

        flushes = 0

        def flush(self, timeout: float = 0) -> int:
            clock.advance(2.0)
            self.flushes += 1
            return super().flush(timeout) if self.flushes >= 2 else len(self)

    class RecordingConsumer(FakeConsumer):
        def store_offsets(self, message: Any = None, offsets: Any = None) -> None:
            before = len(self.stored)
            super().store_offsets(message, offsets)
            log.extend(("stored", *s) for s in self.stored[before:])

        def commit(self, message: Any = None, offsets: Any = None, asynchronous: bool = True) -> Any:
            log.append("commit")
            return super().commit(message, offsets, asynchronous)

    def handler(event: Event, ctx: HandlerContext) -> None:
        if event.n == 3:
            ctx.emit("out", {"key": "x", "n": event.n})
            h.consumer.revoke([0])  # in the next poll: the keep-alive while the emit settles

    h = Harness(handler, "auto", clock=clock, consumer=RecordingConsumer(clock=clock), producer=SlowProducer(),
                client={"max.poll.interval.ms": "3000"})  # fmt: skip
    msgs = messages(4)
    # The first batch stores each offset; the second is quick.
    assert h.run(msgs[:1], msgs[1:]) == WORKER_EXIT_OK
    assert ("t", 0, 4) in h.consumer.stored
    # Stored before the commit on revocation (the first commit), not after the partition went.
    assert log.index(("stored", "t", 0, 4)) < log.index("commit")


@pytest.mark.parametrize("strategy", ["auto", "batch", "per_message"])
def test_a_revocation_during_an_emit_settle_commits_nothing_whose_emit_is_unacknowledged(
    strategy: str,
) -> None:
    # A commit waits for the events emitted before it; its wait polls to keep the membership, and a revocation
    # served by that poll commits at once. That commit must wait for the same events: here the event is never
    # delivered, so offset 0 may be neither stored nor committed, and its message is read again.
    clock = VirtualClock()

    class LosingProducer(FakeProducer):
        """The first flush acknowledges nothing and takes past a third of max.poll.interval.ms (a keep-alive
        poll follows); the next one reports the event lost."""

        flushes = 0

        def flush(self, timeout: float = 0) -> int:
            clock.advance(2.0)
            self.flushes += 1
            if self.flushes == 1:
                return len(self)
            self.deliver_all(KafkaError(KafkaError._MSG_TIMED_OUT))
            return 0

    def handler(event: Event, ctx: HandlerContext) -> None:
        ctx.emit("out", {"key": "x", "n": event.n})
        h.consumer.revoke([0])  # in the next poll: the keep-alive while the emit settles

    h = Harness(handler, strategy, batch_size=1, clock=clock, consumer=FakeConsumer(clock=clock),
                producer=LosingProducer(), client={"max.poll.interval.ms": "3000"})  # fmt: skip
    assert h.run(messages(1)) == WORKER_EXIT_CLUSTER
    assert h.consumer.stored == [] and h.commits == []


def test_auto_goes_back_to_storing_each_offset_after_a_slow_batch() -> None:
    clock = VirtualClock()

    def handler(event: Event, ctx: HandlerContext) -> None:
        if event.n == 3:
            clock.advance(1.0)  # a tenth of interval_ms (10 s) or more: this batch is slow

    h = Harness(handler, "auto", interval_ms=10_000, clock=clock, consumer=FakeConsumer(clock=clock))
    msgs = messages(9)
    assert h.run(msgs[:2], msgs[2:5], msgs[5:7], msgs[7:]) == WORKER_EXIT_OK
    assert h.consumer.stored == [
        ("t", 0, 1), ("t", 0, 2),  # the first batch: each offset
        ("t", 0, 5),  # after a quick batch: once for the batch
        ("t", 0, 6), ("t", 0, 7),  # after the slow one: each offset again
        ("t", 0, 9),  # and once per batch after a quick one
    ]  # fmt: skip


def test_long_retry_wait_keeps_group_membership_by_pausing_and_polling() -> None:
    state = {"fails": 1}

    def handler(event: Event, ctx: HandlerContext) -> None:
        if state["fails"]:
            state["fails"] -= 1
            raise RuntimeError("transient")

    # max.poll.interval.ms=30: a keep-alive poll every 10 ms of the 300 ms backoff.
    h = Harness(handler, action="stop", retries=1, backoff_ms=300, client={"max.poll.interval.ms": "30"})
    assert h.run(messages(1)) == WORKER_EXIT_OK
    consumer = h.consumer
    assert consumer.keepalive_polls >= 3
    assert {(tp.topic, tp.partition) for tp in consumer.paused} == {("t", 0), ("t", 1)}
    assert {(tp.topic, tp.partition) for tp in consumer.resumed} == {("t", 0), ("t", 1)}
    assert h.worker.handled == 1


def test_messages_of_partitions_revoked_during_a_wait_are_dropped() -> None:
    seen: list[int] = []

    def handler(event: Event, ctx: HandlerContext) -> None:
        if event.n == 1:
            h.consumer.revoke_now(
                [TopicPartition("t", 0)]
            )  # as a keep-alive poll during the retry wait would
            raise RuntimeError("fails while the partition moves away")
        seen.append(event.n)

    h = Harness(handler, action="stop", retries=1)
    assert h.run(messages(4)) == WORKER_EXIT_OK
    assert seen == [0]
    assert h.commits == [[("t", 0, 1)]]  # committed on revocation: only offset 0 was processed
    assert h.worker.assigned == {("t", 1)}


def test_messages_a_keep_alive_poll_fetched_of_a_partition_revoked_later_in_the_wait_are_not_handled() -> (
    None
):
    # A retry's wait polls to keep the membership; a poll returns messages of a partition assigned meanwhile,
    # carried over to the next batch, and a later poll of the same wait revokes that partition. Its messages
    # are no longer this member's: its new owner reads them from the committed offset.
    clock = VirtualClock()
    moved = Message(topic="t", partition=1, offset=5, key=b"k", value=b'{"key": "k", "n": 5}')

    class RebalancingConsumer(FakeConsumer):
        keep_alives = 0

        def consume(self, num_messages: int = 1, timeout: float = -1) -> list:
            if timeout == 0:
                self.keep_alives += 1
                if self.keep_alives == 2:
                    self.revoke([1])  # served by this poll
            msgs = super().consume(num_messages, timeout)
            return [moved] if timeout == 0 and self.keep_alives == 1 else msgs

    seen: list[tuple[int, int]] = []

    def handler(event: Event, ctx: HandlerContext) -> None:
        seen.append((ctx.partition, ctx.offset))
        if len(seen) == 1:
            raise RuntimeError("transient")

    h = Harness(handler, action="stop", retries=1, backoff_ms=300, clock=clock,
                consumer=RebalancingConsumer(clock=clock), client={"max.poll.interval.ms": "30"})  # fmt: skip
    assert h.run(messages(1)) == WORKER_EXIT_OK
    assert h.consumer.keep_alives >= 2
    assert seen == [(0, 0), (0, 0)]
    assert h.commits == [[("t", 0, 1)]]


@pytest.mark.parametrize("strategy", ["auto", "batch", "per_message"])
def test_tombstone_on_schema_topic_is_a_schema_error(strategy: str) -> None:
    h = Harness(lambda e, ctx: None, strategy, action="skip")
    h.run([Message(topic="t", partition=0, offset=0, value=None)])
    assert h.worker.skipped == 1


def test_a_commit_blocked_past_the_cluster_timeout_is_reported_to_on_stuck() -> None:
    # librdkafka's synchronous commit can block for minutes once the broker is gone, out of reach of stop()
    # and of signal handlers; the monitor must notice (worker_main's on_stuck then exits for a restart).
    release = threading.Event()
    stuck: list[str] = []

    class BlockingConsumer(FakeConsumer):
        def commit(self, message: Any = None, offsets: Any = None, asynchronous: bool = True) -> Any:
            release.wait(10)
            return super().commit(message, offsets, asynchronous)

    # batch commits synchronously (per_message commits asynchronously, and only its final commit waits).
    h = Harness(
        lambda e, ctx: None,
        "batch",
        consumer=BlockingConsumer(),
        limits=Limits(cluster=0.3),
        hooks=Hooks(on_stuck=stuck.append),
    )
    running = threading.Thread(target=h.run, args=(messages(1),), daemon=True)
    running.start()
    try:
        wait_for(lambda: stuck, timeout=10, message="the blocked commit was not reported")
        assert stuck == [
            "a commit has been blocked for over 0.3 s: the cluster is unreachable; nothing more is committed "
            "(unprocessed and uncommitted events will be delivered again)"
        ]
        assert h.commits == []
    finally:
        release.set()
        running.join(5)
    assert not running.is_alive()
    assert h.commits == [[("t", 0, 1)]]  # reported once; the commit itself went through when unblocked
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
            clock.advance(timeout)  # each round waits its whole timeout for acknowledgements
            if self.rounds >= 3:
                self.poll()
            return len(self.waiting)

    # max.poll.interval.ms=0: every wait is "long", so the membership poll pauses the partitions.
    clock = (
        VirtualClock()
    )  # moves only when something waits: the batch takes no time, however loaded the machine
    h = Harness(
        lambda e, ctx: ctx.emit("out", {"key": "k", "n": e.n}), interval_ms=300,
        producer=SlowProducer(), client={"max.poll.interval.ms": "0"},
        consumer=FakeConsumer(clock=clock), clock=clock,
    )  # fmt: skip
    # The batch is processed within the 300 ms interval (no time passes on the clock); the interval passes in
    # the empty poll after it, so the commit happens between batches.
    h.run(messages(3), 0.4)
    assert h.commits == [[("t", 0, 3)]]
    assert h.producer.rounds >= 3
    assert h.consumer.paused  # the commit's wait did pause them...
    assert sorted((tp.topic, tp.partition) for tp in h.consumer.resumed) == [
        ("t", 0),
        ("t", 1),
    ]  # ...and resumed
    assert h.consumer.paused_now == set()


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

    class RecordingConsumer(FakeConsumer):
        def store_offsets(self, message: Any = None, offsets: Any = None) -> None:
            stored_when_delivered.append(len(audit.delivered))
            super().store_offsets(message, offsets)

    h = Harness(lambda e, ctx: ctx.emit(audit, {"n": e.n}), "auto", consumer=RecordingConsumer())
    h.run(messages(2))
    if fail:
        assert h.consumer.stored == []  # the emitted events were lost: nothing after them may be committed
        assert h.worker.exit_code == WORKER_EXIT_CLUSTER
        assert "emit through producer 'audit': 2 not delivered: Local: Message timed out" in (
            h.worker.error or ""
        )
    else:
        assert h.consumer.stored == [("t", 0, 1), ("t", 0, 2)]
        assert all(
            n >= 1 for n in stored_when_delivered
        )  # each store came after the flush delivered the emit


@pytest.mark.parametrize("strategy", ["auto", "batch", "per_message"])
def test_a_group_without_a_producer_emits_through_a_kpipe_producer_settled_before_its_offsets(
    strategy: str,
) -> None:
    # No dead letters (on_error: stop), no emits: the worker builds no producer of its own, yet a handler may
    # still send through an application's kpipe Producer, and each offset waits for those deliveries.
    audit = FakeKpipeProducer()
    delivered_at: list[tuple[int, int]] = []  # (offset stored or committed, events delivered by then)

    class RecordingConsumer(FakeConsumer):
        def store_offsets(self, message: Any = None, offsets: Any = None) -> None:
            super().store_offsets(message, offsets)
            delivered_at.append((self.stored[-1][2], len(audit.delivered)))

        def commit(self, message: Any = None, offsets: Any = None, asynchronous: bool = True) -> Any:
            if offsets is not None:
                delivered_at.extend((tp.offset, len(audit.delivered)) for tp in offsets)
            return super().commit(message, offsets, asynchronous)

    h = Harness(lambda e, ctx: ctx.emit(audit, {"n": e.n}), strategy, action="stop", emitting=False,
                consumer=RecordingConsumer(), batch_size=1)  # fmt: skip
    assert h.run(messages(3)) == WORKER_EXIT_OK
    assert h.producer.config is None  # no producer was built
    assert audit.delivered == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert delivered_at and max(offset for offset, _ in delivered_at) == 3
    # Every offset up to o covers the events of messages 0..o-1: they were delivered before it was written.
    assert all(delivered >= offset for offset, delivered in delivered_at), delivered_at


def test_a_group_without_a_producer_refuses_an_emit_by_topic_name_as_undeclared() -> None:
    def handler(event: Event, ctx: HandlerContext) -> None:
        ctx.emit("out", {"key": "x", "n": event.n})

    h = Harness(handler, action="stop", emitting=False)
    assert h.run(messages(1)) == WORKER_EXIT_HALT
    assert h.producer.config is None and h.producer.sent == []
    assert "UndeclaredEmit: consumer group 'g' emits to 'out', which it does not declare (emits: none)" in (
        h.worker.error or ""
    )
    assert h.commits == []


@pytest.mark.parametrize(
    ("on_error", "emits"),
    [(ErrorPolicy("dead_letter", dead_letter_topic="g.dlq"), ()), (ErrorPolicy("skip"), ("out",))],
)
def test_settings_that_can_send_without_a_producer_config_are_refused(
    on_error: ErrorPolicy, emits: tuple[str, ...]
) -> None:
    commit = CommitPolicy("batch")
    conf = {"bootstrap.servers": "b:9092", "group.id": "g", **commit_settings(commit)}
    settings = ConsumerGroupSettings(
        group_id="g", topics=("t",), handler="m:f", instances=1, commit=commit, on_error=on_error,
        client=ClientConfig(tuple(Setting(k, v, "declared") for k, v in conf.items())), emits=emits,
    )  # fmt: skip
    with pytest.raises(ValueError, match="a dead-letter topic or declared emits need producer_client"):
        GroupWorker(settings, {}, lambda e, ctx: None)


def test_the_worker_passes_the_compiled_configs_to_its_clients_adding_only_callbacks() -> None:
    h = Harness(lambda e, ctx: None, client={"session.timeout.ms": "7000"})
    h.run()
    consumer_conf, producer_conf = h.consumer.config or {}, h.producer.config or {}
    assert {
        k: v for k, v in consumer_conf.items() if k not in ("error_cb", "logger")
    } == h.worker.consumer_config
    assert consumer_conf["session.timeout.ms"] == "7000"
    assert callable(consumer_conf["error_cb"]) and hasattr(consumer_conf["logger"], "log")
    assert {k: v for k, v in producer_conf.items() if k not in ("error_cb", "logger")} == {
        "bootstrap.servers": "unused:9092"
    }


def test_settings_not_compiled_for_their_commit_policy_are_refused() -> None:
    settings = ConsumerGroupSettings(
        group_id="g", topics=("t",), handler="m:f", instances=1, commit=CommitPolicy("batch"),
        on_error=ErrorPolicy("skip"), client=ClientConfig((Setting("bootstrap.servers", "b:9092", "declared"),)),
    )  # fmt: skip
    with pytest.raises(ValueError, match="not compiled for its commit policy"):
        GroupWorker(settings, {}, lambda e, ctx: None)


class SlowJoinConsumer(FakeConsumer):
    """A consumer whose group join finishes only at its `joins_at`-th poll (never when None)."""

    def __init__(self, joins_at: int | None) -> None:
        super().__init__()
        self.joins_at = joins_at
        self.polls = 0

    def consume(self, n: int, timeout: float) -> list:
        self.polls += 1
        if self.joins_at is not None and self.polls >= self.joins_at and "assigned" not in self._callbacks:
            self._callbacks["assigned"] = True
            self._callbacks["on_assign"](self, ASSIGNMENT)
        time.sleep(min(timeout, 0.01))
        return []


def test_stopped_mid_join_it_waits_for_the_assignment_then_closes(caplog: pytest.LogCaptureFixture) -> None:
    # Closing mid-join sends a LeaveGroup that leaves a Tansu group without a leader, stuck for good.
    consumer = SlowJoinConsumer(joins_at=5)
    h = Harness(lambda e, ctx: None, consumer=consumer)
    h.worker.stop()  # Ctrl-C before the first assignment
    caplog.set_level("INFO", logger="kpipe.runtime.worker")
    assert h.run() == WORKER_EXIT_OK
    assert consumer.polls >= 5 and consumer.closed
    assert not h.worker.left_without_close
    # Up to half of librdkafka's default session.timeout.ms (45 s) + 5 s, within the 30 s shutdown timeout.
    assert (
        "stopping while joining group 'g': waiting up to 27 s for the join to finish before leaving"
        in caplog.text
    )


def test_stopped_mid_join_that_never_finishes_it_leaves_without_closing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer = SlowJoinConsumer(joins_at=None)
    h = Harness(lambda e, ctx: None, consumer=consumer, limits=Limits(shutdown=3.5))  # 0.5 s for the join
    h.worker.stop()
    started = time.monotonic()
    # The join never finishes: only the 0.5 s budget ends the wait (librdkafka's session would allow 27 s).
    assert returns_within(20, h.run, "the worker stopped mid-join") == WORKER_EXIT_OK
    assert time.monotonic() - started > 0.4  # it gave the join its budget before leaving
    assert not consumer.closed and h.worker.left_without_close
    assert "still joining the group; leaving without closing the consumer" in caplog.text


def test_joining_is_logged_at_start_and_every_10_s_until_assigned(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kpipe.runtime.worker.rebalance as rebalance

    monkeypatch.setattr(rebalance, "JOIN_LOG_EVERY", 0.2)
    consumer = SlowJoinConsumer(joins_at=250)  # ~2.5 s of polls without an assignment
    h = Harness(lambda e, ctx: None, consumer=consumer, limits=Limits(poll=0.01))
    consumer.when_idle = lambda: None
    caplog.set_level("INFO", logger="kpipe.runtime.worker")
    thread = threading.Thread(target=h.worker.run, daemon=True)
    thread.start()
    # The status says so too (the supervisor's periodic line counts it as joining, not running).
    wait_for(lambda: h.worker.status().joining, timeout=10)
    wait_for(lambda: h.worker.assigned, timeout=10)
    assert not h.worker.status().joining
    h.worker.stop()
    thread.join(10)
    joining = [r.getMessage() for r in caplog.records if r.getMessage().startswith("joining group 'g'…")]
    assert joining[0] == "joining group 'g'…"
    assert len(joining) >= 2 and all("no assignment yet" in m for m in joining[1:]), joining
    said = [r.getMessage() for r in caplog.records]
    assigned = next(i for i, m in enumerate(said) if m.startswith("assigned"))
    assert not any(m.startswith("joining") for m in said[assigned:])


class RefusingCommits(FakeConsumer):
    """Every commit fails as it does while the group coordinator is unknown."""

    def commit(self, message: Any = None, offsets: Any = None, asynchronous: bool = True) -> Any:
        raise KafkaException(KafkaError(KafkaError._WAIT_COORD, "Waiting for coordinator"))


def test_commits_failing_for_the_cluster_timeout_halt_the_worker_while_it_is_busy() -> None:
    # A worker with events in hand keeps handling them, but none of it can be committed: after the cluster
    # timeout it exits for a restart, rather than handling (and later re-handling) its whole backlog.
    handled: list[int] = []

    def slow(event: Event, ctx: HandlerContext) -> None:
        time.sleep(0.01)
        handled.append(event.n)

    consumer = RefusingCommits()
    h = Harness(slow, batch_size=5, consumer=consumer, limits=Limits(cluster=0.5))
    assert h.run(messages(1000)) == WORKER_EXIT_CLUSTER
    # It kept handling past the first failed commit (after 5 events), and stopped long before the backlog's end
    # (10 s of work): counted in events, which load only lowers.
    assert 5 < len(handled) < 1000
    assert (h.worker.error or "").startswith("every commit has failed for ")
    assert "(last: Waiting for coordinator)" in (h.worker.error or "")


def test_tcp_reachable_is_any_bootstrap_server_accepting_a_connection() -> None:
    import socket

    from kpipe.runtime.worker.cluster_health import tcp_reachable

    listener = socket.create_server(("127.0.0.1", 0))
    try:
        port = listener.getsockname()[1]
        assert tcp_reachable(f"127.0.0.1:1,PLAINTEXT://127.0.0.1:{port}")
        assert not tcp_reachable("127.0.0.1:1")
        assert tcp_reachable("not-a-list")  # unparsable: never a reason to give up
    finally:
        listener.close()


class SizeLimitedProducer(FakeProducer):
    """Refuses what is too large, as librdkafka does at once (message.max.bytes of the client) or as the
    broker does on delivery (its message.max.bytes or the topic's max.message.bytes), headers included."""

    def __init__(self, client_limit: int, broker_limit: int) -> None:
        super().__init__()
        self.client_limit, self.broker_limit = client_limit, broker_limit

    def produce(
        self, topic: str, value: Any, key: Any = None, headers: Any = None, on_delivery: Any = None
    ) -> None:
        size = len(value or b"") + len(key or b"") + sum(len(k) + len(v) for k, v in headers or [])
        if size > self.client_limit:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Message size too large"))
        self.sent.append({"topic": topic, "value": value, "key": key, "headers": dict(headers or [])})
        self.waiting.append((on_delivery, topic, size))

    def poll(self, timeout: float = 0) -> int:
        waiting, self.waiting = self.waiting, []
        for callback, topic, size in waiting:
            err = (
                KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Broker: Message size too large")
                if size > self.broker_limit
                else None
            )
            callback(err, Message(topic=topic))
        return len(waiting)


def huge_invalid(size: int) -> list[Message]:
    """A schema-invalid event of `size` bytes at offset 0, then 3 valid ones."""
    bad = Message(topic="t", partition=0, offset=0, key=b"k0", value=b"x" * size, headers=[("trace", b"t1")])
    return [bad, *messages(4)[1:]]


@pytest.mark.parametrize(
    ("client_limit", "broker_limit", "fit"),
    [
        (1_000_000, 10_000_000, "truncated"),  # refused by the client at once
        (10_000_000, 1_000_000, "truncated"),  # refused by the broker on delivery
        (10_000_000, 4_000, "omitted"),  # even the 16 KiB preview is too large
    ],
)
def test_a_dead_letter_too_large_is_sent_smaller_and_the_group_goes_on(
    client_limit: int, broker_limit: int, fit: str, caplog: pytest.LogCaptureFixture
) -> None:
    import hashlib

    producer = SizeLimitedProducer(client_limit, broker_limit)
    handled: list[int] = []
    h = Harness(lambda e, ctx: handled.append(e.n), producer=producer)
    assert h.run(huge_invalid(5_000_000)) == WORKER_EXIT_OK
    assert handled == [1, 2, 3] and h.worker.dead_lettered == 1
    assert h.commits == [[("t", 0, 4)]]
    written = producer.sent[-1]
    assert written["topic"] == "t.dlq" and written["key"] == b"k0"
    assert written["headers"]["kpipe.payload"] == fit.encode()
    assert written["value"] == (b"x" * 16384 if fit == "truncated" else None)
    assert written["headers"]["kpipe.payload.size"] == b"5000000"
    assert written["headers"]["kpipe.payload.sha256"] == hashlib.sha256(b"x" * 5_000_000).hexdigest().encode()
    assert written["headers"]["kpipe.source.offset"] == b"0"
    assert written["headers"]["kpipe.error.type"] == b"schema"
    assert "trace" not in written["headers"]
    assert f"dead-lettered to 't.dlq' (payload {fit}: too large for it)" in caplog.text


def test_a_dead_letter_refused_even_without_payload_stops_the_group_saying_so() -> None:
    producer = SizeLimitedProducer(10_000_000, 100)  # not even the headers fit
    h = Harness(lambda e, ctx: None, producer=producer)
    assert h.run(huge_invalid(5_000_000)) == WORKER_EXIT_DEAD_LETTER
    assert h.worker.error == (
        "schema-invalid event t[0]@0; writing it to dead-letter topic 't.dlq' failed: refused even without "
        "its payload: MSG_SIZE_TOO_LARGE: Broker: Message size too large"
    )
    assert h.commits == []  # nothing after it was handled, nothing committed


# -- hung handlers ------------------------------------------------------------------------------------------


def blocking_on(
    n: int, release: threading.Event, seen: list[int], entered: threading.Event | None = None
) -> Callable[[Event, HandlerContext], None]:
    """A handler that waits for `release` (at most 30 s) on event n, setting `entered` once it is inside it."""

    def handler(event: Event, ctx: HandlerContext) -> None:
        if event.n == n:
            if entered is not None:
                entered.set()
            release.wait(30)
        seen.append(event.n)

    return handler


def test_a_handler_running_past_its_timeout_is_reported_and_the_worker_leaves_for_a_restart(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from kpipe.runtime.hang_counts import HangCounts
    from kpipe.runtime.protocol import WORKER_EXIT_HUNG

    release, seen, exits = threading.Event(), [], []
    h = Harness(
        blocking_on(2, release, seen), timeout_ms=300, state_dir=str(tmp_path),
        hooks=Hooks(exit_process=lambda code: (exits.append(code), release.set())),  # the process would end here
    )  # fmt: skip
    h.consumer.when_idle = lambda: None
    thread = threading.Thread(target=lambda: h.run(messages(5)), daemon=True)
    started = time.monotonic()
    thread.start()
    wait_for(lambda: exits, timeout=10, message=caplog.text)
    assert time.monotonic() - started >= 0.3  # not before the handler had run for timeout_ms
    assert exits == [WORKER_EXIT_HUNG]
    assert h.worker.exit_code == WORKER_EXIT_HUNG
    assert re.fullmatch(
        r"handler hung on t\[0\]@2 \(consumer group 'g'\): still running after \d+ s, over "
        r"on_error.timeout_ms \(300\); hang 1 of 2 on this event, after 2 hangs it is no longer given to the handler",
        h.worker.error or "",
    ), h.worker.error
    assert HangCounts(str(tmp_path), "g").counts() == {("t", 0, 2): 1}
    # What was processed before the hung event was committed on the way out, and the group left.
    assert h.commits[0] == [("t", 0, 2)] and h.consumer.closed
    thread.join(10)


def test_an_event_the_handler_hung_on_twice_is_not_given_to_it_again(tmp_path: Any) -> None:
    from kpipe.runtime.hang_counts import HangCounts

    book = HangCounts(str(tmp_path), "g")
    book.record(("t", 0, 1))
    book.record(("t", 0, 1))  # two earlier processes hung on it
    seen: list[int] = []
    h = Harness(lambda e, ctx: seen.append(e.n), timeout_ms=1000, state_dir=str(tmp_path))
    assert h.run(messages(4)) == WORKER_EXIT_OK
    assert seen == [0, 2, 3]
    [letter] = h.producer.sent
    assert letter["headers"]["kpipe.error.type"] == b"timeout"
    assert letter["headers"]["kpipe.source.offset"] == b"1"
    assert letter["headers"]["kpipe.attempts"] == b"2"
    assert (
        letter["headers"]["kpipe.error.message"]
        == b"the handler hung 2 times on it (on_error.timeout_ms: 1000)"
    )
    assert h.commits == [[("t", 0, 4)]]


def test_a_long_handler_call_is_reported_even_without_a_timeout(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kpipe.runtime.worker.hangs as hung

    monkeypatch.setattr(hung, "STILL_RUNNING_EVERY", 0.4)
    statuses: list[Any] = []
    seen: list[int] = []

    def slow(event: Event, ctx: HandlerContext) -> None:
        if event.n == 1:
            time.sleep(1.5)
        seen.append(event.n)

    h = Harness(slow, hooks=Hooks(status=statuses.append))
    assert h.run(messages(3)) == WORKER_EXIT_OK
    assert seen == [0, 1, 2]
    said = [r.getMessage() for r in caplog.records if "still running" in r.getMessage()]
    assert said and said[0].startswith("handler still running on t[0]@1 (consumer group 'g') after ")
    assert said[0].endswith("; set on_error.timeout_ms to restart the worker when one hangs")
    assert any(s.busy and s.busy.startswith("t[0]@1 for ") for s in statuses)
    assert statuses[-1].busy is None


def test_stopped_while_a_handler_hangs_it_leaves_before_the_shutdown_timeout_naming_the_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from kpipe.runtime.protocol import WORKER_EXIT_HUNG

    release, entered, seen, exits = threading.Event(), threading.Event(), [], []
    h = Harness(  # with shutdown 3 s, it leaves 1 s after the stop (2 s margin)
        blocking_on(0, release, seen, entered), limits=Limits(shutdown=3.0),
        hooks=Hooks(exit_process=lambda code: (exits.append(code), release.set())),
    )  # fmt: skip
    h.consumer.when_idle = lambda: None
    thread = threading.Thread(target=lambda: h.run(messages(2)), daemon=True)
    thread.start()
    assert entered.wait(10), "the handler never got event 0"
    stopped = time.monotonic()
    h.worker.stop()
    wait_for(lambda: exits, timeout=10, message=caplog.text)
    assert time.monotonic() - stopped > 0.8  # it waited for the handler first
    assert exits == [WORKER_EXIT_HUNG]
    assert "stopping: waiting for the handler on t[0]@0 (consumer group 'g', running for " in caplog.text
    # Its deadline is the shutdown timeout less the margin (1 s here, less under load), not the timeout itself.
    assert re.search(r"\(consumer group 'g', running for \d+ s\), up to [01] s more", caplog.text), (
        caplog.text
    )
    assert (h.worker.error or "").startswith(
        "stopped while the handler on t[0]@0 (consumer group 'g') was still running after "
    )
    thread.join(10)


def test_a_worker_that_lost_every_broker_says_so_in_its_status_and_is_not_ready() -> None:
    # librdkafka calls error_cb with _ALL_BROKERS_DOWN inside consume(), on the loop's thread; the worker keeps
    # trying for cluster_timeout. Meanwhile its status said nothing of it: /readyz answered 200 for a worker that
    # could neither fetch nor commit, until it exited a minute later.
    seen: list[WorkerStatus] = []

    def handler(event: Event, ctx: HandlerContext) -> None:
        if not seen:
            h.consumer.config["error_cb"](KafkaError(KafkaError._ALL_BROKERS_DOWN))
            seen.append(h.worker.status())

    h = Harness(handler)
    h.run(messages(1))
    [status] = seen
    assert status.state == "running" and status.assigned
    assert status.unreachable == "no broker reachable at unused:9092"
    view = WorkerView("g", 0, status.pid, "running", 0, None, status, status_age=0.5)
    assert readiness({("g", 0): view}, {"g": 2}) == (
        False,
        ["g[0] is cut off: no broker reachable at unused:9092"],
    )


def test_each_retry_of_an_event_is_a_call_of_its_own_for_the_hang_timeout(tmp_path: Any) -> None:
    # on_error.timeout_ms bounds one handler call. A retry calls the handler again with the same message, and
    # the hang watch, which tells calls apart by the message it is given, timed every attempt as one call: three
    # 3 s attempts were "still running after 6 s" and the worker left for a restart, counting a hang.
    from kpipe.runtime.hang_counts import HangCounts

    clock = VirtualClock()
    statuses: list[WorkerStatus] = []
    calls: list[float] = []

    def slow_and_failing(event: Event, ctx: HandlerContext) -> None:
        calls.append(clock.monotonic())
        reported = len(statuses)
        clock.advance(3.0)  # this call takes 3 s of the 5 s it is allowed
        wait_for(lambda: len(statuses) > reported, timeout=30)  # the monitor has looked at it meanwhile
        raise RuntimeError("refused")

    h = Harness(
        slow_and_failing, retries=2, backoff_ms=1, timeout_ms=5000, clock=clock,
        hooks=Hooks(status=statuses.append), state_dir=str(tmp_path),
    )  # fmt: skip
    assert h.run(messages(1)) == WORKER_EXIT_OK, h.worker.error
    assert len(calls) == 3
    assert HangCounts(str(tmp_path), "g").counts() == {}
    [letter] = h.producer.sent
    assert letter["headers"]["kpipe.error.message"] == b"RuntimeError: refused"
    assert letter["headers"]["kpipe.attempts"] == b"3"

"""The concurrent consume loop against a fake consumer and producer (built through GroupWorker's client
factories): revocation waits for events in flight and commits what they finish, lost partitions commit
nothing, per_message coalesces, failures block only their key, the stop action and a lost dead letter halt."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message, TopicPartition
from pydantic import BaseModel

from fakes import FakeConsumer, FakeProducer
from helpers import wait_for
from kpipe.compilation.compiled import (
    ClientConfig,
    CommitPolicy,
    ConsumerGroupSettings,
    ErrorPolicy,
    ProducerSettings,
    Setting,
)
from kpipe.compilation.compiler import commit_settings
from kpipe.runtime.producer import Producer
from kpipe.runtime.protocol import (
    WORKER_EXIT_DEAD_LETTER,
    WORKER_EXIT_HALT,
    WORKER_EXIT_HUNG,
    WORKER_EXIT_OK,
)
from kpipe.runtime.worker import GroupWorker, Outside
from kpipe.runtime.worker import concurrent as concurrent_loop
from kpipe.testing.clock import VirtualClock
from kpipe.testing.executors import inline_executor


class Event(BaseModel):
    key: str
    n: int


def msg(partition: int, offset: int, key: str) -> Message:
    value = json.dumps({"key": key, "n": offset}).encode()
    return Message(topic="t", partition=partition, offset=offset, key=key.encode(), value=value)


class Harness:
    """A concurrent GroupWorker of group 'g' on topic 't' with fake clients, running in a thread."""

    def __init__(self, handler: Any, messages: dict[int, list[Message]], *, concurrency: int = 8,
                 strategy: str = "batch", action: str = "dead_letter", retries: int = 0, backoff_ms: int = 1,
                 batch_size: int = 1000, producer: FakeProducer | None = None, ordering: str = "key",
                 client: dict[str, str] | None = None, metrics: bool = False,
                 timeout_ms: int | None = None, interval_ms: int = 60_000, clock: Any = None,
                 executors: Any = None, emits: tuple[str, ...] = (), started: Any = None):  # fmt: skip
        """clock: a kpipe.testing VirtualClock for the worker (its time moves only when the test advances it).
        executors: kpipe.testing's inline_executor runs the handlers on the consumer's thread, in order.
        started(harness): called before the worker's thread starts (a handler may then reach the harness)."""
        commit = CommitPolicy(strategy, batch_size=batch_size, interval_ms=interval_ms)  # type: ignore[arg-type]
        conf = {
            "bootstrap.servers": "unused:9092",
            "group.id": "g",
            **(client or {}),
            **commit_settings(commit),
        }
        settings = ConsumerGroupSettings(
            group_id="g", topics=("t",), handler="m:f", instances=1, commit=commit,
            on_error=ErrorPolicy(action, retries, backoff_ms, max(2, backoff_ms),  # type: ignore[arg-type]
                                 "t.dlq" if action == "dead_letter" else None, timeout_ms),
            client=ClientConfig(tuple(Setting(k, v, "declared") for k, v in conf.items())),
            producer_client=ClientConfig((Setting("bootstrap.servers", "unused:9092", "declared"),)),
            concurrency=concurrency, ordering=ordering, emits=emits,  # type: ignore[arg-type]
        )  # fmt: skip
        self.consumer = FakeConsumer(messages)
        self.producer = producer if producer is not None else FakeProducer()  # falsy when empty
        outside = Outside(consumer=self.consumer.build, producer=self.producer.build, rng=lambda: 0.5,
                          **({"clock": clock} if clock is not None else {}),
                          **({"executors": executors} if executors is not None else {}))  # fmt: skip
        self.worker = GroupWorker(settings, {"t": Event}, handler, outside=outside, metrics=metrics)
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        if started is not None:
            started(self)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.worker.run()

    def stop(self) -> int | None:
        self.worker.stop()
        self.thread.join(20)
        assert not self.thread.is_alive()
        return self.code


def test_revocation_waits_for_events_in_flight_commits_them_and_drops_the_queue() -> None:
    release = threading.Event()
    handled: list[tuple[int, int]] = []

    def handle(event: Event, ctx: Any) -> None:
        if ctx.partition == 0:
            release.wait(10)
        handled.append((ctx.partition, ctx.offset))

    # Partition 0: 4 keys in flight (concurrency 4), each key's next event queued behind it.
    h = Harness(handle, {0: [msg(0, i, f"k{i % 4}") for i in range(8)], 1: [msg(1, 0, "x")]}, concurrency=4)
    try:
        wait_for(lambda: h.worker.status().in_flight == 4, 5)
        h.consumer.revoke([0])
        threading.Timer(0.3, release.set).start()  # the revocation waits for them
        wait_for(lambda: ("t", 0) not in h.worker.assigned, 5)
        # The 4 in flight finished and were committed on revocation; the 4 queued behind them never ran.
        assert sorted(o for p, o in handled if p == 0) == [0, 1, 2, 3]
        assert h.consumer.committed_offset(0) == 4
    finally:
        release.set()
        assert h.stop() == WORKER_EXIT_OK
    assert sorted(o for p, o in handled if p == 0) == [0, 1, 2, 3]


def test_revocation_gives_up_on_an_event_that_outlasts_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(concurrent_loop, "REVOKE_TIMEOUT", 0.2)
    release = threading.Event()
    handled: list[int] = []

    def handle(event: Event, ctx: Any) -> None:
        if ctx.offset == 1:
            release.wait(10)
        handled.append(ctx.offset)

    h = Harness(handle, {0: [msg(0, i, f"k{i}") for i in range(3)]})
    try:
        wait_for(lambda: sorted(handled) == [0, 2], 5)
        h.consumer.revoke([0])
        wait_for(lambda: ("t", 0) not in h.worker.assigned, 5)
        assert h.consumer.committed_offset(0) == 1  # up to the event still running, not past it
        release.set()
        wait_for(lambda: h.worker.status().in_flight == 0, 5)  # it came back: its slot is free again
    finally:
        release.set()
        assert h.stop() == WORKER_EXIT_OK
    assert h.consumer.committed_offset(0) == 1  # its late completion counts for nothing


def test_lost_partitions_commit_nothing() -> None:
    release = threading.Event()

    def handle(event: Event, ctx: Any) -> None:
        if ctx.offset == 0:
            release.wait(10)

    h = Harness(handle, {0: [msg(0, i, f"k{i}") for i in range(5)]})
    try:
        wait_for(lambda: h.worker.status().oldest_unfinished == (("t", 0, 0),) and h.worker.handled == 4, 5)
        h.consumer.lose([0])
        wait_for(lambda: not h.worker.assigned, 5)
        release.set()
    finally:
        release.set()
        assert h.stop() == WORKER_EXIT_OK
    assert h.consumer.commits == []


def test_a_partition_revoked_while_its_finished_events_are_handed_over_gets_no_commit_after_it() -> None:
    # The events that finished in a turn go to the commit strategy one by one; a commit among them waits for
    # emitted events and polls to keep the membership, and that poll revokes partition 0: its commit on
    # revocation covers offset 2. The events of partition 0 still to be handed over after that commit are no
    # longer this member's to commit: committing offset 1 would move the committed offset back.
    clock = VirtualClock()
    audit = Producer(
        ProducerSettings(name="audit", topic="audit", key_field=None, schema_name=None,
                         client=ClientConfig((Setting("bootstrap.servers", "unused:9092", "declared"),))),
        None, client_factory=FakeProducer().build,
    )  # fmt: skip
    harness: list[Harness] = []

    class SlowProducer(FakeProducer):
        """The first flush acknowledges nothing and takes past a third of max.poll.interval.ms."""

        flushes = 0

        def flush(self, timeout: float = 0) -> int:
            self.flushes += 1
            if self.flushes > 1:
                return super().flush(timeout)
            clock.advance(2.0)
            return len(self)

    def handle(event: Event, ctx: Any) -> None:
        if (ctx.partition, ctx.offset) == (0, 0):
            ctx.emit(audit, {"n": 0})  # settled before the commit that covers it
        elif (ctx.partition, ctx.offset) == (0, 2):
            ctx.emit("out", {"key": "x", "n": 2})  # finishes once acknowledged: in the revocation's wait
        elif ctx.partition == 1:
            harness[0].consumer.revoke([0])  # in the next poll: the keep-alive of that settle
            harness[0].worker.stop()

    h = Harness(handle, {0: [msg(0, 0, "a"), msg(0, 1, "b"), msg(0, 2, "c")], 1: [msg(1, 0, "d")]},
                batch_size=1, producer=SlowProducer(), client={"max.poll.interval.ms": "3000"}, clock=clock,
                executors=inline_executor, emits=("out",), started=harness.append)  # fmt: skip
    h.thread.join(20)  # the handler of partition 1 stops the worker
    assert not h.thread.is_alive() and h.code == WORKER_EXIT_OK
    partition_0 = [o for commit in h.consumer.commits for _t, p, o in commit if p == 0]
    assert partition_0 == [3]


def test_per_message_commits_the_prefix_once_per_turn_not_once_per_event() -> None:
    h = Harness(lambda e, ctx: None, {0: [msg(0, i, f"k{i % 50}") for i in range(500)]}, concurrency=50,
                strategy="per_message")  # fmt: skip
    try:
        wait_for(lambda: h.worker.handled == 500 and h.consumer.committed_offset(0) == 500, 10)
    finally:
        assert h.stop() == WORKER_EXIT_OK
    offsets = [o for commit in h.consumer.commits for _t, _p, o in commit]
    assert offsets == sorted(offsets)  # never backwards
    assert len(offsets) < 500


def test_batch_commit_by_interval_restarts_the_deadline_of_the_hook_the_loop_keeps() -> None:
    # The concurrent loop asks for the strategy's hook once and keeps it. A commit by interval between turns
    # restarts that hook's deadline too, or the next event would find it passed and commit on its own.
    clock = VirtualClock()
    h = Harness(lambda e, ctx: None, {0: [msg(0, 0, "k0")]}, concurrency=4, interval_ms=1000, clock=clock)
    polls: list[int] = []
    consume = h.consumer.consume

    def counted(num_messages: int = 1, timeout: float = -1) -> list:
        polls.append(1)
        return consume(num_messages, timeout)

    h.consumer.consume = counted  # type: ignore[method-assign]
    try:
        wait_for(lambda: h.worker.handled == 1, 5)
        seen = len(polls)
        wait_for(lambda: len(polls) >= seen + 2, 5)  # a whole turn since: offset 0 went to the hook
        clock.advance(2.0)  # the interval passes: the next turn commits offset 0 by time
        wait_for(lambda: h.consumer.commits == [[("t", 0, 1)]], 5)
        h.consumer.pending[0].extend(msg(0, i, f"k{i % 4}") for i in range(1, 21))
        wait_for(lambda: h.worker.handled == 21, 5)
    finally:
        assert h.stop() == WORKER_EXIT_OK
    assert h.consumer.commits == [[("t", 0, 1)], [("t", 0, 21)]]  # the 20 after it, on shutdown


def test_a_failing_key_retries_on_its_own_while_other_keys_run() -> None:
    attempts: list[float] = []
    done: dict[int, float] = {}

    def handle(event: Event, ctx: Any) -> None:
        if event.key == "bad" and len(attempts) < 3:
            attempts.append(time.monotonic())
            raise ValueError("not yet")
        done[ctx.offset] = time.monotonic()

    events = [msg(0, 0, "bad"), msg(0, 1, "bad")] + [msg(0, i, f"k{i}") for i in range(2, 30)]
    h = Harness(handle, {0: events}, retries=3, backoff_ms=100)
    try:
        wait_for(lambda: len(done) == 30, 10)
    finally:
        assert h.stop() == WORKER_EXIT_OK
    assert len(attempts) == 3
    assert h.worker.counters.retried == 3 and h.worker.counters.failed == 0
    assert max(t for o, t in done.items() if o >= 2) < attempts[-1]  # other keys did not wait
    assert done[0] < done[1]  # the bad key's second event waited for its first
    assert h.consumer.committed_offset(0) == 30


def test_an_undeclared_emit_is_not_retried_by_the_concurrent_loop_either() -> None:
    attempts: list[int] = []

    def handle(event: Event, ctx: Any) -> None:
        attempts.append(event.n)
        if event.n == 1:
            ctx.emit("not-declared", {"n": event.n})

    h = Harness(handle, {0: [msg(0, i, f"k{i}") for i in range(3)]}, concurrency=2, retries=3)
    try:
        wait_for(lambda: h.consumer.committed_offset(0) == 3 or h.worker.dead_lettered == 1, 5)
        wait_for(lambda: h.worker.dead_lettered == 1, 5)
    finally:
        assert h.stop() == WORKER_EXIT_OK
    assert sorted(attempts) == [0, 1, 2]
    assert h.producer.topics() == ["t.dlq"]
    assert h.worker.status().totals().retried == 0
    assert h.consumer.committed_offset(0) == 3


def test_the_stop_action_halts_and_commits_only_below_the_failed_event() -> None:
    def handle(event: Event, ctx: Any) -> None:
        if ctx.offset == 3:
            raise ValueError("poison")

    h = Harness(handle, {0: [msg(0, i, f"k{i}") for i in range(10)]}, action="stop")
    h.thread.join(10)
    assert h.code == WORKER_EXIT_HALT
    assert "t[0]@3" in (h.worker.error or "")
    assert h.consumer.committed_offset(0) == 3


def test_a_dead_letter_that_is_not_delivered_halts_without_committing_it() -> None:
    def handle(event: Event, ctx: Any) -> None:
        if ctx.offset == 2:
            raise ValueError("poison")

    h = Harness(handle, {0: [msg(0, i, f"k{i}") for i in range(6)]}, producer=FakeProducer(fail=True))
    h.thread.join(10)
    assert h.code == WORKER_EXIT_DEAD_LETTER  # as in the sequential loop
    assert h.worker.counters.failed == 1
    assert "dead-letter topic 't.dlq'" in (h.worker.error or "")
    assert h.consumer.committed_offset(0) == 2
    assert h.producer.topics() == ["t.dlq"]


class SizeLimitedProducer(FakeProducer):
    """Refuses on delivery, as a broker does, what is larger than `limit` bytes (value and headers)."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit
        self.written: list[dict[str, Any]] = []

    def produce(self, topic: str, value: Any, key: Any = None, headers: Any = None, on_delivery: Any = None):
        size = len(value or b"") + sum(len(k) + len(v) for k, v in headers or [])

        def deliver(err: Any, message: Any) -> None:
            if size > self.limit:
                err = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Broker: Message size too large")
            else:
                self.written.append({"topic": topic, "value": value, "headers": dict(headers or [])})
            on_delivery(err, message)

        super().produce(topic, value, key, headers, deliver)


@pytest.mark.parametrize(("limit", "fit"), [(100_000, "truncated"), (4_000, "omitted")])
def test_a_dead_letter_too_large_is_sent_smaller_by_the_concurrent_loop_too(limit: int, fit: str) -> None:
    huge = Message(topic="t", partition=0, offset=0, key=b"k0", value=b"x" * 1_000_000)  # schema-invalid
    producer = SizeLimitedProducer(limit)
    handled: list[int] = []
    h = Harness(lambda e, ctx: handled.append(e.n), {0: [huge, *[msg(0, i, f"k{i}") for i in range(1, 4)]]},
                producer=producer)  # fmt: skip
    try:
        wait_for(lambda: h.worker.dead_lettered == 1 and len(handled) == 3, 5)
    finally:
        assert h.stop() == WORKER_EXIT_OK
    assert sorted(handled) == [1, 2, 3] and h.consumer.committed_offset(0) == 4
    [written] = producer.written
    assert written["topic"] == "t.dlq" and written["headers"]["kpipe.payload"] == fit.encode()
    assert written["headers"]["kpipe.payload.size"] == b"1000000"
    assert written["value"] == (b"x" * 16384 if fit == "truncated" else None)


def test_a_dead_letter_refused_even_without_payload_halts_the_concurrent_loop() -> None:
    huge = Message(topic="t", partition=0, offset=0, key=b"k0", value=b"x" * 1_000_000)
    h = Harness(lambda e, ctx: None, {0: [huge, msg(0, 1, "k1")]}, producer=SizeLimitedProducer(10))
    h.thread.join(10)
    assert h.code == WORKER_EXIT_DEAD_LETTER
    assert "refused even without its payload: MSG_SIZE_TOO_LARGE" in (h.worker.error or "")
    assert h.consumer.committed_offset(0) is None


def test_a_sync_call_past_its_timeout_is_abandoned_and_its_key_goes_on() -> None:
    release = threading.Event()
    handled: list[tuple[int, int]] = []

    def handle(event: Event, ctx: Any) -> None:
        if (ctx.partition, ctx.offset) == (0, 0):
            release.wait(30)  # hangs: never returns in time
        handled.append((ctx.partition, ctx.offset))

    # Key "a" on partition 0: offset 0 hangs, offsets 1-2 wait behind it; partition 1 never waits.
    messages = {0: [msg(0, i, "a") for i in range(3)], 1: [msg(1, i, f"b{i}") for i in range(3)]}
    h = Harness(handle, messages, concurrency=4, timeout_ms=200, producer=FakeProducer())
    try:
        wait_for(lambda: (1, 2) in handled and (0, 2) in handled, 10, message=lambda: f"handled {handled}")
        status = h.worker.status()
        assert status.abandoned == 1 and status.state == "running"
        wait_for(lambda: h.worker.dead_lettered == 1, 5)
        assert h.producer.topics() == ["t.dlq"]
    finally:
        release.set()
        assert h.stop() == WORKER_EXIT_OK
    assert h.consumer.committed_offset(0) == 3 and h.consumer.committed_offset(1) == 3
    assert (0, 0) not in handled[: handled.index((0, 2))]


def test_more_abandoned_threads_than_the_concurrency_restart_the_worker() -> None:
    release = threading.Event()

    def handle(event: Event, ctx: Any) -> None:
        if ctx.offset < 3:
            release.wait(30)

    h = Harness(handle, {0: [msg(0, i, f"k{i}") for i in range(5)]}, concurrency=2, timeout_ms=100)
    try:
        h.thread.join(20)
        assert h.code == WORKER_EXIT_HUNG
        assert "its thread is abandoned (3 so far, a restart after 2)" in (h.worker.error or "")
    finally:
        release.set()


def test_an_instance_holding_events_it_does_not_finish_reports_itself_stalled() -> None:
    release = threading.Event()
    h = Harness(lambda e, ctx: release.wait(30), {0: [msg(0, 0, "a")]}, concurrency=2, timeout_ms=60_000)
    try:
        wait_for(lambda: h.worker.status().in_flight == 1, 5)
        assert h.worker.status().stalled is None  # within its hang limit (on_error.timeout_ms)
    finally:
        release.set()
        assert h.stop() == WORKER_EXIT_OK


def test_stall_watch_reports_unfinished_events_without_progress_for_the_hang_limit() -> None:
    from kpipe.runtime.worker.hangs import StallWatch

    watch = StallWatch(timeout_ms=None)  # 30 s without a timeout
    assert watch.check(finished=5, unfinished=2, now=100.0) is None
    assert watch.check(finished=5, unfinished=2, now=129.0) is None
    assert watch.check(finished=5, unfinished=2, now=131.0) == "2 events unfinished, none finished for 31 s"
    assert watch.check(finished=6, unfinished=2, now=132.0) is None  # progress: the clock starts again
    assert watch.check(finished=6, unfinished=0, now=200.0) is None  # nothing held: not stalled
    assert StallWatch(timeout_ms=500).check(finished=0, unfinished=1, now=0.0) is None
    short = StallWatch(timeout_ms=500)
    short.check(finished=0, unfinished=1, now=0.0)
    assert short.check(finished=0, unfinished=1, now=0.6) == "1 event unfinished, none finished for 1 s"


def test_a_full_buffer_pauses_new_partitions_too() -> None:
    release = threading.Event()

    def handle(event: Event, ctx: Any) -> None:
        release.wait(10)

    # concurrency 1, max_poll_records 500: the buffer (500) fills from partition 0 and stays full.
    h = Harness(handle, {0: [msg(0, i, "k") for i in range(600)], 1: [msg(1, 0, "k")]}, concurrency=2)
    try:
        wait_for(lambda: h.consumer.paused_now == {("t", 0), ("t", 1)}, 5)
        # As a rebalance would, mid-pause.
        h.consumer.assign_now([TopicPartition("t", 2)])
        assert h.consumer.paused_now == {("t", 0), ("t", 1), ("t", 2)}
        release.set()
        wait_for(lambda: h.consumer.paused_now == set(), 10)
    finally:
        release.set()
        h.stop()


@pytest.mark.parametrize(("ordering", "expected_peak"), [("key", 1), ("partition", 2), ("none", 6)])
def test_ordering_decides_what_runs_at_once(ordering: str, expected_peak: int) -> None:
    """Six events of one key, concurrency 6: per key, one at a time; per partition (three in each of two),
    one per partition; none, all at once."""
    lock = threading.Lock()
    active = 0
    peak = 0
    gate = threading.Barrier(expected_peak, timeout=5)

    def handle(event: Event, ctx: Any) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        if ctx.offset < 3:
            gate.wait()  # the first events wait until `expected_peak` run together (a timeout fails it)
        with lock:
            active -= 1

    if ordering == "key":
        messages = {0: [msg(0, i, "same") for i in range(6)]}
    else:
        messages = {p: [msg(p, i, "same") for i in range(3)] for p in (0, 1)}
    h = Harness(handle, messages, concurrency=6, ordering=ordering)
    try:
        wait_for(lambda: h.worker.handled == 6, 10)
    finally:
        assert h.stop() == WORKER_EXIT_OK
    assert peak == expected_peak


def test_a_keep_alive_pause_does_not_outlive_a_revocation() -> None:
    """The sequential loop pauses its partitions while a retry waits (to keep the membership); librdkafka keeps
    a pause through a rebalance, so revoked partitions are resumed before they go."""

    def handle(event: Event, ctx: Any) -> None:
        if ctx.partition == 0:
            raise ValueError("again")

    h = Harness(handle, {0: [msg(0, 0, "a")], 1: [msg(1, 0, "b")]}, concurrency=1, retries=1, backoff_ms=3000,
                client={"max.poll.interval.ms": "300"})  # fmt: skip
    try:
        wait_for(
            lambda: h.consumer.paused_now == {("t", 0), ("t", 1)}, 5
        )  # the retry's backoff keeps the membership
        h.consumer.revoke([0])
        wait_for(lambda: ("t", 0) not in h.worker.assigned, 5)
        assert ("t", 0) not in h.consumer.paused_now
    finally:
        assert h.stop() == WORKER_EXIT_OK


def test_a_stuck_event_bounds_what_is_held_for_commits() -> None:
    """Events finished after a stuck one cannot be committed and stay in memory: their number is bounded (4
    buffers), then fetching stops and the partition is paused until the stuck event finishes."""
    release = threading.Event()

    def handle(event: Event, ctx: Any) -> None:
        if ctx.offset == 0:
            release.wait(120)  # stuck until released: a shorter safety net ran out first on a loaded machine

    # concurrency 2, max_poll_records 500: a buffer of 500, so at most 2,000 events held.
    h = Harness(handle, {0: [msg(0, i, f"k{i}") for i in range(3000)]}, concurrency=2)
    try:
        wait_for(
            lambda: h.consumer.paused_now == {("t", 0)}, 60, message=lambda: f"handled {h.worker.handled}"
        )
        assert 1500 <= h.worker.handled < 2000 + 500  # the bound, plus at most the fetch that crossed it
        assert h.consumer.committed_offset(0) is None  # nothing passes the stuck offset 0
        release.set()
        wait_for(lambda: h.worker.handled == 3000 and h.consumer.paused_now == set(), 60)
    finally:
        release.set()
        assert h.stop() == WORKER_EXIT_OK
    assert h.consumer.committed_offset(0) == 3000


def test_metrics_time_only_the_first_event_started_while_handlers_are_fast() -> None:
    # Ordering none, concurrency 50: the first turn starts 50 events at once and times only the first.
    h = Harness(lambda e, ctx: None, {0: [msg(0, i, "k") for i in range(200)]}, concurrency=50, ordering="none",
                metrics=True)  # fmt: skip
    try:
        wait_for(lambda: h.worker.handled == 200, 10)
    finally:
        assert h.stop() == WORKER_EXIT_OK
    counters = h.worker.status().counters
    assert counters is not None
    assert 1 <= counters.handler_seconds.count <= 200 - 49
    assert counters.event_age_seconds.count == 0  # the fake's messages carry no timestamp


def test_metrics_time_every_event_once_handlers_are_slow() -> None:
    now_ms = int(time.time() * 1000)

    def stamped(i: int) -> Message:
        m = msg(0, i, f"k{i % 4}")
        return Message(topic="t", partition=0, offset=i, key=m.key(), value=m.value(), timestamp=(1, now_ms))

    async def handle(event: Event, ctx: Any) -> None:
        await asyncio.sleep(0.002)

    h = Harness(handle, {0: [stamped(i) for i in range(40)]}, concurrency=4, metrics=True)
    try:
        wait_for(lambda: h.worker.handled == 40, 10)
    finally:
        assert h.stop() == WORKER_EXIT_OK
    counters = h.worker.status().counters
    assert counters is not None
    durations = counters.handler_seconds
    # The first turn starts 4 and times one; from its completion on, every event is timed.
    assert 40 - 3 >= durations.count >= 40 // 2
    assert durations.sum >= durations.count * 0.002
    assert counters.event_age_seconds.count == durations.count

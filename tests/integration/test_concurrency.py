"""Concurrent consumer groups (concurrency > 1) on a real broker: per-key order, at-least-once through
out-of-order completions, failures of one key, rebalances, SIGKILL, sync and async handlers."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import multiprocessing
import os
import random
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from broker_helpers import Running, committed, produce, read_all, worker_start
from handlers_for_tests import Event, group_settings, read_records, run_worker_main

from helpers import wait_for
from kpipe.runtime.protocol import WORKER_EXIT_OK
from kpipe.runtime.worker import GroupWorker, is_concurrent

SINGLE_MEMBER = {"session.timeout.ms": 2000, "heartbeat.interval.ms": 500}


class Journal:
    """Start and end of every handler call, from many threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, int, int, float, float]] = []  # key, partition, offset, start, end

    def add(self, key: str, partition: int, offset: int, start: float, end: float) -> None:
        with self.lock:
            self.calls.append((key, partition, offset, start, end))

    def __len__(self) -> int:
        return len(self.calls)

    def handled(self) -> set[tuple[int, int]]:
        with self.lock:
            return {(p, o) for _k, p, o, _s, _e in self.calls}


def concurrent_settings(bootstrap: str, group: str, topic: str, concurrency: int, **kwargs: Any) -> Any:
    client = kwargs.pop("client", None) or SINGLE_MEMBER
    settings = group_settings(bootstrap, group, (topic,), client={"fetch.wait.max.ms": 50,
                              "fetch.queue.backoff.ms": 10, **client}, **kwargs)  # fmt: skip
    return dataclasses.replace(settings, concurrency=concurrency, ordering=kwargs.get("ordering", "key"))


def test_concurrency_1_with_a_plain_function_keeps_the_sequential_loop() -> None:
    settings = group_settings("localhost:1", "g", ("t",))

    def sync(event: Any, ctx: Any) -> None: ...

    async def coro(event: Any, ctx: Any) -> None: ...

    assert not is_concurrent(settings, sync)
    assert is_concurrent(settings, coro)  # async needs the event loop
    assert is_concurrent(dataclasses.replace(settings, concurrency=4), sync)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_per_key_order_holds_under_concurrency_64_with_random_latency(
    kafka_bootstrap: str, unique_name: Callable[[str], str], make_topics: Callable[..., None], mode: str
) -> None:
    topic, group = unique_name("orders"), unique_name("g")
    make_topics(topic, partitions=3)
    n, keys = 1500, 40
    produce(kafka_bootstrap, topic, [{"key": f"k{i % keys}", "n": i} for i in range(n)])
    journal = Journal()
    active: dict[str, int] = defaultdict(int)
    overlaps: list[str] = []
    rng = random.Random(7)

    def enter(ctx: Any) -> float:
        with journal.lock:
            active[ctx.key] += 1
            if active[ctx.key] > 1:
                overlaps.append(ctx.key)
        return time.monotonic()

    def leave(ctx: Any, start: float) -> None:
        end = time.monotonic()
        with journal.lock:
            active[ctx.key] -= 1
        journal.add(ctx.key, ctx.partition, ctx.offset, start, end)

    def handle(event: Event, ctx: Any) -> None:
        start = enter(ctx)
        time.sleep(rng.random() * 0.01)
        leave(ctx, start)

    async def handle_async(event: Event, ctx: Any) -> None:
        start = enter(ctx)
        await asyncio.sleep(rng.random() * 0.01)
        leave(ctx, start)

    settings = concurrent_settings(kafka_bootstrap, group, topic, 64, strategy="batch", batch_size=50)
    peak = [0]
    run = Running(GroupWorker(settings, {topic: Event}, handle_async if mode == "async" else handle))
    try:

        def progress() -> bool:
            peak[0] = max(peak[0], run.worker.status().in_flight)
            return len(journal) >= n

        wait_for(progress, 60, interval=0.01, message=lambda: f"handled {len(journal)} of {n}")
    finally:
        assert run.stop() == WORKER_EXIT_OK
    assert overlaps == []
    by_key: dict[tuple[int, str], list[tuple[int, float, float]]] = defaultdict(list)
    for key, partition, offset, start, end in journal.calls:
        by_key[(partition, key)].append((offset, start, end))
    for calls in by_key.values():
        calls.sort()
        for (_o1, s1, e1), (_o2, s2, _e2) in zip(calls, calls[1:], strict=False):
            assert s1 < s2 and e1 <= s2, "a key's events overlapped or ran out of offset order"
    assert len(journal.handled()) == n
    assert peak[0] > 8, f"at most {peak[0]} events ran at once: not concurrent"
    assert sum(committed(kafka_bootstrap, group, topic, 3)) == n


@pytest.mark.parametrize(
    ("strategy", "expected_while_blocked"), [("per_message", 7), ("batch", 5), ("auto", 7)]
)
def test_committed_offsets_never_pass_an_unfinished_event(
    kafka_bootstrap: str, unique_name: Callable[[str], str], make_topics: Callable[..., None], strategy: str,
    expected_while_blocked: int,
) -> None:  # fmt: skip
    topic, group = unique_name("orders"), unique_name("g")
    make_topics(topic)
    produce(kafka_bootstrap, topic, [{"key": f"k{i}", "n": i} for i in range(60)])
    release = threading.Event()
    done: list[int] = []

    def handle(event: Event, ctx: Any) -> None:
        if event.n == 7:
            release.wait(30)
        done.append(ctx.offset)

    settings = concurrent_settings(kafka_bootstrap, group, topic, 16, strategy=strategy, batch_size=5,
                                   interval_ms=100 if strategy == "auto" else 60_000)  # fmt: skip
    run = Running(GroupWorker(settings, {topic: Event}, handle))
    try:
        wait_for(lambda: len(done) == 59, 20, message=lambda: f"handled {len(done)}")
        # Everything but offset 7 finished; the commit never passes it. per_message and auto commit right up
        # to it; batch (batch_size 5, a long interval) commits 0..4 and holds 5 and 6 for its next batch.
        wait_for(lambda: committed(kafka_bootstrap, group, topic, 1) == [expected_while_blocked], 10,
                 message=lambda: f"committed {committed(kafka_bootstrap, group, topic, 1)}")  # fmt: skip
        assert run.worker.status().oldest_unfinished == ((topic, 0, 7),)
        release.set()
        wait_for(lambda: len(done) == 60, 10)
        wait_for(lambda: committed(kafka_bootstrap, group, topic, 1) == [60], 10)
    finally:
        release.set()
        assert run.stop() == WORKER_EXIT_OK


def test_a_poison_event_of_one_key_does_not_slow_other_keys(
    kafka_bootstrap: str, unique_name: Callable[[str], str], make_topics: Callable[..., None]
) -> None:
    topic, group = unique_name("orders"), unique_name("g")
    dlq = topic + ".dlq"
    make_topics(topic)
    make_topics(dlq)
    events = [{"key": f"k{i % 20}", "n": i} for i in range(400)]
    events.insert(5, {"key": "poison", "n": -1})
    events.insert(6, {"key": "poison", "n": -2})  # same key, after the poison: must wait for it
    produce(kafka_bootstrap, topic, events)
    finished: dict[int, float] = {}
    attempts: list[float] = []

    def handle(event: Event, ctx: Any) -> None:
        if event.n == -1:
            attempts.append(time.monotonic())
            raise ValueError("poison")
        time.sleep(0.002)
        finished[event.n] = time.monotonic()

    # 4 retries with 400 ms backoff: the poison key is blocked for about 1.6 s.
    settings = concurrent_settings(kafka_bootstrap, group, topic, 8, retries=4, backoff_ms=400,
                                   max_backoff_ms=400, dead_letter_topic=dlq)  # fmt: skip
    run = Running(GroupWorker(settings, {topic: Event}, handle))
    try:
        wait_for(lambda: len(finished) == 401 and run.worker.dead_lettered == 1, 30,
                 message=lambda: f"finished {len(finished)}, dead-lettered {run.worker.dead_lettered}")  # fmt: skip
    finally:
        assert run.stop() == WORKER_EXIT_OK
    assert len(attempts) == 5
    others = [t for n, t in finished.items() if n >= 0]
    # Every other key finished while the poison event was still being retried.
    assert max(others) < attempts[-1], "other keys waited for the poison event"
    # The poison key's next event ran only after the poison event was disposed of.
    assert finished[-2] > attempts[-1]
    assert committed(kafka_bootstrap, group, topic, 1) == [402]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_emit_from_sync_and_async_handlers_is_delivered_before_the_commit(
    kafka_bootstrap: str, unique_name: Callable[[str], str], make_topics: Callable[..., None], mode: str
) -> None:
    topic, out, group = unique_name("orders"), unique_name("out"), unique_name("g")
    make_topics(topic, out)
    produce(kafka_bootstrap, topic, [{"key": f"k{i % 7}", "n": i} for i in range(200)])
    handled: list[int] = []

    def handle(event: Event, ctx: Any) -> None:
        ctx.emit(out, {"key": event.key, "n": event.n * 10})
        handled.append(event.n)

    async def handle_async(event: Event, ctx: Any) -> None:
        await asyncio.sleep(0.001)
        handle(event, ctx)

    settings = concurrent_settings(kafka_bootstrap, group, topic, 16, strategy="per_message")
    settings = dataclasses.replace(settings, emits=(out,))
    run = Running(GroupWorker(settings, {topic: Event}, handle_async if mode == "async" else handle))
    try:
        wait_for(lambda: len(handled) == 200, 20)
        wait_for(lambda: committed(kafka_bootstrap, group, topic, 1) == [200], 10)
    finally:
        assert run.stop() == WORKER_EXIT_OK
    got = [json.loads(m.value())["n"] for m in read_all(kafka_bootstrap, out, 200, timeout=20)]
    assert sorted(got) == [n * 10 for n in range(200)]


def test_async_handler_over_its_timeout_is_cancelled_and_dead_lettered(
    kafka_bootstrap: str, unique_name: Callable[[str], str], make_topics: Callable[..., None]
) -> None:
    topic, group = unique_name("orders"), unique_name("g")
    dlq = topic + ".dlq"
    make_topics(topic, dlq)
    produce(kafka_bootstrap, topic, [{"key": f"k{i}", "n": i} for i in range(10)])
    handled: list[int] = []

    async def handle(event: Event, ctx: Any) -> None:
        if event.n == 3:
            await asyncio.sleep(30)
        handled.append(event.n)

    settings = concurrent_settings(kafka_bootstrap, group, topic, 4, retries=0, dead_letter_topic=dlq)
    settings = dataclasses.replace(settings, on_error=dataclasses.replace(settings.on_error, timeout_ms=200))
    run = Running(GroupWorker(settings, {topic: Event}, handle))
    try:
        wait_for(lambda: len(handled) == 9 and run.worker.dead_lettered == 1, 15)
        wait_for(lambda: committed(kafka_bootstrap, group, topic, 1) == [10], 10)
    finally:
        assert run.stop() == WORKER_EXIT_OK


def test_a_rebalance_during_a_full_in_flight_window_loses_nothing(
    kafka_bootstrap: str, unique_name: Callable[[str], str], make_topics: Callable[..., None],
    fast_group_config: dict, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    topic, group = unique_name("orders"), unique_name("g")
    make_topics(topic, partitions=4)
    n = 1200
    produce(kafka_bootstrap, topic, [{"key": f"k{i % 100}", "n": i} for i in range(n)])
    journal = Journal()

    def handle(event: Event, ctx: Any) -> None:
        start = time.monotonic()
        time.sleep(0.15)
        journal.add(ctx.key, ctx.partition, ctx.offset, start, time.monotonic())

    def settings() -> Any:
        return concurrent_settings(kafka_bootstrap, group, topic, 32, strategy="batch", batch_size=20,
                                   client=fast_group_config)  # fmt: skip

    caplog.set_level("INFO", logger="kpipe.runtime.worker")
    first = Running(GroupWorker(settings(), {topic: Event}, handle))
    second = None
    try:
        # The first member has a full window in flight (32 events of 150 ms; ~210/s, so ~6 s of work) when
        # the second one joins.
        wait_for(lambda: first.worker.status().in_flight == 32 and len(journal) > 50, 30)
        second = Running(GroupWorker(settings(), {topic: Event}, handle))
        wait_for(lambda: len(second.worker.assigned) > 0, 30, message="the second member got no partitions")
        wait_for(lambda: len(journal.handled()) == n, 60,
                 message=lambda: f"handled {len(journal.handled())} of {n}; first {first.worker.status()}; "
                                 f"second {second.worker.status()}")  # fmt: skip
    finally:
        assert first.stop() == WORKER_EXIT_OK
        if second is not None:
            assert second.stop() == WORKER_EXIT_OK
    waited = [r.getMessage() for r in caplog.records if r.getMessage().startswith("revoking ")]
    assert waited, "the revocation found no events in flight: the test did not test a full window"
    assert second.worker.handled > 0
    assert sum(committed(kafka_bootstrap, group, topic, 4)) == n


def write_project(root: Any, bootstrap: str, topic: str, group: str) -> str:
    """A project whose group runs the record handler at concurrency 32 on a 3-partition topic."""
    (root / "pipelines").mkdir()
    (root / "schemas").mkdir()
    (root / "schemas" / "event.schema.yaml").write_text(
        "type: object\nrequired: [key, n]\nproperties:\n  key: {type: string}\n  n: {type: integer}\n"
    )
    (root / "pipelines" / "project.yaml").write_text(
        f'cluster:\n  bootstrap_servers: "{bootstrap}"\nschemas:\n  Event: ../schemas/event.schema.yaml\n'
        f"topics:\n  {topic}:\n    partitions: 3\n    key: key\n    schema: Event\n"
        f"consumers:\n  {group}:\n    topics: [{topic}]\n    handler: handlers_for_tests:record\n"
        f"    concurrency: 32\n    commit: {{strategy: batch, batch_size: 20}}\n    on_error: {{action: stop}}\n"
    )
    return str(root / "pipelines")


def test_sigkill_mid_run_loses_nothing_and_sigterm_finishes_in_flight(
    kafka_bootstrap: str, unique_name: Callable[[str], str], make_topics: Callable[..., None], tmp_path: Any,
    fast_group_config: dict, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Through worker_main, as `kpipe run` starts a worker: the compiled `concurrency: 32` picks the
    concurrent loop."""
    topic, group = unique_name("orders"), unique_name("g")
    make_topics(topic, partitions=3)
    n = 900
    produce(kafka_bootstrap, topic, [{"key": f"k{i % 50}", "n": i} for i in range(n)])
    record = str(tmp_path / "handled.txt")
    monkeypatch.setenv("KPIPE_TEST_RECORD", record)  # spawned workers inherit the environment
    monkeypatch.setenv("KPIPE_TEST_DELAY_S", "0.05")
    extra = tuple((k, str(v)) for k, v in fast_group_config.items())
    spec = worker_start(write_project(tmp_path, kafka_bootstrap, topic, group), group, extra)
    ctx = multiprocessing.get_context("spawn")
    victim = ctx.Process(target=run_worker_main, args=(spec,))
    victim.start()
    try:
        wait_for(lambda: len(read_records(record)) > 200, 60, message="the worker handled nothing")
    finally:
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(10)
    handled_at_kill = {(p, o) for _k, _n, p, o in read_records(record)}
    assert len(handled_at_kill) < n
    for partition, next_offset in enumerate(committed(kafka_bootstrap, group, topic, 3)):
        # Nothing committed past an event that was not handled.
        assert all((partition, o) in handled_at_kill for o in range(max(next_offset, 0)))
    survivor = ctx.Process(target=run_worker_main, args=(spec,))
    survivor.start()
    try:
        wait_for(lambda: len({n_ for _k, n_, _p, _o in read_records(record)}) == n, 90,
                 message=lambda: f"{len({x[1] for x in read_records(record)})} of {n} handled")  # fmt: skip
    finally:
        os.kill(survivor.pid, signal.SIGTERM)
        survivor.join(30)
    assert survivor.exitcode == WORKER_EXIT_OK
    assert {n_ for _k, n_, _p, _o in read_records(record)} == set(range(n))
    assert sum(committed(kafka_bootstrap, group, topic, 3)) == n


def test_a_full_buffer_pauses_the_partitions_and_resumes_them_when_drained(
    kafka_bootstrap: str, unique_name: Callable[[str], str], make_topics: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    topic, group = unique_name("orders"), unique_name("g")
    make_topics(topic, partitions=2)
    n = 60
    produce(kafka_bootstrap, topic, [{"key": f"k{i % 30}", "n": i} for i in range(n)])
    handled: list[int] = []

    def handle(event: Event, ctx: Any) -> None:
        time.sleep(0.3)
        handled.append(event.n)

    # concurrency 2, max_poll_records 10: the buffer holds max(10, 2 × 10) = 20 events; the next fetch waits
    # for 5 free places, 0.75 s of work: longer than the worker waits before it pauses the partitions.
    settings = concurrent_settings(kafka_bootstrap, group, topic, 2, max_poll_records=10)
    caplog.set_level("DEBUG", logger="kpipe.runtime.worker")
    run = Running(GroupWorker(settings, {topic: Event}, handle))
    buffered: list[int] = []
    try:

        def progress() -> bool:
            status = run.worker.status()
            buffered.append(status.in_flight + status.queued)
            return len(handled) == n

        wait_for(progress, 60, interval=0.01, message=lambda: f"handled {len(handled)} of {n}")
    finally:
        assert run.stop() == WORKER_EXIT_OK
    assert max(buffered) <= 21  # the bound, plus at most one event a paused poll may hand over
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("buffer full") for m in messages)
    assert any(m.startswith("buffer drained: resumed") for m in messages)
    assert sorted(handled) == list(range(n))
    assert sum(committed(kafka_bootstrap, group, topic, 2)) == n


def test_stop_finishes_the_events_in_flight_commits_them_and_drops_the_queue(
    kafka_bootstrap: str, unique_name: Callable[[str], str], make_topics: Callable[..., None]
) -> None:
    topic, group = unique_name("orders"), unique_name("g")
    make_topics(topic)
    produce(kafka_bootstrap, topic, [{"key": f"k{i}", "n": i} for i in range(100)])
    started: list[int] = []
    finished: list[int] = []
    go = threading.Event()

    def handle(event: Event, ctx: Any) -> None:
        started.append(ctx.offset)
        go.wait(30)
        time.sleep(0.2)
        finished.append(ctx.offset)

    settings = concurrent_settings(kafka_bootstrap, group, topic, 8, strategy="batch", batch_size=1000,
                                   interval_ms=60_000)  # fmt: skip
    run = Running(GroupWorker(settings, {topic: Event}, handle))
    try:
        wait_for(lambda: len(started) == 8 and run.worker.status().queued > 0, 20)
    finally:
        run.worker.stop()  # what SIGTERM does
        go.set()
        assert run.stop() == WORKER_EXIT_OK
    assert sorted(finished) == sorted(started) == list(range(8))  # in flight: finished; queued: never started
    assert committed(kafka_bootstrap, group, topic, 1) == [8]

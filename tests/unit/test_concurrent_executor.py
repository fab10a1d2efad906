"""Where concurrent handlers run: sync ones on a bounded thread pool, async ones on one event loop thread;
each event gets its own context, and emits are tracked per event."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from typing import Any

import pytest

from fakes import FakeProducer
from helpers import returns_within, wait_for
from kpipe.runtime.concurrent.executor import (
    ACK,
    DONE,
    EventLoop,
    HandlerTimeout,
    ThreadPool,
    is_async_handler,
    make_executor,
)
from kpipe.runtime.concurrent.scheduler import Work
from kpipe.runtime.handler import Emitter


class Msg:
    """A stand-in for a confluent_kafka Message."""

    def __init__(self, offset: int, key: bytes = b"k"):
        self._offset = offset
        self._key = key

    def topic(self) -> str:
        return "t"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return self._key


def works(n: int) -> list[Work]:
    out = []
    for i in range(n):
        w = Work(("t", 0), i, lane=i, seq=i, payload=Msg(i))
        w.event = {"n": i}
        out.append(w)
    return out


def collect(completions: queue.SimpleQueue, n: int, timeout: float = 10) -> list[tuple]:
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        got.append(completions.get(timeout=max(0.01, deadline - time.monotonic())))
    return got


def test_is_async_handler() -> None:
    async def a(event: Any, ctx: Any) -> None: ...

    def s(event: Any, ctx: Any) -> None: ...

    class Callable_:
        async def __call__(self, event: Any, ctx: Any) -> None: ...

    assert is_async_handler(a) and is_async_handler(Callable_())
    assert not is_async_handler(s)


def test_thread_pool_runs_sync_handlers_in_parallel_but_never_more_than_its_size() -> None:
    active = 0
    peak = 0
    lock = threading.Lock()
    seen_ctx: list[Any] = []

    def handle(event: Any, ctx: Any) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            seen_ctx.append((ctx.offset, event["n"]))
        time.sleep(0.05)
        with lock:
            active -= 1

    completions: queue.SimpleQueue = queue.SimpleQueue()
    pool = make_executor(handle, 4, completions, group="g", emitter=None)
    assert isinstance(pool, ThreadPool)
    t0 = time.monotonic()
    pool.submit(works(12))
    got = collect(completions, 12)
    elapsed = time.monotonic() - t0
    pool.close(5)
    assert all(kind == DONE and exc is None for kind, _w, exc in got)
    assert peak == 4
    assert pool.threads == 4
    assert elapsed > 0.14  # 12 events of 50 ms, never more than 4 at a time (peak): 3 rounds at least
    assert sorted(seen_ctx) == [(i, i) for i in range(12)]  # each event saw its own context


def test_thread_pool_reports_handler_exceptions() -> None:
    def handle(event: Any, ctx: Any) -> None:
        if event["n"] == 1:
            raise ValueError("bad event")

    completions: queue.SimpleQueue = queue.SimpleQueue()
    pool = make_executor(handle, 2, completions, group="g", emitter=None)
    pool.submit(works(3))
    got = {w.offset: exc for _k, w, exc in collect(completions, 3)}
    pool.close(5)
    assert isinstance(got[1], ValueError) and got[0] is None and got[2] is None


def test_async_handlers_share_one_loop_thread_and_overlap() -> None:
    threads: set[int] = set()
    active = peak = 0

    async def handle(event: Any, ctx: Any) -> None:
        nonlocal active, peak
        threads.add(threading.get_ident())
        active += 1  # one loop thread: no lock needed
        peak = max(peak, active)
        await asyncio.sleep(0.2)
        active -= 1

    completions: queue.SimpleQueue = queue.SimpleQueue()
    loop = make_executor(handle, 100, completions, group="g", emitter=None)
    assert isinstance(loop, EventLoop)
    before = threading.active_count()
    loop.submit(works(100))
    got = collect(completions, 100)
    assert threading.active_count() == before  # no thread per event
    loop.close(5)
    assert all(exc is None for _k, _w, exc in got)
    assert len(threads) == 1
    assert peak == 100  # all 100 waits of 200 ms overlapped, not one after another


def test_async_handler_over_its_timeout_is_cancelled_and_fails() -> None:
    cancelled = threading.Event()

    async def handle(event: Any, ctx: Any) -> None:
        if event["n"] == 0:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.set()
                raise

    completions: queue.SimpleQueue = queue.SimpleQueue()
    loop = make_executor(handle, 10, completions, group="g", emitter=None, timeout=0.1)
    loop.submit(works(2))
    got = {w.offset: exc for _k, w, exc in collect(completions, 2)}
    loop.close(5)
    assert isinstance(got[0], HandlerTimeout) and "100 ms" in str(got[0])
    assert got[1] is None
    assert cancelled.is_set()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_emit_is_tracked_per_event_from_threads_and_the_loop(kind: str) -> None:
    producer = FakeProducer()
    emitter = Emitter(producer)

    def sync_handle(event: Any, ctx: Any) -> None:
        for i in range(event["n"]):
            ctx.emit("out", {"i": i})

    async def async_handle(event: Any, ctx: Any) -> None:
        sync_handle(event, ctx)

    completions: queue.SimpleQueue = queue.SimpleQueue()
    handler = sync_handle if kind == "sync" else async_handle
    executor = make_executor(handler, 3, completions, group="g", emitter=emitter)
    batch = works(4)  # event n emits n events
    executor.submit(batch)
    done = collect(completions, 4)
    assert all(k == DONE and exc is None for k, _w, exc in done)
    assert [w.emits for w in batch] == [0, 1, 2, 3]
    assert emitter.unsettled is False  # tracked per event, not through the global flush
    producer.deliver_all()
    acks = collect(completions, 6)
    executor.close(5)
    assert all(k == ACK and err is None for k, _w, err in acks)
    assert sorted(w.offset for _k, w, _e in acks) == [1, 2, 2, 3, 3, 3]


def test_emit_without_a_producer_says_so() -> None:
    def handle(event: Any, ctx: Any) -> None:
        ctx.emit("out", {})

    completions: queue.SimpleQueue = queue.SimpleQueue()
    pool = make_executor(handle, 1, completions, group="g", emitter=None)
    pool.submit(works(1))
    ((_k, _w, exc),) = collect(completions, 1)
    pool.close(5)
    assert isinstance(exc, RuntimeError) and "no producer" in str(exc)


def test_closing_the_loop_cancels_running_tasks_without_reporting_them() -> None:
    started = threading.Event()

    async def handle(event: Any, ctx: Any) -> None:
        started.set()
        await asyncio.sleep(30)

    completions: queue.SimpleQueue = queue.SimpleQueue()
    loop = make_executor(handle, 1, completions, group="g", emitter=None)
    loop.submit(works(1))
    wait_for(started.is_set, 5)
    loop.close(5)
    assert completions.empty()


def test_closing_the_pool_waits_once_for_all_threads_not_once_per_thread() -> None:
    stuck = threading.Event()

    def handle(event: Any, ctx: Any) -> None:
        stuck.wait(30)

    completions: queue.SimpleQueue = queue.SimpleQueue()
    pool = make_executor(handle, 40, completions, group="g", emitter=None)
    pool.submit(works(40))
    wait_for(lambda: pool.threads == 40, 5)
    # 40 hung handlers: the threads are left behind (daemons) after 0.3 s in all. Waiting 0.3 s for each would
    # take 12 s: the 6 s bound is a liveness bound, twenty times what closing takes.
    returns_within(6, lambda: pool.close(0.3), "closing a pool of 40 hung threads")
    stuck.set()

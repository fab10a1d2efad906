"""Where concurrent handlers run, and how they report back.

    sync  `def handle(event, ctx)`         a bounded pool of threads (started as needed, at most `size`)
    async `async def handle(event, ctx)`   one asyncio event loop on one thread; one task per event, no thread
                                           per event; a handler over its timeout is cancelled and fails

Both put `(DONE, work, exception or None)` on the completion queue when a handler returns or raises; events a
handler emits report `(ACK, work, error or None)` there too, through EventContext. Only the consumer thread
reads the queue, so the offset tracker and the scheduler need no locks. A call whose `work.seconds` is set
(metrics on, an event the worker chose to time) is timed, and its duration left in `work.seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from kpipe.runtime.concurrent.scheduler import Work
from kpipe.runtime.handler import Emitter, HandlerContext

log = logging.getLogger("kpipe.runtime.worker")

DONE, ACK = 0, 1

Completions = queue.SimpleQueue


class HandlerTimeout(Exception):
    """An async handler ran longer than on_error.timeout_ms and was cancelled."""


def is_async_handler(handler: Any) -> bool:
    """True for `async def` functions and objects whose `__call__` is one."""
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004
    return call is not None and inspect.iscoroutinefunction(call)


class EventContext(HandlerContext):
    """The HandlerContext of one event when events run concurrently: one object per event (the sequential
    worker reuses one). Events emitted by topic name are tracked per event: the event counts as finished only
    once each of them is acknowledged."""

    __slots__ = ("_work", "_completions")

    def __init__(self, group: str, emitter: Emitter | None, work: Work, completions: Completions):
        super().__init__(group, emitter)
        self._msg = work.payload
        self._work = work
        self._completions = completions

    def emit(self, target: Any, event: Any, key: Any = None, headers: Any = None) -> None:
        if self._emitter is None:
            raise RuntimeError("this consumer group has no producer configured for emit()")
        if not isinstance(target, str):
            self._emitter.emit(target, event, key, headers)  # a kpipe Producer: settled before each commit
            return
        work = self._work
        work.emits += 1  # written only by the thread running this event's handler
        try:
            self._emitter.emit(
                target, event, key, headers, on_delivery=functools.partial(_ack, self._completions, work)
            )
        except BaseException:
            work.emits -= 1
            raise


def _ack(completions: Completions, work: Work, err: Any, msg: Any) -> None:
    completions.put((ACK, work, err))


class ThreadPool:
    """Sync handlers: worker threads take events from one queue, at most `size` threads, started on demand."""

    def __init__(self, call: Callable[[Work], Any], size: int, completions: Completions, name: str = "kpipe"):
        self._call = call
        self._size = size
        self._completions = completions
        self._name = name
        self._queue: queue.SimpleQueue[Work | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        # Threads left running a call past on_error.timeout_ms: the pool grows by one for each, so the group
        # keeps `size` threads that take events.
        self.abandoned = 0

    @property
    def threads(self) -> int:
        return len(self._threads)

    def abandon(self) -> None:
        """A thread's call ran past its timeout and is given up on (it cannot be stopped): replace it."""
        self.abandoned += 1
        self._size += 1

    def submit(self, works: list[Work]) -> None:
        put = self._queue.put
        for work in works:
            put(work)
        # Start threads for the events nobody has taken yet, up to the pool's size (an idle thread may take
        # one first; then the pool is a thread larger than it needed to be, never larger than `size`).
        for _ in range(min(self._size - len(self._threads), self._queue.qsize())):
            thread = threading.Thread(
                target=self._run, name=f"{self._name}-handler-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _run(self) -> None:
        get, call, put = self._queue.get, self._call, self._completions.put
        while True:
            work = get()
            if work is None:
                return
            try:
                call(work)
            except Exception as exc:
                put((DONE, work, exc))
            else:
                put((DONE, work, None))

    def close(self, timeout: float) -> None:
        """Let threads finish their current event and leave; threads still busy after `timeout` are left
        behind (daemon threads: they do not keep the process alive)."""
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))


async def run_coroutine(
    call: Callable[[Work], Any], work: Work, timeout: float | None, completions: Completions
) -> None:
    """One async handler call to its end: cancelled past `timeout` (HandlerTimeout), its outcome put on
    `completions` as DONE. The one way an event's coroutine runs, under `kpipe run` and in kpipe.testing."""
    try:
        if timeout is None:
            await call(work)
        else:
            try:
                await asyncio.wait_for(call(work), timeout)
            except TimeoutError:
                raise HandlerTimeout(
                    f"handler ran longer than {timeout * 1000:g} ms and was cancelled"
                ) from None
    except Exception as exc:
        completions.put((DONE, work, exc))
    else:
        completions.put((DONE, work, None))


class EventLoop:
    """Async handlers: one asyncio event loop on its own thread; each event is a task on it."""

    def abandon(self) -> None:
        """Coroutines are cancelled at their timeout (HandlerTimeout), never abandoned."""

    def __init__(
        self,
        call: Callable[[Work], Any],
        completions: Completions,
        timeout: float | None = None,
        name: str = "kpipe",
    ):
        self._call = call
        self._completions = completions
        self._timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._tasks: set[asyncio.Task] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"{name}-event-loop", daemon=True)
        self._thread.start()

    @property
    def threads(self) -> int:
        return 1

    def submit(self, works: list[Work]) -> None:
        if works:
            self._loop.call_soon_threadsafe(self._start, works)

    def _start(self, works: list[Work]) -> None:
        create, tasks = self._loop.create_task, self._tasks
        for work in works:
            task = create(self._one(work))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async def _one(self, work: Work) -> None:
        await run_coroutine(self._call, work, self._timeout, self._completions)

    def close(self, timeout: float) -> None:
        """Stop the loop: tasks still running are cancelled (their events stay unfinished, so uncommitted)."""

        def cancel_all() -> None:
            for task in list(self._tasks):
                task.cancel()
            self._loop.call_soon(self._loop.stop)

        with contextlib.suppress(RuntimeError):  # the loop is closed already
            self._loop.call_soon_threadsafe(cancel_all)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._loop.close()


# make_executor's signature: the concurrent loop takes one (a test harness may pass a deterministic executor).
ExecutorFactory = Callable[..., "ThreadPool | EventLoop"]


def make_executor(
    handler: Any,
    concurrency: int,
    completions: Completions,
    *,
    group: str,
    emitter: Emitter | None,
    timeout: float | None = None,
) -> ThreadPool | EventLoop:
    """The executor for this handler: an event loop for `async def`, a thread pool of `concurrency` for `def`.

    Each event gets its own EventContext; the event itself is `work.event`.
    """
    call = handler_call(handler, group=group, emitter=emitter, completions=completions)
    if is_async_handler(handler):
        return EventLoop(call, completions, timeout, name=group)
    return ThreadPool(call, concurrency, completions, name=group)


def handler_call(
    handler: Any, *, group: str, emitter: Emitter | None, completions: Completions
) -> Callable[[Work], Any]:
    """How an executor calls the handler for one Work: with the event's own EventContext, timed when
    `work.seconds` asks for it. For an `async def` handler it returns the awaitable the executor awaits."""
    if is_async_handler(handler):

        def call_async(work: Work) -> Any:
            ctx = work.ctx = EventContext(group, emitter, work, completions)
            awaitable = handler(work.event, ctx)
            return awaitable if work.seconds is None else _timed_await(awaitable, work)

        return call_async

    def call(work: Work) -> Any:
        ctx = work.ctx = EventContext(group, emitter, work, completions)
        if work.seconds is None:
            return handler(work.event, ctx)
        started = time.perf_counter()
        try:
            return handler(work.event, ctx)
        finally:
            work.seconds = time.perf_counter() - started

    return call


async def _timed_await(awaitable: Any, work: Work) -> Any:
    """An async handler's call, timed from start to return, raise, or cancellation (its timeout)."""
    started = time.perf_counter()
    try:
        return await awaitable
    finally:
        work.seconds = time.perf_counter() - started

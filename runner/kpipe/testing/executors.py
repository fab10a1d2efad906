"""Executors that make a concurrent group's in-memory run repeat exactly, given to the runtime through
`Outside(executors=inline_executor)` in place of kpipe.runtime.concurrent.executor.make_executor.

Under `kpipe run` a group with `concurrency` above 1 runs its handlers on a pool of threads (or, `async def`, on
an event loop in its own thread), so events of different keys finish in whatever order the machine makes. Here
the handlers of the events the concurrent loop starts run on the consumer's thread, inside its turn, one after
another in the order the loop started them (async ones on an event loop of their own). Everything else is the runtime's own: the key scheduler decides which events may start (per-key
order, the `concurrency` limit), each event gets its EventContext, and the completions go back on the queue the
loop reads, as the runtime's executors put them.

What this does not reproduce: two calls of one group never overlap in time, so a handler that hangs (rather
than raising or returning) holds the whole group, and drain() ends with DrainTimeout naming it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from kpipe.runtime.concurrent.executor import (
    DONE,
    Completions,
    handler_call,
    is_async_handler,
    run_coroutine,
)
from kpipe.runtime.concurrent.scheduler import Work
from kpipe.runtime.handler import Emitter


class InlineCalls:
    """Sync handlers, called at submit() on the caller's thread, in the order given."""

    def __init__(self, call: Callable[[Work], Any], completions: Completions):
        self._call = call
        self._completions = completions

    def submit(self, works: list[Work]) -> None:
        call, put = self._call, self._completions.put
        for work in works:
            try:
                call(work)
            except Exception as exc:
                put((DONE, work, exc))
            else:
                put((DONE, work, None))

    def abandon(self) -> None:
        """Nothing runs outside submit(): no call is ever left running."""

    def close(self, timeout: float) -> None:
        pass


class InlineLoop:
    """Async handlers: at submit(), each event's coroutine runs to its end on a private event loop on the
    caller's thread, one after another (so what a handler awaits cannot reorder them); one over
    on_error.timeout_ms is cancelled and fails, as under `kpipe run`."""

    def __init__(self, call: Callable[[Work], Any], completions: Completions, timeout: float | None):
        self._call = call
        self._completions = completions
        self._timeout = timeout
        self._loop = asyncio.new_event_loop()

    def submit(self, works: list[Work]) -> None:
        run = self._loop.run_until_complete
        for work in works:
            run(self._one(work))

    async def _one(self, work: Work) -> None:
        await run_coroutine(self._call, work, self._timeout, self._completions)

    def abandon(self) -> None:
        """Coroutines are cancelled at their timeout, never abandoned."""

    def close(self, timeout: float) -> None:
        if not self._loop.is_closed():
            self._loop.close()


def inline_executor(
    handler: Any,
    concurrency: int,
    completions: Completions,
    *,
    group: str,
    emitter: Emitter | None,
    timeout: float | None = None,
) -> InlineCalls | InlineLoop:
    """make_executor's signature: InlineLoop for an `async def` handler, InlineCalls for a `def` one; each
    calls the handler as the runtime's executors do (handler_call)."""
    call = handler_call(handler, group=group, emitter=emitter, completions=completions)
    if is_async_handler(handler):
        return InlineLoop(call, completions, timeout)
    return InlineCalls(call, completions)

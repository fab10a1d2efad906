"""Hung handlers: a handler call that runs too long is seen, reported, and (with a timeout) ends the worker.

The consume loop marks the message whose handler is running (`watch.current = msg` before the call, None after:
two attribute stores per message). The monitor thread calls `tick(now)` twice a second:

    running for STILL_RUNNING_EVERY seconds, and every STILL_RUNNING_EVERY after: a warning naming the event and
        the group; the worker's status says what it is busy with, so the supervisor can name it too;
    running longer than on_error.timeout_ms: the hang is counted in the hang counts (kpipe.runtime.hang_counts), logged,
        and the worker leaves for a restart (exit code HUNG): a running synchronous Python call cannot be
        stopped safely, so the process is replaced. The event stays uncommitted; once the handler has hung
        HANG_LIMIT times on it, the loop no longer hands it to the handler but fails it (error type "timeout");
    asked to stop (SIGTERM, Ctrl-C) while a call runs: it says which event it waits for, and at STOP_MARGIN
        before the supervisor's shutdown timeout it leaves, naming the event, without committing it.

A handler that holds the GIL in C code (a runaway regex in an extension) stops this thread too; the supervisor's
SIGKILL after --shutdown-timeout then ends the process, and its message names the event from the last status.
Coroutine handlers are cancelled at the timeout instead, by the code that runs them (concurrency).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kpipe.runtime.hang_counts import HANG_LIMIT, HangCounts
from kpipe.runtime.protocol import WORKER_EXIT_HUNG
from kpipe.runtime.worker.control import Control

log = logging.getLogger("kpipe.runtime.worker")

# A handler call running this long is logged (and again every this many seconds), with or without a timeout.
STILL_RUNNING_EVERY = 30.0
# Stopped while a handler runs, the worker leaves this long before the supervisor's SIGKILL would come.
STOP_MARGIN = 2.0


def where(msg: Any) -> str:
    return f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"


class Retry:
    """What a retry marks as running: the same event as the call before, as a new object, so that the watch
    (which tells calls apart by what it is given) times each call from its own start, as timeout_ms means."""

    __slots__ = ("msg",)

    def __init__(self, msg: Any):
        self.msg = msg

    def topic(self) -> str:
        return self.msg.topic()

    def partition(self) -> int:
        return self.msg.partition()

    def offset(self) -> int:
        return self.msg.offset()


class HangWatch:
    def __init__(
        self,
        group: str,
        timeout_ms: int | None,
        book: HangCounts,
        control: Control,
        shutdown_timeout: float,
        leave: Callable[[int, str], None],
        report: Callable[[], None],
    ):
        """leave(code, reason): end the worker for a restart (GroupWorker._leave). report(): send a status."""
        self.current: Any = None  # the message whose handler call is running; set by the consume loop
        self.busy: str | None = None  # "orders[0]@42 for 35 s" once a call has run for STILL_RUNNING_EVERY
        self._group = group
        self._timeout_ms = timeout_ms
        self._timeout = timeout_ms / 1000.0 if timeout_ms else None
        self._book = book
        self._control = control
        self._shutdown_timeout = shutdown_timeout
        self._leave = leave
        self._report = report
        self._seen: Any = None
        self._since = 0.0
        self._next_report = 0.0
        self._acted = False  # this call was declared hung, or waited for at a stop: said once

    def tick(self, now: float) -> None:
        msg = self.current
        if msg is None or msg is not self._seen:
            self._seen, self._since, self._acted = msg, now, False
            self._next_report = now + STILL_RUNNING_EVERY
            if self.busy is not None:
                self.busy = None
                self._report()
            return
        running = now - self._since
        if self._control.requested:
            self._waiting_at_stop(msg, now, running)
            return
        if self._timeout is not None and running >= self._timeout and not self._acted:
            self._acted = True
            self._hung(msg, running)
            return
        if now >= self._next_report:
            self._next_report = now + STILL_RUNNING_EVERY
            self.busy = f"{where(msg)} for {running:.0f} s"
            log.warning(
                "handler still running on %s (consumer group '%s') after %.0f s%s",
                where(msg), self._group, running,
                "" if self._timeout else "; set on_error.timeout_ms to restart the worker when one hangs",
            )  # fmt: skip
            self._report()

    def _hung(self, msg: Any, running: float) -> None:
        count = self._book.record((msg.topic(), msg.partition(), msg.offset()))
        then = (
            "it will not be given to the handler again"
            if count >= HANG_LIMIT
            else f"after {HANG_LIMIT} hangs it is no longer given to the handler"
        )
        reason = (
            f"handler hung on {where(msg)} (consumer group '{self._group}'): still running after {running:.0f} s, "
            f"over on_error.timeout_ms ({self._timeout_ms}); hang {count} of {HANG_LIMIT} on this event, {then}"
        )
        self.busy = f"{where(msg)} for {running:.0f} s (hung)"
        log.error("%s; exiting for a restart, without committing it", reason)
        self._leave(WORKER_EXIT_HUNG, reason)

    def _waiting_at_stop(self, msg: Any, now: float, running: float) -> None:
        requested_at = self._control.requested_at or now
        deadline = requested_at + max(0.0, self._shutdown_timeout - STOP_MARGIN)
        if not self._acted:
            self._acted = True
            self.busy = f"{where(msg)} for {running:.0f} s"
            log.warning(
                "stopping: waiting for the handler on %s (consumer group '%s', running for %.0f s), "
                "up to %.0f s more",
                where(msg), self._group, running, max(0.0, deadline - now),
            )  # fmt: skip
            self._report()
        if now >= deadline:
            reason = (
                f"stopped while the handler on {where(msg)} (consumer group '{self._group}') was still running "
                f"after {running:.0f} s; leaving without committing it (it will be delivered again)"
            )
            log.error("%s", reason)
            self.current = None  # said once
            self._seen = None
            self._leave(WORKER_EXIT_HUNG, reason)


class StallWatch:
    """Whether a worker holds unfinished events yet finished none for its hang limit (on_error.timeout_ms, or
    STILL_RUNNING_EVERY without one): sampled at each status report; the supervisor's /readyz shows it."""

    def __init__(self, timeout_ms: int | None):
        self.limit = timeout_ms / 1000.0 if timeout_ms else STILL_RUNNING_EVERY
        self._finished = -1
        self._since = 0.0

    def check(self, finished: int, unfinished: int, now: float) -> str | None:
        """finished: events finished so far (handled, dead-lettered, skipped); unfinished: events started and
        not finished now. The text for WorkerStatus.stalled, or None."""
        if not unfinished or finished != self._finished:
            self._finished, self._since = finished, now
            return None
        idle = now - self._since
        if idle < self.limit:
            return None
        return (
            f"{unfinished} event{'' if unfinished == 1 else 's'} unfinished, none finished for {idle:.0f} s"
        )

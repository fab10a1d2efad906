"""The monitor thread: notice what the consume loop cannot, because it is busy or blocked.

A synchronous commit blocks inside librdkafka, out of reach of stop() and of signal handlers, and with the
broker gone it can block for minutes. The monitor thread notices a call marked with `blocking(...)` that has
lasted longer than the limit (the cluster timeout) and calls `on_stuck` once for it (worker_main: exit for a
restart, committing nothing more).

It also runs the periodic checks given to `every_tick` (the cluster's health, a handler running for long), so
they happen while the loop is inside a long batch or a long handler call, not only between batches.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from kpipe.runtime.client_protocols import SYSTEM_CLOCK, Clock

log = logging.getLogger("kpipe.runtime.worker")

CHECK_INTERVAL = 0.5


class Monitor:
    def __init__(
        self,
        group: str,
        limit: float,
        on_stuck: Callable[[str], None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ):
        self._group = group
        self._clock = clock
        self._limit = limit
        self._on_stuck = on_stuck
        self._since: float | None = None
        self._what = ""
        self._done = threading.Event()
        self._checks: list[Callable[[float], None]] = []

    def every_tick(self, check: Callable[[float], None]) -> None:
        """Call check(time.monotonic()) from the monitor thread every CHECK_INTERVAL."""
        self._checks.append(check)

    @contextmanager
    def blocking(self, what: str) -> Iterator[None]:
        """Mark a call that may block inside librdkafka, e.g. `with monitor.blocking("commit"): ...`."""
        self._what, self._since = what, self._clock.monotonic()
        try:
            yield
        finally:
            self._since = None

    def start(self) -> None:
        threading.Thread(target=self._watch, name="kpipe-monitor", daemon=True).start()

    def stop(self) -> None:
        self._done.set()

    def _watch(self) -> None:
        reported = None
        while not self._done.wait(CHECK_INTERVAL):
            for check in self._checks:
                try:
                    check(self._clock.monotonic())
                except Exception:  # a check's bug must not end the monitor
                    log.exception("consumer group '%s': monitor check failed", self._group)
            since = self._since
            if since is None or self._clock.monotonic() - since < self._limit or since == reported:
                continue
            reported = since
            reason = (
                f"a {self._what} has been blocked for over {self._limit:g} s: the cluster is unreachable; "
                "nothing more is committed (unprocessed and uncommitted events will be delivered again)"
            )
            log.error("consumer group '%s': %s", self._group, reason)
            if self._on_stuck is not None:
                self._on_stuck(reason)

"""VirtualClock: time for in-memory runs, in which waiting takes no wall time.

A wait (a retry's backoff, a pause before a commit) moves the clock forward by the time waited and returns at
once; between waits the clock follows the real one. It has the methods of the runtime's Clock (now, monotonic,
wait): once the consume engine takes a Clock (issue 24), kpipe.testing.engine hands it one of these, so that a
30 s backoff costs nothing. Until then the workers use the real clock.
"""

from __future__ import annotations

import threading
import time


class VirtualClock:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._skipped = 0.0  # seconds waited virtually so far

    def now(self) -> float:
        return time.time() + self._skipped

    def monotonic(self) -> float:
        return time.monotonic() + self._skipped

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Like event.wait(seconds), without the waiting: True when the event is set, else the clock moves on."""
        if event.is_set():
            return True
        self.advance(seconds)
        return event.is_set()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._skipped += max(0.0, seconds)

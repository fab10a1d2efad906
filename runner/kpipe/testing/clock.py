"""VirtualClock: time for in-memory runs, which moves only when something waits for it.

The workers of an in-memory run get one of these through `Outside(clock=...)`, the runtime's Clock (now,
monotonic, wait). Its time stands still while handlers run, and moves forward:

    wait(event, s)   a worker waits inside its turn (a retry's backoff in the sequential loop): the clock moves
                     on by `s` and the call returns at once; the other workers are idle meanwhile (turns.py)
    advance(s)       the driver (engine.py) moves it when every worker is idle waiting for a deadline (a retry's
                     timer under `concurrency`, a batch commit's interval), or at the real pace while a turn
                     lasts longer than turns.OVERRUN_AFTER (a slow or hung handler)

So a 30 s backoff takes no wall time, and what happens when (a retry among other keys' events, a batch commit)
does not depend on how fast the machine is: a run repeats exactly.
"""

from __future__ import annotations

import threading
import time


class VirtualClock:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wall_start = time.time()
        self._start = time.monotonic()  # monotonic values look like the real ones (log lines, statuses)
        self._elapsed = 0.0  # virtual seconds since the run started

    @property
    def elapsed(self) -> float:
        """Virtual seconds since the run started: the sum of every wait and advance."""
        return self._elapsed

    def now(self) -> float:
        return self._wall_start + self._elapsed

    def monotonic(self) -> float:
        return self._start + self._elapsed

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Like event.wait(seconds), without the waiting: True when the event is set, else the clock moves on."""
        if event.is_set():
            return True
        self.advance(seconds)
        return event.is_set()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._elapsed += max(0.0, seconds)

"""Turns: one worker thread runs at a time, and the driver decides which.

Each worker of an in-memory run is a GroupWorker in its own thread, running its consume loop as `kpipe run` does.
A worker gives the turn back each time it calls consume() (MemoryConsumer), and waits there until the driver
gives it the turn again; so between two polls a worker handles its batch alone, and the order in which workers
run, and so every outcome, is the same from one run to the next. (Handlers of a group with `concurrency` above 1
run one after another inside the turn too: executors.py.)

Time (clock.py) stands still during a turn, unless the turn lasts longer than OVERRUN_AFTER real seconds (a slow
or hung handler): from then on it follows the real time, through `overrun(seconds)`, until the turn ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# How often a driver waiting for a turn to end checks that the worker's thread is still alive.
CHECK_EVERY = 0.05
# A turn longer than this (real seconds: far above a batch of quick handlers, even on a loaded machine) lets
# virtual time follow the real one until it ends.
OVERRUN_AFTER = 5.0


class TurnTimeout(Exception):
    """A worker kept its turn past the driver's limit (a handler that does not return)."""


class Turns:
    def __init__(self, overrun: Callable[[float], None] | None = None) -> None:
        """overrun(seconds): real time that passed in a turn past OVERRUN_AFTER (VirtualClock.advance)."""
        self._overrun = overrun
        self._cond = threading.Condition()
        self._current: str | None = None
        self._free = False

    def wait_turn(self, name: str) -> None:
        """Called by a worker's thread at each poll: end its turn, then wait until it is given the next one."""
        with self._cond:
            if self._current == name:
                self._current = None
                self._cond.notify_all()
            while not self._free and self._current != name:
                self._cond.wait()

    def finished(self, name: str) -> None:
        """The worker's thread ends: its turn, if it had one, is over."""
        with self._cond:
            if self._current == name:
                self._current = None
                self._cond.notify_all()

    def give(
        self, name: str, alive: Callable[[], bool], timeout: float, start: Callable[[], None] | None = None
    ) -> None:
        """Let worker `name` run until it polls again (or its thread ends); TurnTimeout after `timeout` s.
        `start` starts the worker's thread: its first turn runs up to its first poll."""
        with self._cond:
            self._current = name
            self._cond.notify_all()
            if start is not None:
                start()
            started = time.monotonic()
            deadline, counted = started + timeout, started + OVERRUN_AFTER
            while self._current == name and alive():
                now = time.monotonic()
                if now >= deadline:
                    raise TurnTimeout(name)
                if now > counted and self._overrun is not None:
                    self._overrun(now - counted)
                    counted = now
                self._cond.wait(CHECK_EVERY)
            if self._current == name:
                self._current = None

    def release(self) -> None:
        """Stop taking turns: every worker runs freely from now on (to stop and close)."""
        with self._cond:
            self._free = True
            self._cond.notify_all()

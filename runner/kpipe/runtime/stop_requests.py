"""How a stop reaches the supervisor's loop: SIGTERM/SIGINT or `Supervisor.stop()` record a request and wake the
loop through a self-pipe it waits on with the workers' sentinels. Signal handlers only append and write a byte
(no lock, no logging): they run between the main thread's bytecodes, possibly while it holds a lock."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from typing import Any

log = logging.getLogger("kpipe.runtime.supervisor")


class StopRequests:
    def __init__(self) -> None:
        # One entry per stop request: the signal's name or "stop()".
        self.requests: list[str] = []
        self.forced = False
        self.closed = False
        self.fd, self._wake_w = os.pipe()  # the loop waits on `fd`
        os.set_blocking(self.fd, False)
        os.set_blocking(self._wake_w, False)

    def request(self, why: str, *, force: bool) -> None:
        # list.append and a bool store are atomic under the GIL.
        if force:
            self.forced = True
        self.requests.append(why)
        if self.closed:
            return
        with contextlib.suppress(OSError):  # a full pipe: the loop is being woken already
            os.write(self._wake_w, b"\0")

    def install_signals(self) -> dict[int, Any]:
        """Handle SIGTERM and SIGINT (only possible on the main thread); returns the handlers to restore."""
        if threading.current_thread() is not threading.main_thread():
            log.debug("not installing signal handlers: not on the main thread")
            return {}
        previous = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    @staticmethod
    def restore(previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.request(signal.Signals(signum).name, force=False)

    def drain(self) -> None:
        try:
            while os.read(self.fd, 512):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        self.closed = True
        os.close(self.fd)
        os.close(self._wake_w)

"""One supervised worker slot (a group instance): its process, its status pipe, what is known of it, and when
it is started again. The supervisor (supervisor.py) starts, reaps and stops the slots.

    Slot            one instance's current process, its status pipe, restarts, and its view
    WorkerView      what `snapshot()` gives about a slot: state, restarts, last exit, last status and its age
    StatusChannel   the worker's end of its status pipe
    RestartPolicy   exponential backoff, and giving up on a crash loop
    describe_exit   why a worker ended, from its exit code or signal (and the OOM killer's count)
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from kpipe.runtime.protocol import (
    WORKER_EXIT_CLUSTER,
    WORKER_EXIT_CRASH,
    WORKER_EXIT_DEAD_LETTER,
    WORKER_EXIT_HALT,
    WORKER_EXIT_HUNG,
    WORKER_EXIT_OK,
    WorkerCounters,
    WorkerStart,
    WorkerStatus,
)

log = logging.getLogger("kpipe.runtime.supervisor")

_EXIT_MEANINGS = {
    WORKER_EXIT_OK: "stopped",
    WORKER_EXIT_CRASH: "crashed",
    WORKER_EXIT_CLUSTER: "cluster unreachable",
    WORKER_EXIT_DEAD_LETTER: "dead letter not written",
    WORKER_EXIT_HUNG: "handler hung",
    WORKER_EXIT_HALT: "halted",
}


def describe_exit(
    exitcode: int, *, killed_by_us: bool = False, oom_killed: bool | None = None, error: str | None = None
) -> str:
    """Why a worker ended: 'exited with code 78 (halted): <its error>', 'was killed by SIGKILL from outside ...'.

    oom_killed: whether the kernel's OOM killer killed a process of this cgroup meanwhile (None: unknown).
    error: what the worker last reported as its error; it names the cause better than the code alone.
    """
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        text = f"was killed by {name}"
        if exitcode == -signal.SIGKILL and not killed_by_us:
            if oom_killed:
                text += ": out of memory (the kernel's OOM killer killed it)"
            elif oom_killed is False:
                text += " from outside kpipe (no out-of-memory kill recorded)"
            else:
                text += " from outside kpipe (out of memory, or kill -9: the kernel log tells which)"
        return text
    meaning = _EXIT_MEANINGS.get(exitcode)
    text = f"exited with code {exitcode}" + (f" ({meaning})" if meaning else "")
    if error and exitcode != WORKER_EXIT_OK:
        text += f": {error}"
    return text


def oom_kill_count(root: Path = Path("/")) -> int | None:
    """How many processes the kernel's OOM killer has killed in this process's memory cgroup; None if unknown.

    Read from cgroup v2 `memory.events` or v1 `memory.oom_control` (the `oom_kill` line): a SIGKILL that
    comes with a higher count than at the worker's start was the OOM killer, one without was sent by someone.
    """
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    candidates: list[Path] = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        relative = path.strip().lstrip("/")
        if controllers == "":
            candidates += [
                root / "sys/fs/cgroup" / relative / "memory.events",
                root / "sys/fs/cgroup/memory.events",
            ]
        elif "memory" in controllers.split(","):
            base = root / "sys/fs/cgroup/memory"
            candidates += [base / relative / "memory.oom_control", base / "memory.oom_control"]
    for candidate in candidates:
        try:
            text = candidate.read_text()
        except OSError:
            continue
        for entry in text.splitlines():
            key, _, value = entry.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
    return None


@dataclass(frozen=True)
class WorkerView:
    """What the supervisor knows about one worker slot (a group instance), for `kpipe dev`'s table."""

    group: str
    instance: int
    pid: int | None
    # starting | running | stopping (as the worker reports) | exited (reaped, what follows being decided) |
    # restarting | stopped | halted | gave_up | killed
    state: str
    restarts: int
    last_exit: str | None  # describe_exit() of the previous process, if one ended
    status: WorkerStatus | None  # the latest snapshot the current (or last) process sent
    # Counters summed over every process this slot has run, so they never go backwards across restarts.
    counters: WorkerCounters = field(default_factory=WorkerCounters)
    # Seconds since the running process's last status (None: no process, or none yet). A running worker
    # reports at least every 2 s, also inside a long handler call: a long silence means a frozen process.
    status_age: float | None = None


class StatusChannel:
    """The worker's end of its status pipe, with a queue's `put()`; a vanished reader is not an error."""

    def __init__(self, conn: Connection):
        self._conn = conn

    def put(self, status: Any, block: bool = True, timeout: float | None = None) -> None:
        # The supervisor gone or no longer listening: the worker's own signal handling deals with shutdown.
        with contextlib.suppress(OSError, EOFError, ValueError):
            self._conn.send(status)

    def put_nowait(self, status: Any) -> None:
        self.put(status)


@dataclass(eq=False)
class Slot:
    start: WorkerStart
    process: Any = None  # the multiprocessing process (forked or spawned) while one is running
    status_conn: Connection | None = None
    started_at: float = 0.0
    restarts: int = 0
    consecutive_failures: int = 0
    restart_times: deque[float] = field(default_factory=deque)
    restart_at: float | None = None
    # Set when the slot is finished for good: stopped | halted | gave_up | killed | failed
    outcome: str | None = None
    killed_by_us: bool = False
    status_at: float | None = None  # time.monotonic() of the current process's latest status
    oom_kills_at_start: int | None = None
    last_exit: str | None = None
    status: WorkerStatus | None = None
    # The counters of the slot's processes that have ended.
    retired: WorkerCounters = field(default_factory=WorkerCounters)

    @property
    def label(self) -> str:
        return f"{self.start.group}[{self.start.instance}]"

    @property
    def alive(self) -> bool:
        return self.process is not None

    def read_statuses(self, lock: threading.Lock, until_eof: bool = False) -> None:
        """Take the worker's latest WorkerStatus from its pipe (all of them, to its end, when it exited)."""
        conn = self.status_conn
        assert conn is not None
        try:
            while conn.poll(0):
                item = conn.recv()
                if isinstance(item, WorkerStatus):
                    with lock:
                        self.status = item
                        self.status_at = time.monotonic()
        except (EOFError, OSError):
            until_eof = True
        except Exception as exc:  # an unpicklable report must not take the supervisor down
            log.debug("dropped an unreadable status from %s: %s", self.label, exc)
        if until_eof:
            conn.close()
            self.status_conn = None

    def status_age(self, now: float | None = None) -> float | None:
        """Seconds since the running process's latest status; None with no process or no status yet."""
        if self.process is None or self.status_at is None:
            return None
        return (time.monotonic() if now is None else now) - self.status_at

    def view(self) -> WorkerView:
        if self.outcome is not None:
            state = self.outcome
        elif self.restart_at is not None:
            state = "restarting"
        elif self.process is None and self.status is not None:
            # Reaped, its restart or end not decided yet: its last status no longer describes a process.
            state = "exited"
        elif self.status is not None:
            state = self.status.state
        else:
            state = "starting"
        pid = self.process.pid if self.process is not None else (self.status.pid if self.status else None)
        return WorkerView(
            group=self.start.group,
            instance=self.start.instance,
            pid=pid,
            state=state,
            restarts=self.restarts,
            last_exit=self.last_exit,
            status=self.status,
            counters=counters_of(self),
            status_age=self.status_age(),
        )


class RestartPolicy:
    """When a dead worker is started again: after an exponential backoff, unless it is crash-looping."""

    def __init__(self, backoff: tuple[float, float, float], crash_loop: tuple[int, float]):
        self.initial, self.factor, self.maximum = backoff
        self.restarts, self.window = crash_loop

    def delay(self, slot: Slot, now: float) -> float | None:
        """Seconds until the slot's next start (recorded as a restart), or None: give up (a crash loop)."""
        if slot.started_at and now - slot.started_at >= self.window:
            slot.consecutive_failures = 0  # it ran stably for a while: this is a fresh failure, not a loop
        while slot.restart_times and now - slot.restart_times[0] > self.window:
            slot.restart_times.popleft()
        if len(slot.restart_times) >= self.restarts:
            return None
        delay = min(self.initial * self.factor**slot.consecutive_failures, self.maximum)
        slot.consecutive_failures += 1
        slot.restart_times.append(now)
        return delay


def counters_of(slot: Slot) -> WorkerCounters:
    """What the slot's processes have done: the ended ones' counts plus the running one's latest."""
    if slot.process is not None and slot.status is not None:  # else already counted in `retired`
        return slot.retired + slot.status.totals()
    return slot.retired

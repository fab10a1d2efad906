"""The supervisor behind `kpipe run`: one spawned process per consumer-group instance, kept alive.

It starts every worker, waits on the process sentinels (no polling), and when a worker dies says why (its exit
code's meaning, or the signal that killed it) and decides what to do from the code (kpipe.runtime.protocol):

    0   stopped on request        not restarted
    78  HALT                      not restarted; a group whose workers all halted has failed
    any other code, or a signal   restarted after an exponential backoff, unless it is crash-looping

Shutdown: the first SIGTERM/SIGINT (or `stop()`) sends SIGTERM to every worker and waits up to
`shutdown_timeout` for them to commit and exit, then SIGKILLs the rest; a second signal (`stop(force=True)`)
SIGKILLs them at once. Ctrl-C also reaches the workers directly (same process group), so workers exiting on
their own during shutdown is normal.

Workers report WorkerStatus snapshots through one pipe each rather than a shared multiprocessing.Queue: a
worker SIGKILLed while holding a shared queue's write lock would block every other worker's reports, and their
exit. `snapshot()` gives the latest view of every worker and is safe to call from any thread, so `kpipe dev`
can run the supervisor in a background thread (`run(install_signals=False)`) and draw a table from it.

Parts: _Slot (one instance's process, its status pipe and its view), RestartPolicy (backoff, crash loop),
StopRequests (kpipe.runtime.stop_requests: signals and the self-pipe that wakes the loop), and the summary
lines (kpipe.runtime.summary); Supervisor starts, reaps and stops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
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
    WorkerSpec,
    WorkerStatus,
)
from kpipe.runtime.stop_requests import StopRequests
from kpipe.runtime.summary import GroupTotals, group_totals, summary_lines

log = logging.getLogger("kpipe.runtime.supervisor")

DEFAULT_TARGET = "kpipe.runtime.worker.process:worker_main"
WorkerTarget = Callable[[WorkerSpec, Any], int | None]

_EXIT_MEANINGS = {
    WORKER_EXIT_OK: "stopped",
    WORKER_EXIT_CRASH: "crashed",
    WORKER_EXIT_CLUSTER: "cluster unreachable",
    WORKER_EXIT_DEAD_LETTER: "dead letter not written",
    WORKER_EXIT_HUNG: "handler hung",
    WORKER_EXIT_HALT: "halted",
}
# How often shutdown says which workers it is still waiting for.
_PROGRESS_EVERY = 5.0
# The loop wakes at least this often, so `seconds_since_loop()` tells a health check it is alive.
HEARTBEAT_EVERY = 2.0


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
    # starting | running | stopping (as the worker reports) | restarting | stopped | halted | gave_up | killed
    state: str
    restarts: int
    last_exit: str | None  # describe_exit() of the previous process, if one ended
    status: WorkerStatus | None  # the latest snapshot the current (or last) process sent
    # Counters summed over every process this slot has run, so they never go backwards across restarts.
    counters: WorkerCounters = field(default_factory=WorkerCounters)


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
class _Slot:
    spec: WorkerSpec
    process: Any = None  # multiprocessing SpawnProcess while one is running
    status_conn: Connection | None = None
    started_at: float = 0.0
    restarts: int = 0
    consecutive_failures: int = 0
    restart_times: deque[float] = field(default_factory=deque)
    restart_at: float | None = None
    # Set when the slot is finished for good: stopped | halted | gave_up | killed | failed
    outcome: str | None = None
    killed_by_us: bool = False
    oom_kills_at_start: int | None = None
    last_exit: str | None = None
    status: WorkerStatus | None = None
    # The counters of the slot's processes that have ended.
    retired: WorkerCounters = field(default_factory=WorkerCounters)

    @property
    def label(self) -> str:
        return f"{self.spec.group}[{self.spec.instance}]"

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
        except (EOFError, OSError):
            until_eof = True
        except Exception as exc:  # an unpicklable report must not take the supervisor down
            log.debug("dropped an unreadable status from %s: %s", self.label, exc)
        if until_eof:
            conn.close()
            self.status_conn = None

    def view(self) -> WorkerView:
        if self.outcome is not None:
            state = self.outcome
        elif self.restart_at is not None:
            state = "restarting"
        elif self.status is not None:
            state = self.status.state
        else:
            state = "starting"
        pid = self.process.pid if self.process is not None else (self.status.pid if self.status else None)
        return WorkerView(
            group=self.spec.group,
            instance=self.spec.instance,
            pid=pid,
            state=state,
            restarts=self.restarts,
            last_exit=self.last_exit,
            status=self.status,
            counters=_counters(self),
        )


class RestartPolicy:
    """When a dead worker is started again: after an exponential backoff, unless it is crash-looping."""

    def __init__(self, backoff: tuple[float, float, float], crash_loop: tuple[int, float]):
        self.initial, self.factor, self.maximum = backoff
        self.restarts, self.window = crash_loop

    def delay(self, slot: _Slot, now: float) -> float | None:
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


def _log_if_group_failed(group: list[_Slot]) -> None:
    """Every worker of the group halted or gave up: the group has failed; say so once."""
    outcomes = {s.outcome for s in group}
    if not outcomes <= {"halted", "gave_up"}:
        return
    verb = " or ".join(v for o, v in (("halted", "halted"), ("gave_up", "crash-looped")) if o in outcomes)
    name = group[0].spec.group
    log.error(
        "consumer group '%s' failed: %s %s",
        name,
        "its only worker" if len(group) == 1 else f"all {len(group)} workers",
        verb,
        extra={"group": name},
    )


class Supervisor:
    """Run one process per WorkerSpec until stopped; see the module docstring for the rules."""

    def __init__(
        self,
        specs: Sequence[WorkerSpec],
        target: WorkerTarget | str | None = None,
        *,
        restart_backoff: tuple[float, float, float] = (1.0, 2.0, 30.0),
        crash_loop: tuple[int, float] = (5, 60.0),
        shutdown_timeout: float = 30.0,
        summary_every: float | None = None,
    ):
        """target: called in each worker process as target(spec, status_channel) and returning its exit code;
        a function importable by name (spawn pickles it by reference) or a "module:function" string, resolved
        in the worker. Default: kpipe.runtime.worker.process:worker_main (so the supervisor never imports confluent_kafka).
        restart_backoff: (initial delay, factor, maximum) in seconds.
        crash_loop: (restarts, window in seconds): a worker that dies again after that many restarts within
        the window is given up on.
        summary_every: log one line per group (handled, rate, dead-lettered) this often, and a final one.
        """
        self._slots = [_Slot(spec) for spec in specs]
        self._target = target if target is not None else DEFAULT_TARGET
        self._restarts = RestartPolicy(restart_backoff, crash_loop)
        self._shutdown_timeout = shutdown_timeout
        self._ctx = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._stops = StopRequests()
        self._shutdown_deadline: float | None = None
        self._killed_all = False
        # This run's directory for state the workers share (hung-handler counts); removed when the run ends.
        self._state_dir: str | None = None
        self._loop_at: float | None = None  # monotonic time of the loop's latest turn while run() runs
        self._summary_every = summary_every
        self._summary_at: float | None = None
        self._summary_last: tuple[float, dict[str, GroupTotals]] = (0.0, {})

    # -- public API ---------------------------------------------------------------------------------------

    def snapshot(self) -> dict[tuple[str, int], WorkerView]:
        """The latest view of every worker, keyed by (group, instance). Safe from any thread."""
        with self._lock:
            return {(s.spec.group, s.spec.instance): s.view() for s in self._slots}

    def seconds_since_loop(self) -> float | None:
        """How long ago the supervising loop last turned (it turns at least every HEARTBEAT_EVERY seconds);
        None before run() starts it and after it ends."""
        at = self._loop_at
        return None if at is None else time.monotonic() - at

    def totals(self) -> dict[str, GroupTotals]:
        """Per group: events handled, dead-lettered and skipped so far (restarted workers included)."""
        return group_totals(self.snapshot())

    def _log_summary(self, now: float) -> None:
        since, previous = self._summary_last
        totals = self.totals()
        for line in summary_lines(totals, previous, now - since):
            log.info(line)
        self._summary_last = (now, totals)
        assert self._summary_every is not None
        while self._summary_at is not None and self._summary_at <= now:
            self._summary_at += self._summary_every

    def stop(self, force: bool = False) -> None:
        """Ask run() to shut down gracefully; with force, or asked a second time, SIGKILL every worker."""
        self._stops.request("stop(force=True)" if force else "stop()", force=force)

    @property
    def stop_requests(self) -> tuple[str, ...]:
        """Why it was asked to stop, in order: a signal's name ("SIGINT", "SIGTERM") or "stop()"."""
        return tuple(self._stops.requests)

    def run(self, install_signals: bool = True) -> int:
        """Start the workers and supervise them until they have all ended. 0 if every worker stopped cleanly.

        A Supervisor runs once. install_signals: handle SIGTERM/SIGINT (possible only on the main thread;
        skipped elsewhere, where the caller stops it with stop()).
        """
        if self._stops.closed:
            raise RuntimeError("a Supervisor runs only once")
        previous = self._stops.install_signals() if install_signals else {}
        self._state_dir = tempfile.mkdtemp(prefix="kpipe-run-")
        try:
            started = self._loop_at = time.monotonic()
            self._summary_last = (started, {})
            if self._summary_every:
                self._summary_at = started + self._summary_every
            for slot in self._slots:
                self._start(slot)
            self._loop()
            if self._summary_every:
                for line in summary_lines(self.totals(), {}, time.monotonic() - started, final=True):
                    log.info(line)
        finally:
            self._loop_at = None
            self._stops.restore(previous)
            self._kill_all(reap=False)  # only does anything if the loop ended on an exception
            shutil.rmtree(self._state_dir, ignore_errors=True)
            self._stops.close()
        return self._exit_code()

    # -- the loop -------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        last_progress = time.monotonic()
        while True:
            self._loop_at = time.monotonic()
            self._handle_stop_requests()
            alive = [s for s in self._slots if s.alive]
            pending = [s for s in self._slots if s.restart_at is not None]
            if not alive and not pending:
                break
            now = time.monotonic()
            deadlines = [s.restart_at for s in pending] + [now + HEARTBEAT_EVERY]
            if self._shutdown_deadline is not None:
                # The first "still waiting" comes _PROGRESS_EVERY after the stop began, not at once.
                last_progress = max(last_progress, self._shutdown_deadline - self._shutdown_timeout)
                deadlines += [self._shutdown_deadline, last_progress + _PROGRESS_EVERY]
            elif self._summary_at is not None:
                deadlines.append(self._summary_at)
            timeout = max(0.0, min(deadlines) - now)

            waitables: list[Any] = [self._stops.fd]
            for s in alive:
                waitables.append(s.process.sentinel)
                if s.status_conn is not None:
                    waitables.append(s.status_conn)
            ready = set(wait(waitables, timeout))

            if self._stops.fd in ready:
                self._stops.drain()
                # Before reaping: Ctrl-C reaches the workers too, and their exits belong to the shutdown.
                self._handle_stop_requests()
            for s in alive:
                if s.status_conn is not None and s.status_conn in ready:
                    s.read_statuses(self._lock)
                if s.process is not None and s.process.sentinel in ready:
                    self._reap(s)

            now = time.monotonic()
            if self._summary_at is not None and now >= self._summary_at and self._shutdown_deadline is None:
                self._log_summary(now)
            if self._shutdown_deadline is None:
                for s in self._slots:
                    if s.restart_at is not None and s.restart_at <= now:
                        self._start(s)
            else:
                remaining = [s for s in self._slots if s.alive]
                if remaining and now >= self._shutdown_deadline:
                    log.warning(
                        "killing %s that did not stop within %g s: %s",
                        _plural(len(remaining), "worker"),
                        self._shutdown_timeout,
                        _names(remaining),
                    )
                    self._kill_all(reap=True)
                elif remaining and now - max(
                    last_progress, self._shutdown_deadline - self._shutdown_timeout
                ) >= (_PROGRESS_EVERY):
                    last_progress = now
                    log.info(
                        "still waiting for %s to stop (%.0f s left): %s",
                        _plural(len(remaining), "worker"),
                        self._shutdown_deadline - now,
                        _names(remaining),
                    )
        if self._stops.requests:
            log.info("all workers stopped")

    def _handle_stop_requests(self) -> None:
        requests = list(self._stops.requests)
        if not requests:
            return
        if self._shutdown_deadline is None:
            self._shutdown_deadline = time.monotonic() + self._shutdown_timeout
            for s in self._slots:
                if s.restart_at is not None:
                    with self._lock:
                        s.restart_at = None
                    self._finish(s, "stopped")  # it was waiting to be restarted: nothing left to stop
            alive = [s for s in self._slots if s.alive]
            if not self._stops.forced and alive:
                log.info(
                    "%s received: stopping %s (waiting up to %g s; a second signal kills them)",
                    requests[0],
                    _plural(len(alive), "worker"),
                    self._shutdown_timeout,
                )
                for s in alive:
                    self._signal(s, signal.SIGTERM)
        if (self._stops.forced or len(requests) > 1) and not self._killed_all:
            self._killed_all = True
            alive = [s for s in self._slots if s.alive]
            if alive:
                log.warning("%s received: killing %s now", requests[-1], _plural(len(alive), "worker"))
            self._kill_all(reap=True)

    # -- starting and reaping -------------------------------------------------------------------------------

    def _start(self, slot: _Slot) -> None:
        with self._lock:
            slot.restart_at = None
        reader, writer = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=_worker_entry,
            args=(self._target, self._spec_for(slot), StatusChannel(writer), os.getpid()),
            name=f"kpipe-worker-{slot.label}",
            daemon=False,
        )
        try:
            process.start()
        except OSError as exc:
            reader.close()
            writer.close()
            log.error("could not start %s: %s", slot.label, exc, extra=_extra(slot))
            self._after_failure(slot)
            return
        writer.close()  # the worker holds its own copy; ours would hide the worker's end of the pipe closing
        with self._lock:
            slot.process = process
            slot.status_conn = reader
            slot.started_at = time.monotonic()
            slot.killed_by_us = False
            slot.oom_kills_at_start = oom_kill_count()
            slot.status = None
        log.info("started %s (pid %s)", slot.label, process.pid, extra=_extra(slot))

    def _spec_for(self, slot: _Slot) -> WorkerSpec:
        return dataclasses.replace(
            slot.spec, state_dir=self._state_dir, shutdown_timeout=self._shutdown_timeout
        )

    def _reap(self, slot: _Slot) -> None:
        process = slot.process
        process.join()
        if slot.status_conn is not None:
            slot.read_statuses(self._lock, until_eof=True)
        code, pid = process.exitcode, process.pid
        oom_killed = None
        if code == -signal.SIGKILL and not slot.killed_by_us and slot.oom_kills_at_start is not None:
            now = oom_kill_count()
            oom_killed = None if now is None else now > slot.oom_kills_at_start
        error = slot.status.error if slot.status is not None else None
        reason = describe_exit(code, killed_by_us=slot.killed_by_us, oom_killed=oom_killed, error=error)
        with self._lock:
            slot.process = None
            slot.last_exit = reason
            if slot.status is not None:
                slot.retired = slot.retired + slot.status.totals()
        process.close()
        message = "%s (pid %s) %s"
        args = (slot.label, pid, reason)

        if self._shutdown_deadline is not None:
            # Killed by the stop signal itself: it had not installed its handlers yet, so had nothing to commit.
            clean = code in (WORKER_EXIT_OK, -signal.SIGTERM, -signal.SIGINT) and not slot.killed_by_us
            still = sum(1 for s in self._slots if s.alive)
            level = logging.INFO if clean else logging.WARNING
            log.log(level, message + "; %s still running", *args, still, extra=_extra(slot, code))
            self._finish(slot, "stopped" if clean else "killed" if code < 0 else "failed")
            return
        if code == WORKER_EXIT_OK:
            log.info(message + "; not restarting (it was asked to stop)", *args, extra=_extra(slot, code))
            self._finish(slot, "stopped")
        elif code == WORKER_EXIT_HALT:
            log.error(message + "; not restarting", *args, extra=_extra(slot, code))
            self._finish(slot, "halted")
        else:
            log.error(message, *args, extra=_extra(slot, code))
            self._after_failure(slot)

    def _after_failure(self, slot: _Slot) -> None:
        now = time.monotonic()
        delay = self._restarts.delay(slot, now)
        if delay is None:
            log.error(
                "giving up on %s: it died again after %s within %g s (crash loop)",
                slot.label,
                _plural(len(slot.restart_times), "restart"),
                self._restarts.window,
                extra=_extra(slot),
            )
            self._finish(slot, "gave_up")
            return
        with self._lock:
            slot.restarts += 1
            slot.restart_at = now + delay
        log.warning("restarting %s in %g s (restart %d)", slot.label, round(delay, 3), slot.restarts)

    def _finish(self, slot: _Slot, outcome: str) -> None:
        with self._lock:
            slot.outcome = outcome
        if outcome in ("halted", "gave_up"):
            _log_if_group_failed([s for s in self._slots if s.spec.group == slot.spec.group])

    # -- signals and stopping -------------------------------------------------------------------------------

    def _signal(self, slot: _Slot, signum: int) -> None:
        if slot.process is None:
            return
        if signum == signal.SIGKILL:
            slot.killed_by_us = True
        # ProcessLookupError: it exited on its own a moment ago; its sentinel will say so.
        with contextlib.suppress(ProcessLookupError):
            os.kill(slot.process.pid, signum)

    def _kill_all(self, *, reap: bool) -> None:
        alive = [s for s in self._slots if s.alive]
        for s in alive:
            self._signal(s, signal.SIGKILL)
        for s in alive:
            if reap:
                self._reap(s)
            else:
                s.process.join()
                with self._lock:
                    s.process = None
                    if s.status is not None:
                        s.retired = s.retired + s.status.totals()
                    s.outcome = s.outcome or "killed"

    # -- results --------------------------------------------------------------------------------------------

    def _exit_code(self) -> int:
        return 0 if all(s.outcome == "stopped" for s in self._slots) else 1


def _worker_entry(target: WorkerTarget | str, spec: WorkerSpec, channel: StatusChannel, parent: int) -> None:
    """A worker process's first code: tie its life to the supervisor's, run the target, exit with its code."""
    _exit_with_parent(parent)
    if isinstance(target, str):
        module_name, _, attr = target.partition(":")
        target = getattr(importlib.import_module(module_name), attr)
    try:
        code = target(spec, channel)
    except KeyboardInterrupt:
        # Ctrl-C reaches every process in the terminal's group; a worker that let it escape was asked to stop.
        code = WORKER_EXIT_OK
    # The work is done. Interpreter shutdown resets Python-handled signals to their default action, so a stop
    # signal arriving now (the supervisor's SIGTERM after a Ctrl-C) would turn a clean exit into a killed one.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)
    sys.exit(code if isinstance(code, int) else WORKER_EXIT_OK)


def _exit_with_parent(parent_pid: int) -> None:
    """On Linux, have the kernel SIGTERM this worker when the supervisor dies, even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the supervisor died before prctl took effect
        sys.exit(WORKER_EXIT_OK)


def _counters(slot: _Slot) -> WorkerCounters:
    """What the slot's processes have done: the ended ones' counts plus the running one's latest."""
    if slot.process is not None and slot.status is not None:  # else already counted in `retired`
        return slot.retired + slot.status.totals()
    return slot.retired


def _extra(slot: _Slot, exitcode: int | None = None) -> dict[str, Any]:
    extra: dict[str, Any] = {"group": slot.spec.group, "instance": slot.spec.instance}
    if exitcode is not None:
        extra["exitcode"] = exitcode
    return extra


def _names(slots: Sequence[_Slot]) -> str:
    def name(s: _Slot) -> str:
        text = f"{s.label} (pid {s.process.pid})"
        if s.status is not None and s.status.busy:
            text += f", its handler stuck on {s.status.busy}"
        return text

    return ", ".join(name(s) for s in slots if s.process is not None)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"

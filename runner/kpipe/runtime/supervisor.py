"""The supervisor behind `kpipe run`: one process per consumer-group instance, kept alive.

Workers are forked from a fork server that has imported the runtime once, or spawned as fresh interpreters
(kpipe.runtime.start_method; KPIPE_WORKER_START); the rules below are the same for both.

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

Parts: Slot (one instance's process, its status pipe and its view), RestartPolicy (backoff, crash loop),
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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import reduction
from multiprocessing.connection import wait
from typing import Any

from kpipe.runtime.protocol import (
    WORKER_EXIT_HALT,
    WORKER_EXIT_OK,
    WorkerStart,
)
from kpipe.runtime.slots import (
    RestartPolicy,
    Slot,
    StatusChannel,
    WorkerView,
    describe_exit,
    oom_kill_count,
)
from kpipe.runtime.start_method import worker_context
from kpipe.runtime.stop_requests import StopRequests
from kpipe.runtime.summary import GroupTotals, group_totals, summary_lines

log = logging.getLogger("kpipe.runtime.supervisor")

DEFAULT_TARGET = "kpipe.runtime.worker.process:worker_main"
WorkerTarget = Callable[[WorkerStart, Any], int | None]

# How many workers run() starts at once: each start waits for its new process's pid, so overlapping a few keeps
# the fork server forking while the supervisor waits (see _start_all).
STARTING_AT_ONCE = 8
# How often shutdown says which workers it is still waiting for.
_PROGRESS_EVERY = 5.0
# The loop wakes at least this often, so `seconds_since_loop()` tells a health check it is alive.
HEARTBEAT_EVERY = 2.0
# A worker whose status reports stopped this long is killed and restarted (/readyz says so after STALE_AFTER).
FROZEN_AFTER = 60.0


def _log_if_group_failed(group: list[Slot]) -> None:
    """Every worker of the group halted or gave up: the group has failed; say so once."""
    outcomes = {s.outcome for s in group}
    if not outcomes <= {"halted", "gave_up"}:
        return
    verb = " or ".join(v for o, v in (("halted", "halted"), ("gave_up", "crash-looped")) if o in outcomes)
    name = group[0].start.group
    log.error(
        "consumer group '%s' failed: %s %s",
        name,
        "its only worker" if len(group) == 1 else f"all {len(group)} workers",
        verb,
        extra={"group": name},
    )


class Supervisor:
    """Run one process per WorkerStart until stopped; see the module docstring for the rules."""

    def __init__(
        self,
        starts: Sequence[WorkerStart],
        target: WorkerTarget | str | None = None,
        *,
        restart_backoff: tuple[float, float, float] = (1.0, 2.0, 30.0),
        crash_loop: tuple[int, float] = (5, 60.0),
        shutdown_timeout: float = 30.0,
        summary_every: float | None = None,
        frozen_after: float = FROZEN_AFTER,
        start_method: str | None = None,
    ):
        """target: called in each worker process as target(start, status_channel) and returning its exit code;
        a function importable by name (pickled by reference) or a "module:function" string, resolved
        in the worker. Default: kpipe.runtime.worker.process:worker_main (so the supervisor never imports confluent_kafka).
        restart_backoff: (initial delay, factor, maximum) in seconds.
        crash_loop: (restarts, window in seconds): a worker that dies again after that many restarts within
        the window is given up on.
        summary_every: log one line per group (handled, rate, dead-lettered) this often, and a final one.
        frozen_after: a worker that has sent no status for this long is killed and started again (it is
        reported stale, not ready, after STALE_AFTER already).
        start_method: "forkserver" or "spawn" (default: $KPIPE_WORKER_START, else forkserver where the
        platform has it; kpipe.runtime.start_method).
        """
        self._frozen_after = frozen_after
        self._slots = [Slot(start) for start in starts]
        self._target = target if target is not None else DEFAULT_TARGET
        self._restarts = RestartPolicy(restart_backoff, crash_loop)
        self._shutdown_timeout = shutdown_timeout
        self._ctx = worker_context(start_method)
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
            return {(s.start.group, s.start.instance): s.view() for s in self._slots}

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
            self._start_all()
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
                self._kill_frozen(now)
                for s in self._slots:
                    if s.restart_at is not None and s.restart_at <= now:
                        self._start(s)
            else:
                last_progress = self._while_stopping(now, last_progress)
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

    def _start_all(self) -> None:
        """Start every slot, up to STARTING_AT_ONCE at a time. A start sends the fork server its request and
        waits for the new process's pid (a spawn waits for the interpreter's fork and exec); on a busy machine
        each wait is a trip through the scheduler, and one start after the other left the fork server idle
        between them (50 one-instance groups: ~6 s of starting on an idle 2-core machine). Each start builds
        its own pipe and process, and the slot's fields are set under the lock, as snapshot() reads them. A
        stop asked for meanwhile (signals still reach the main thread, waiting here) leaves the slots not
        started yet unstarted, and stopped."""
        if len(self._slots) <= 1:
            for slot in self._slots:
                self._start_unless_stopping(slot)
            return
        with ThreadPoolExecutor(min(STARTING_AT_ONCE, len(self._slots)), "kpipe-start") as pool:
            for _ in pool.map(self._start_unless_stopping, self._slots):
                pass

    def _start_unless_stopping(self, slot: Slot) -> None:
        if self._stops.requests:
            self._finish(slot, "stopped")  # never started: nothing to stop
            return
        self._start(slot)

    def _start(self, slot: Slot) -> None:
        with self._lock:
            slot.restart_at = None
            # The previous process's last status (its counts are retired) must not describe this start.
            slot.status = None
            slot.status_at = None
        reader, writer = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=_worker_entry,
            args=(
                self._target,
                self._start_for(slot),
                StatusChannel(writer),
                os.getpid(),
                dict(os.environ),
                _OutputFd(1),
                _OutputFd(2),
            ),
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
        log.info("started %s (pid %s)", slot.label, process.pid, extra=_extra(slot))

    def _while_stopping(self, now: float, last_progress: float) -> float:
        """Past the shutdown deadline, SIGKILL the workers still running; before it, say every _PROGRESS_EVERY
        which ones it waits for. Returns when that was last said."""
        deadline = self._shutdown_deadline
        assert deadline is not None
        remaining = [s for s in self._slots if s.alive]
        if remaining and now >= deadline:
            log.warning(
                "killing %s that did not stop within %g s: %s",
                _plural(len(remaining), "worker"), self._shutdown_timeout, _names(remaining),
            )  # fmt: skip
            self._kill_all(reap=True)
        elif remaining and now - max(last_progress, deadline - self._shutdown_timeout) >= _PROGRESS_EVERY:
            log.info(
                "still waiting for %s to stop (%.0f s left): %s",
                _plural(len(remaining), "worker"), deadline - now, _names(remaining),
            )  # fmt: skip
            return now
        return last_progress

    def _kill_frozen(self, now: float) -> None:
        """SIGKILL a worker whose status reports stopped for `frozen_after` (a frozen process: SIGSTOP, a
        handler holding the GIL in C code); its exit is reaped as any other, and it is started again."""
        for slot, age in frozen(self._slots, now, self._frozen_after):
            log.error("%s sent no status for %.0f s: frozen; killing it for a restart", _names([slot]), age,
                      extra=_extra(slot))  # fmt: skip
            self._signal(slot, signal.SIGKILL)

    def _start_for(self, slot: Slot) -> WorkerStart:
        return dataclasses.replace(
            slot.start, state_dir=self._state_dir, shutdown_timeout=self._shutdown_timeout
        )

    def _reap(self, slot: Slot) -> None:
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

    def _after_failure(self, slot: Slot) -> None:
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

    def _finish(self, slot: Slot, outcome: str) -> None:
        with self._lock:
            slot.outcome = outcome
        if outcome in ("halted", "gave_up"):
            _log_if_group_failed([s for s in self._slots if s.start.group == slot.start.group])

    # -- signals and stopping -------------------------------------------------------------------------------

    def _signal(self, slot: Slot, signum: int) -> None:
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


class _OutputFd:
    """The supervisor's stdout or stderr as it is when a worker starts, handed to the worker (a forked worker
    would otherwise write wherever the fork server's were when it started)."""

    def __init__(self, fd: int):
        self.fd = fd

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled while the worker process is being started: multiprocessing sends the descriptor along.
        return (_adopt_output, (reduction.DupFd(self.fd), self.fd))


def _adopt_output(received: Any, target: int) -> int:
    fd = received.detach()
    if fd != target:
        os.dup2(fd, target)
        os.close(fd)
    return target


# The signals that stop a worker (SIGHUP: its terminal closed).
_STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


def _worker_entry(
    target: WorkerTarget | str,
    start: WorkerStart,
    channel: StatusChannel,
    parent: int,
    environ: dict[str, str],
    *_outputs: int,
) -> None:
    """A worker process's first code: tie its life to the supervisor's, take the supervisor's environment as it
    is now (its stdout and stderr were taken while unpickling the arguments), run the target, exit with its
    code."""
    if os.getppid() != parent:
        # Forked by the fork server, which ignores these (kpipe.runtime.preloaded): a worker stops on them.
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    _exit_with_parent(parent)
    # A forked worker inherits the fork server's environment, which is the supervisor's of when the server
    # started; a spawned one, the supervisor's at its start. Both get the latter ($KPIPE_LOG_LEVEL included).
    if environ != os.environ:
        os.environ.clear()
        os.environ.update(environ)
    if isinstance(target, str):
        module_name, _, attr = target.partition(":")
        target = getattr(importlib.import_module(module_name), attr)
    try:
        # A forked worker starts with the stop signals blocked (kpipe.runtime.preloaded); one sent since the
        # fork is delivered here: SIGINT as a KeyboardInterrupt (stopped), SIGTERM by its default action, which
        # the supervisor counts as a clean stop of a worker that had nothing to commit yet.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        code = target(start, channel)
    except KeyboardInterrupt:
        # Ctrl-C reaches every process in the terminal's group; a worker that let it escape was asked to stop.
        code = WORKER_EXIT_OK
    # The work is done. Interpreter shutdown resets Python-handled signals to their default action, so a stop
    # signal arriving now (the supervisor's SIGTERM after a Ctrl-C) would turn a clean exit into a killed one.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)
    sys.exit(code if isinstance(code, int) else WORKER_EXIT_OK)


def _exit_with_parent(supervisor_pid: int) -> None:
    """SIGTERM this worker when the supervisor dies, even by SIGKILL.

    A thread waits for the supervisor's end of the pipe multiprocessing keeps open for this (the parent
    sentinel) to close: a forked worker is the fork server's child, and the fork server outlives the supervisor
    while workers hold its pipe. A forked worker also asks the kernel for the signal when its parent dies
    (Linux's PR_SET_PDEATHSIG), so that one whose fork server dies stops: the supervisor then sees the worker as
    ended, and must not find it still consuming beside its replacement. A spawned worker must not: that signal
    comes when the *thread* that created the process ends, and the supervisor starts workers from a pool of
    threads that ends once they are started (the fork server has one thread, which lives as long as it does).
    """
    forked = os.getppid() != supervisor_pid
    if forked and sys.platform.startswith("linux"):
        try:
            import ctypes

            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    parent = multiprocessing.parent_process()
    if parent is None or not parent.is_alive():  # the supervisor died before this worker got here
        sys.exit(WORKER_EXIT_OK)
    watch = threading.Thread(
        target=_stop_when_gone, args=(parent.sentinel,), name="kpipe-supervisor-watch", daemon=True
    )
    # The thread starts with these blocked, so the kernel delivers them to the main thread: one delivered to
    # the watcher would leave a main thread blocked in a wait unaware of it until the wait ends.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        watch.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _stop_when_gone(sentinel: int) -> None:
    wait([sentinel])
    os.kill(os.getpid(), signal.SIGTERM)


def frozen(slots: Sequence[Slot], now: float, limit: float) -> list[tuple[Slot, float]]:
    """The running slots whose latest status is older than `limit` seconds (not already being killed)."""
    out = []
    for slot in slots:
        age = slot.status_age(now)
        if age is not None and age >= limit and not slot.killed_by_us:
            out.append((slot, age))
    return out


def _extra(slot: Slot, exitcode: int | None = None) -> dict[str, Any]:
    extra: dict[str, Any] = {"group": slot.start.group, "instance": slot.start.instance}
    if exitcode is not None:
        extra["exitcode"] = exitcode
    return extra


def _names(slots: Sequence[Slot]) -> str:
    def name(s: Slot) -> str:
        text = f"{s.label} (pid {s.process.pid})"
        if s.status is not None and s.status.busy:
            text += f", its handler stuck on {s.status.busy}"
        return text

    return ", ".join(name(s) for s in slots if s.process is not None)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"

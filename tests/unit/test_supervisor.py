"""The supervisor against scripted worker functions (no broker): restarts, HALT, crash loops, signals.

The worker functions are module-level so spawn can pickle them by reference. Each appends "pid time" to
`<scratch>/<group>-<instance>.starts` once its signal handlers are in place, so a test knows how often it was
started and when it is safe to signal it. Tests that signal the supervisor itself run it in a subprocess.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import process_exists, wait_for
from kpipe.observe.health import readiness
from kpipe.runtime.protocol import WORKER_EXIT_CLUSTER, WORKER_EXIT_HALT, WorkerStatus
from kpipe.runtime.supervisor import STARTING_AT_ONCE, Supervisor, describe_exit, oom_kill_count

FAST_BACKOFF = (0.05, 2.0, 0.4)


# -- scripted workers (run in spawned processes) ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ScriptedStart:
    """What the supervisor needs of a WorkerStart (group, instance, state_dir, shutdown_timeout), plus the
    scripted worker's scratch directory and behaviour."""

    group: str
    instance: int
    scratch: str
    variables: tuple[tuple[str, str], ...] = ()
    state_dir: str | None = None
    shutdown_timeout: float = 30.0


def scripted_worker(spec: ScriptedStart, status_queue: object) -> int:
    """Behave as spec.variables say: run until SIGTERM/SIGINT, exit with a code, crash, fail first, ignore SIGTERM."""
    opts = dict(spec.variables)
    behaviour = opts.get("behaviour", "run")
    stop = threading.Event()
    scratch = Path(spec.scratch)
    if behaviour == "ignore_term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    else:

        def on_stop(signum: int, frame: object) -> None:
            # One line per signal received, so a test can tell a stray stop from the one it asked for.
            with (scratch / f"{spec.group}-{spec.instance}.{signal.Signals(signum).name}").open("a") as f:
                f.write(f"{os.getpid()}\n")
            stop.set()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
    starts = scratch / f"{spec.group}-{spec.instance}.starts"
    with starts.open("a") as f:
        f.write(f"{os.getpid()} {time.time()}\n")
    started = len(starts.read_text().splitlines())
    status_queue.put(
        WorkerStatus(
            spec.group, spec.instance, os.getpid(), handled=started, state="running", busy=opts.get("busy")
        )
    )

    if behaviour == "freeze" and started == 1:
        os.kill(os.getpid(), signal.SIGSTOP)  # as `kill -STOP` would: no more status reports
    if behaviour == "exit":
        return int(opts["code"])
    if behaviour == "crash":
        raise RuntimeError("scripted crash")
    if behaviour == "fail_first" and started <= int(opts["failures"]):
        return int(opts.get("code", "1"))
    stop.wait(120)
    return 0


# -- helpers ------------------------------------------------------------------------------------------------


def specs(scratch: Path, group: str, instances: int, **behaviour: str) -> list[Any]:
    return [
        ScriptedStart(group=group, instance=i, scratch=str(scratch), variables=tuple(behaviour.items()))
        for i in range(instances)
    ]


def starts(scratch: Path, group: str, instance: int = 0) -> list[tuple[int, float]]:
    path = scratch / f"{group}-{instance}.starts"
    if not path.exists():
        return []
    return [(int(pid), float(at)) for pid, at in (line.split() for line in path.read_text().splitlines())]


class Running:
    """A supervisor running in a background thread, as `kpipe dev` runs it."""

    def __init__(self, supervisor: Supervisor):
        self.supervisor = supervisor
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.exit_code = self.supervisor.run(install_signals=False)

    def wait(self, timeout: float = 20.0) -> int:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "supervisor did not finish"
        assert self.exit_code is not None
        return self.exit_code


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="kpipe.runtime.supervisor")
    return caplog


def messages(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


# -- in-process tests ---------------------------------------------------------------------------------------


def test_describe_exit() -> None:
    assert describe_exit(0) == "exited with code 0 (stopped)"
    assert describe_exit(3) == "exited with code 3 (cluster unreachable)"
    assert describe_exit(WORKER_EXIT_HALT) == "exited with code 78 (halted)"
    assert describe_exit(7) == "exited with code 7"
    assert describe_exit(-9, killed_by_us=True) == "was killed by SIGKILL"
    assert describe_exit(-15) == "was killed by SIGTERM"
    # A SIGKILL kpipe did not send: the cgroup's OOM-kill count tells the OOM killer from a kill -9.
    assert describe_exit(-9, oom_killed=True) == (
        "was killed by SIGKILL: out of memory (the kernel's OOM killer killed it)"
    )
    assert describe_exit(-9, oom_killed=False) == (
        "was killed by SIGKILL from outside kpipe (no out-of-memory kill recorded)"
    )
    assert describe_exit(-9) == (
        "was killed by SIGKILL from outside kpipe (out of memory, or kill -9: the kernel log tells which)"
    )
    # The worker's own last words name the cause better than its exit code.
    assert describe_exit(4, error="dead-letter topic 'g.dlq' refused it") == (
        "exited with code 4 (dead letter not written): dead-letter topic 'g.dlq' refused it"
    )
    assert describe_exit(5) == "exited with code 5 (handler hung)"
    assert describe_exit(0, error="ignored when it stopped on request") == "exited with code 0 (stopped)"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {
                "proc/self/cgroup": "0::/kube/pod1\n",
                "sys/fs/cgroup/kube/pod1/memory.events": "oom 2\noom_kill 2\n",
            },
            2,
        ),
        ({"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/memory.events": "low 0\noom_kill 7\n"}, 7),
        (
            {
                "proc/self/cgroup": "4:memory:/docker/abc\n0::/\n",
                "sys/fs/cgroup/memory/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
            },
            1,
        ),
        ({"proc/self/cgroup": "0::/\n"}, None),
        ({}, None),
    ],
)
def test_oom_kill_count_reads_the_cgroup(tmp_path: Path, files: dict[str, str], expected: int | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert oom_kill_count(tmp_path) == expected


@pytest.mark.parametrize(("code", "meaning"), [(1, "crashed"), (WORKER_EXIT_CLUSTER, "cluster unreachable")])
def test_crashed_worker_is_restarted_with_exponential_backoff(
    tmp_path: Path, logs: pytest.LogCaptureFixture, code: int, meaning: str
) -> None:
    # A worker that gave up on an unreachable cluster is restarted like a crashed one: after a growing delay.
    workers = specs(tmp_path, "g", 1, behaviour="fail_first", failures="2", code=str(code))
    sup = Supervisor(workers, scripted_worker, restart_backoff=(0.2, 2.0, 5.0))
    running = Running(sup)
    wait_for(lambda: len(starts(tmp_path, "g")) == 3, timeout=15, message=lambda: messages(logs))
    wait_for(lambda: sup.snapshot()[("g", 0)].state == "running", timeout=10)
    view = sup.snapshot()[("g", 0)]
    assert view.restarts == 2
    assert view.last_exit == f"exited with code {code} ({meaning})"
    assert view.status is not None and view.status.handled == 3
    sup.stop()
    assert running.wait() == 0  # recovered, then stopped on request

    times = [at for _, at in starts(tmp_path, "g")]
    assert times[1] - times[0] >= 0.2
    assert times[2] - times[1] >= 0.4
    text = messages(logs)
    assert "restarting g[0] in 0.2 s (restart 1)" in text
    assert "restarting g[0] in 0.4 s (restart 2)" in text
    assert f"g[0] (pid {starts(tmp_path, 'g')[0][0]}) exited with code {code} ({meaning})" in text


class SnapshotWhenLogged(logging.Handler):
    """Takes the supervisor's snapshot while it logs a line containing `text`: what /readyz or /metrics
    would see at that moment, from their own thread, were the log output slow."""

    def __init__(self, supervisor: Supervisor, text: str):
        super().__init__()
        self.supervisor, self.text = supervisor, text
        self.views: list[Any] = []

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.views.append(self.supervisor.snapshot())


def run_until_restarted(sup: Supervisor, tmp_path: Path, group: str) -> None:
    """Run `sup` until its one worker of `group` has started a second time, then stop it cleanly."""
    running = Running(sup)
    wait_for(lambda: len(starts(tmp_path, group)) == 2, timeout=30)
    sup.stop()
    assert running.wait(30) == 0


def test_a_dead_worker_is_never_shown_running_while_its_restart_is_decided(tmp_path: Path) -> None:
    # The supervisor clears a dead worker's process, logs why it died, then schedules its restart: a snapshot
    # taken in between showed the dead process's last status ("running", assigned), so /readyz said ready and
    # the up-gauge counted it.
    workers = specs(tmp_path, "dies", 1, behaviour="fail_first", failures="1", code="1")
    sup = Supervisor(workers, scripted_worker, restart_backoff=FAST_BACKOFF)
    seen = SnapshotWhenLogged(sup, "exited with code 1")
    logger = logging.getLogger("kpipe.runtime.supervisor")
    logger.addHandler(seen)
    try:
        run_until_restarted(sup, tmp_path, "dies")
    finally:
        logger.removeHandler(seen)
    [views] = seen.views
    view = views[("dies", 0)]
    assert view.status is not None and view.status.state == "running"  # its last report, kept
    assert view.state != "running"
    assert not readiness(views, {"dies": 0})[0]  # no partitions expected: only running and progress count


# While set, called by SnapshotWhenStarted's pickling: in the supervisor, in the middle of starting a worker.
WHILE_STARTING: list[Any] = []


@dataclasses.dataclass(frozen=True)
class SnapshotWhenStarted(ScriptedStart):
    def __reduce__(self) -> tuple[Any, ...]:
        for call in WHILE_STARTING:
            call()
        return (SnapshotWhenStarted, tuple(getattr(self, f.name) for f in dataclasses.fields(self)))


def test_a_restarting_worker_is_not_shown_with_its_previous_process_status(tmp_path: Path) -> None:
    # While the new process is being started, the slot showed the dead one's last status ("running").
    vars_ = (("behaviour", "fail_first"), ("failures", "1"), ("code", "1"))
    sup = Supervisor(
        [SnapshotWhenStarted(group="again", instance=0, scratch=str(tmp_path), variables=vars_)],
        scripted_worker, restart_backoff=FAST_BACKOFF,
    )  # fmt: skip
    views: list[Any] = []
    WHILE_STARTING.append(lambda: views.append(sup.snapshot()[("again", 0)]))
    try:
        run_until_restarted(sup, tmp_path, "again")
    finally:
        WHILE_STARTING.clear()
    first, restart = views
    assert first.state == restart.state == "starting"
    assert restart.status is None and restart.last_exit == "exited with code 1 (crashed)"


def test_halted_workers_are_not_restarted_and_the_group_fails(
    tmp_path: Path, logs: pytest.LogCaptureFixture
) -> None:
    sup = Supervisor(
        specs(tmp_path, "halts", 2, behaviour="exit", code=str(WORKER_EXIT_HALT))
        + specs(tmp_path, "fine", 1, behaviour="run"),
        scripted_worker,
        restart_backoff=FAST_BACKOFF,
    )
    running = Running(sup)
    wait_for(lambda: all(sup.snapshot()[("halts", i)].state == "halted" for i in (0, 1)), timeout=15)
    wait_for(lambda: sup.snapshot()[("fine", 0)].state == "running", timeout=10)
    sup.stop()
    assert running.wait() == 1
    assert len(starts(tmp_path, "halts", 0)) == len(starts(tmp_path, "halts", 1)) == 1
    text = messages(logs)
    assert "exited with code 78 (halted); not restarting" in text
    assert "consumer group 'halts' failed: all 2 workers halted" in text
    assert "consumer group 'fine' failed" not in text


def test_crash_loop_gives_up(tmp_path: Path, logs: pytest.LogCaptureFixture) -> None:
    workers = specs(tmp_path, "loop", 1, behaviour="crash")
    sup = Supervisor(workers, scripted_worker, restart_backoff=FAST_BACKOFF, crash_loop=(3, 60.0))
    assert Running(sup).wait(30) == 1
    assert len(starts(tmp_path, "loop")) == 4  # the first start and 3 restarts
    assert sup.snapshot()[("loop", 0)].state == "gave_up"
    text = messages(logs)
    assert "giving up on loop[0]: it died again after 3 restarts within 60 s (crash loop)" in text
    assert "consumer group 'loop' failed: its only worker crash-looped" in text


def test_worker_exiting_zero_is_not_restarted(tmp_path: Path, logs: pytest.LogCaptureFixture) -> None:
    sup = Supervisor(specs(tmp_path, "done", 1, behaviour="exit", code="0"), scripted_worker)
    assert Running(sup).wait() == 0
    assert len(starts(tmp_path, "done")) == 1
    assert "not restarting (it was asked to stop)" in messages(logs)


def test_worker_killed_by_a_signal_is_named_and_restarted(
    tmp_path: Path, logs: pytest.LogCaptureFixture
) -> None:
    sup = Supervisor(specs(tmp_path, "oom", 1), scripted_worker, restart_backoff=FAST_BACKOFF)
    running = Running(sup)
    wait_for(lambda: starts(tmp_path, "oom"), timeout=10)
    first_pid = starts(tmp_path, "oom")[0][0]
    os.kill(first_pid, signal.SIGKILL)
    wait_for(lambda: len(starts(tmp_path, "oom")) == 2, timeout=10, message=lambda: messages(logs))
    sup.stop()
    assert running.wait() == 0
    # Killed from outside, not by the OOM killer (this machine's cgroup counts OOM kills, or says nothing).
    expected = (
        "no out-of-memory kill recorded" if oom_kill_count() is not None else "out of memory, or kill -9"
    )
    assert f"oom[0] (pid {first_pid}) was killed by SIGKILL from outside kpipe ({expected}" in messages(logs)
    assert sup.snapshot()[("oom", 0)].last_exit == "exited with code 0 (stopped)"


def test_snapshot_holds_the_latest_status_per_worker(tmp_path: Path) -> None:
    sup = Supervisor(specs(tmp_path, "a", 2) + specs(tmp_path, "b", 1), scripted_worker)
    before = sup.snapshot()
    assert set(before) == {("a", 0), ("a", 1), ("b", 0)}
    assert all(v.state == "starting" and v.pid is None for v in before.values())
    running = Running(sup)
    wait_for(lambda: all(v.status is not None for v in sup.snapshot().values()), timeout=15)
    views = sup.snapshot()
    for (group, instance), view in views.items():
        assert view.status is not None
        assert (view.status.group, view.status.instance) == (group, instance)
        assert view.pid == view.status.pid == starts(tmp_path, group, instance)[0][0]
        assert view.state == "running"
    sup.stop()
    assert running.wait() == 0
    assert all(v.state == "stopped" for v in sup.snapshot().values())


def test_workers_started_at_once_each_run_in_their_own_process_with_their_own_status_pipe(
    tmp_path: Path,
) -> None:
    # More workers than run() starts at once, so that starts overlap and queue: every slot must end up with its
    # own process, and the statuses read from a slot's pipe must come from that slot's worker only.
    workers = STARTING_AT_ONCE * 2 + 1
    sup = Supervisor(
        specs(tmp_path, "a", workers // 2) + specs(tmp_path, "b", workers - workers // 2), scripted_worker
    )
    running = Running(sup)
    wait_for(lambda: all(v.status is not None for v in sup.snapshot().values()), timeout=60)
    views = sup.snapshot()
    assert len(views) == workers
    for (group, instance), view in views.items():
        assert view.status is not None
        assert (view.status.group, view.status.instance) == (group, instance)
        assert view.pid == view.status.pid == starts(tmp_path, group, instance)[0][0]
    assert len({v.pid for v in views.values()}) == workers
    sup.stop()
    assert running.wait(60) == 0
    assert all(len(starts(tmp_path, g, i)) == 1 for g, i in views)  # nothing started twice
    assert all(v.state == "stopped" for v in sup.snapshot().values())


@dataclasses.dataclass(frozen=True)
class LastStartedLast(ScriptedStart):
    """A ScriptedStart whose last instance is handed to its process (pickled, in the supervisor) only once every
    other instance runs its code: the other workers' starting threads are still alive when they get there."""

    instances: int = 1

    def __reduce__(self) -> tuple[Any, ...]:
        if self.instance == self.instances - 1:
            others = range(self.instances - 1)
            wait_for(lambda: all(starts(Path(self.scratch), self.group, i) for i in others), timeout=60)
        return (LastStartedLast, tuple(getattr(self, f.name) for f in dataclasses.fields(self)))


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_workers_outlive_the_threads_that_started_them(
    tmp_path: Path, logs: pytest.LogCaptureFixture, method: str
) -> None:
    # run() starts workers from a pool of threads that ends once they are all started. Linux's parent-death
    # signal is tied to the thread that created a process, not to the process: a worker tied to it that way
    # got SIGTERM when its starting thread ended, and stopped as if asked to, with nobody asking.
    count = 3
    workers = [
        LastStartedLast(group="pool", instance=i, scratch=str(tmp_path), instances=count)
        for i in range(count)
    ]
    sup = Supervisor(workers, scripted_worker, start_method=method)
    running = Running(sup)
    wait_for(
        lambda: all(starts(tmp_path, "pool", i) for i in range(count)),
        timeout=60,
        message=lambda: messages(logs),
    )
    wait_for(
        lambda: all(v.state == "running" for v in sup.snapshot().values()), timeout=30,
        message=lambda: messages(logs),
    )  # fmt: skip
    sup.stop()
    assert running.wait(60) == 0
    assert "asked to stop" not in messages(logs)
    for i in range(count):
        [(pid, _)] = starts(tmp_path, "pool", i)
        assert (tmp_path / f"pool-{i}.SIGTERM").read_text().split() == [str(pid)]  # the stop asked for, once


def test_a_stop_before_the_starts_starts_nothing(tmp_path: Path, logs: pytest.LogCaptureFixture) -> None:
    sup = Supervisor(specs(tmp_path, "never", 3), scripted_worker)
    sup.stop()
    assert Running(sup).wait() == 0
    assert not any(starts(tmp_path, "never", i) for i in range(3))
    assert all(v.state == "stopped" and v.pid is None for v in sup.snapshot().values())
    assert "started " not in messages(logs)


def test_a_worker_whose_status_reports_stop_is_killed_and_started_again(
    tmp_path: Path, logs: pytest.LogCaptureFixture
) -> None:
    sup = Supervisor(
        specs(tmp_path, "frozen", 1, behaviour="freeze"), scripted_worker, restart_backoff=FAST_BACKOFF,
        frozen_after=1.0,
    )  # fmt: skip
    running = Running(sup)
    try:
        wait_for(lambda: len(starts(tmp_path, "frozen")) == 2, timeout=30, message=lambda: messages(logs))
        assert "frozen[0] (pid " in messages(logs) and "frozen; killing it for a restart" in messages(logs)
        wait_for(lambda: sup.snapshot()[("frozen", 0)].restarts == 1, timeout=10)
    finally:
        sup.stop()
    assert running.wait(30) == 0


def test_stop_twice_kills_at_once(tmp_path: Path, logs: pytest.LogCaptureFixture) -> None:
    sup = Supervisor(
        specs(tmp_path, "deaf", 1, behaviour="ignore_term"), scripted_worker, shutdown_timeout=60
    )
    running = Running(sup)
    wait_for(lambda: starts(tmp_path, "deaf"), timeout=10)
    sup.stop()
    wait_for(lambda: "stopping 1 worker" in messages(logs), timeout=5)
    sup.stop()
    assert running.wait(10) == 1
    assert sup.snapshot()[("deaf", 0)].state == "killed"
    assert "stop() received: killing 1 worker now" in messages(logs)


# -- the supervisor as a process, signalled like `kpipe run` ------------------------------------------------

DRIVER = """
import json, sys
config = json.loads(sys.argv[1])
sys.path[:0] = config["sys_path"]
from test_supervisor import scripted_worker, specs
from pathlib import Path
from kpipe.logs import configure_logging
from kpipe.runtime.supervisor import Supervisor
configure_logging("text", "info")
workers = []
for group, instances, behaviour in config["groups"]:
    workers += specs(Path(config["scratch"]), group, instances, **behaviour)
sys.exit(Supervisor(workers, scripted_worker, shutdown_timeout=config["timeout"]).run())
"""


class SupervisorProcess:
    def __init__(
        self,
        scratch: Path,
        groups: list[tuple[str, int, dict[str, str]]],
        timeout: float = 10.0,
        environ: dict[str, str] | None = None,
    ):
        self.scratch = scratch
        self.log_path = scratch / "supervisor.log"
        config = {
            "sys_path": [str(Path(__file__).parent), str(Path(__file__).parent.parent)],
            "scratch": str(scratch),
            "groups": groups,
            "timeout": timeout,
        }
        with self.log_path.open("w") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", DRIVER, json.dumps(config)],
                stderr=log_file,
                env={**os.environ, **(environ or {})},
                start_new_session=True,  # its own process group, like a terminal job
            )
        self.workers = [(g, i) for g, n, _ in groups for i in range(n)]

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_ready(self) -> list[int]:
        wait_for(
            lambda: all(starts(self.scratch, g, i) for g, i in self.workers), timeout=20, message=self.log
        )
        return [starts(self.scratch, g, i)[-1][0] for g, i in self.workers]

    def wait(self, timeout: float = 20.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"supervisor still running after {timeout} s:\n{self.log()}") from None


def test_sigterm_stops_workers_gracefully(tmp_path: Path) -> None:
    sup = SupervisorProcess(tmp_path, [("g", 2, {}), ("h", 1, {})])
    pids = sup.wait_ready()
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.wait() == 0, sup.log()
    for group, instance in sup.workers:
        assert (tmp_path / f"{group}-{instance}.SIGTERM").exists()
    assert not any(process_exists(pid) for pid in pids)
    log = sup.log()
    assert "SIGTERM received: stopping 3 workers (waiting up to 10 s; a second signal kills them)" in log
    assert "all workers stopped" in log
    assert "exited with code 0 (stopped); 0 still running" in log


def test_worker_ignoring_sigterm_is_killed_after_the_timeout(tmp_path: Path) -> None:
    sup = SupervisorProcess(tmp_path, [("ok", 1, {}), ("deaf", 1, {"behaviour": "ignore_term"})], timeout=1.0)
    deaf_pid = sup.wait_ready()[1]
    signalled = time.monotonic()
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.wait() == 1, sup.log()
    assert time.monotonic() - signalled >= 1.0
    log = sup.log()
    assert f"killing 1 worker that did not stop within 1 s: deaf[0] (pid {deaf_pid})" in log
    assert (
        f"deaf[0] (pid {deaf_pid}) was killed by SIGKILL; 0 still running" in log
    )  # no OOM guess: we killed it
    assert (tmp_path / "ok-0.SIGTERM").exists()


def test_a_worker_killed_at_the_timeout_is_named_with_the_event_its_handler_was_stuck_on(
    tmp_path: Path,
) -> None:
    # A handler holding the GIL in C code keeps the worker from leaving by itself; its last status said what.
    busy = {"behaviour": "ignore_term", "busy": "orders[1]@42 for 35 s"}
    sup = SupervisorProcess(tmp_path, [("deaf", 1, busy)], timeout=1.0)
    deaf_pid = sup.wait_ready()[0]
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.wait() == 1, sup.log()
    assert (
        f"killing 1 worker that did not stop within 1 s: deaf[0] (pid {deaf_pid}), its handler stuck on "
        "orders[1]@42 for 35 s" in sup.log()
    )


def test_second_signal_kills_every_worker_at_once(tmp_path: Path) -> None:
    sup = SupervisorProcess(tmp_path, [("deaf", 2, {"behaviour": "ignore_term"})], timeout=60.0)
    sup.wait_ready()
    sup.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "SIGTERM received: stopping 2 workers" in sup.log(), timeout=10, message=sup.log)
    sup.proc.send_signal(signal.SIGINT)
    assert sup.wait(timeout=10) == 1, sup.log()
    assert "SIGINT received: killing 2 workers now" in sup.log()


def test_ctrl_c_to_the_process_group_stops_cleanly(tmp_path: Path) -> None:
    # A terminal's Ctrl-C signals the supervisor and its workers at once; workers exiting on their own is fine.
    sup = SupervisorProcess(tmp_path, [("g", 2, {})])
    sup.wait_ready()
    os.killpg(sup.proc.pid, signal.SIGINT)
    assert sup.wait() == 0, sup.log()
    assert (tmp_path / "g-0.SIGINT").exists()
    assert "SIGINT received" in sup.log()


def test_ctrl_c_while_workers_are_still_being_started_stops_every_one_cleanly(tmp_path: Path) -> None:
    # Ctrl-C as soon as the first of many workers runs: the others are being started at that moment, several
    # at once. Each worker started gets the signal in its main thread (or, not yet running its code, ends by
    # it), none is left running, none is started after the stop, and nothing had to be killed.
    count = STARTING_AT_ONCE * 3
    sup = SupervisorProcess(tmp_path, [("burst", count, {})], timeout=30.0)
    wait_for(lambda: any(starts(tmp_path, "burst", i) for i in range(count)), timeout=30, message=sup.log)
    os.killpg(sup.proc.pid, signal.SIGINT)
    assert sup.wait(60) == 0, sup.log()
    log = sup.log()
    assert "SIGINT received" in log
    assert "killing" not in log, log
    pids = [pid for i in range(count) for pid, _ in starts(tmp_path, "burst", i)]
    assert not any(process_exists(pid) for pid in pids)
    started = re.findall(r"started burst\[\d+\] \(pid (\d+)\)", log)
    assert len(started) == len(set(started)) <= count  # none started twice, none restarted
    stop_at = log.index("SIGINT received")
    assert all(log.index(f"(pid {pid})") < stop_at for pid in started), log


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path, method: str) -> None:
    sup = SupervisorProcess(tmp_path, [("orphan", 2, {})], environ={"KPIPE_WORKER_START": method})
    pids = sup.wait_ready()
    sup.proc.kill()
    sup.wait()
    wait_for(
        lambda: not any(process_exists(pid) for pid in pids),
        timeout=10,
        message="workers outlived the supervisor",
    )
    assert (tmp_path / "orphan-0.SIGTERM").exists()  # stopped gracefully, not killed

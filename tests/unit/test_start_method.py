"""How workers are started (kpipe.runtime.start_method): the choice of start method, a fork server that holds
no thread before it forks, and forked workers that get the supervisor's current environment and output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_supervisor import ScriptedStart

from kpipe.errors import UsageError
from kpipe.runtime.start_method import PRELOAD, WORKER_START_ENV, start_method
from kpipe.runtime.supervisor import Supervisor


def test_the_start_method_comes_from_the_environment_else_the_fork_server() -> None:
    assert start_method({WORKER_START_ENV: "spawn"}) == "spawn"
    assert start_method({WORKER_START_ENV: "forkserver"}) == "forkserver"
    if sys.platform.startswith("linux"):
        assert start_method({}) == "forkserver"
    with pytest.raises(
        UsageError, match="KPIPE_WORKER_START='fork' is not a worker start method; expected one"
    ):
        start_method({WORKER_START_ENV: "fork"})


def test_the_fork_server_imports_leave_one_thread_and_no_kafka_client() -> None:
    # librdkafka's threads do not survive a fork: nothing the fork server imports may start a client or thread.
    modules = [m for m in PRELOAD if m != "__main__"]
    script = (
        "import os, threading, sys\n"
        f"for m in {modules!r}: __import__(m)\n"
        "print(len(os.listdir('/proc/self/task')), threading.active_count())\n"
    )
    if not Path("/proc/self/task").exists():
        pytest.skip("needs /proc")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1"], out


def report(start: ScriptedStart, channel: object) -> int:
    """A worker that writes its environment's mark to its stdout and stderr, and exits."""
    mark = os.environ.get("KPIPE_TEST_MARK", "none")
    os.write(1, f"out {start.group} {mark}\n".encode())
    os.write(2, f"err {start.group} {mark}\n".encode())
    return 0


@contextmanager
def output_to(out: Path, err: Path) -> Iterator[None]:
    """This process's file descriptors 1 and 2 written to these files while the block runs."""
    saved = [os.dup(1), os.dup(2)]
    try:
        for fd, path in ((1, out), (2, err)):
            with path.open("w") as f:
                os.dup2(f.fileno(), fd)
        yield
    finally:
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_a_worker_gets_the_supervisors_environment_and_output_of_when_it_starts(
    method: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two runs, each with its own environment and output: a forked worker must see neither the environment nor
    # the output the fork server had when it started (that of the first start in this process).
    for mark in ("first", "second"):
        monkeypatch.setenv("KPIPE_TEST_MARK", mark)
        start = ScriptedStart(group=f"g{mark}", instance=0, scratch=str(tmp_path))
        out, err = tmp_path / f"{mark}.out", tmp_path / f"{mark}.err"
        with output_to(out, err):
            code = Supervisor([start], report, start_method=method).run(install_signals=False)
        assert code == 0
        assert f"out g{mark} {mark}" in out.read_text()
        assert f"err g{mark} {mark}" in err.read_text()


def ignored_signals(pid: int | str) -> set[int]:
    """The signals a process ignores, from the SigIgn mask of /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            mask = int(line.split()[1], 16)
            return {n for n in range(1, 65) if mask & (1 << (n - 1))}
    return set()


def report_signals(start: ScriptedStart, channel: object) -> int:
    """A worker that writes which of SIGTERM and SIGHUP it and its parent (the fork server) ignore."""
    watched = {signal.SIGTERM, signal.SIGHUP}
    own = sorted(s.name for s in watched if s in ignored_signals("self"))
    parent = sorted(s.name for s in watched if s in ignored_signals(os.getppid()))
    os.write(1, f"worker ignores {own}, its parent {parent}\n".encode())
    return 0


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_the_fork_server_outlives_a_hang_up_and_its_workers_do_not(tmp_path: Path) -> None:
    # A closed terminal or a stop sent to the process group reaches the fork server too: it must stay until its
    # workers have exited (it reports their exits), while the workers stop on those signals as before.
    start = ScriptedStart(group="sig", instance=0, scratch=str(tmp_path))
    out, err = tmp_path / "out", tmp_path / "err"
    with output_to(out, err):
        code = Supervisor([start], report_signals, start_method="forkserver").run(install_signals=False)
    assert code == 0
    assert "worker ignores [], its parent ['SIGHUP', 'SIGTERM']" in out.read_text()


WORKER_MODULES = """
import sys
from kpipe.cli import main  # what the `kpipe` command's script imports; multiprocessing runs it in every worker

if __name__ == "__main__":
    from pathlib import Path

    from kpipe.compilation.project import load_project
    from kpipe.runtime.protocol import worker_starts
    from kpipe.runtime.supervisor import Supervisor

    project, out = Path(sys.argv[1]), sys.argv[2]
    start = worker_starts(load_project([project]), [("g", 1)], metrics=True)[0]
    sup = Supervisor([start], "preload_probe:record_modules", start_method="forkserver")
    sys.exit(sup.run(install_signals=False))
"""


def test_a_forked_worker_imports_nothing_the_fork_server_did_not(tmp_path: Path) -> None:
    # What a worker imports after the fork costs every worker CPU and memory of its own: the worker's entry, its
    # start (a real WorkerStart), what runs a group and what the program's script imports (multiprocessing runs
    # it again in each worker) must all come from the fork server's imports (PRELOAD). Run as the `kpipe`
    # command runs: a script whose top level imports kpipe.cli.
    (tmp_path / "p.yaml").write_text(
        "cluster: {bootstrap_servers: 'b:9092'}\ntopics: {a: {partitions: 1}}\n"
        "consumers: {g: {topics: [a], handler: 'h:f'}}\n"
    )
    script = tmp_path / "kpipe_like.py"
    script.write_text(WORKER_MODULES)
    env = dict(
        os.environ,
        KPIPE_TEST_MODULES_OUT=str(tmp_path / "modules"),
        PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), *sys.path]),
    )
    subprocess.run([sys.executable, str(script), str(tmp_path), ""], env=env, check=True, timeout=300)
    in_worker = set((tmp_path / "modules").read_text().split())
    imports = (
        "import sys, multiprocessing.forkserver, multiprocessing.popen_forkserver\n"
        f"for m in {list(PRELOAD[1:])!r}: __import__(m)\n"
        "print(' '.join(sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", imports], capture_output=True, text=True, check=True)
    in_server = set(out.stdout.split())
    assert in_worker - in_server - {"__mp_main__"} == {"preload_probe"}
    # Nor does the fork server import the models of what users write: a worker is given compiled settings, and
    # the server's imports are what the first worker start waits for.
    assert not {
        m for m in in_server if m.startswith(("kpipe.model.pipeline", "kpipe.check", "kpipe.loading.loader"))
    }

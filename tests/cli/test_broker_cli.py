"""`kpipe broker` and `bootstrap_servers: local`: the embedded broker as a user runs it from a shell."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import environment, kpipe, process_alive, wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str | None]:
    # A private state directory, so a broker the developer runs by hand is neither found nor disturbed.
    return {
        "KPIPE_STATE_DIR": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
        "KAFKA_BOOTSTRAP_SERVERS": None,
        "KPIPE_BOOTSTRAP_SERVERS": None,
    }


def test_local_project_without_a_running_broker_says_how_to_start_one(env: dict[str, str]) -> None:
    result = kpipe("plan", "pipelines/", env=env, cwd=ROOT, process=True)
    assert result.code == 3
    assert result.err.startswith(
        "error: the project uses the local broker (bootstrap_servers: local), but none is running; "
        "start one with `kpipe broker`"
    )
    assert "Traceback" not in result.err


def test_port_taken_is_a_clear_error(env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = kpipe("broker", "--port", str(port), env=env, cwd=ROOT, process=True)
    assert result.code == 3
    assert result.err == (
        f"error: cannot start the local broker: port {port} on 127.0.0.1 is already in use; "
        "give another with --port PORT, or --port 0 for any free port\n"
    )


@pytest.mark.integration  # starts the embedded broker
def test_broker_serves_local_projects_and_stops_on_ctrl_c(env: dict[str, str], tmp_path: Path) -> None:
    broker = subprocess.Popen(
        [sys.executable, "-m", "kpipe", "broker", "--port", "0"],
        cwd=ROOT,
        env=environment(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = broker.stdout.readline()
        assert first.startswith("local broker listening on 127.0.0.1:"), first + broker.stderr.read()
        assert first.rstrip().endswith("data is kept in memory only")
        pid = int(first.split("(pid ")[1].split(")")[0])
        state = tmp_path / "kpipe" / "local-broker.json"
        assert state.exists()

        # A project that says `local` now reaches it, with no address anywhere.
        plan = kpipe("plan", "pipelines/", "--detailed-exitcode", env=env, cwd=ROOT, process=True)
        assert plan.code == 2, plan.err
        assert "+ create topic orders (partitions 3, replication 1)" in plan.out
        # `-b local` points any project at it.
        other = tmp_path / "other.yaml"
        other.write_text(
            "cluster: {bootstrap_servers: 'kafka.example:9092'}\ntopics: {audit: {partitions: 2}}\n"
        )
        elsewhere = kpipe(
            "plan", str(other), "-b", "local", "--detailed-exitcode", env=env, cwd=ROOT, process=True
        )
        assert elsewhere.code == 2, elsewhere.err
        assert "+ create topic audit (partitions 2, replication broker default)" in elsewhere.out
        # A second broker is refused rather than silently shadowing the first.
        second = kpipe("broker", "--port", "0", env=env, cwd=ROOT, process=True)
        assert second.code == 3 and "a local broker is already running" in second.err

        broker.send_signal(signal.SIGINT)
        assert broker.wait(timeout=30) == 0
    finally:
        if broker.poll() is None:
            broker.kill()
            broker.wait()
    assert "local broker stopped" in broker.stderr.read()
    assert not state.exists()
    wait_for(lambda: not process_alive(pid), timeout=10, message=f"broker pid {pid} left behind")


def start_broker(env: dict[str, str]) -> tuple[subprocess.Popen[str], str, int]:
    """`kpipe broker --port 0` in the background; returns it, its address and the Tansu pid it prints."""
    broker = subprocess.Popen(
        [sys.executable, "-m", "kpipe", "broker", "--port", "0"],
        cwd=ROOT,
        env=environment(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = broker.stdout.readline()
    assert first.startswith("local broker listening on "), first + broker.stderr.read()
    address = first.split(" on ")[1].split(" ")[0]
    return broker, address, int(first.split("(pid ")[1].split(")")[0])


@pytest.mark.integration  # starts the embedded broker
def test_kill_9_of_kpipe_broker_takes_the_broker_with_it(env: dict[str, str]) -> None:
    broker, _address, pid = start_broker(env)
    try:
        broker.kill()  # SIGKILL: kpipe gets no chance to stop its child
        broker.wait(10)
        wait_for(
            lambda: not process_alive(pid), timeout=15, message=f"Tansu (pid {pid}) outlived kpipe broker"
        )
    finally:
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)
    # The stale state file names a dead process: a new broker starts, status says none runs.
    status = kpipe("broker", "--status", env=env, cwd=ROOT, process=True)
    assert (status.code, status.err) == (3, "no local broker is running\n")


@pytest.mark.integration  # starts the embedded broker
def test_status_and_stop(env: dict[str, str]) -> None:
    broker, address, pid = start_broker(env)
    try:
        status = kpipe("broker", "--status", env=env, cwd=ROOT, process=True)
        assert status.code == 0, status.err
        assert status.out == f"local broker running on {address} (pid {pid}, started by pid {broker.pid})\n"
        stop = kpipe("broker", "--stop", env=env, cwd=ROOT, process=True)
        assert (stop.code, stop.out) == (0, f"stopped the local broker on {address} (pid {pid})\n")
        assert broker.wait(15) == 0  # `kpipe broker` itself was asked to stop, and stopped cleanly
        assert not process_alive(pid)
    finally:
        if broker.poll() is None:
            broker.kill()
            broker.wait()
    assert "local broker stopped" in broker.stderr.read()
    again = kpipe("broker", "--stop", env=env, cwd=ROOT, process=True)
    assert (again.code, again.err) == (0, "no local broker is running\n")
    status = kpipe("broker", "--status", env=env, cwd=ROOT, process=True)
    assert status.code == 3


def test_dev_demo_without_a_demo_directory_stops_before_starting_anything(
    env: dict[str, str], tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-demo"
    result = kpipe("dev", "pipelines/", "--demo", "--demo-dir", str(missing), env=env, cwd=ROOT, process=True)
    assert (result.code, result.out) == (2, "")
    assert result.err == (
        f"error: --demo: no directory {missing} with sample events (<producer>.jsonl files); "
        "pass --demo-dir DIR, or leave out --demo\n"
    )
    assert not (tmp_path / "kpipe" / "local-broker.json").exists()  # no broker was started

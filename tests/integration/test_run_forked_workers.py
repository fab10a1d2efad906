"""`kpipe run` with workers forked from the fork server: still one process per instance, so a worker killed
with SIGKILL is reported and restarted alone, and the workers do not outlive a killed supervisor."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from run_helpers import RECORDER, KpipeRun, produce

from helpers import wait_for

pytestmark = pytest.mark.integration

FORKSERVER = {"KPIPE_WORKER_START": "forkserver"}


def started(run: KpipeRun) -> list[tuple[str, int]]:
    """(instance label, pid) of every "started" line of the supervisor, in order."""
    out = []
    for r in run.records():
        found = re.fullmatch(r"started (\S+) \(pid (\d+)\)", r["msg"])
        if r["logger"] == "kpipe.runtime.supervisor" and found:
            out.append((found.group(1), int(found.group(2))))
    return out


def assigned_pids(run: KpipeRun) -> set[int]:
    return {r["pid"] for r in run.records() if r["msg"].startswith("assigned ")}


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def running(pid: int) -> bool:
    """Alive and not a zombie waiting for its parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start_three_groups(
    tmp_path: Path, bootstrap: str, unique_name: Callable[..., str], make_topics: Callable[..., None],
    kpipe_run: Callable[..., KpipeRun],
) -> tuple[KpipeRun, dict[str, str], dict[str, int]]:  # fmt: skip
    """`kpipe run` of three one-instance groups, each on its own topic, every worker assigned: the run, group ->
    topic, and instance label -> worker pid."""
    topics = {unique_name(f"fork{i}"): unique_name(f"forkt{i}") for i in range(3)}
    for topic in topics.values():
        make_topics(topic, partitions=1)
    project = tmp_path / "project"
    project.mkdir()
    (project / "recorder.py").write_text(RECORDER)
    (project / "project.yaml").write_text(
        f'cluster:\n  bootstrap_servers: "{bootstrap}"\ntopics:\n'
        + "".join(f"  {t}:\n    partitions: 1\n    replication_factor: 1\n" for t in topics.values())
        + "consumers:\n"
        + "".join(f"  {g}:\n    topics: [{t}]\n    handler: recorder:record\n" for g, t in topics.items())
    )
    run = kpipe_run(project, env=FORKSERVER)
    wait_for(lambda: len(assigned_pids(run)) == 3, timeout=60, message=run.log)
    return run, topics, dict(started(run))


def test_a_forked_worker_killed_by_sigkill_is_reported_and_only_its_group_restarts(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[..., str],
    kpipe_run: Callable[..., KpipeRun],
    make_topics: Callable[..., None],
) -> None:
    run, topics, pids = start_three_groups(tmp_path, kafka_bootstrap, unique_name, make_topics, kpipe_run)
    # Forked from the fork server, not started by the supervisor itself.
    server = {parent_of(pid) for pid in pids.values()}
    assert len(server) == 1 and server != {run.proc.pid}, (server, run.proc.pid)
    assert b"multiprocessing.forkserver" in Path(f"/proc/{server.pop()}/cmdline").read_bytes()

    victim_label = sorted(pids)[1]
    victim = pids[victim_label]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(started(run)) == 4, timeout=30, message=run.log)
    restarted_label, restarted = started(run)[3]
    assert restarted_label == victim_label and restarted != victim
    supervisor = run.supervisor_messages()
    assert any(f"(pid {victim}) was killed by SIGKILL from outside kpipe (" in m for m in supervisor), (
        supervisor
    )
    assert sum(m.startswith("restarting ") for m in supervisor) == 1, supervisor
    # The other groups' workers were never touched: the same processes, still running.
    for label, pid in pids.items():
        if label != victim_label:
            assert running(pid), (label, pid)

    # Every group, the restarted one included, handles what arrives afterwards.
    wait_for(lambda: restarted in assigned_pids(run), timeout=60, message=run.log)
    for topic in topics.values():
        produce(kafka_bootstrap, topic, 5, 1)
    wait_for(
        lambda: (
            {(h["group"], h["value"]) for h in run.handled()}
            >= {(g, f"event-{i}") for g in topics for i in range(5)}
        ),
        timeout=30,
        message=run.log,
    )
    assert run.stop() == 0, run.log()


def test_forked_workers_stop_when_the_supervisor_is_killed(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[..., str],
    kpipe_run: Callable[..., KpipeRun],
    make_topics: Callable[..., None],
) -> None:
    run, _, pids = start_three_groups(tmp_path, kafka_bootstrap, unique_name, make_topics, kpipe_run)
    server = parent_of(next(iter(pids.values())))
    os.kill(run.proc.pid, signal.SIGKILL)
    run.proc.wait()
    # Each worker notices the supervisor's end, stops as on SIGTERM (committing), and exits; then the fork
    # server, with no supervisor and no worker left, exits too.
    wait_for(lambda: not any(running(pid) for pid in pids.values()), timeout=60, message=run.log)
    wait_for(lambda: not running(server), timeout=30, message=run.log)
    stopping = [r for r in run.records() if r["msg"].startswith("SIGTERM received")]
    assert {r["pid"] for r in stopping} == set(pids.values()), run.log()

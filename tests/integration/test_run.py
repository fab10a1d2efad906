"""`kpipe run` against a broker: instances share a group's partitions, groups each get every event, SIGTERM commits.

Each test writes a small project whose handler appends what it handled to `$KPIPE_TEST_OUT/<pid>.jsonl`, runs
`kpipe run --log-format json` as a process, and reads the workers' "assigned" log lines to know when the group
has settled.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from broker_helpers import committed, read_at
from run_helpers import KpipeRun, produce, write_group_project, write_project

from helpers import wait_for

pytestmark = pytest.mark.integration  # `kpipe run` workers on the session broker


def wait_split(run: KpipeRun, partitions: int) -> dict[int, set[int]]:
    """Wait until two workers own disjoint sets of partitions that cover the topic; return pid -> partitions."""

    def settled() -> dict[int, set[int]] | None:
        current = run.assignments()
        parts = list(current.values())
        if len(parts) == 2 and not (parts[0] & parts[1]) and parts[0] | parts[1] == set(range(partitions)):
            return current
        return None

    return wait_for(settled, timeout=60, message=run.log)


def test_two_instances_split_the_partitions_and_sigterm_stops_cleanly(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[..., str],
    kpipe_run: Callable[..., KpipeRun],
    make_topics: Callable[..., None],
) -> None:
    topic, group = unique_name("split"), unique_name("splitters")
    make_topics(topic, partitions=4)
    project = write_project(tmp_path / "project", kafka_bootstrap, topic, 4, {group: 2})
    run = kpipe_run(project)

    assignment = wait_split(run, 4)
    values = produce(kafka_bootstrap, topic, 40, 4)
    run.wait_handled(40, timeout=30)

    handled = run.handled()
    assert sorted(h["value"] for h in handled) == sorted(values)  # each event once
    by_pid: dict[int, set[int]] = {}
    for h in handled:
        by_pid.setdefault(h["pid"], set()).add(h["partition"])
    assert by_pid == assignment  # each worker handled exactly its own partitions

    assert run.stop() == 0, run.log()
    messages = run.supervisor_messages()
    assert "SIGTERM received: stopping 2 workers (waiting up to 20 s; a second signal kills them)" in messages
    assert messages[-2] == "all workers stopped"
    # Then what the run did, per group.
    assert messages[-1].startswith(f"final: group '{group}': handled 40 (")
    assert messages[-1].split("/s), ")[1].startswith("dead-lettered 0, skipped 0 in ")


def test_killed_instance_partitions_are_taken_over_and_the_topic_finished(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[..., str],
    kpipe_run: Callable[..., KpipeRun],
    make_topics: Callable[..., None],
) -> None:
    topic, group = unique_name("takeover"), unique_name("takers")
    make_topics(topic, partitions=4)
    project = write_project(tmp_path / "project", kafka_bootstrap, topic, 4, {group: 2})
    # 20 ms per event: the killed worker still has most of its partitions' events ahead of it.
    run = kpipe_run(project, env={"KPIPE_TEST_DELAY_S": "0.02"})
    assignment = wait_split(run, 4)
    values = produce(kafka_bootstrap, topic, 200, 4)
    victim = min(assignment)
    wait_for(lambda: sum(h["pid"] == victim for h in run.handled()) >= 10, timeout=30, message=run.log)
    os.kill(victim, signal.SIGKILL)
    # The group (the survivor, and the instance the supervisor restarts) finishes the topic; a killed member's
    # partitions move once its session times out (~10 s on Tansu with session.timeout.ms=6000).
    wait_for(lambda: {h["value"] for h in run.handled()} == set(values), timeout=45,
             message=lambda: f"{len({h['value'] for h in run.handled()})} of 200 handled\n{run.log()}")  # fmt: skip

    handled = run.handled()
    victim_partitions = assignment[victim]
    victim_last: dict[int, int] = {}  # the last offset the killed worker handled, per partition
    for h in handled:
        if h["pid"] == victim:
            victim_last[h["partition"]] = max(victim_last.get(h["partition"], -1), h["offset"])
    # What the killed worker left behind was handled by other processes.
    for partition in victim_partitions:
        rest = [
            h for h in handled if h["partition"] == partition and h["offset"] > victim_last.get(partition, -1)
        ]
        assert rest and all(h["pid"] != victim for h in rest), partition
    counts = Counter(h["value"] for h in handled)
    duplicated = {h["partition"] for h in handled if counts[h["value"]] > 1}
    # At least once; repeats only of the killed worker's uncommitted tail, and only once more.
    assert max(counts.values()) <= 2
    assert duplicated <= victim_partitions, (duplicated, assignment)
    supervisor = run.supervisor_messages()
    # Not "out of memory?": kpipe says the kill came from outside (and whether the cgroup recorded an OOM kill).
    assert any(f"(pid {victim}) was killed by SIGKILL from outside kpipe (" in m for m in supervisor), (
        supervisor
    )

    assert run.stop() == 0, run.log()
    # The group finished every partition.
    assert committed(kafka_bootstrap, group, topic, 4) == [50, 50, 50, 50]


def test_sigterm_commits_what_was_handled(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[..., str],
    kpipe_run: Callable[..., KpipeRun],
    make_topics: Callable[..., None],
) -> None:
    topic, group = unique_name("commits"), unique_name("committers")
    make_topics(topic, partitions=2)
    produce(kafka_bootstrap, topic, 13, 2)  # 7 on partition 0, 6 on partition 1: not a multiple of batch_size
    project = write_project(tmp_path / "project", kafka_bootstrap, topic, 2, {group: 1})
    run = kpipe_run(project)
    run.wait_handled(13)
    assert run.stop() == 0, run.log()

    assert committed(kafka_bootstrap, group, topic, 2) == [7, 6]


def test_two_groups_on_one_topic_each_receive_every_event(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[..., str],
    kpipe_run: Callable[..., KpipeRun],
    make_topics: Callable[..., None],
) -> None:
    topic, billing, audit = unique_name("shared"), unique_name("billing"), unique_name("audit")
    make_topics(topic, partitions=2)
    keys = 5
    values = produce(kafka_bootstrap, topic, 40, 2, keys=keys)
    project = write_project(tmp_path / "project", kafka_bootstrap, topic, 2, {billing: 1, audit: 1})
    run = kpipe_run(project)
    run.wait_handled(80)

    for group in (billing, audit):
        handled = [h for h in run.handled() if h["group"] == group]  # one worker, never restarted: its order
        assert sorted(h["value"] for h in handled) == sorted(values), group
        assert len({h["pid"] for h in handled}) == 1
        per_key: dict[int, list[int]] = {}
        partitions: dict[int, set[int]] = {}
        for h in handled:
            n = int(h["value"].removeprefix("event-"))
            per_key.setdefault(n % keys, []).append(n)
            partitions.setdefault(n % keys, set()).add(h["partition"])
        # Order per key: each key's sequence numbers were handled in the order they were produced.
        assert all(ns == sorted(ns) for ns in per_key.values()), (group, per_key)
        assert all(len(p) == 1 for p in partitions.values()), (group, partitions)
    # Ctrl-C reaches the workers as well as the supervisor: still a clean stop, and exit 130.
    assert run.stop(ctrl_c=True) == 130, run.log()  # interrupted, as the README says, and cleanly
    assert "SIGINT received" in run.log()


def test_group_option_runs_only_the_named_groups(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[..., str],
    kpipe_run: Callable[..., KpipeRun],
    make_topics: Callable[..., None],
) -> None:
    topic, chosen, other = unique_name("some"), unique_name("chosen"), unique_name("other")
    make_topics(topic, partitions=1)
    produce(kafka_bootstrap, topic, 3, 1)
    project = write_project(tmp_path / "project", kafka_bootstrap, topic, 1, {chosen: 1, other: 1})
    run = kpipe_run(project, "--group", chosen)
    run.wait_handled(3)
    assert run.stop() == 0, run.log()
    assert {h["group"] for h in run.handled()} == {chosen}
    started = [
        r
        for r in run.records()
        if r["logger"] == "kpipe.runtime.supervisor" and r["msg"].startswith("started ")
    ]
    assert [r["group"] for r in started] == [chosen]


def test_ctrl_c_during_the_group_join_does_not_leave_the_group_stuck(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[..., str],
    kpipe_run: Callable[..., KpipeRun],
    make_topics: Callable[..., None],
) -> None:
    # Closing a consumer whose JoinGroup is in flight sends a LeaveGroup that Tansu mishandles: the group keeps
    # the departed member as its leader and no later member is ever assigned (measured: none within 360 s).
    # A worker stopped mid-join waits for the join to finish, then leaves a formed group.
    topic, group = unique_name("joins"), unique_name("joiners")
    make_topics(topic, partitions=2)
    project = write_project(tmp_path / "project", kafka_bootstrap, topic, 2, {group: 1})
    first = kpipe_run(project, directory=tmp_path / "first")

    def worker_said(run: KpipeRun, start: str) -> list[str]:
        return [r["msg"] for r in run.records() if r.get("group") == group and r["msg"].startswith(start)]

    wait_for(lambda: worker_said(first, f"joining group '{group}'…"), timeout=30, message=first.log)
    assert not worker_said(first, "assigned"), "the join finished before Ctrl-C: nothing was tested"
    assert first.stop(ctrl_c=True) == 130, first.log()
    assert worker_said(first, f"stopping while joining group '{group}'"), first.log()

    values = produce(kafka_bootstrap, topic, 10, 2)
    second = kpipe_run(project, directory=tmp_path / "second")
    # Measured ~5 s idle: start-up and one ~3 s join. A stuck group never assigns (none within 360 s).
    second.wait_handled(10, timeout=60)
    assert sorted(h["value"] for h in second.handled()) == sorted(values)
    assert second.stop() == 0, second.log()


def write_hanging_project(directory: Path, bootstrap: str, topic: str, group: str, on_error: str) -> Path:
    """One recording group, committing in batches, with `on_error` (and a declared dead-letter topic)."""
    return write_group_project(
        directory, bootstrap, topic, group, extra_topics=(f"{topic}.dlq",),
        commit="{strategy: batch, batch_size: 5, interval_ms: 200}", on_error=on_error,
    )  # fmt: skip


def test_a_hung_handler_restarts_its_worker_and_the_event_is_dead_lettered_after_two_hangs(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[..., str],
    kpipe_run: Callable[..., KpipeRun],
    make_topics: Callable[..., None],
) -> None:
    topic, group = unique_name("hangs"), unique_name("hangers")
    make_topics(topic, partitions=1)
    make_topics(f"{topic}.dlq", partitions=1)
    values = produce(kafka_bootstrap, topic, 10, 1)
    project = write_hanging_project(
        tmp_path / "project",
        kafka_bootstrap,
        topic,
        group,
        f"{{timeout_ms: 1500, dead_letter_topic: {topic}.dlq}}",
    )
    run = kpipe_run(project, env={"KPIPE_TEST_HANG_ON": "event-3"})
    rest = set(values) - {"event-3"}
    wait_for(lambda: {h["value"] for h in run.handled()} >= rest, timeout=120, message=run.log)

    supervisor = run.supervisor_messages()
    hung = [m for m in supervisor if "exited with code 5 (handler hung): handler hung on " in m]
    assert len(hung) == 2, supervisor
    assert f"handler hung on {topic}[0]@3 (consumer group '{group}'): still running after " in hung[0]
    assert "hang 1 of 2 on this event" in hung[0] and "hang 2 of 2 on this event" in hung[1]
    assert len(list(run.out.glob("hanging-*"))) == 2  # the handler got the event twice, not a third time
    worker = run.group_messages(group)
    assert any(
        m.startswith(f"handler hung {topic}[0]@3 after 2 attempts: the handler hung 2 times on it")
        for m in worker
    ), worker

    letter = read_at(kafka_bootstrap, f"{topic}.dlq", 0, 0, timeout=20)
    assert letter.value() == b"event-3"
    assert dict(letter.headers())["kpipe.error.type"] == b"timeout"
    assert run.stop() == 0, run.log()


def test_sigterm_while_a_handler_hangs_stops_within_the_shutdown_timeout_naming_the_event(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[..., str],
    kpipe_run: Callable[..., KpipeRun],
    make_topics: Callable[..., None],
) -> None:
    topic, group = unique_name("stuck"), unique_name("stuckers")
    make_topics(topic, partitions=1)
    produce(kafka_bootstrap, topic, 3, 1)
    project = write_hanging_project(tmp_path / "project", kafka_bootstrap, topic, group, "{action: skip}")
    run = kpipe_run(project, env={"KPIPE_TEST_HANG_ON": "event-1"})
    wait_for(lambda: list(run.out.glob("hanging-*")), timeout=60, message=run.log)
    run.proc.send_signal(signal.SIGTERM)
    # --shutdown-timeout is 20 s; without it the stop would wait for the hung handler forever.
    code = run.proc.wait(60)
    assert code == 1, run.log()  # not a clean stop: a handler did not return
    worker = run.group_messages(group)
    assert any(m.startswith(f"stopping: waiting for the handler on {topic}[0]@1 (consumer group '{group}'")
               for m in worker), worker  # fmt: skip
    supervisor = run.supervisor_messages()
    assert any(
        f"exited with code 5 (handler hung): stopped while the handler on {topic}[0]@1 (consumer group "
        f"'{group}') was still running after " in m
        for m in supervisor
    ), supervisor
    # The worker left by itself, within the shutdown timeout: the supervisor did not have to kill it.
    assert not any("did not stop within" in m for m in supervisor), supervisor

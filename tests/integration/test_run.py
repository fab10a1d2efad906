"""`kpipe run` against a broker: instances share a group's partitions, groups each get every event, SIGTERM commits.

Each test writes a small project whose handler appends what it handled to `$KPIPE_TEST_OUT/<pid>.jsonl`, runs
`kpipe run --log-format json` as a process, and reads the workers' "assigned" log lines to know when the group
has settled.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from helpers import wait_for

RECORDER = """\
import json, os

def record(event, ctx):
    line = {"group": ctx.group, "pid": os.getpid(), "partition": ctx.partition, "offset": ctx.offset,
            "value": event.decode()}
    with open(os.path.join(os.environ["KPIPE_TEST_OUT"], f"{os.getpid()}.jsonl"), "a") as f:
        f.write(json.dumps(line) + "\\n")
"""


def write_project(
    directory: Path, bootstrap: str, topic: str, partitions: int, groups: dict[str, int]
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "recorder.py").write_text(RECORDER)
    consumers = "".join(
        f"""\
  {group}:
    topics: [{topic}]
    handler: recorder:record
    instances: {instances}
    commit: {{strategy: batch, batch_size: 5, interval_ms: 200}}
"""
        for group, instances in groups.items()
    )
    (directory / "project.yaml").write_text(
        f"""\
cluster:
  bootstrap_servers: "{bootstrap}"
topics:
  {topic}:
    partitions: {partitions}
    replication_factor: 1
consumers:
{consumers}"""
    )
    return directory


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=10)


def produce(bootstrap: str, topic: str, count: int, partitions: int) -> list[str]:
    producer = Producer({"bootstrap.servers": bootstrap})
    values = [f"event-{i}" for i in range(count)]
    for i, value in enumerate(values):
        producer.produce(topic, value.encode(), partition=i % partitions)
    assert producer.flush(10) == 0
    return values


class KpipeRun:
    """`kpipe run` as a process, with its JSON log and what its handlers recorded."""

    def __init__(self, tmp_path: Path, project: Path, fast_config: dict[str, str | int], *args: str):
        self.out = tmp_path / "handled"
        self.out.mkdir()
        self.log_path = tmp_path / "kpipe-run.log"
        options = [f"-X{key}={value}" for key, value in fast_config.items()]
        with self.log_path.open("w") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from kpipe.cli import main; main()", "run", str(project)]
                + ["--log-format", "json", "--shutdown-timeout", "20", *options, *args],
                stderr=log_file,
                env={**os.environ, "KPIPE_TEST_OUT": str(self.out)},
                start_new_session=True,  # its own process group, like a job in a terminal
            )

    def log(self) -> str:
        return self.log_path.read_text()

    def records(self) -> list[dict]:
        out = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def assignments(self) -> dict[int, set[int]]:
        """Each worker pid's current partitions, from its latest 'assigned'/'revoked' log lines."""
        current: dict[int, set[int]] = {}
        for r in self.records():
            if r["logger"] == "kpipe.supervisor":
                continue
            partitions = {int(p) for p in re.findall(r"\[(\d+)\]", r["msg"])}
            if r["msg"].startswith("assigned "):
                current[r["pid"]] = current.get(r["pid"], set()) | partitions
            elif r["msg"].startswith("revoked "):
                current[r["pid"]] = current.get(r["pid"], set()) - partitions
        return {pid: parts for pid, parts in current.items() if parts}

    def handled(self) -> list[dict]:
        lines = []
        for path in self.out.glob("*.jsonl"):
            lines += [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
        return lines

    def stop(self, timeout: float = 40, *, ctrl_c: bool = False) -> int:
        """SIGTERM to `kpipe run`, or with ctrl_c SIGINT to its whole process group, as a terminal does."""
        if ctrl_c:
            os.killpg(self.proc.pid, signal.SIGINT)
        else:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"kpipe run did not stop within {timeout} s:\n{self.log()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def kpipe_runs() -> Iterator[list[KpipeRun]]:
    runs: list[KpipeRun] = []
    yield runs
    for run in runs:
        run.kill()


def test_two_instances_split_the_partitions_and_sigterm_stops_cleanly(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[..., str],
    fast_group_config: dict[str, str | int],
    kpipe_runs: list[KpipeRun],
) -> None:
    topic, group = unique_name("split"), unique_name("splitters")
    create_topic(kafka_bootstrap, topic, 4)
    project = write_project(tmp_path / "project", kafka_bootstrap, topic, 4, {group: 2})
    run = KpipeRun(tmp_path, project, fast_group_config)
    kpipe_runs.append(run)

    def settled() -> dict[int, set[int]] | None:
        current = run.assignments()
        parts = list(current.values())
        if len(parts) == 2 and not (parts[0] & parts[1]) and parts[0] | parts[1] == {0, 1, 2, 3}:
            return current
        return None

    assignment = wait_for(settled, timeout=60, message=run.log)
    values = produce(kafka_bootstrap, topic, 40, 4)
    wait_for(lambda: len(run.handled()) >= 40, timeout=30, message=run.log)

    handled = run.handled()
    assert sorted(h["value"] for h in handled) == sorted(values)  # each event once
    by_pid: dict[int, set[int]] = {}
    for h in handled:
        by_pid.setdefault(h["pid"], set()).add(h["partition"])
    assert by_pid == assignment  # each worker handled exactly its own partitions

    assert run.stop() == 0, run.log()
    messages = [r["msg"] for r in run.records() if r["logger"] == "kpipe.supervisor"]
    assert "SIGTERM received: stopping 2 workers (waiting up to 20 s; a second signal kills them)" in messages
    assert messages[-1] == "all workers stopped"


def test_sigterm_commits_what_was_handled(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[..., str],
    fast_group_config: dict[str, str | int],
    kpipe_runs: list[KpipeRun],
) -> None:
    topic, group = unique_name("commits"), unique_name("committers")
    create_topic(kafka_bootstrap, topic, 2)
    produce(kafka_bootstrap, topic, 13, 2)  # 7 on partition 0, 6 on partition 1: not a multiple of batch_size
    project = write_project(tmp_path / "project", kafka_bootstrap, topic, 2, {group: 1})
    run = KpipeRun(tmp_path, project, fast_group_config)
    kpipe_runs.append(run)
    wait_for(lambda: len(run.handled()) >= 13, timeout=60, message=run.log)
    assert run.stop() == 0, run.log()

    reader = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    try:
        committed = reader.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
    finally:
        reader.close()
    assert [tp.offset for tp in committed] == [7, 6]


def test_two_groups_on_one_topic_each_receive_every_event(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[..., str],
    fast_group_config: dict[str, str | int],
    kpipe_runs: list[KpipeRun],
) -> None:
    topic, billing, audit = unique_name("shared"), unique_name("billing"), unique_name("audit")
    create_topic(kafka_bootstrap, topic, 2)
    values = produce(kafka_bootstrap, topic, 20, 2)
    project = write_project(tmp_path / "project", kafka_bootstrap, topic, 2, {billing: 1, audit: 1})
    run = KpipeRun(tmp_path, project, fast_group_config)
    kpipe_runs.append(run)
    wait_for(lambda: len(run.handled()) >= 40, timeout=60, message=run.log)

    for group in (billing, audit):
        got = sorted(h["value"] for h in run.handled() if h["group"] == group)
        assert got == sorted(values), group
    # Ctrl-C reaches the workers as well as the supervisor: still a clean stop.
    assert run.stop(ctrl_c=True) == 0, run.log()
    assert "SIGINT received" in run.log()


def test_group_option_runs_only_the_named_groups(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[..., str],
    fast_group_config: dict[str, str | int],
    kpipe_runs: list[KpipeRun],
) -> None:
    topic, chosen, other = unique_name("some"), unique_name("chosen"), unique_name("other")
    create_topic(kafka_bootstrap, topic, 1)
    produce(kafka_bootstrap, topic, 3, 1)
    project = write_project(tmp_path / "project", kafka_bootstrap, topic, 1, {chosen: 1, other: 1})
    run = KpipeRun(tmp_path, project, fast_group_config, "--group", chosen)
    kpipe_runs.append(run)
    wait_for(lambda: len(run.handled()) >= 3, timeout=60, message=run.log)
    assert run.stop() == 0, run.log()
    assert {h["group"] for h in run.handled()} == {chosen}
    started = [
        r for r in run.records() if r["logger"] == "kpipe.supervisor" and r["msg"].startswith("started ")
    ]
    assert [r["group"] for r in started] == [chosen]

"""`kpipe status` on the real broker: lag from committed offsets and true log ends, --max-lag exit codes, topic
verdicts, and an unreachable cluster.

The log-end offsets are the point: on Tansu, ListOffsets "latest" answers the last batch's base offset + 1, so
events are produced in several batches per partition and a status built on ListOffsets would be far off.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from helpers import kpipe, wait_for
from kpipe.errors import EXIT_CLUSTER, EXIT_LAG_EXCEEDED


def write_project(directory: Path, bootstrap: str, prefix: str, *, extra_topics: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "project.yaml").write_text(
        f"""\
cluster:
  bootstrap_servers: "{bootstrap}"
topics:
  {prefix}.orders:
    partitions: 2
    replication_factor: 1
{extra_topics}consumers:
  {prefix}-billing:
    topics: [{prefix}.orders]
    handler: app:handle
    on_error: {{action: skip}}
  {prefix}-audit:
    topics: [{prefix}.orders]
    handler: app:handle
    on_error: {{action: skip}}
"""
    )
    return directory


def produce_in_batches(bootstrap: str, topic: str, count: int, partitions: int, batches: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    per_batch = count // batches
    for b in range(batches):
        for i in range(b * per_batch, (b + 1) * per_batch):
            producer.produce(topic, f"event-{i}".encode(), partition=i % partitions)
        assert producer.flush(10) == 0  # each flush ends a batch on every partition


def consume_and_commit(
    bootstrap: str, group: str, topic: str, per_partition: dict[int, int], fast: dict
) -> None:
    """Consume in `group` and commit after each event until `per_partition[p]` events of each partition p."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **fast,
            "session.timeout.ms": 2000,
            "heartbeat.interval.ms": 500,
        }
    )
    consumer.subscribe([topic])
    seen = dict.fromkeys(per_partition, 0)
    deadline = time.monotonic() + 60
    while seen != per_partition and time.monotonic() < deadline:
        for message in consumer.consume(50, 0.5):
            assert message.error() is None, message.error()
            if seen[message.partition()] < per_partition[message.partition()]:
                seen[message.partition()] += 1
                consumer.commit(message, asynchronous=False)
    assert seen == per_partition
    consumer.close()  # after its assignment: a clean leave


@pytest.fixture
def lagging_group(
    tmp_path: Path, prefix: str, kafka_bootstrap: str, fast_group_config: dict
) -> tuple[Path, str, str]:
    """A project whose billing group consumed and committed 400 of 1,000 events; its audit group nothing."""
    project = write_project(tmp_path / "project", kafka_bootstrap, prefix)
    topic = f"{prefix}.orders"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(timeout=10)
    produce_in_batches(kafka_bootstrap, topic, 1000, 2, batches=4)
    consume_and_commit(kafka_bootstrap, f"{prefix}-billing", topic, {0: 150, 1: 250}, fast_group_config)
    return project, f"{prefix}-billing", f"{prefix}-audit"


def test_lag_is_exactly_what_is_left_after_committing_400_of_1000(
    lagging_group: tuple[Path, str, str],
) -> None:
    project, billing, audit = lagging_group
    code, out, err = kpipe("status", str(project), "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    groups = {g["group"]: g for g in report["groups"]}
    assert groups[billing]["lag"] == 600
    assert groups[billing]["no_committed_offset"] is False
    partitions = groups[billing]["partitions"]
    assert [(p["partition"], p["end"]) for p in partitions] == [(0, 500), (1, 500)]
    assert [(p["committed"], p["lag"]) for p in partitions] == [(150, 350), (250, 250)]
    # Nothing committed: flagged, and the whole log counts (it starts from the earliest offset).
    assert groups[audit]["lag"] == 1000
    assert groups[audit]["no_committed_offset"] is True
    assert [p["committed"] for p in groups[audit]["partitions"]] == [None, None]
    assert set(groups[billing]) >= {"group", "state", "members", "lag", "partitions", "clients"}


def test_max_lag_exit_codes(lagging_group: tuple[Path, str, str]) -> None:
    project, billing, _ = lagging_group
    code, out, err = kpipe("status", str(project), "--group", billing, "--max-lag", "600")
    assert code == 0, err
    assert f"consumer group {billing}: " in out and "lag 600" in out
    code, out, err = kpipe("status", str(project), "--group", billing, "--max-lag", "599")
    assert code == EXIT_LAG_EXCEEDED
    assert err.strip() == f"error: lag above --max-lag 599: {billing} (600)"
    assert "lag 600" in out  # the report is still printed


def test_text_report_and_topic_verdicts(
    tmp_path: Path, prefix: str, kafka_bootstrap: str, lagging_group: tuple[Path, str, str]
) -> None:
    project, billing, audit = lagging_group
    write_project(
        project,
        kafka_bootstrap,
        prefix,
        extra_topics=f"""\
  {prefix}.refunds:
    partitions: 1
    replication_factor: 1
  {prefix}.tuned:
    partitions: 1
    replication_factor: 1
    config:
      retention.ms: 60000
""",
    )
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(f"{prefix}.tuned", 1, 1, config={"retention.ms": "120000"})])[
        f"{prefix}.tuned"
    ].result(timeout=10)
    code, out, err = kpipe("status", str(project))
    assert code == 0, err
    lines = out.splitlines()
    assert f"  {prefix}.orders   in sync" in lines
    assert f"  {prefix}.refunds  missing" in lines
    assert f"  {prefix}.tuned    differs: update config of topic {prefix}.tuned" in lines
    audit_at = lines.index(next(line for line in lines if line.startswith(f"consumer group {audit}:")))
    assert lines[audit_at + 1].split() == ["topic", "partition", "committed", "end", "lag"]
    assert lines[audit_at + 2].split() == [
        f"{prefix}.orders",
        "0",
        "-",
        "500",
        "500",
        "no",
        "committed",
        "offset",
    ]


def test_unknown_group_is_a_usage_error(lagging_group: tuple[Path, str, str]) -> None:
    project, billing, _ = lagging_group
    code, _, err = kpipe("status", str(project), "--group", billing + "x")
    assert code == 2
    assert f"did you mean '{billing}'" in err


def test_unreachable_cluster_is_exit_3(tmp_path: Path, prefix: str) -> None:
    project = write_project(tmp_path / "project", "127.0.0.1:1", prefix)
    code, out, err = kpipe("status", str(project), "--timeout", "1", "--max-lag", "0")
    assert code == EXIT_CLUSTER
    assert out == ""
    # `within 1 s`: the --timeout given is the one the request waited (the message is made from that value).
    assert err.startswith("error: cannot reach Kafka at 127.0.0.1:1 within 1 s")


@pytest.mark.apache_kafka
def test_members_of_an_active_group_on_apache_kafka(
    tmp_path: Path,
    prefix: str,
    kafka_bootstrap: str,
    fast_group_config: dict,
    unique_name: Callable[..., str],
) -> None:
    """Tansu lists no members (see the broker notes); Apache Kafka does, with client ids and hosts."""
    project = write_project(tmp_path / "project", kafka_bootstrap, prefix)
    topic = f"{prefix}.orders"
    AdminClient({"bootstrap.servers": kafka_bootstrap}).create_topics([NewTopic(topic, 2, 1)])[topic].result(
        10
    )
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"{prefix}-billing",
            "client.id": "status-test",
            **fast_group_config,
        }
    )
    consumer.subscribe([topic])
    try:
        wait_for(lambda: consumer.consume(1, 0.2) is not None and consumer.assignment(), timeout=30)

        def members() -> list:
            _, out, _ = kpipe("status", str(project), "--group", f"{prefix}-billing", "--format", "json")
            group = json.loads(out)["groups"][0]
            return group["clients"] if group["state"] == "stable" else []

        clients = wait_for(members, timeout=30)
        assert [c["client_id"] for c in clients] == ["status-test"]
        assert clients[0]["host"]
        assert sorted(p["partition"] for p in clients[0]["partitions"]) == [0, 1]
    finally:
        consumer.close()


def test_watch_redraws_until_ctrl_c(lagging_group: tuple[Path, str, str]) -> None:
    """--watch on a terminal: the table appears, is redrawn, and Ctrl-C ends it with exit 0."""
    project, billing, _ = lagging_group
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kpipe", "status", str(project), "--group", billing, "--watch"]
        + ["--interval", "0.3"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(terminal)
    screen = bytearray()

    def seen(text: str, times: int = 1) -> bool:
        while select.select([controller], [], [], 0.1)[0]:
            try:
                screen.extend(os.read(controller, 65536))
            except OSError:
                break
        return screen.decode(errors="replace").count(text) >= times

    try:
        wait_for(
            lambda: seen(f"{billing}: empty, 0 members, lag 600", times=2),
            timeout=30,
            message=lambda: screen.decode(errors="replace")[-2000:],
        )
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)


def test_watch_and_json_do_not_mix(tmp_path: Path, unique_name: Callable[..., str]) -> None:
    project = write_project(tmp_path / "project", "127.0.0.1:1", unique_name("offline"))
    code, out, err = kpipe("status", str(project), "--watch", "--format", "json")
    assert (code, out) == (2, "")
    assert err.startswith("error: --watch draws a table")

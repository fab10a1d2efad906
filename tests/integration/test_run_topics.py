"""`kpipe run` and `kpipe produce` on a fresh broker with no `kpipe apply`: they create the topics they use, and on
the embedded broker the first event is handled within seconds (no 23 s group join)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from run_helpers import RECORDER, KpipeRun

from helpers import wait_for
from kpipe.service.load import load

FAILER = """\
def fail(event, ctx):
    raise RuntimeError("no such customer")
"""


def write(directory: Path, bootstrap: str, topic: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "recorder.py").write_text(RECORDER)
    (directory / "failer.py").write_text(FAILER)
    (directory / "project.yaml").write_text(f'cluster:\n  bootstrap_servers: "{bootstrap}"\n' + body)
    return directory


def topics_on(bootstrap: str) -> dict[str, int]:
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    return {name: len(t.partitions) for name, t in metadata.topics.items()}


def kpipe_cli(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from kpipe.cli import main; main()", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def send(bootstrap: str, topic: str, values: list[str]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in values:
        producer.produce(topic, value.encode())
    assert producer.flush(10) == 0


def read(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"reader-{topic}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    out: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        while len(out) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                out.append(msg.value())
    finally:
        consumer.close()
    return out


def test_run_creates_its_topics_and_a_missing_dead_letter_topic(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[..., str],
    prefix: str,
    kpipe_run: Callable[..., KpipeRun],
) -> None:
    source, dlq, other, unrelated = f"{prefix}.in", f"{prefix}.in.dlq", f"{prefix}.other", f"{prefix}.unused"
    # The source topic exists already (with fewer partitions than declared); its dead-letter topic does not.
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(source, 1, 1)])[source].result(10)
    group, recorder = unique_name("failing"), unique_name("recording")
    project = write(
        tmp_path / "p",
        kafka_bootstrap,
        source,
        f"""\
topics:
  {source}: {{partitions: 2, replication_factor: 1}}
  {dlq}: {{partitions: 3, replication_factor: 1, config: {{retention.ms: 3600000}}}}
  {other}: {{partitions: 2, replication_factor: 1}}
  {unrelated}: {{partitions: 1, replication_factor: 1}}
consumers:
  {group}:
    topics: [{source}]
    handler: failer:fail
    on_error: {{retries: 0, dead_letter_topic: {dlq}}}
  {recorder}:
    topics: [{other}]
    handler: recorder:record
    on_error: {{action: skip}}
""",
    )
    run = kpipe_run(project)
    assignments = wait_for(lambda: len(run.assignments()) == 2, timeout=60, message=run.log)
    assert assignments

    created = sorted(
        r["msg"] for r in run.records() if r["logger"] == "kpipe.topics" and r["level"] == "info"
    )
    assert created == [
        f"created topic {dlq} (partitions 3, replication 1)",
        f"created topic {other} (partitions 2, replication 1)",
    ]
    drift = [r["msg"] for r in run.records() if r["logger"] == "kpipe.topics" and r["level"] == "warning"]
    assert drift == [
        f"topic {source} differs from the files: partitions 1 on the cluster, 2 in the files; "
        "`kpipe plan` shows the changes (kpipe run never alters an existing topic)"
    ]
    live = topics_on(kafka_bootstrap)
    assert live[dlq] == 3 and live[other] == 2 and live[source] == 1  # created; the existing one left alone
    assert unrelated not in live  # no selected group uses it

    send(kafka_bootstrap, source, ["poison-1", "poison-2"])
    assert sorted(read(kafka_bootstrap, dlq, 2)) == [b"poison-1", b"poison-2"]
    assert run.stop() == 0
    # What it did, said on stop.
    final = [r["msg"] for r in run.records() if r["msg"].startswith(f"final: group '{group}'")]
    assert len(final) == 1 and ": handled 0 (" in final[0], run.log()
    assert "dead-lettered 2, skipped 0 in " in final[0], run.log()


def test_run_without_creation_exits_3_naming_every_missing_topic(
    tmp_path: Path, kafka_bootstrap: str, unique_name: Callable[..., str], prefix: str
) -> None:
    group = unique_name("g")
    body = f"""\
topics:
  {prefix}.a: {{partitions: 1}}
  {prefix}.b: {{partitions: 1}}
consumers:
  {group}:
    topics: [{prefix}.a]
    handler: recorder:record
    on_error: {{dead_letter_topic: {prefix}.b}}
"""
    project = write(tmp_path / "p", kafka_bootstrap, prefix, body)
    result = kpipe_cli("run", str(project), "--no-create-topics")
    assert result.returncode == 3, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"error: 2 topics are missing on {kafka_bootstrap}: {prefix}.a, {prefix}.b "
        "(not creating them: --no-create-topics); create them with `kpipe apply`"
    )
    # The same from the file's switch; nothing was created by either.
    (project / "project.yaml").write_text(
        (project / "project.yaml")
        .read_text()
        .replace("bootstrap_servers:", "create_missing_topics: false\n  bootstrap_servers:")
    )
    result = kpipe_cli("run", str(project))
    assert result.returncode == 3, result.stderr
    assert "(not creating them: cluster.create_missing_topics: false)" in result.stderr.splitlines()[-1]
    assert not [t for t in topics_on(kafka_bootstrap) if t.startswith(prefix)]


def test_produce_creates_its_topic(
    tmp_path: Path, kafka_bootstrap: str, unique_name: Callable[..., str]
) -> None:
    topic = unique_name("produced")
    body = f"""\
topics:
  {topic}: {{partitions: 2, replication_factor: 1}}
producers:
  api: {{topic: {topic}}}
"""
    project = write(tmp_path / "p", kafka_bootstrap, topic, body)
    result = kpipe_cli("produce", "api", str(project), stdin='{"a": 1}\n{"a": 2}\n')
    assert result.returncode == 0, result.stderr
    assert result.stdout == "delivered 2, failed 0, invalid 0\n"
    assert result.stderr == f"created topic {topic} (partitions 2, replication 1)\n"
    assert topics_on(kafka_bootstrap)[topic] == 2
    # The second time there is nothing to create.
    again = kpipe_cli("produce", "api", str(project), stdin='{"a": 3}\n')
    assert (again.returncode, again.stderr) == (0, "")


def test_first_event_on_the_embedded_broker_is_handled_with_its_fast_join_settings(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[..., str],
    prefix: str,
    kpipe_run: Callable[..., KpipeRun],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `bootstrap_servers: local` resolved through the state file, as `kpipe broker` records it; no -X settings.
    state_dir = tmp_path / "state"
    env = {"KPIPE_STATE_DIR": str(state_dir)}
    (state_dir / "kpipe").mkdir(parents=True)
    (state_dir / "kpipe" / "local-broker.json").write_text(
        json.dumps({"bootstrap": kafka_bootstrap, "pid": os.getpid()})
    )
    topic, group = f"{prefix}.quick", unique_name("quick")
    body = f"""\
topics:
  {topic}: {{partitions: 1, replication_factor: 1}}
consumers:
  {group}:
    topics: [{topic}]
    handler: recorder:record
"""
    project = write(tmp_path / "p", "local", topic, body)
    # librdkafka's own 45 s session makes this broker hold the first join ~23 s; the embedded broker's defaults
    # ~2 s. The group, loaded as `kpipe run` loads it (the state file resolves `local`), has those defaults.
    monkeypatch.setenv("KPIPE_STATE_DIR", str(state_dir))
    loaded = load([project], import_code=False)
    assert loaded.bootstrap_servers == kafka_bootstrap
    client = loaded.consumer_group(group).client.as_dict()
    assert (client["session.timeout.ms"], client["heartbeat.interval.ms"]) == ("4000", "1000")

    run = kpipe_run(project, consumer_config={}, env=env)
    wait_for(lambda: topic in topics_on(kafka_bootstrap), timeout=30, message=run.log)
    send(kafka_bootstrap, topic, ["first"])
    wait_for(lambda: run.handled(), timeout=60, message=run.log)
    assert run.stop() == 0


def test_adding_partitions_on_the_embedded_broker_says_it_cannot(
    tmp_path: Path, kafka_bootstrap: str, prefix: str, is_tansu: bool
) -> None:
    if not is_tansu:
        pytest.skip("Apache Kafka can add partitions")
    topic = f"{prefix}.grow"
    project = write(tmp_path / "p", kafka_bootstrap, topic, f"topics:\n  {topic}: {{partitions: 2}}\n")
    assert kpipe_cli("apply", str(project), "--yes").returncode == 0
    (project / "project.yaml").write_text((project / "project.yaml").read_text().replace("2}", "4}"))
    result = kpipe_cli("apply", str(project), "--yes")
    assert result.returncode == 3
    assert result.stderr.splitlines()[-1] == (
        f"error: apply failed for 1 of 1 changes: increase partitions of topic {topic}: 2 -> 4: this broker "
        "cannot add partitions to a topic (it does not support CreatePartitions, as the embedded broker does "
        f"not); recreate {topic} with the partitions you want: on the embedded broker, restart it "
        "(`kpipe broker --stop`, then `kpipe broker`; it keeps events in memory only) and apply again"
    )


@pytest.mark.apache_kafka
def test_a_broker_refusing_the_creation_is_one_line(
    tmp_path: Path, kafka_bootstrap: str, prefix: str
) -> None:
    # Apache Kafka refuses a replication factor above its broker count (the local broker accepts it).
    topic = f"{prefix}.refused"
    body = f"topics:\n  {topic}: {{partitions: 1, replication_factor: 1000}}\nproducers:\n  api: {{topic: {topic}}}\n"
    project = write(tmp_path / "p", kafka_bootstrap, topic, body)
    result = kpipe_cli("produce", "api", str(project), stdin='{"a": 1}\n')
    assert result.returncode == 3
    assert result.stderr.splitlines()[-1] == (
        f"error: cannot create topic {topic}: the declared replication factor is refused "
        "(INVALID_REPLICATION_FACTOR); fix the topic's declaration, or create it with `kpipe apply`"
    )


def test_the_python_api_creates_topics_only_when_asked(
    tmp_path: Path, kafka_bootstrap: str, prefix: str
) -> None:
    import kpipe

    topic = f"{prefix}.api"
    body = f"topics:\n  {topic}: {{partitions: 3}}\nproducers:\n  api: {{topic: {topic}}}\n"
    project = kpipe.load(write(tmp_path / "p", kafka_bootstrap, topic, body))
    project.producer("api").close(5)  # a producer alone changes nothing
    assert topic not in topics_on(kafka_bootstrap)
    assert kpipe.ensure_topics(project, producers=["api"]) == [topic]
    assert topics_on(kafka_bootstrap)[topic] == 3
    assert kpipe.ensure_topics(project, producers=["api"]) == []

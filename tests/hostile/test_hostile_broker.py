"""Issue 20.2 and 20.5 on the broker: `kpipe produce`, `plan`, `status` and `run` with hostile files and events.

The files read the environment's secrets (the canaries of hostile.CANARIES) and transform them into names,
descriptions and client settings; events hold NaN and Infinity. Nothing of a canary reaches the output, the
run's log or a dead-letter header; NaN is refused by produce and dead-lettered by a consumer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from helpers import wait_for
from hostile import CANARIES, assert_no_secret, run_kpipe

SCHEMA = "type: object\nrequired: [id, amount]\nproperties:\n  id: {type: string}\n  amount: {type: number}\n"
LEAKS = (
    "{{ env('GITHUB_TOKEN')[1:] }} {{ env('GITHUB_TOKEN')|reverse }} {{ env('AWS_SECRET_ACCESS_KEY')|upper }} "
    "{{ env('AWS_SECRET_ACCESS_KEY')[::2] }} {{ env('GITHUB_TOKEN')|list|join('.') }}"
)


def write_project(root: Path, bootstrap: str, topic: str, group: str) -> Path:
    (root / "pipelines" / "payment.schema.yaml").write_text(SCHEMA)
    (root / "recorder.py").write_text(
        "import os\ndef record(event, ctx):\n"
        "    open(os.path.join(os.environ['KPIPE_TEST_OUT'], event.id), 'w').close()\n"
    )
    project = root / "pipelines" / "project.yaml"
    project.write_text(
        f"""\
cluster:
  bootstrap_servers: "{{{{ env('KPIPE_TEST_HOSTILE_BOOTSTRAP') }}}}"
schemas:
  Payment: payment.schema.yaml
topics:
  {topic}:
    partitions: 1
    replication_factor: 1
    schema: Payment
    description: "{LEAKS}"
  {topic}.dlq:
    partitions: 1
    replication_factor: 1
producers:
  api:
    topic: {topic}
    linger_ms: 1
    config:
      client.id: "{{{{ env('GITHUB_TOKEN')|reverse }}}}"
consumers:
  {group}:
    topics: [{topic}]
    handler: recorder:record
    description: "{LEAKS}"
    commit: {{strategy: per_message}}
    on_error: {{retries: 0, dead_letter_topic: {topic}.dlq}}
    config:
      client.id: "{{{{ env('AWS_SECRET_ACCESS_KEY')[::-1] }}}}"
"""
    )
    return project


def _read(bootstrap: str, topic: str, count: int) -> list[tuple[bytes, dict[str, bytes]]]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"reader-{topic}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    seen: list = []

    def enough() -> bool:
        seen.extend((m.value(), dict(m.headers() or [])) for m in consumer.consume(10, 0.2) if not m.error())
        return len(seen) >= count

    try:
        wait_for(enough, timeout=90, message=lambda: f"{topic}: {seen}")
        return seen
    finally:
        consumer.close()


@pytest.fixture
def names(unique_name: Callable[..., str]) -> tuple[str, str]:
    return unique_name("payments"), unique_name("payers")


def test_plan_apply_status_and_produce_leak_nothing_and_refuse_nan(
    project: Path,
    kafka_bootstrap: str,
    names: tuple[str, str],
    make_topics: Callable[..., None],
) -> None:
    topic, group = names
    make_topics(topic, f"{topic}.dlq")
    write_project(project, kafka_bootstrap, topic, group)
    env = {"KPIPE_TEST_HOSTILE_BOOTSTRAP": kafka_bootstrap}
    for fmt in ("text", "json"):
        plan = run_kpipe(project, "plan", "pipelines/project.yaml", "--format", fmt, env=env, seconds=90)
        assert plan.code == 0, plan.text
        status = run_kpipe(project, "status", "pipelines/project.yaml", "--format", fmt, env=env, seconds=90)
        assert status.code == 0, status.text
    events = project / "events.jsonl"
    events.write_text(
        '{"id": "a", "amount": 1.5}\n'
        '{"id": "b", "amount": NaN}\n'
        '{"id": "c", "amount": Infinity}\n'
        '{"id": "d", "amount": -Infinity}\n'
        '{"id": "e", "amount": 2}\n'
    )
    produced = run_kpipe(
        project, "produce", "api", "pipelines/project.yaml", "--file", str(events), env=env, seconds=90
    )
    assert produced.code == 1, produced.text
    assert produced.out == "delivered 2, failed 0, invalid 3\n"
    refused = [line for line in produced.err.splitlines() if ": error: " in line]
    assert [line.split(": error: ")[0].split(":")[1] for line in refused[:3]] == ["2", "3", "4"], produced.err
    received = [json.loads(value) for value, _ in _read(kafka_bootstrap, topic, 2)]
    assert sorted(e["id"] for e in received) == ["a", "e"]


def test_produce_refuses_a_huge_number_with_its_position(
    project: Path, kafka_bootstrap: str, names: tuple[str, str], make_topics: Callable[..., None]
) -> None:
    topic, group = names
    make_topics(topic, f"{topic}.dlq")
    write_project(project, kafka_bootstrap, topic, group)
    events = project / "events.jsonl"
    events.write_text('{"id": "a", "amount": 1}\n{"id": "b", "amount": ' + "9" * 4301 + "}\n")
    env = {"KPIPE_TEST_HOSTILE_BOOTSTRAP": kafka_bootstrap}
    produced = run_kpipe(
        project, "produce", "api", "pipelines/project.yaml", "--file", str(events), env=env, seconds=90
    )
    assert produced.code == 1
    assert f"{events}:2:23: error: " in produced.err


def test_run_dead_letters_nan_and_leaks_nothing_in_logs_or_headers(
    project: Path,
    tmp_path: Path,
    kafka_bootstrap: str,
    names: tuple[str, str],
    make_topics: Callable[..., None],
    fast_group_config: dict[str, str | int],
) -> None:
    topic, group = names
    make_topics(topic, f"{topic}.dlq")
    write_project(project, kafka_bootstrap, topic, group)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for raw in (
        b'{"id": "n", "amount": NaN}',
        b'{"id": "i", "amount": -Infinity}',
        b'{"id": "ok", "amount": 1}',
    ):
        producer.produce(topic, raw)  # written by another client, which does not refuse them
    assert producer.flush(10) == 0
    out = tmp_path / "handled"
    out.mkdir()
    log_path = tmp_path / "run.log"
    options = [f"-X{key}={value}" for key, value in fast_group_config.items()]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KPIPE_")}
    environment.update(CANARIES, KPIPE_TEST_OUT=str(out), KPIPE_TEST_HOSTILE_BOOTSTRAP=kafka_bootstrap)
    environment["PYTHONPATH"] = os.pathsep.join([str(project), environment.get("PYTHONPATH", "")])
    with log_path.open("w") as log:
        run = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kpipe",
                "run",
                "pipelines/project.yaml",
                "--log-format",
                "json",
                *options,
            ],
            cwd=project,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )
    try:
        dead = _read(kafka_bootstrap, f"{topic}.dlq", 2)
        wait_for(lambda: (out / "ok").exists(), timeout=60, message=lambda: log_path.read_text())
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(60)
    ids = sorted(value.split(b'"id": "')[1].split(b'"')[0] for value, _ in dead)
    assert ids == [b"i", b"n"]
    for _, headers in dead:
        assert headers["kpipe.error.type"] == b"schema", headers  # an invalid event, not a handler failure
        assert_no_secret(json.dumps({k: v.decode(errors="replace") for k, v in headers.items()}), CANARIES)
    assert not (out / "n").exists() and not (out / "i").exists()
    assert_no_secret(log_path.read_text(), CANARIES)

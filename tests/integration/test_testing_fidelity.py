"""Fidelity of kpipe.testing: each scenario of tests/pipeline_scenarios.py runs in memory and on the broker,
through the same workers (GroupWorker built by kpipe.testing.engine.build_group, librdkafka clients on the
broker), and both give the same outcome: events handled per group, each output topic's values per partition in
order, dead letters with their error types, the groups that stopped. Also: a key lands on the partition the
in-memory partitioner picks."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from helpers import wait_for
from kpipe.compilation.compiled import ProducerSettings
from kpipe.compilation.project import load_project
from kpipe.runtime.producer import Producer as KpipeProducer
from kpipe.runtime.protocol import WORKER_EXIT_OK
from kpipe.testing.engine import GroupRun, build_group
from kpipe.testing.memory_cluster import Partitioner
from pipeline_scenarios import OUTPUTS, SCENARIOS, Scenario, outcome, run_in_memory, write_project

pytestmark = pytest.mark.integration


class Reader:
    """Every record of some topics, read from offset 0 of each partition and kept as they come."""

    def __init__(self, bootstrap: str, topics: dict[str, int]):
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": "fidelity-reader", "enable.auto.commit": False}
        )
        self._consumer.assign([TopicPartition(t, p, 0) for t, n in topics.items() for p in range(n)])
        self.records: dict[str, list[tuple[int, int, bytes | None, dict[str, str]]]] = {t: [] for t in topics}

    def poll(self) -> None:
        while msgs := self._consumer.consume(500, 0.2):
            for msg in msgs:
                if msg.error() is None:
                    headers = {k: v.decode() for k, v in msg.headers() or ()}
                    self.records[msg.topic()].append((msg.partition(), msg.offset(), msg.value(), headers))

    def close(self) -> None:
        self._consumer.close()


def _decode(value: bytes | None) -> Any:
    import json

    try:
        return json.loads(value) if value is not None else None
    except ValueError:
        return value


def _run_on_broker(
    scenario: Scenario,
    directory: Path,
    prefix: str,
    bootstrap: str,
    overrides: dict[str, str],
    make_topics: Callable[..., None],
    expected: dict[str, Any],
) -> dict[str, Any]:
    project = load_project(
        [directory / "pipelines"], root=directory, bootstrap_override=bootstrap, consumer_overrides=overrides
    )
    for topic in project.topic_settings():
        make_topics(topic.name, partitions=topic.partitions)
    runs: list[GroupRun] = [
        build_group(project, f"{prefix}-{g}", consumer_factory=Consumer, producer_factory=Producer)
        for g in scenario.groups
    ]
    codes: dict[str, int] = {}
    threads = []
    for run in runs:

        def work(run: GroupRun = run) -> None:
            codes[run.name] = run.worker.run()

        threads.append(threading.Thread(target=work, daemon=True))
        threads[-1].start()
    raw = Producer({"bootstrap.servers": bootstrap})
    senders: dict[str, KpipeProducer] = {}
    for given in scenario.given:
        topic = f"{prefix}-{given.topic}"
        if given.event is None:
            raw.produce(topic, given.raw, given.key)
            continue
        if topic not in senders:
            settings = project.topic(topic)
            senders[topic] = KpipeProducer(
                ProducerSettings("fidelity", topic, settings.key_field, settings.schema_name,
                                 project.cluster_client_config()),
                project.topic_model(topic),
            )  # fmt: skip
        senders[topic].send(given.event, key=given.key)
    assert raw.flush(10) == 0
    for sender in senders.values():
        sender.close()

    outputs = {f"{prefix}-{s}": project.topic(f"{prefix}-{s}").partitions for s in OUTPUTS}
    reader = Reader(bootstrap, outputs)

    def current() -> dict[str, Any]:
        reader.poll()
        records = {
            topic.removeprefix(f"{prefix}-"): [
                (p, _decode(v), h) for p, _, v, h in sorted(rows, key=lambda r: r[:2])
            ]
            for topic, rows in reader.records.items()
        }
        stopped = [name for name, code in codes.items() if code != WORKER_EXIT_OK]
        return outcome(scenario, prefix, {r.name: len(r.handled) for r in runs}, records, stopped)

    try:
        wait_for(lambda: current() == expected, timeout=120, message=lambda: f"on the broker: {current()}")
    finally:
        for run in runs:
            run.worker.stop()
        for thread in threads:
            thread.join(30)
    try:
        return current()  # after every worker committed and closed: nothing more was written
    finally:
        reader.close()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_memory_and_broker_give_the_same_outcome(
    scenario: Scenario,
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[..., str],
    make_topics: Callable[..., None],
    fast_group_config: dict[str, str | int],
) -> None:
    # Two prefixes: each run imports its own handler module, so no handler state is shared between them.
    memory_prefix, broker_prefix = unique_name("mem"), unique_name("fid")
    (tmp_path / "memory").mkdir()
    (tmp_path / "broker").mkdir()
    write_project(tmp_path / "memory", memory_prefix)
    write_project(tmp_path / "broker", broker_prefix, kafka_bootstrap)
    in_memory = run_in_memory(scenario, tmp_path / "memory", memory_prefix)
    overrides = {k: str(v) for k, v in fast_group_config.items()}
    on_broker = _run_on_broker(
        scenario, tmp_path / "broker", broker_prefix, kafka_bootstrap, overrides, make_topics, in_memory
    )
    assert on_broker == in_memory


def test_a_key_lands_on_the_partition_the_memory_partitioner_picks(
    kafka_bootstrap: str, unique_name: Callable[..., str], make_topics: Callable[..., None]
) -> None:
    topic = unique_name("partitioner")
    partitions = 7
    make_topics(topic, partitions=partitions)
    keys = [f"key-{i}" for i in range(200)] + ["ü-ñ", "customer-42"]
    producer = Producer({"bootstrap.servers": kafka_bootstrap})  # librdkafka's default partitioner
    for key in keys:
        producer.produce(topic, key.encode(), key.encode())
    assert producer.flush(10) == 0
    reader = Reader(kafka_bootstrap, {topic: partitions})
    try:
        wait_for(lambda: reader.poll() or len(reader.records[topic]) >= len(keys), timeout=30)
    finally:
        reader.close()
    landed = {value.decode(): partition for partition, _, value, _ in reader.records[topic] if value}
    partitioner = Partitioner()
    assert landed == {key: partitioner(key.encode(), partitions) for key in keys}
    assert len(set(landed.values())) == partitions  # the keys spread: a wrong hash could not match by chance

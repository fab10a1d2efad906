"""The consumer worker against a real broker: commit policies, dead letters, stop, crash and restart."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from broker_helpers import Running, committed, produce, read_all, read_at, worker_start
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from handlers_for_tests import Event, group_settings, read_records, run_worker_main

from helpers import returns_within, wait_for
from kpipe.runtime.handler import HandlerContext
from kpipe.runtime.protocol import WORKER_EXIT_CLUSTER, WORKER_EXIT_HALT, WORKER_EXIT_OK, WorkerStart
from kpipe.runtime.worker import GroupWorker, Limits

pytestmark = pytest.mark.integration  # workers on the session broker

# One consumer per group in these tests: the faster join settings (docs/broker.md).
SINGLE_MEMBER = {"session.timeout.ms": 2000, "heartbeat.interval.ms": 500}


@pytest.mark.parametrize(
    ("strategy", "expected_while_blocked"),
    [("per_message", 12), ("batch", 10), ("auto", 12)],
)
def test_commit_policy_commits_exactly_what_the_handler_finished(
    kafka_bootstrap: str, unique_name: Callable[[str], str], make_topics: Callable[..., None],
    fast_group_config: dict, strategy: str, expected_while_blocked: int,
) -> None:  # fmt: skip
    topic, group = unique_name("orders"), unique_name("g")
    make_topics(topic)
    produce(kafka_bootstrap, topic, [{"key": f"k{i}", "n": i} for i in range(20)])
    release = threading.Event()
    done: list[int] = []

    def handler(event: Event, ctx: HandlerContext) -> None:
        if event.n == 12:
            release.wait(30)  # offset 12 is in flight; 0..11 are finished
        done.append(event.n)

    settings = group_settings(
        # batch: only batch_size triggers commits here (a long interval); auto commits every 100 ms.
        kafka_bootstrap, group, (topic,), strategy=strategy, batch_size=5,
        interval_ms=100 if strategy == "auto" else 60_000,
        client={**fast_group_config, **SINGLE_MEMBER},
    )  # fmt: skip
    run = Running(GroupWorker(settings, {topic: Event}, handler))
    try:
        wait_for(lambda: len(done) == 12, 15, message=lambda: f"handled {done}")
        # batch: 10 is committed at once; auto commits within an interval; neither ever passes the in-flight 12.
        wait_for(lambda: committed(kafka_bootstrap, group, topic) == [expected_while_blocked], 10,
                 message=lambda: f"committed {committed(kafka_bootstrap, group, topic)}")  # fmt: skip
        release.set()
        wait_for(lambda: len(done) == 20, 10)
    finally:
        release.set()
        assert run.stop() == WORKER_EXIT_OK
    assert committed(kafka_bootstrap, group, topic) == [20]
    assert done == list(range(20))


def test_poison_event_and_failing_handler_are_dead_lettered_with_headers(
    kafka_bootstrap: str, unique_name: Callable[[str], str], make_topics: Callable[..., None],
    fast_group_config: dict,
) -> None:  # fmt: skip
    topic, group = unique_name("orders"), unique_name("g")
    dlq = topic + ".dlq"
    make_topics(topic, partitions=2)
    make_topics(dlq)
    events: list[Any] = [{"key": f"k{i % 4}", "n": i} for i in range(30)]
    events.insert(10, b'{"key": "k1", "n": "not a number"}')
    events.append({"key": "bad", "n": 99})
    produce(kafka_bootstrap, topic, events)
    attempts: Counter[str] = Counter()
    handled: list[int] = []

    def handler(event: Event, ctx: HandlerContext) -> None:
        attempts[event.key] += 1
        if event.key == "bad":
            raise ValueError(f"cannot process {event.key}")
        handled.append(event.n)

    settings = group_settings(
        kafka_bootstrap, group, (topic,), strategy="batch", batch_size=10, retries=2, backoff_ms=5,
        dead_letter_topic=dlq, client={**fast_group_config, **SINGLE_MEMBER},
    )  # fmt: skip
    run = Running(GroupWorker(settings, {topic: Event}, handler))
    try:
        wait_for(lambda: len(handled) == 30 and run.worker.dead_lettered == 2, 20,
                 message=lambda: f"handled {len(handled)}, dead-lettered {run.worker.dead_lettered}")  # fmt: skip
    finally:
        assert run.stop() == WORKER_EXIT_OK
    assert sorted(handled) == list(range(30))
    assert attempts["bad"] == 3  # first try + 2 retries
    letters = read_all(kafka_bootstrap, dlq, 2)
    by_type = {dict(m.headers())["kpipe.error.type"]: m for m in letters}
    schema, failed = by_type[b"schema"], by_type[b"handler"]
    assert schema.value() == b'{"key": "k1", "n": "not a number"}'
    schema_headers = dict(schema.headers())
    assert schema_headers["kpipe.source.topic"] == topic.encode()
    assert schema_headers["kpipe.group"] == group.encode()
    assert b"'n'" in schema_headers["kpipe.error.message"]
    assert schema_headers["kpipe.attempts"] == b"0"  # never handed to the handler
    failed_headers = dict(failed.headers())
    assert failed.key() == b"bad"
    assert failed_headers["kpipe.error.message"] == b"ValueError: cannot process bad"
    assert failed_headers["kpipe.attempts"] == b"3"
    assert failed_headers["kpipe.group"] == group.encode()
    # The source headers point at the original message.
    for letter, headers in ((schema, schema_headers), (failed, failed_headers)):
        assert headers["kpipe.source.topic"] == topic.encode()
        source = read_at(kafka_bootstrap, topic, int(headers["kpipe.source.partition"]),
                         int(headers["kpipe.source.offset"]))  # fmt: skip
        assert (source.key(), source.value()) == (letter.key(), letter.value())
    # Every message is committed, the dead letters included (a partition that got none has no commit: -1001).
    assert sum(max(o, 0) for o in committed(kafka_bootstrap, group, topic, 2)) == 32


def test_on_error_stop_halts_without_committing_the_failed_offset(
    kafka_bootstrap: str, unique_name: Callable[[str], str], make_topics: Callable[..., None],
    fast_group_config: dict,
) -> None:  # fmt: skip
    topic, group = unique_name("orders"), unique_name("g")
    make_topics(topic)
    produce(kafka_bootstrap, topic, [{"key": "k", "n": i} for i in range(10)])
    handled: list[int] = []

    def handler(event: Event, ctx: HandlerContext) -> None:
        if event.n == 5:
            raise RuntimeError("downstream refused")
        handled.append(event.n)

    settings = group_settings(
        kafka_bootstrap, group, (topic,), strategy="batch", batch_size=100, action="stop", retries=1,
        client={**fast_group_config, **SINGLE_MEMBER},
    )  # fmt: skip
    worker = GroupWorker(settings, {topic: Event}, handler)
    run = Running(worker)
    run.thread.join(30)
    assert run.code == WORKER_EXIT_HALT
    assert "t" in (worker.error or "") and "downstream refused" in (worker.error or "")
    assert handled == [0, 1, 2, 3, 4]
    assert committed(kafka_bootstrap, group, topic) == [5]


def test_worker_exits_with_cluster_code_when_no_broker_answers_for_too_long() -> None:
    settings = group_settings("127.0.0.1:1", "g", ("orders",))
    worker = GroupWorker(settings, {"orders": Event}, lambda e, ctx: None, limits=Limits(cluster=2))
    started = time.monotonic()
    # Bounded far below the default cluster limit (60 s): the 2 s given is the one it waited.
    assert returns_within(40, worker.run, "the worker without a broker") == WORKER_EXIT_CLUSTER
    assert time.monotonic() - started >= 2  # it kept trying for the whole limit
    assert worker.error == "no broker reachable at 127.0.0.1:1 for 2 s"
    assert worker.handled == 0 and worker.commits == 0


# --- worker processes: crash and graceful stop ------------------------------------------------------------------


def write_project(root: Path, bootstrap: str, topic: str, group: str, batch_size: int) -> Path:
    (root / "schemas").mkdir()
    (root / "schemas" / "event.schema.yaml").write_text(
        "type: object\nrequired: [key, n]\nproperties:\n  key: {type: string}\n  n: {type: integer}\n"
    )
    pipelines = root / "pipelines"
    pipelines.mkdir()
    (pipelines / "project.yaml").write_text(
        f"""cluster:
  bootstrap_servers: "{bootstrap}"
schemas:
  Event: ../schemas/event.schema.yaml
topics:
  {topic}:
    partitions: 2
    replication_factor: 1
    key: key
    schema: Event
consumers:
  {group}:
    topics: [{topic}]
    handler: handlers_for_tests:record
    commit: {{strategy: batch, batch_size: {batch_size}, interval_ms: 60000}}
    on_error: {{action: stop}}
"""
    )
    return pipelines


def spawn(spec: WorkerStart) -> Any:
    process = multiprocessing.get_context("spawn").Process(target=run_worker_main, args=(spec,))
    process.start()
    return process


@pytest.fixture
def record_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = str(tmp_path / "handled.txt")
    monkeypatch.setenv("KPIPE_TEST_RECORD", path)
    monkeypatch.setenv("KPIPE_TEST_DELAY_S", "0.004")
    return path


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_worker_process_restart_loses_nothing(
    kafka_bootstrap: str, unique_name: Callable[[str], str], make_topics: Callable[..., None],
    fast_group_config: dict, tmp_path: Path, record_file: str, how: str,
) -> None:  # fmt: skip
    topic, group = unique_name("orders"), unique_name("g")
    make_topics(topic, partitions=2)
    total = 600
    produce(kafka_bootstrap, topic, [{"key": f"k{i % 7}", "n": i} for i in range(total)])
    pipelines = write_project(tmp_path, kafka_bootstrap, topic, group, batch_size=50)
    extra = tuple((k, str(v)) for k, v in {**fast_group_config, **SINGLE_MEMBER}.items())
    spec = worker_start(str(pipelines), group, extra)

    first = spawn(spec)
    try:
        wait_for(
            lambda: len(read_records(record_file)) >= 200, 30, message="first worker handled < 200 events"
        )
        os.kill(first.pid, getattr(signal, how))
        first.join(20)
    finally:
        if first.is_alive():
            first.kill()
    assert first.exitcode == (-signal.SIGKILL if how == "SIGKILL" else WORKER_EXIT_OK)
    before = read_records(record_file)
    offsets_at_stop = committed(kafka_bootstrap, group, topic, 2)
    handled_at_stop = {(p, o) for _, _, p, o in before}
    for partition, next_offset in enumerate(offsets_at_stop):
        # Never a committed offset beyond what was handled.
        assert next_offset <= 0 or (partition, next_offset - 1) in handled_at_stop

    second = spawn(spec)
    try:
        wait_for(lambda: {r[1] for r in read_records(record_file)} == set(range(total)), 60,
                 message=lambda: f"{len({r[1] for r in read_records(record_file)})} of {total} handled")  # fmt: skip
        os.kill(second.pid, signal.SIGTERM)
        second.join(20)
    finally:
        if second.is_alive():
            second.kill()
    assert second.exitcode == WORKER_EXIT_OK
    records = read_records(record_file)
    counts = Counter((p, o) for _, _, p, o in records)
    duplicates = {po for po, c in counts.items() if c > 1}
    if how == "SIGTERM":
        assert not duplicates, f"graceful stop must not redeliver: {sorted(duplicates)[:10]}"
    else:
        # Duplicates only from the tail the killed worker had handled but not committed.
        assert all(o >= offsets_at_stop[p] for p, o in duplicates), (offsets_at_stop, sorted(duplicates)[:10])
        assert max(counts.values()) <= 2
    assert committed(kafka_bootstrap, group, topic, 2) == [
        max(o for _, _, p, o in records if p == part) + 1 for part in range(2)
    ]


def _produce_big_then_valid(bootstrap: str, topic: str, size: int, valid: int) -> bytes:
    """A schema-invalid event of `size` bytes, then `valid` valid ones; returns the big one."""
    big = b'{"key": "big", "n": "' + b"x" * (size - 23) + b'"}'
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "message.max.bytes": 10_000_000})
    producer.produce(topic, big, b"big", headers=[("trace-id", b"t-1")])
    for n in range(valid):
        producer.produce(topic, json.dumps({"key": f"k{n % 4}", "n": n}).encode(), f"k{n % 4}".encode())
    assert producer.flush(20) == 0
    return big


def test_a_5_mb_invalid_event_is_dead_lettered_smaller_and_the_100_behind_it_are_handled(
    kafka_bootstrap: str, unique_name: Callable[[str], str], make_topics: Callable[..., None],
    fast_group_config: dict,
) -> None:  # fmt: skip
    import hashlib

    topic, group = unique_name("big"), unique_name("g")
    dlq = topic + ".dlq"
    make_topics(topic, dlq)
    big = _produce_big_then_valid(kafka_bootstrap, topic, 5 * 1024 * 1024, 100)
    handled: list[int] = []
    settings = group_settings(
        kafka_bootstrap, group, (topic,), batch_size=50, dead_letter_topic=dlq,
        client={**fast_group_config, **SINGLE_MEMBER},
    )  # fmt: skip
    # The dead-letter producer keeps librdkafka's 1 MB message.max.bytes: it refuses the 5 MB event at once.
    run = Running(GroupWorker(settings, {topic: Event}, lambda e, ctx: handled.append(e.n)))
    try:
        wait_for(lambda: len(handled) == 100 and run.worker.dead_lettered == 1, 60,
                 message=lambda: f"handled {len(handled)}, dead-lettered {run.worker.dead_lettered}")  # fmt: skip
    finally:
        assert run.stop() == WORKER_EXIT_OK
    assert sorted(handled) == list(range(100))
    [letter] = read_all(kafka_bootstrap, dlq, 1)
    headers = dict(letter.headers())
    assert headers["kpipe.payload"] == b"truncated"
    assert letter.value() == big[:16384]
    assert headers["kpipe.payload.size"] == str(len(big)).encode()
    assert headers["kpipe.payload.sha256"] == hashlib.sha256(big).hexdigest().encode()
    assert (headers["kpipe.source.topic"], headers["kpipe.source.offset"]) == (topic.encode(), b"0")
    assert headers["kpipe.error.type"] == b"schema" and letter.key() == b"big"
    assert committed(kafka_bootstrap, group, topic) == [101]


@pytest.mark.apache_kafka
def test_a_dead_letter_the_broker_refuses_as_too_large_is_sent_without_its_payload(
    kafka_bootstrap: str, unique_name: Callable[[str], str], admin: AdminClient, fast_group_config: dict,
) -> None:  # fmt: skip
    # Apache Kafka enforces a topic's max.message.bytes (Tansu does not): the client lets the 5 MB event through
    # (message.max.bytes 10 MB), the broker refuses it and the 16 KiB preview, and takes the payload-less one.
    import dataclasses

    from kpipe.compilation.compiled import ClientConfig, Setting

    topic, group = unique_name("big"), unique_name("g")
    dlq = topic + ".dlq"
    futures = admin.create_topics(
        [NewTopic(topic, 1, 1), NewTopic(dlq, 1, 1, config={"max.message.bytes": "4096"})]
    )
    for future in futures.values():
        future.result(10)
    try:
        _produce_big_then_valid(kafka_bootstrap, topic, 5 * 1024 * 1024, 10)
        handled: list[int] = []
        settings = group_settings(
            kafka_bootstrap, group, (topic,), batch_size=50, dead_letter_topic=dlq,
            client={**fast_group_config, **SINGLE_MEMBER},
        )  # fmt: skip
        producer = {"bootstrap.servers": kafka_bootstrap, "message.max.bytes": "10000000"}
        settings = dataclasses.replace(
            settings,
            producer_client=ClientConfig(tuple(Setting(k, v, "declared") for k, v in producer.items())),
        )
        run = Running(GroupWorker(settings, {topic: Event}, lambda e, ctx: handled.append(e.n)))
        try:
            wait_for(lambda: len(handled) == 10 and run.worker.dead_lettered == 1, 60)
        finally:
            assert run.stop() == WORKER_EXIT_OK
        [letter] = read_all(kafka_bootstrap, dlq, 1)
        assert dict(letter.headers())["kpipe.payload"] == b"omitted" and letter.value() is None
    finally:
        for future in admin.delete_topics([topic, dlq]).values():
            future.exception(10)

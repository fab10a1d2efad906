"""The in-memory cluster and clients kpipe.testing gives the runtime: partitioners, offsets and commits as
librdkafka's clients report them, delivery reports served by poll()."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from kpipe.testing.clients import MemoryConsumer, MemoryProducer
from kpipe.testing.memory_cluster import MemoryCluster, Partitioner, _murmur2
from kpipe.testing.turns import Turns


def _signed(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


@pytest.mark.parametrize(
    ("key", "expected"),
    [  # the Java client's test vectors (Kafka's UtilsTest.testMurmur2)
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("a-little-bit-longer-string", -1486304829),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        ("abc", 479470107),
    ],
)
def test_murmur2_matches_the_java_client(key: str, expected: int) -> None:
    assert _signed(_murmur2(key.encode())) == expected


def test_a_key_always_picks_one_partition_and_keys_spread() -> None:
    partitioner = Partitioner()
    picks = {partitioner(f"k{i}".encode(), 5) for i in range(100)}
    assert picks == set(range(5))
    assert all(partitioner(b"customer-1", 5) == partitioner(b"customer-1", 5) for _ in range(10))


def test_unkeyed_records_spread_at_random_the_same_way_each_run() -> None:
    import random

    first = [Partitioner(rng=random.Random(3))(None, 4) for _ in range(1)]
    runs = [
        [p(None, 4) for _ in range(50)]
        for p in (Partitioner(rng=random.Random(3)), Partitioner(rng=random.Random(3)))
    ]
    assert runs[0] == runs[1] and len(set(runs[0])) == 4 and first


def test_an_unknown_partitioner_is_refused() -> None:
    with pytest.raises(ValueError, match="partitioner 'fnv1a' is not supported"):
        Partitioner("fnv1a")


@pytest.fixture
def cluster() -> MemoryCluster:
    return MemoryCluster({"orders": 2, "dlq": 1})


def _consumer(cluster: MemoryCluster, **config: Any) -> MemoryConsumer:
    turns = Turns()
    turns.release()  # no driver: every poll runs at once
    return MemoryConsumer({"group.id": "g", "auto.offset.reset": "earliest", **config}, cluster, turns, "g")


def test_the_first_poll_assigns_every_partition_through_the_callback(cluster: MemoryCluster) -> None:
    consumer = _consumer(cluster)
    assigned: list[list[TopicPartition]] = []
    consumer.subscribe(["orders"], on_assign=lambda c, tps: assigned.append(tps))
    assert consumer.consume(10, 0) == []
    assert [(tp.topic, tp.partition) for tp in assigned[0]] == [("orders", 0), ("orders", 1)]
    assert [(tp.topic, tp.partition) for tp in consumer.assignment()] == [("orders", 0), ("orders", 1)]


def test_subscribing_to_an_unknown_topic_fails(cluster: MemoryCluster) -> None:
    with pytest.raises(LookupError):
        _consumer(cluster).subscribe(["nope"])


def test_records_come_in_the_order_written_and_paused_partitions_give_none(cluster: MemoryCluster) -> None:
    consumer = _consumer(cluster)
    consumer.subscribe(["orders"], on_assign=lambda c, tps: None)
    consumer.consume(1, 0)
    for i, partition in enumerate([1, 0, 1]):
        cluster.append("orders", partition, None, f"v{i}".encode(), None)
    consumer.pause([TopicPartition("orders", 0)])
    assert [m.value() for m in consumer.consume(10, 0)] == [b"v0", b"v2"]
    consumer.resume([TopicPartition("orders", 0)])
    assert [(m.partition(), m.offset(), m.value()) for m in consumer.consume(10, 0)] == [(0, 0, b"v1")]


def test_explicit_commits_and_the_offset_store(cluster: MemoryCluster) -> None:
    consumer = _consumer(cluster, **{"enable.auto.commit": "false", "enable.auto.offset.store": "false"})
    consumer.subscribe(["orders"], on_assign=lambda c, tps: None)
    consumer.consume(1, 0)
    with pytest.raises(KafkaException) as nothing:
        consumer.commit(asynchronous=False)
    assert nothing.value.args[0].code() == KafkaError._NO_OFFSET
    cluster.append("orders", 0, None, b"x", None)
    [msg] = consumer.consume(10, 0)
    consumer.store_offsets(msg)
    [tp] = consumer.commit(asynchronous=False)
    assert (tp.topic, tp.partition, tp.offset, tp.error) == ("orders", 0, 1, None)
    consumer.commit(offsets=[TopicPartition("orders", 1, 7)], asynchronous=False)
    assert cluster.committed("g") == {("orders", 0): 1, ("orders", 1): 7}


def test_auto_commit_commits_what_was_stored_and_close_revokes_first(cluster: MemoryCluster) -> None:
    commits: list[Any] = []
    consumer = _consumer(
        cluster, on_commit=lambda err, tps: commits.append([(t.partition, t.offset) for t in tps])
    )
    revoked: list[Any] = []
    consumer.subscribe(
        ["orders"], on_assign=lambda c, tps: None, on_revoke=lambda c, tps: revoked.append(tps)
    )
    consumer.consume(1, 0)
    cluster.append("orders", 1, None, b"x", None)
    consumer.consume(10, 0)  # returned, so stored (enable.auto.offset.store defaults to true)
    consumer.close()
    assert [(tp.topic, tp.partition) for tp in revoked[0]] == [("orders", 0), ("orders", 1)]
    assert commits == [[(1, 1)]] and cluster.committed("g") == {("orders", 1): 1}
    with pytest.raises(RuntimeError):
        consumer.consume(1, 0)


def test_a_group_resumes_from_its_committed_offset(cluster: MemoryCluster) -> None:
    for i in range(3):
        cluster.append("orders", 0, None, f"v{i}".encode(), None)
    cluster.commit("g", {("orders", 0): 2})
    consumer = _consumer(cluster)
    consumer.subscribe(["orders"], on_assign=lambda c, tps: None)
    assert [m.value() for m in consumer.consume(10, 0)] == [b"v2"]


def test_produce_reports_delivery_on_poll(cluster: MemoryCluster) -> None:
    reports: list[Any] = []
    producer = MemoryProducer({}, cluster)
    producer.produce(
        "orders", "v", "customer-1", headers={"h": "1"}, on_delivery=lambda e, m: reports.append((e, m))
    )
    assert len(producer) == 1 and reports == []
    assert producer.poll(0) == 1 and len(producer) == 0
    error, msg = reports[0]
    assert error is None
    assert (msg.key(), msg.value(), msg.headers()) == (b"customer-1", b"v", [("h", b"1")])
    assert msg.partition() == Partitioner()(b"customer-1", 2)


def test_a_success_is_not_reported_with_delivery_report_only_error(cluster: MemoryCluster) -> None:
    reports: list[Any] = []
    producer = MemoryProducer(
        {"delivery.report.only.error": True, "on_delivery": lambda e, m: reports.append(e)}, cluster
    )
    producer.produce("orders", b"v")
    producer.produce("missing", b"v")
    producer.flush()
    assert [e.code() for e in reports] == [KafkaError._UNKNOWN_TOPIC]


def test_a_record_above_message_max_bytes_is_refused_at_once(cluster: MemoryCluster) -> None:
    producer = MemoryProducer({"message.max.bytes": "100"}, cluster)
    with pytest.raises(KafkaException) as refused:
        producer.produce("dlq", b"x" * 101)
    assert refused.value.args[0].name() == "MSG_SIZE_TOO_LARGE"
    assert cluster.records("dlq") == []


def test_a_virtual_wait_takes_no_time_and_moves_the_clock() -> None:
    import threading
    import time

    from kpipe.testing.clock import VirtualClock

    clock, stop = VirtualClock(), threading.Event()
    # Elapsed virtual time, not monotonic() differences: those carry the rounding of the real start they add
    # (1051514.00446414 - 51514.00446414 came out just under 1e6).
    real, virtual, shown = time.monotonic(), clock.elapsed, clock.monotonic()
    assert clock.wait(stop, 1e6) is False  # a real wait of 11 days would hang the test instead
    assert clock.elapsed - virtual >= 1e6 > time.monotonic() - real
    assert clock.monotonic() > shown
    stop.set()
    before = clock.monotonic()
    assert clock.wait(stop, 1e6) is True
    assert clock.monotonic() - before < 1e6  # a set event: the clock did not move on

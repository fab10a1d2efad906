"""plan + apply against a real broker (the embedded Tansu, or KPIPE_TEST_BOOTSTRAP)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from helpers import returns_within
from kpipe.compilation.compiled import TopicSettings
from kpipe.errors import BrokerUnreachable, UnsafePlanRefused
from kpipe.topics.apply import apply_plan, read_plan
from kpipe.topics.cluster import ClusterAPI, KafkaCluster, ResultCallback, TopicResult, connect
from kpipe.topics.plan import (
    ConfigDiff,
    CreateTopic,
    DecreasePartitions,
    DeleteTopic,
    IncreasePartitions,
    Plan,
    UpdateConfig,
)

pytestmark = pytest.mark.integration  # plan/apply against the session broker


@pytest.fixture
def cluster(kafka_bootstrap: str) -> Iterator[KafkaCluster]:
    c = connect({"bootstrap.servers": kafka_bootstrap}, timeout=10)
    yield c
    c.close()


def only(plan: Plan, prefix: str) -> Plan:
    """The part of a plan about this test's topics: the broker is shared with other tests."""
    return Plan(tuple(c for c in plan.changes if c.topic.startswith(prefix)))


def test_cluster_is_a_cluster_api(cluster: KafkaCluster) -> None:
    assert isinstance(cluster, ClusterAPI)


def test_the_first_describe_after_connecting_still_sees_what_this_client_wrote(
    prefix: str, kafka_bootstrap: str
) -> None:
    # The connection probe's listing stands in for the first describe() only until a request is made.
    cluster = connect({"bootstrap.servers": kafka_bootstrap}, timeout=10)
    try:
        assert f"{prefix}.t" not in cluster.describe().topics
        results = cluster.create_topics([CreateTopic(f"{prefix}.t", partitions=2, replication_factor=1)])
        assert [r.ok for r in results] == [True]
        assert cluster.describe().topics[f"{prefix}.t"].partitions == 2
    finally:
        cluster.close()
    again = connect({"bootstrap.servers": kafka_bootstrap}, timeout=10)
    try:
        again.create_topics([CreateTopic(f"{prefix}.u", partitions=1, replication_factor=1)])
        assert f"{prefix}.u" in again.describe().topics  # written before the first describe: not the probe's
    finally:
        again.close()


def test_creates_missing_topics_with_their_configs_and_second_apply_is_a_no_op(
    cluster: KafkaCluster, prefix: str
) -> None:
    desired = [
        TopicSettings(
            f"{prefix}.orders", 3, 1, config={"retention.ms": "604800000", "cleanup.policy": "delete"}
        ),
        TopicSettings(f"{prefix}.dlq", 1, 1, implicit=True),
    ]
    plan = read_plan(cluster, desired)
    assert [type(c) for c in plan.changes] == [CreateTopic, CreateTopic]
    report = apply_plan(plan, cluster, desired)
    assert not report.failed
    assert sorted(r.line() for r in report.results) == [
        f"created topic {prefix}.dlq",
        f"created topic {prefix}.orders",
    ]

    live = cluster.describe(config_for=[f"{prefix}.orders"])
    orders = live.topics[f"{prefix}.orders"]
    assert (orders.partitions, orders.replication_factor) == (3, 1)
    assert orders.config["retention.ms"] == "604800000"
    assert orders.config["cleanup.policy"] == "delete"
    assert live.topics[f"{prefix}.dlq"].partitions == 1

    again = read_plan(cluster, desired)
    assert not again.has_changes
    assert set(again.unchanged) == {f"{prefix}.orders", f"{prefix}.dlq"}
    assert apply_plan(again, cluster, desired).results == []


def test_config_drift_is_detected_and_fixed_and_undeclared_keys_never_drift(
    cluster: KafkaCluster, prefix: str, kafka_bootstrap: str
) -> None:
    name = f"{prefix}.t"
    desired = [TopicSettings(name, 1, 1, config={"retention.ms": "1000"})]
    apply_plan(read_plan(cluster, desired), cluster, desired)

    # Someone changes the declared key and sets an undeclared one.
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    entries = [
        ConfigEntry("retention.ms", "5000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("max.message.bytes", "2000000", incremental_operation=AlterConfigOpType.SET),
    ]
    for future in admin.incremental_alter_configs(
        [ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)]
    ).values():
        future.result()

    plan = read_plan(cluster, desired)
    assert plan.changes == (UpdateConfig(name, diffs=(ConfigDiff("retention.ms", "5000", "1000"),)),)
    report = apply_plan(plan, cluster, desired)
    assert [r.line() for r in report.results] == [f"updated config of topic {name}"]
    assert not read_plan(cluster, desired).has_changes
    config = cluster.describe(config_for=[name]).topics[name].config
    assert config["retention.ms"] == "1000"
    assert config["max.message.bytes"] == "2000000"  # incremental: the undeclared key is left alone


def test_a_newly_declared_key_is_set(cluster: KafkaCluster, prefix: str) -> None:
    name = f"{prefix}.t"
    apply_plan(read_plan(cluster, [TopicSettings(name, 1, 1)]), cluster)
    desired = [TopicSettings(name, 1, 1, config={"cleanup.policy": "compact"})]
    (change,) = read_plan(cluster, desired).changes
    assert isinstance(change, UpdateConfig)
    assert change.diffs[0].new == "compact"
    assert change.diffs[0].old in (None, "delete")  # Tansu reports only set keys; Kafka the default
    apply_plan(read_plan(cluster, desired), cluster, desired)
    assert not read_plan(cluster, desired).has_changes


def test_partition_decrease_is_refused_and_nothing_is_applied(cluster: KafkaCluster, prefix: str) -> None:
    name = f"{prefix}.t"
    apply_plan(read_plan(cluster, [TopicSettings(name, 3, 1)]), cluster)
    desired = [
        TopicSettings(name, 1, 1, config={"retention.ms": "1000"}),
        TopicSettings(f"{prefix}.new", 1, 1),
    ]
    plan = read_plan(cluster, desired)
    assert isinstance(plan.refused[0], DecreasePartitions)
    with pytest.raises(UnsafePlanRefused, match=f"decrease partitions of topic {name}: 3 -> 1"):
        apply_plan(plan, cluster, desired)
    live = cluster.describe(config_for=[name])
    assert live.topics[name].partitions == 3
    assert f"{prefix}.new" not in live.topics
    assert (
        "retention.ms" not in live.topics[name].config or live.topics[name].config["retention.ms"] != "1000"
    )


def test_prune_lists_undeclared_topics_and_guards_ones_with_committed_offsets(
    cluster: KafkaCluster, prefix: str, kafka_bootstrap: str, fast_group_config: dict
) -> None:
    kept, idle, used = f"{prefix}.kept", f"{prefix}.idle", f"{prefix}.used"
    everything = [TopicSettings(n, 1, 1) for n in (kept, idle, used)]
    apply_plan(read_plan(cluster, everything), cluster, everything)
    group = f"{prefix}-group"
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group, **fast_group_config})
    consumer.commit(offsets=[TopicPartition(used, 0, 0)], asynchronous=False)
    consumer.close()

    desired = [TopicSettings(kept, 1, 1)]
    without_prune = read_plan(cluster, desired)
    assert only(without_prune, prefix).changes == ()
    assert {idle, used} <= set(without_prune.undeclared)
    assert not any(n.startswith("_") for n in without_prune.undeclared)

    plan = only(read_plan(cluster, desired, prune=True), prefix)
    assert [(c.topic, c.is_refused) for c in plan.changes] == [(idle, False), (used, True)]
    assert group in plan.changes[1].refused
    with pytest.raises(UnsafePlanRefused, match=f"consumer groups {group} have committed offsets"):
        apply_plan(plan, cluster, desired)
    assert {idle, used} <= set(cluster.describe().topics)  # refused before any request

    plan = only(read_plan(cluster, desired, prune=True, force=True), prefix)
    assert all(isinstance(c, DeleteTopic) and not c.is_refused for c in plan.changes)
    report = apply_plan(plan, cluster, desired, force=True)
    assert sorted(r.line() for r in report.results) == [f"deleted topic {idle}", f"deleted topic {used}"]
    remaining = {n for n in cluster.describe().topics if n.startswith(prefix)}
    assert remaining == {kept}


def test_unreachable_broker_is_one_clear_error_within_the_timeout() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(BrokerUnreachable) as info:
            # Without its timeout, the metadata request would wait forever: bounded far above 1.5 s of a loaded run.
            returns_within(
                60, lambda: connect({"bootstrap.servers": f"127.0.0.1:{port}"}, timeout=1.5), "connect"
            )
        elapsed = time.monotonic() - started
    assert (
        str(info.value) == f"cannot reach Kafka at 127.0.0.1:{port} within 1.5 s (listing topics: _TRANSPORT)"
    )
    assert info.value.exit_code == 3
    # It kept trying for the whole timeout the message names (load only makes this longer); that it gave up
    # then, rather than after librdkafka's own timeouts, is the message's `within 1.5 s`: the value it waited.
    assert elapsed >= 1.4


def test_two_applies_racing_both_succeed(kafka_bootstrap: str, prefix: str) -> None:
    desired = [TopicSettings(f"{prefix}.{i}", 1, 1, config={"retention.ms": "1000"}) for i in range(20)]
    clusters = [connect({"bootstrap.servers": kafka_bootstrap}) for _ in range(2)]
    plans = [read_plan(c, desired) for c in clusters]  # both plan before either applies
    barrier = threading.Barrier(2)
    reports: list = [None, None]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            reports[i] = apply_plan(plans[i], clusters[i], desired)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    for report in reports:
        assert report is not None and not report.failed, report.render_text()
        assert len(report.results) == 20
    existed = sum(1 for report in reports for r in report.results if r.note == "already existed")
    created = sum(1 for report in reports for r in report.results if r.ok and not r.note)
    assert created == 20 and existed == 20
    assert not read_plan(clusters[0], desired).has_changes


class CountingCluster(KafkaCluster):
    """The real cluster client, noting each batch of topics it is asked to create (one CreateTopics each)."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__({"bootstrap.servers": bootstrap}, timeout=10)
        self.create_batches: list[int] = []

    def create_topics(
        self, topics: Sequence[CreateTopic], on_result: ResultCallback | None = None
    ) -> list[TopicResult]:
        self.create_batches.append(len(topics))
        return super().create_topics(topics, on_result)


def test_apply_of_500_topics_is_one_batch(kafka_bootstrap: str, prefix: str) -> None:
    # What makes a large apply fast is one CreateTopics request for every topic, not one per topic; the speed
    # itself is measured by benchmarks/run.py's `apply` case (1,000 topics against per-topic calls).
    desired = [
        TopicSettings(f"{prefix}.{i:03d}", 1, 1, config={"retention.ms": "3600000"}) for i in range(500)
    ]
    cluster = CountingCluster(kafka_bootstrap)
    try:
        started = time.monotonic()
        plan = read_plan(cluster, desired)
        report = apply_plan(plan, cluster, desired)
        elapsed = time.monotonic() - started
        assert not report.failed
        assert len(report.results) == 500
        assert cluster.create_batches == [500]
        started = time.monotonic()
        assert not read_plan(cluster, desired).has_changes
        replan = time.monotonic() - started
    finally:
        cluster.close()
    print(f"\n500 topics: plan+apply {elapsed:.2f} s, re-plan {replan:.2f} s")


@pytest.mark.apache_kafka
def test_partition_increase_on_apache_kafka(cluster: KafkaCluster, prefix: str) -> None:
    name = f"{prefix}.t"
    apply_plan(read_plan(cluster, [TopicSettings(name, 2, 1)]), cluster)
    desired = [TopicSettings(name, 4, 1, key_field="id")]
    plan = read_plan(cluster, desired)
    assert plan.changes == (IncreasePartitions(name, old=2, new=4, key_field="id"),)
    report = apply_plan(plan, cluster, desired)
    assert not report.failed
    assert cluster.describe().topics[name].partitions == 4

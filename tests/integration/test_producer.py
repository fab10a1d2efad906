"""The producer API against a real broker: keyed events stay ordered per key, failures are reported."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import BaseModel

from helpers import wait_for
from kpipe.compilation.compiled import ClientConfig, ProducerSettings, Setting
from kpipe.errors import BrokerUnreachable, ClusterError, EventInvalid
from kpipe.runtime.producer import Producer

pytestmark = pytest.mark.integration  # produces to the session broker


class Order(BaseModel):
    order_id: str
    customer_id: str
    seq: int
    timestamp: datetime


def producer_settings(bootstrap: str, topic: str, **config: str) -> ProducerSettings:
    conf = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": "5", **config}
    return ProducerSettings(
        name="order-api",
        topic=topic,
        key_field="customer_id",
        schema_name="Order",
        client=ClientConfig(tuple(Setting(k, v, "declared") for k, v in conf.items())),
    )


def test_keyed_events_land_on_one_partition_per_key_in_order(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("orders")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(10)
    customers = [f"c-{i}" for i in range(8)]
    with Producer(producer_settings(kafka_bootstrap, topic), Order) as producer:
        for seq in range(200):
            producer.send(
                {
                    "order_id": f"o-{seq}",
                    "customer_id": customers[seq % len(customers)],
                    "seq": seq,
                    "timestamp": datetime(2024, 1, 15, 10, 30, tzinfo=UTC),
                }
            )
        with pytest.raises(EventInvalid, match="'seq'"):
            producer.send({"order_id": "o-x", "customer_id": "c-0", "seq": "many", "timestamp": "2024-01-15"})
    assert producer.delivered == 200 and producer.failed == 0

    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": unique_name("reader")})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
    got: list = []
    try:
        wait_for(lambda: got.extend(m for m in consumer.consume(500, 0.2) if not m.error()) or len(got) >= 200,
                 10, message=lambda: f"{len(got)} of 200 read")  # fmt: skip
    finally:
        consumer.close()
    partitions: dict[str, set[int]] = defaultdict(set)
    sequence: dict[str, list[int]] = defaultdict(list)
    for msg in got:
        body = json.loads(msg.value())
        key = msg.key().decode()
        assert key == body["customer_id"]
        assert body["timestamp"] == "2024-01-15T10:30:00Z"
        partitions[key].add(msg.partition())
        sequence[key].append(body["seq"])
    assert all(len(p) == 1 for p in partitions.values())
    assert all(seqs == sorted(seqs) and len(seqs) == 25 for seqs in sequence.values())
    assert len(got) == 200


def test_close_raises_a_clear_cluster_error_when_no_broker_answers() -> None:
    settings = producer_settings("127.0.0.1:1", "orders", **{"message.timeout.ms": "1500"})
    producer = Producer(settings, Order)
    for seq in range(3):
        producer.send(
            {"order_id": f"o-{seq}", "customer_id": "c-1", "seq": seq, "timestamp": "2024-01-15T10:30:00Z"}
        )
    with pytest.raises(ClusterError) as info:
        producer.close(timeout=10)
    message = str(info.value)
    # Each event failed by its own message.timeout.ms (1.5 s) with a delivery report, before close's 10 s ran
    # out (that would say "still undelivered after 10 s", as in the test below).
    assert "producer 'order-api': 3 of 3 events to 'orders' were not delivered" in message
    assert "still undelivered" not in message
    assert "c-1" in message
    assert isinstance(info.value, BrokerUnreachable) and info.value.exit_code == 3
    assert producer.failed == 3 and producer.delivered == 0


def test_context_manager_reports_undelivered_events_after_a_short_timeout() -> None:
    settings = producer_settings("127.0.0.1:1", "orders", **{"message.timeout.ms": "60000"})
    producer = Producer(settings, None)
    producer.send({"customer_id": "c-1"})
    # close gave up after its own 1 s, not after message.timeout.ms (60 s): no delivery report had come.
    with pytest.raises(ClusterError, match="1 events still undelivered after 1 s"):
        producer.close(timeout=1)

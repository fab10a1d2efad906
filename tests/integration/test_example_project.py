"""The example project's own producers against the broker: what a producer sends, the topic's schema accepts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import kpipe

pytestmark = pytest.mark.integration  # the example project on the session broker

ROOT = Path(__file__).resolve().parents[2]


def test_events_with_optional_fields_left_out_round_trip(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # Regression: serialising the validated model wrote `"referral_code": null` for an optional property the
    # producer left out, which the (non-nullable) schema then rejected on the consumer side.
    project = kpipe.load(ROOT / "pipelines", bootstrap_override=kafka_bootstrap)
    settings = project.producer_settings("user-service")
    topic = unique_name("user-events")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(10)
    from kpipe.runtime.producer import Producer

    model = project.schema_model("UserCreated")
    event = {
        "event_type": "user.created",
        "user_id": "u-1",
        "email": "u1@example.com",
        "timestamp": "2026-11-27T09:00:00Z",
    }
    with Producer(settings.__class__(**{**settings.__dict__, "topic": topic}), model) as producer:
        producer.send(event)
        producer.send(model.model_validate(event))
    consumer = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": unique_name("g"), "auto.offset.reset": "earliest"}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])  # no group join needed to read one partition
    try:
        values = []
        for _ in range(100):
            values += [m.value() for m in consumer.consume(10, 0.5) if not m.error()]
            if len(values) == 2:
                break
    finally:
        consumer.close()
    assert len(values) == 2
    for value in values:
        assert json.loads(value) == event  # exactly what was given: no nulls, no filled-in defaults
        parsed = model.model_validate_json(value)
        assert parsed.referral_code is None and parsed.version == 1

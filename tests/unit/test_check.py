"""check: rules across objects, tested on assembled specs built in memory (no files, no schema compiler)."""

from __future__ import annotations

import pytest

from builders import assemble_texts, check_texts
from kpipe.check.rules import SchemaFields, check_project, dead_letter_topic, topic_name_problem

TOPIC = "topics:\n  orders:\n    partitions: 3\n"
GROUP = "consumers:\n  billing:\n    topics: [orders]\n    handler: app.billing:handle\n"


def test_a_clean_project_has_no_diagnostics() -> None:
    assert check_texts(TOPIC + GROUP + "producers:\n  api:\n    topic: orders\n") == []


def test_references_across_files() -> None:
    assert check_texts(TOPIC, GROUP) == []


@pytest.mark.parametrize(
    ("field", "value", "key"),
    [
        ("acks", "all", "acks"),
        ("linger_ms", "5", "linger.ms"),
        ("batch_size", "16384", "batch.size"),
        ("compression", "lz4", "compression.type"),
        ("delivery_timeout_ms", "60000", "delivery.timeout.ms"),
        ("client_id", "api", "client.id"),
    ],
)
def test_a_producer_field_set_again_in_config_is_refused(field: str, value: str, key: str) -> None:
    producer = (
        f"producers:\n  api:\n    topic: orders\n    {field}: {value}\n    config:\n      {key}: {value}\n"
    )
    assert check_texts(TOPIC + producer) == [
        f"p0.yaml:9:7: error: producer 'api': '{field}' is set both as a field and in config"
    ]
    assert check_texts(GROUP) == [
        "p0.yaml:3:14: error: consumer group 'billing' refers to unknown topic 'orders'"
    ]


def test_every_broken_reference_is_reported() -> None:
    text = TOPIC + "producers:\n  a:\n    topic: order\n  b:\n    topic: ordrs\n"
    assert check_texts(text) == [
        "p0.yaml:6:12: error: producer 'a' refers to unknown topic 'order'",
        "p0.yaml:8:12: error: producer 'b' refers to unknown topic 'ordrs'",
    ]


def test_reference_to_an_invalid_declaration_is_not_reported_twice() -> None:
    spec, problems = assemble_texts(
        "topics:\n  orders:\n    partitions: 0\nproducers:\n  a:\n    topic: orders\n"
    )
    assert [d.code for d in problems] == ["invalid-value"]
    assert check_project(spec, {}) == []


def test_key_field_against_schema_fields() -> None:
    text = (
        "schemas:\n  E: {model: app:E}\ntopics:\n  orders:\n    partitions: 3\n    key: id\n    schema: E\n"
    )
    assert check_texts(text, schemas={"E": SchemaFields(frozenset({"id"}), frozenset({"id"}))}) == []
    assert check_texts(text, schemas={"E": None}) == []  # the schema failed to compile: already reported
    [found] = check_texts(text, schemas={"E": SchemaFields(frozenset({"order_id", "x"}), frozenset())})
    assert found == "p0.yaml:6:10: error: topic 'orders': key field 'id' is not a field of schema 'E'"


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("orders", None),
        ("a.b_c-D9", None),
        (".", "topic name '.' is not allowed"),
        ("..", "topic name '..' is not allowed"),
        ("o" * 249, None),
        ("o" * 250, "topic name is 250 characters long; Kafka allows at most 249"),
        (
            "ordérs",
            "topic name 'ordérs' has characters Kafka does not allow: 'é' (use letters, digits, '.', '_' and '-')",
        ),
    ],
)
def test_topic_name_rules(name: str, problem: str | None) -> None:
    assert topic_name_problem(name) == problem


def test_dot_underscore_collision_is_a_warning_once() -> None:
    text = "topics:\n  a.b:\n    partitions: 1\n  a_b:\n    partitions: 1\n  a-b:\n    partitions: 1\n"
    spec, _ = assemble_texts(text)
    [found] = check_project(spec, {})
    assert not found.is_error
    assert found.code == "topic-name-collision"
    assert "topic 'a_b' collides with 'a.b'" in found.message


def test_dead_letter_topic_derivation() -> None:
    spec, _ = assemble_texts(TOPIC + GROUP)
    group = spec.consumers["billing"].spec
    assert dead_letter_topic("billing", group) == "billing.dlq"
    spec, _ = assemble_texts(TOPIC + GROUP + "    on_error: {action: skip}\n")
    assert dead_letter_topic("billing", spec.consumers["billing"].spec) is None


def test_dead_letter_topic_ignored_when_not_dead_lettering() -> None:
    found = check_texts(TOPIC + GROUP + "    on_error: {action: stop, dead_letter_topic: orders.dlq}\n")
    assert found == [
        "p0.yaml:8:30: warning: consumer group 'billing': dead_letter_topic is ignored with on_error.action 'stop'"
    ]


def test_idle_instances_counts_the_largest_topic() -> None:
    text = (
        "topics:\n  a:\n    partitions: 2\n  b:\n    partitions: 4\n"
        "consumers:\n  g:\n    topics: [a, b]\n    handler: m:f\n    instances: 4\n"
    )
    assert check_texts(text) == []
    assert check_texts(text.replace("instances: 4", "instances: 5")) == [
        "p0.yaml:10:16: warning: consumer group 'g': 5 instances but at most 4 partitions to share; 1 will sit idle"
    ]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("enable.auto.commit: true", "enable.auto.commit=true contradicts commit strategy 'per_message'"),
        ("enable.auto.offset.store: true", "enable.auto.offset.store=true would commit events"),
        ("auto.offset.reset: latest", "config sets auto.offset.reset; use the 'auto_offset_reset' field"),
        ("group.id: other", "config sets group.id, but a group's id is its name"),
    ],
)
def test_consumer_config_contradicting_the_policy(config: str, expected: str) -> None:
    [found] = check_texts(
        TOPIC + GROUP + f"    commit: {{strategy: per_message}}\n    config:\n      {config}\n"
    )
    assert expected in found


def test_auto_commit_false_under_auto() -> None:
    [found] = check_texts(
        TOPIC + GROUP + "    commit: {strategy: auto}\n    config: {enable.auto.commit: false}\n"
    )
    assert "enable.auto.commit=false contradicts commit strategy 'auto'" in found


def test_non_idempotent_producer_may_use_acks_1() -> None:
    assert (
        check_texts(TOPIC + "producers:\n  a:\n    topic: orders\n    acks: 1\n    idempotent: false\n") == []
    )


def test_idempotent_producer_in_flight_limit() -> None:
    [found] = check_texts(
        TOPIC
        + "producers:\n  a:\n    topic: orders\n    config:\n      max.in.flight.requests.per.connection: 6\n"
    )
    assert "at most 5 in-flight requests per connection (got 6)" in found


def test_cluster_config_checked_per_client_kind() -> None:
    assert check_texts("cluster:\n  config:\n    session.timeout.ms: 6000\n    linger.ms: 5\n") == []


@pytest.mark.parametrize(
    ("key", "instead"),
    [
        ("bootstrap.servers", "bootstrap_servers"),
        ("metadata.broker.list", "bootstrap_servers"),
        ("group.id", "the group name"),
    ],
)
def test_cluster_config_must_not_name_the_cluster_or_a_group(key: str, instead: str) -> None:
    [found] = check_texts(f"cluster:\n  config:\n    {key}: b:9092\n")
    assert found == f"p0.yaml:3:5: error: cluster: config sets {key}; use {instead} instead"


def test_secrets_are_never_in_messages() -> None:
    [found] = check_texts("cluster:\n  config:\n    sasl.passwrd: hunter2\n")
    assert "hunter2" not in found
    assert found == "p0.yaml:3:5: error: cluster: unknown librdkafka property 'sasl.passwrd'"


def test_cluster_wide_acks_reach_idempotent_producers() -> None:
    cluster = "cluster:\n  config:\n    acks: 1\n"
    producers = "producers:\n  a:\n    topic: orders\n  b:\n    topic: orders\n    acks: all\n"
    assert check_texts(cluster + TOPIC + producers) == [
        "p0.yaml:3:11: error: producer 'a': an idempotent producer needs acks=all (got acks=1)"
    ]


def test_handler_timeout_must_be_below_max_poll_interval() -> None:
    timeout = "    on_error: {timeout_ms: 300000}\n"
    assert check_texts(TOPIC + GROUP + timeout) == [
        "p0.yaml:8:28: warning: consumer group 'billing': on_error.timeout_ms (300000) is not below "
        "max.poll.interval.ms (300000); the group evicts a hung member before the hang is reported"
    ]
    raised = "    config: {max.poll.interval.ms: 600000}\n"
    assert check_texts(TOPIC + GROUP + timeout + raised) == []
    cluster = "cluster:\n  config: {max.poll.interval.ms: 100000}\n"
    assert check_texts(cluster + TOPIC + GROUP + "    on_error: {timeout_ms: 200000}\n")[0].startswith(
        "p0.yaml:10:28: warning: consumer group 'billing': on_error.timeout_ms (200000) is not below "
        "max.poll.interval.ms (100000)"
    )
    assert check_texts(TOPIC + GROUP + "    on_error: {timeout_ms: 30000}\n") == []


def test_ordering_without_concurrency_has_no_effect() -> None:
    assert check_texts(TOPIC + GROUP + "    concurrency: 8\n    ordering: none\n") == []
    assert check_texts(TOPIC + GROUP + "    ordering: partition\n") == [
        "p0.yaml:8:5: warning: consumer group 'billing': ordering 'partition' has no effect with concurrency 1 "
        "(one event at a time, in offset order)"
    ]


def test_partition_ordering_caps_concurrency_at_the_partition_count() -> None:
    assert check_texts(TOPIC + GROUP + "    concurrency: 3\n    ordering: partition\n") == []
    assert check_texts(TOPIC + GROUP + "    concurrency: 16\n    ordering: partition\n") == [
        "p0.yaml:8:18: warning: consumer group 'billing': concurrency 16 with ordering 'partition' runs at most "
        "3 events at once (one per partition of its topics)"
    ]
    assert (
        check_texts(TOPIC + GROUP + "    concurrency: 16\n") == []
    )  # ordering key: keys, not partitions, bound it


def test_concurrency_out_of_range_is_an_error() -> None:
    spec, problems = assemble_texts(TOPIC + GROUP + "    concurrency: 0\n")
    assert [d.code for d in problems] == ["invalid-value"]

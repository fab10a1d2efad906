"""compile: the example project becomes plain, comparable data, and each setting knows where it came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from kpipe.compilation import compiler
from kpipe.compilation.compiled import CommitPolicy, ErrorPolicy, TopicSettings
from kpipe.compilation.project import inspect_project
from kpipe.diagnostics import Position
from kpipe.model.assemble import Declarations

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "pipelines"
PROD = EXAMPLE / "values" / "prod.yaml"
COMMON = {"bootstrap.servers": "local", "socket.keepalive.enable": "true"}
DLQ_PRODUCER = {"acks": "all", "enable.idempotence": "true", "linger.ms": "5"}


def _spec(
    monkeypatch: pytest.MonkeyPatch, values: list[Path] | None = None, **variables: str
) -> Declarations:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.chdir(ROOT)
    inspection = inspect_project([EXAMPLE], variables=variables, values_files=values or [])
    assert inspection.diagnostics == []
    return inspection.declarations


def test_producers(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(monkeypatch)
    order_api = compiler.compile_producer(spec, "order-api")
    assert (order_api.topic, order_api.key_field, order_api.schema_name) == (
        "orders",
        "customer_id",
        "OrderEvent",
    )
    assert order_api.client.as_dict() == {
        **COMMON,
        "client.id": "kpipe-order-api",
        "acks": "all",
        "retries": "3",
        "linger.ms": "5",
        "compression.type": "zstd",
        "enable.idempotence": "true",
    }
    assert compiler.compile_producer(spec, "user-service").client.as_dict() == {
        **COMMON,
        "client.id": "kpipe-user-service",
        "acks": "all",
        "retries": "2147483647",
        "linger.ms": "5",
        "compression.type": "none",
        "enable.idempotence": "true",
    }


def test_consumer_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(monkeypatch)
    consumer_defaults = {
        **COMMON,
        "enable.partition.eof": "false",
        "fetch.queue.backoff.ms": "10",
        "queued.max.messages.kbytes": "8192",
    }
    processors = compiler.compile_consumer_group(spec, "order-processors")
    assert processors.client.as_dict() == {
        **consumer_defaults,
        "group.id": "order-processors",
        "client.id": "kpipe-order-processors",
        "auto.offset.reset": "earliest",
        "enable.auto.offset.store": "false",
        "enable.auto.commit": "false",
    }
    assert processors.commit == CommitPolicy("batch", batch_size=100, interval_ms=5000)
    assert processors.on_error == ErrorPolicy("dead_letter", 3, 200, 30_000, "orders.dlq")
    assert (processors.topics, processors.instances, processors.handler) == (
        ("orders",),
        2,
        "example_app.handlers:process_order",
    )
    assert processors.topic_schemas == {"orders": "OrderEvent"}
    # The pipeline files' directory, then the project root (issue 12.3).
    assert processors.import_paths == (str(EXAMPLE), str(EXAMPLE.parent))
    assert processors.producer_client is not None
    assert processors.producer_client.as_dict() == {
        **COMMON,
        "client.id": "kpipe-order-processors-dlq",
        **DLQ_PRODUCER,
    }

    analytics = compiler.compile_consumer_group(spec, "analytics")
    assert analytics.client.as_dict() == {
        **consumer_defaults,
        "group.id": "analytics",
        "client.id": "kpipe-analytics",
        "auto.offset.reset": "earliest",
        "enable.auto.offset.store": "false",
        "enable.auto.commit": "true",
        "auto.commit.interval.ms": "5000",
    }
    assert analytics.commit == CommitPolicy("auto", interval_ms=5000)
    assert analytics.on_error == ErrorPolicy("skip", 1, 200, 30_000, None)
    assert analytics.producer_client is None  # it skips failed events and emits nothing: it never sends

    mailer = compiler.compile_consumer_group(spec, "welcome-mailer")
    assert mailer.commit == CommitPolicy("per_message")
    assert mailer.on_error.dead_letter_topic == "welcome-mailer.dlq"
    assert mailer.client.get("enable.auto.commit") == "false"
    assert mailer.producer_client is not None


def test_provenance(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(monkeypatch)
    settings = {s.key: s for s in compiler.compile_producer(spec, "order-api").client.settings}
    acks = settings["acks"]
    assert (acks.source, acks.origin, acks.position) == (
        "declared",
        "producers.order-api.acks",
        Position("pipelines/orders.yaml", 24, 11),
    )
    assert (settings["client.id"].source, settings["client.id"].origin) == ("kpipe default", None)
    keepalive = settings["socket.keepalive.enable"]
    assert (keepalive.source, keepalive.origin, keepalive.position) == (
        "cluster.config",
        "cluster.config.socket.keepalive.enable",
        Position("pipelines/cluster.yaml", 12, 30),
    )
    bootstrap = settings["bootstrap.servers"]
    assert (bootstrap.source, bootstrap.position) == ("declared", Position("pipelines/cluster.yaml", 5, 22))
    user_service = {s.key: s for s in compiler.compile_producer(spec, "user-service").client.settings}
    assert (user_service["retries"].source, user_service["retries"].position) == ("kpipe default", None)
    group = {s.key: s for s in compiler.compile_consumer_group(spec, "order-processors").client.settings}
    commit = group["enable.auto.commit"]
    assert (commit.source, commit.origin, commit.position) == (
        "derived",
        "consumers.order-processors.commit",
        Position("pipelines/orders.yaml", 36, 13),
    )


def test_bootstrap_override(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(monkeypatch)
    client = compiler.compile_producer(spec, "order-api", "b1:9092").client
    [bootstrap] = [s for s in client.settings if s.key == "bootstrap.servers"]
    assert (bootstrap.value, bootstrap.source, bootstrap.origin) == (
        "b1:9092",
        "override",
        "--bootstrap-servers",
    )
    assert compiler.compile_cluster_client(spec).as_dict() == COMMON


def test_topics_include_the_implicit_dead_letter_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(monkeypatch)
    assert compiler.compile_topics(spec) == [
        TopicSettings(
            "orders",
            3,
            1,
            {"retention.ms": "604800000", "cleanup.policy": "delete"},
            "customer_id",
            "OrderEvent",
            Position("pipelines/orders.yaml", 4, 3),
        ),
        TopicSettings(
            "orders.dlq",
            3,
            1,
            {"retention.ms": "1209600000"},
            position=Position("pipelines/orders.yaml", 14, 3),
        ),
        TopicSettings(
            "user-events",
            3,
            1,
            {"retention.ms": "2592000000"},
            "user_id",
            "UserCreated",
            Position("pipelines/users.yaml", 3, 3),
        ),
        TopicSettings(
            "welcome-mailer.dlq", 3, 1, {}, position=Position("pipelines/users.yaml", 19, 5), implicit=True
        ),
    ]


def test_prod_values(monkeypatch: pytest.MonkeyPatch) -> None:
    topics = {t.name: t for t in compiler.compile_topics(_spec(monkeypatch, [PROD]))}
    assert {n: (t.partitions, t.replication_factor) for n, t in topics.items()} == {
        "orders": (12, 3),
        "orders.dlq": (12, 3),
        "user-events": (6, 3),
        "welcome-mailer.dlq": (6, 3),
    }


def test_var_wins_over_values(monkeypatch: pytest.MonkeyPatch) -> None:
    topics = {t.name: t for t in compiler.compile_topics(_spec(monkeypatch, [PROD], orders_partitions="24"))}
    assert topics["orders"].partitions == 24


def test_env_sets_the_bootstrap_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(monkeypatch)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "b1:9092,b2:9092")
    inspection = inspect_project([EXAMPLE])
    assert (
        compiler.compile_cluster_client(inspection.declarations).get("bootstrap.servers") == "b1:9092,b2:9092"
    )
    assert spec.cluster_spec.bootstrap_servers == "local"


def test_compiled_objects_are_frozen_and_comparable(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(monkeypatch)
    first = compiler.compile_consumer_group(spec, "order-processors")
    assert first == compiler.compile_consumer_group(spec, "order-processors")
    with pytest.raises(AttributeError):
        first.instances = 3  # type: ignore[misc]


def test_passthrough_wins_over_cluster_config(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "cluster:\n  bootstrap_servers: b:9092\n  config: {socket.timeout.ms: 1000, linger.ms: 50}\n"
        "topics:\n  t:\n    partitions: 1\n"
        "producers:\n  p:\n    topic: t\n    config: {socket.timeout.ms: 2000}\n"
        "consumers:\n  g:\n    topics: [t]\n    handler: json:loads\n",
        encoding="utf-8",
    )
    inspection = inspect_project([tmp_path])
    assert inspection.diagnostics == []
    producer = {s.key: s for s in compiler.compile_producer(inspection.declarations, "p").client.settings}
    assert (producer["socket.timeout.ms"].value, producer["socket.timeout.ms"].source) == (
        "2000",
        "passthrough",
    )
    # A field left at its default is a kpipe default, so cluster.config beats it.
    assert (producer["linger.ms"].value, producer["linger.ms"].source) == ("50", "cluster.config")
    group = compiler.compile_consumer_group(inspection.declarations, "g").client.as_dict()
    assert group["socket.timeout.ms"] == "1000"
    assert "linger.ms" not in group  # a producer setting does not reach consumers


def test_cluster_config_overrides_the_group_producer_defaults(tmp_path: Path) -> None:
    # Where the cluster grants no IdempotentWrite, cluster.config must be able to turn idempotence off for
    # the producer that writes a group's dead letters too, or every dead-letter write fails.
    (tmp_path / "p.yaml").write_text(
        "cluster: {bootstrap_servers: 'k:9092', config: {enable.idempotence: false, acks: 1}}\n"
        "topics: {orders: {partitions: 1}}\n"
        "consumers: {billing: {topics: [orders], handler: 'app:bill'}}\n"
    )
    from kpipe.compilation.project import load_project

    group = load_project([tmp_path]).consumer_group("billing")
    producer = group.producer_client.as_dict()
    assert producer["enable.idempotence"] == "false" and producer["acks"] == "1"
    assert producer["linger.ms"] == "5"  # kpipe's default where the cluster says nothing


@pytest.mark.parametrize(
    ("on_error", "emits", "sends"),
    [
        ("", "", True),  # on_error's default action is dead_letter
        ("on_error: {action: dead_letter}", "", True),
        ("on_error: {action: skip}", "", False),
        ("on_error: {action: stop}", "", False),
        ("on_error: {action: skip}", "emits: [payments]", True),
        ("on_error: {action: stop}", "emits: [payments]", True),
    ],
)
def test_a_group_has_a_producer_only_when_it_can_send_through_it(
    tmp_path: Path, on_error: str, emits: str, sends: bool
) -> None:
    # The group's own producer writes its dead letters and its declared emits; a group that can do neither gets
    # none, so its workers start no producer (threads, buffers). Sending through a kpipe Producer needs none.
    group = "\n".join(
        f"      {line}" for line in ("topics: [orders]", "handler: 'app:bill'", on_error, emits) if line
    )
    (tmp_path / "p.yaml").write_text(
        "cluster: {bootstrap_servers: 'k:9092'}\n"
        "topics: {orders: {partitions: 1}, payments: {partitions: 1}}\n"
        f"consumers:\n  billing:\n{group}\n"
    )
    from kpipe.compilation.project import load_project

    compiled = load_project([tmp_path]).consumer_group("billing")
    if sends:
        assert compiled.producer_client is not None
        assert compiled.producer_client.get("client.id") == "kpipe-billing-dlq"
    else:
        assert compiled.producer_client is None

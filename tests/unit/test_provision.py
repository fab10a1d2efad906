"""What `kpipe run`/`produce` make sure exists before starting: the topics in use, created through apply, never
altered; and the embedded broker's consumer defaults as their own layer. Failures the local broker cannot show
(authorization, policy) go through FakeCluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from fake_cluster import FakeCluster
from kpipe.compilation import compiler
from kpipe.compilation.compiled import Provisioning, TopicSettings
from kpipe.compilation.explain import explain_client
from kpipe.compilation.project import inspect_project, load_project
from kpipe.errors import ClusterError
from kpipe.topics.plan import LiveTopic
from kpipe.topics.provision import provision

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "pipelines"


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("KPIPE_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("KPIPE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(ROOT)
    return inspect_project([EXAMPLE]).declarations


def topic(name: str, partitions: int = 3, **config: str) -> TopicSettings:
    return TopicSettings(name, partitions, 1, config)


def test_provisioning_holds_what_the_groups_read_dead_letter_and_emit_and_the_producers_write(
    example,
) -> None:  # type: ignore[no-untyped-def]
    names = lambda p: [t.name for t in p.topics]  # noqa: E731
    assert names(compiler.compile_provisioning(example, groups=["order-processors"])) == [
        "orders",
        "orders.dlq",
    ]
    # analytics skips failures: no dead-letter topic.
    assert names(compiler.compile_provisioning(example, groups=["analytics"])) == ["orders"]
    welcome = compiler.compile_provisioning(example, groups=["welcome-mailer"])
    assert names(welcome) == ["user-events", "welcome-mailer.dlq"]  # the implicit dead-letter topic too
    assert names(compiler.compile_provisioning(example, producers=["user-service"])) == ["user-events"]
    assert welcome.create_missing is True


def test_emitted_topics_are_provisioned_and_the_switch_is_compiled(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "cluster: {bootstrap_servers: 'b:9092', create_missing_topics: false}\n"
        "topics: {a: {partitions: 2}, b: {partitions: 4}, c: {partitions: 1}}\n"
        "consumers: {g: {topics: [a], handler: 'h:f', emits: [b], on_error: {action: skip}}}\n"
    )
    provisioning = load_project([tmp_path]).provisioning(groups=["g"])
    assert [(t.name, t.partitions) for t in provisioning.topics] == [("a", 2), ("b", 4)]
    assert provisioning.create_missing is False


def test_creates_only_the_missing_topics_and_warns_about_drift_without_altering() -> None:
    cluster = FakeCluster([LiveTopic("orders", 2, 1, {"retention.ms": "100"}), LiveTopic("fine", 3, 1)])
    warnings: list[str] = []
    infos: list[str] = []
    wanted = Provisioning((topic("orders", 3, **{"retention.ms": "200"}), topic("fine"), topic("new", 4)))
    report = provision(cluster, wanted, info=infos.append, warn=warnings.append)
    assert report.created == ["new"]
    assert infos == ["created topic new (partitions 4, replication 1)"]
    assert warnings == [
        "topic orders differs from the files: partitions 2 on the cluster, 3 in the files; "
        "retention.ms 100 on the cluster, 200 in the files; `kpipe plan` shows the changes "
        "(kpipe run never alters an existing topic)"
    ]
    assert cluster.request_kinds() == ["create_topics"]  # no alter_configs, no create_partitions
    assert cluster.topics["orders"].partitions == 2


def test_nothing_missing_sends_no_request() -> None:
    cluster = FakeCluster([LiveTopic("a", 3, 1)])
    assert provision(cluster, Provisioning((topic("a"),))).created == []
    assert cluster.request_kinds() == []


@pytest.mark.parametrize(
    ("create", "switch"),
    [(False, "--no-create-topics"), (None, "cluster.create_missing_topics: false")],
)
def test_creation_off_names_every_missing_topic(create: bool | None, switch: str) -> None:
    cluster = FakeCluster([LiveTopic("a", 3, 1)])
    wanted = Provisioning((topic("a"), topic("b"), topic("c")), create_missing=False)
    with pytest.raises(ClusterError) as raised:
        provision(cluster, wanted, create=create)
    assert str(raised.value) == (
        f"2 topics are missing on fake:9092: b, c (not creating them: {switch}); create them with `kpipe apply`"
    )
    assert raised.value.exit_code == 3
    assert cluster.request_kinds() == []


def test_one_missing_topic_is_named_in_the_singular() -> None:
    wanted = Provisioning((topic("a"),), create_missing=False)
    with pytest.raises(ClusterError) as raised:
        provision(FakeCluster(), wanted, create=False)
    assert str(raised.value) == (
        "topic a is missing on fake:9092 (not creating it: --no-create-topics); create it with `kpipe apply`"
    )


def test_the_flag_wins_over_the_file() -> None:
    cluster = FakeCluster()
    provision(cluster, Provisioning((topic("a"),), create_missing=False), create=True)
    assert "a" in cluster.topics


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (
            "TOPIC_AUTHORIZATION_FAILED",
            "cannot create topic b: this client is not allowed to create topics (TOPIC_AUTHORIZATION_FAILED); "
            "create it with `kpipe apply` as a user allowed to, or ask the cluster's administrators",
        ),
        (
            "POLICY_VIOLATION",
            "cannot create topic b: the cluster's topic-creation policy refused it (POLICY_VIOLATION); "
            "create it with `kpipe apply` as a user allowed to, or ask the cluster's administrators",
        ),
        (
            "INVALID_REPLICATION_FACTOR",
            "cannot create topic b: the declared replication factor is refused (INVALID_REPLICATION_FACTOR); "
            "fix the topic's declaration, or create it with `kpipe apply`",
        ),
    ],
)
def test_a_refused_creation_is_one_line_saying_why(code: str, text: str) -> None:
    cluster = FakeCluster()
    cluster.fail["b"] = code
    with pytest.raises(ClusterError) as raised:
        provision(cluster, Provisioning((topic("a"), topic("b"))))
    assert str(raised.value) == text
    assert raised.value.code == code and "\n" not in str(raised.value)


def test_embedded_broker_defaults_are_a_layer_explain_shows(example, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    group = compiler.compile_consumer_group(example, "analytics", "127.0.0.1:1", embedded=True)
    settings = {s.key: s for s in group.client.settings}
    for key, value in compiler.EMBEDDED_BROKER_DEFAULTS.items():
        assert (settings[key].value, settings[key].source) == (value, "embedded broker default")
    plain = compiler.compile_consumer_group(example, "analytics", "broker:9092").client.as_dict()
    assert "session.timeout.ms" not in plain and "heartbeat.interval.ms" not in plain
    # Producers have no group to join: nothing changes for them.
    assert compiler.compile_producer(example, "order-api", embedded=True) == compiler.compile_producer(
        example, "order-api"
    )
    # The example says `local`: explain (offline) shows the layer with its origin.
    text = explain_client(load_project([EXAMPLE]), "analytics")
    line = next(x for x in text.splitlines() if x.strip().startswith("session.timeout.ms"))
    assert line.split() == [
        "session.timeout.ms",
        "4000",
        "embedded",
        "broker",
        "default:",
        "bootstrap_servers:",
        "local",
    ]


def test_a_group_s_own_config_wins_over_the_embedded_defaults(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "cluster: {bootstrap_servers: local}\n"
        "topics: {a: {partitions: 1}}\n"
        "consumers: {g: {topics: [a], handler: 'h:f', config: {session.timeout.ms: 10000}}}\n"
    )
    client = load_project([tmp_path]).consumer_group("g").client
    assert client.get("session.timeout.ms") == "10000" and client.get("heartbeat.interval.ms") == "1000"


def test_a_resolved_local_broker_keeps_the_embedded_defaults(tmp_path: Path) -> None:
    # `local` becomes an address at the edge (kpipe.load, run, dev), which says it is the embedded broker; a
    # worker is told so by its spec. Any other address gets librdkafka's own defaults.
    (tmp_path / "p.yaml").write_text(
        "cluster: {bootstrap_servers: local}\ntopics: {a: {partitions: 1}}\n"
        "consumers: {g: {topics: [a], handler: 'h:f'}}\n"
    )
    project = load_project([tmp_path])
    resolved = project.with_bootstrap("127.0.0.1:5555", embedded_broker=True)
    assert resolved.consumer_group("g").client.get("session.timeout.ms") == "4000"
    assert resolved.consumer_group("g").client.get("bootstrap.servers") == "127.0.0.1:5555"
    elsewhere = project.with_bootstrap("kafka.example:9092")
    assert elsewhere.consumer_group("g").client.get("session.timeout.ms") is None
    worker = load_project([tmp_path], bootstrap_override="127.0.0.1:5555", embedded_broker=True)
    assert worker.consumer_group("g").client.get("heartbeat.interval.ms") == "1000"

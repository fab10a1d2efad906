"""The librdkafka property table and the checks `kpipe validate` runs on passthrough and topic config."""

from __future__ import annotations

import confluent_kafka
import pytest

from kpipe.model import librdkafka as props
from kpipe.model.librdkafka import (
    canonical_name,
    check_client_property,
    check_topic_config,
    is_secret,
    lookup,
)

# --- the table -------------------------------------------------------------------------------------------


def test_table_matches_the_bundled_librdkafka_version() -> None:
    assert confluent_kafka.libversion()[0] == props.LIBRDKAFKA_VERSION


def test_table_size_and_shape() -> None:
    assert len(props.PROPERTIES) == 193
    assert sum(p.settable for p in props.PROPERTIES.values()) == 167
    for info in props.PROPERTIES.values():
        assert info.scope in ("*", "P", "C")
        if info.alias_of is not None:
            target = props.PROPERTIES[info.alias_of]
            assert (target.scope, target.type) == (info.scope, info.type), info.name
        if info.type == "enum":
            assert info.values, info.name


@pytest.mark.parametrize(
    ("name", "scope", "type_"),
    [
        ("bootstrap.servers", "*", "string"),
        ("client.id", "*", "string"),
        ("security.protocol", "*", "enum"),
        ("debug", "*", "flags"),
        ("linger.ms", "P", "float"),
        ("enable.idempotence", "P", "boolean"),
        ("acks", "P", "integer"),
        ("group.id", "C", "string"),
        ("auto.offset.reset", "C", "enum"),
        ("topic.blacklist", "*", "pattern list"),
    ],
)
def test_lookup_known_properties(name: str, scope: str, type_: str) -> None:
    info = lookup(name)
    assert info is not None
    assert (info.scope, info.type) == (scope, type_)


def test_lookup_is_exact() -> None:
    assert lookup("linger_ms") is None
    assert lookup("Linger.ms") is None


def test_ranges_enums_and_defaults_transcribed() -> None:
    linger = lookup("linger.ms")
    assert linger is not None
    assert (linger.minimum, linger.maximum, linger.default) == (0, 900000, "5")
    codec = lookup("compression.codec")
    assert codec is not None
    assert codec.values == ("none", "gzip", "snappy", "lz4", "zstd")
    reset = lookup("auto.offset.reset")
    assert reset is not None and reset.topic_level
    assert reset.values is not None and "earliest" in reset.values


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("linger.ms", "queue.buffering.max.ms"),
        ("retries", "message.send.max.retries"),
        ("compression.type", "compression.codec"),
        ("acks", "request.required.acks"),
        ("bootstrap.servers", "metadata.broker.list"),
        ("delivery.timeout.ms", "message.timeout.ms"),
        ("max.partition.fetch.bytes", "fetch.message.max.bytes"),
        ("sasl.mechanism", "sasl.mechanisms"),
        ("batch.num.messages", "batch.num.messages"),
        ("no.such.thing", "no.such.thing"),
    ],
)
def test_canonical_name(alias: str, canonical: str) -> None:
    assert canonical_name(alias) == canonical


# --- check_client_property -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "kind"),
    [
        ("bootstrap.servers", "localhost:9092", "admin"),
        ("client.id", "billing", "consumer"),
        ("linger.ms", 5, "producer"),
        ("linger.ms", 0.5, "producer"),
        ("linger.ms", "20", "producer"),
        ("acks", "all", "producer"),
        ("acks", "ALL", "producer"),
        ("acks", -1, "producer"),
        ("acks", 2, "producer"),
        ("enable.idempotence", True, "producer"),
        ("enable.idempotence", "false", "producer"),
        ("enable.auto.commit", "True", "consumer"),
        ("compression.type", "zstd", "producer"),
        ("compression.type", "LZ4", "producer"),
        ("auto.offset.reset", "earliest", "consumer"),
        ("isolation.level", "read_committed", "consumer"),
        ("security.protocol", "SASL_SSL", "admin"),
        ("debug", "broker, cgrp,fetch", "consumer"),
        ("debug", ["broker", "topic"], "producer"),
        ("statistics.interval.ms", "0x10", "producer"),
        ("topic.metadata.refresh.interval.ms", -1, "admin"),
    ],
)
def test_valid_settings_pass(name: str, value: object, kind: props.ClientKind) -> None:
    assert check_client_property(name, value, kind) == (None, None)


@pytest.mark.parametrize(
    ("name", "value", "kind", "message"),
    [
        (
            "acks",
            "everyone",
            "producer",
            "'acks' must be all or an integer between -1 and 1000 (got 'everyone')",
        ),
        ("acks", 1001, "producer", "'acks' must be all or between -1 and 1000 (got 1001)"),
        ("linger.ms", -5, "producer", "'linger.ms' must be between 0 and 900000 (got -5)"),
        ("linger.ms", "soon", "producer", "'linger.ms' must be a number between 0 and 900000 (got 'soon')"),
        ("batch.size", "100kb", "producer", "'batch.size' must be an integer (got '100kb')"),
        ("batch.size", 1.5, "producer", "'batch.size' must be an integer (got 1.5)"),
        ("batch.size", True, "producer", "'batch.size' must be an integer (got true)"),
        ("enable.idempotence", "yes", "producer", "'enable.idempotence' must be true or false (got 'yes')"),
        ("enable.idempotence", 2, "producer", "'enable.idempotence' must be true or false (got 2)"),
        (
            "compression.type",
            "brotli",
            "producer",
            "'compression.type' must be one of none, gzip, snappy, lz4, zstd (got 'brotli')",
        ),
        (
            "security.protocol",
            True,
            "admin",
            "'security.protocol' must be one of plaintext, ssl, sasl_plaintext, sasl_ssl (got true)",
        ),
        ("client.id", None, "admin", "'client.id' has no value"),
        ("client.id", {"a": 1}, "admin", "'client.id' must be a string (got a mapping)"),
    ],
)
def test_bad_values(name: str, value: object, kind: props.ClientKind, message: str) -> None:
    error, _hint = check_client_property(name, value, kind)
    assert error == message


def test_enum_suggests_close_value() -> None:
    error, hint = check_client_property("auto.offset.reset", "earlist", "consumer")
    assert error is not None
    assert hint == "did you mean 'earliest'?"


def test_flags_name_the_bad_flag() -> None:
    error, hint = check_client_property("debug", "broker,cgrps", "consumer")
    assert error is not None and error.startswith(
        "'debug' has unknown value 'cgrps'; allowed: generic, broker"
    )
    assert hint == "did you mean 'cgrp'?"


def test_list_for_a_string_property_hints_at_commas() -> None:
    error, hint = check_client_property("bootstrap.servers", ["a:9092", "b:9092"], "producer")
    assert error == "'bootstrap.servers' must be a string (got a list)"
    assert hint == "write the values as one comma-separated string"


@pytest.mark.parametrize(
    ("name", "kind", "message", "hint"),
    [
        (
            "group.id",
            "producer",
            "'group.id' is a consumer property; it has no effect on a producer",
            "set it in a consumer's config",
        ),
        (
            "fetch.min.bytes",
            "admin",
            "'fetch.min.bytes' is a consumer property; it has no effect on an admin client",
            "set it in a consumer's config",
        ),
        (
            "linger.ms",
            "consumer",
            "'linger.ms' is a producer property; it has no effect on a consumer",
            "set it in a producer's config",
        ),
        (
            "acks",
            "admin",
            "'acks' is a producer property; it has no effect on an admin client",
            "set it in a producer's config",
        ),
    ],
)
def test_scope_errors(name: str, kind: props.ClientKind, message: str, hint: str) -> None:
    assert check_client_property(name, "1", kind) == (message, hint)


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("linger_ms", "did you mean 'linger.ms'?"),
        ("boostrap.servers", "did you mean 'bootstrap.servers'?"),
        ("enable.idempotency", "did you mean 'enable.idempotence'?"),
        ("retention.ms", "'retention.ms' is a topic config; set it in the topic's config"),
        ("key.serializer", "'key.serializer' is a Java client setting; librdkafka has no such property"),
        ("zzzz", None),
    ],
)
def test_unknown_names(name: str, hint: str | None) -> None:
    assert check_client_property(name, "x", "producer") == (f"unknown librdkafka property '{name}'", hint)


def test_callbacks_cannot_be_set_from_yaml() -> None:
    error, _hint = check_client_property("error_cb", "x", "producer")
    assert error == "'error_cb' cannot be set from YAML; librdkafka takes it through a dedicated API"
    info = lookup("opaque")
    assert info is not None and not info.settable


def test_deprecated_property_is_a_hint_not_an_error() -> None:
    assert check_client_property("topic.metadata.refresh.fast.cnt", 10, "admin") == (
        None,
        "'topic.metadata.refresh.fast.cnt' is deprecated in librdkafka",
    )


# --- secrets ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "sasl.password",
        "sasl.username",
        "ssl.key.password",
        "ssl.keystore.password",
        "ssl.key.pem",
        "ssl_key",
        "sasl.oauthbearer.config",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.client.credentials.client.secret",
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "some.vendor.password",
    ],
)
def test_secrets(name: str) -> None:
    assert is_secret(name)


@pytest.mark.parametrize("name", ["bootstrap.servers", "client.id", "ssl.certificate.pem", "sasl.mechanism"])
def test_not_secrets(name: str) -> None:
    assert not is_secret(name)


# --- topic configs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("retention.ms", -1),
        ("retention.ms", "604800000"),
        ("retention.bytes", -1),
        ("cleanup.policy", "compact"),
        ("cleanup.policy", "compact,delete"),
        ("cleanup.policy", ["delete", "compact"]),
        ("min.insync.replicas", 2),
        ("segment.bytes", 1073741824),
        ("max.message.bytes", "2097152"),
        ("compression.type", "producer"),
        ("compression.gzip.level", -1),
        ("compression.gzip.level", 9),
        ("delete.retention.ms", 0),
        ("message.timestamp.type", "LogAppendTime"),
        ("unclean.leader.election.enable", False),
        ("min.cleanable.dirty.ratio", 0.1),
        ("confluent.value.schema.validation", "true"),
    ],
)
def test_valid_topic_configs(name: str, value: object) -> None:
    assert check_topic_config(name, value) == (None, None)


@pytest.mark.parametrize(
    ("name", "value", "message", "hint"),
    [
        ("retention.ms", -2, "'retention.ms' must be at least -1 (got -2)", None),
        ("retention.ms", "7d", "'retention.ms' must be an integer (got '7d')", None),
        ("min.insync.replicas", 0, "'min.insync.replicas' must be between 1 and 2147483647 (got 0)", None),
        (
            "cleanup.policy",
            "compacted",
            "'cleanup.policy' has unknown value 'compacted'; allowed: compact, delete",
            "did you mean 'compact'?",
        ),
        (
            "compression.type",
            "none",
            "'compression.type' must be one of uncompressed, zstd, lz4, snappy, gzip, producer (got 'none')",
            None,
        ),
        (
            "message.timestamp.type",
            "createtime",
            "'message.timestamp.type' must be one of CreateTime, LogAppendTime (got 'createtime')",
            "did you mean 'CreateTime'?",
        ),
        ("compression.gzip.level", 0, "'compression.gzip.level' must be -1 or between 1 and 9 (got 0)", None),
        (
            "min.cleanable.dirty.ratio",
            1.5,
            "'min.cleanable.dirty.ratio' must be between 0 and 1 (got 1.5)",
            None,
        ),
        ("preallocate", "yes", "'preallocate' must be true or false (got 'yes')", None),
        ("retention_ms", 1, "unknown topic config 'retention_ms'", "did you mean 'retention.ms'?"),
        (
            "linger.ms",
            5,
            "unknown topic config 'linger.ms'",
            "'linger.ms' is a librdkafka client property; set it in a client's config",
        ),
    ],
)
def test_bad_topic_configs(name: str, value: object, message: str, hint: str | None) -> None:
    assert check_topic_config(name, value) == (message, hint)


def test_topic_config_removed_in_kafka_4_is_a_hint() -> None:
    assert check_topic_config("message.format.version", "3.0") == (
        None,
        "'message.format.version' was removed in Kafka 4.0; only older brokers accept it",
    )


# --- the table against the real library ------------------------------------------------------------------

_BOOTSTRAP = {"bootstrap.servers": "127.0.0.1:1"}

_PRODUCER_SAMPLE = [
    "client.id",
    "message.max.bytes",
    "receive.message.max.bytes",
    "max.in.flight",
    "topic.metadata.refresh.interval.ms",
    "metadata.max.age.ms",
    "socket.timeout.ms",
    "socket.keepalive.enable",
    "broker.address.family",
    "reconnect.backoff.ms",
    "statistics.interval.ms",
    "connections.max.idle.ms",
    "security.protocol",
    "ssl.endpoint.identification.algorithm",
    "sasl.mechanism",
    "client.dns.lookup",
    "enable.idempotence",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "linger.ms",
    "retries",
    "retry.backoff.ms",
    "compression.type",
    "batch.num.messages",
    "batch.size",
    "acks",
    "request.timeout.ms",
    "delivery.timeout.ms",
    "partitioner",
    "sticky.partitioning.linger.ms",
]

_CONSUMER_SAMPLE = [
    "group.protocol",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "partition.assignment.strategy",
    "max.poll.interval.ms",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "enable.auto.offset.store",
    "queued.min.messages",
    "fetch.wait.max.ms",
    "max.partition.fetch.bytes",
    "fetch.max.bytes",
    "fetch.min.bytes",
    "isolation.level",
    "check.crcs",
    "auto.offset.reset",
]


def _defaults(names: list[str]) -> dict[str, object]:
    settings: dict[str, object] = {}
    for name in names:
        info = lookup(name)
        assert info is not None and info.default is not None, name
        settings[name] = info.default
    return settings


def _make_producer(config: dict[str, object]) -> None:
    producer = confluent_kafka.Producer({**_BOOTSTRAP, **config})
    producer.flush(0)


def _make_consumer(config: dict[str, object]) -> None:
    consumer = confluent_kafka.Consumer({**_BOOTSTRAP, "group.id": "kpipe-test", **config})
    consumer.close()


def test_sample_of_producer_properties_accepted_by_librdkafka() -> None:
    settings = _defaults(_PRODUCER_SAMPLE)
    for name, value in settings.items():
        assert check_client_property(name, value, "producer") == (None, None), name
    _make_producer(settings)


def test_sample_of_consumer_properties_accepted_by_librdkafka() -> None:
    settings = _defaults(_CONSUMER_SAMPLE)
    for name, value in settings.items():
        assert check_client_property(name, value, "consumer") == (None, None), name
    _make_consumer(settings)


def _documented_defaults(scopes: tuple[str, ...]) -> dict[str, object]:
    settings: dict[str, object] = {}
    for p in props.PROPERTIES.values():
        if not p.settable or p.scope not in scopes or p.default is None:
            continue
        if p.name in ("builtin.features", "ssl.ca.certificate.stores"):
            continue  # build- and platform-dependent; covered below
        # confluent-kafka itself insists on a Python bool for delivery.report.only.error.
        settings[p.name] = p.default == "true" if p.type == "boolean" else p.default
    return settings


def test_every_settable_property_name_is_known_to_librdkafka() -> None:
    # Every name at once, each at its documented default; librdkafka rejects unknown names.
    _make_producer(_documented_defaults(("*", "P")))
    _make_consumer(_documented_defaults(("C",)))


def test_build_dependent_properties() -> None:
    # The documented default lists every optional feature; the pip wheel has no sasl_gssapi.
    _make_producer({"builtin.features": "gzip,snappy,lz4,zstd,ssl,sasl_plain,sasl_scram"})
    assert check_client_property("ssl.ca.certificate.stores", "Root", "admin") == (
        None,
        "'ssl.ca.certificate.stores' only works with librdkafka on Windows",
    )


def test_invented_name_is_rejected_by_librdkafka_and_by_us() -> None:
    with pytest.raises(confluent_kafka.KafkaException, match="No such configuration property"):
        _make_producer({"linger_ms": "5"})
    assert check_client_property("linger_ms", "5", "producer")[0] is not None


def test_value_we_reject_is_rejected_by_librdkafka() -> None:
    assert check_client_property("linger.ms", -5, "producer")[0] is not None
    with pytest.raises(confluent_kafka.KafkaException):
        _make_producer({"linger.ms": "-5"})
    assert check_client_property("acks", "everyone", "producer")[0] is not None
    with pytest.raises(confluent_kafka.KafkaException):
        _make_producer({"acks": "everyone"})

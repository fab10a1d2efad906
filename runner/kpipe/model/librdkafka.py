"""librdkafka configuration properties and Kafka topic configs, as data, and the checks on them.

kpipe passes `config:` maps straight to librdkafka (clients) or to the broker (topics). This module knows
which names exist, which client kind each one applies to, what values they take, and which are secrets,
so `kpipe validate` can flag mistakes before anything connects and `kpipe explain` can redact.

The librdkafka table is transcribed from librdkafka's CONFIGURATION.md for librdkafka 2.16.0 (the
version bundled with confluent-kafka 2.16); it matches what that library prints for its own properties.
The topic table follows Apache Kafka's topic-level config definitions (LogConfig, Kafka 4.x), plus the
few names Kafka 4.0 removed, kept so that configs written for 3.x brokers are not called unknown.
Pure data: nothing here imports confluent_kafka.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from kpipe.diagnostics import did_you_mean
from kpipe.redaction import has_token, reveal

LIBRDKAFKA_VERSION = "2.16.0"

ClientKind = Literal["producer", "consumer", "admin"]
# "*" applies to every client, "P" to producers, "C" to consumers (CONFIGURATION.md's C/P column).
Scope = Literal["*", "P", "C"]
# "pointer" covers callbacks and handles set through librdkafka's dedicated API, never from a string.
PropertyType = Literal["string", "integer", "float", "boolean", "enum", "flags", "pattern list", "pointer"]


@dataclass(frozen=True)
class PropertyInfo:
    """One librdkafka property, as CONFIGURATION.md describes it."""

    name: str
    scope: Scope
    type: PropertyType
    # enum: the allowed values; flags: the allowed flags; integer: names accepted besides numbers ("all").
    values: tuple[str, ...] | None = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    # librdkafka's default in its own string form; None where it has none (or it is computed).
    default: str | None = None
    secret: bool = False
    alias_of: str | None = None
    settable: bool = True
    # Listed among librdkafka's topic-level properties; these are accepted in the global config too.
    topic_level: bool = False
    deprecated: bool = False


def _p(
    name: str,
    scope: Scope,
    type_: PropertyType,
    *,
    default: str | None = None,
    values: str | None = None,
    lo: int | float | None = None,
    hi: int | float | None = None,
    alias_of: str | None = None,
    secret: bool = False,
    deprecated: bool = False,
    topic_level: bool = False,
) -> PropertyInfo:
    return PropertyInfo(
        name=name,
        scope=scope,
        type=type_,
        values=tuple(v.strip() for v in values.split(",")) if values else None,
        minimum=lo,
        maximum=hi,
        default=default,
        secret=secret,
        alias_of=alias_of,
        settable=type_ != "pointer",
        topic_level=topic_level,
        deprecated=deprecated,
    )


# Secrets are librdkafka's own _RK_SENSITIVE set (the values it redacts in its config dumps) plus the
# aliases of those properties.
_LIBRDKAFKA_TABLE: tuple[PropertyInfo, ...] = (
    # Global properties.
    _p(
        "builtin.features",
        "*",
        "flags",
        default=(
            "gzip, snappy, ssl, sasl, regex, lz4, sasl_gssapi, sasl_plain, sasl_scram, plugins, zstd,"
            " sasl_oauthbearer, http, oidc"
        ),
        values=(
            "gzip, snappy, ssl, sasl, regex, lz4, sasl_gssapi, sasl_plain, sasl_scram, plugins, zstd,"
            " sasl_oauthbearer, http, oidc"
        ),
    ),
    _p("client.id", "*", "string", default="rdkafka"),
    _p("metadata.broker.list", "*", "string"),
    _p("bootstrap.servers", "*", "string", alias_of="metadata.broker.list"),
    _p("message.max.bytes", "*", "integer", default="1000000", lo=1000, hi=1000000000),
    _p("message.copy.max.bytes", "*", "integer", default="65535", lo=0, hi=1000000000),
    _p("receive.message.max.bytes", "*", "integer", default="100000000", lo=1000, hi=2147483647),
    _p("max.in.flight.requests.per.connection", "*", "integer", default="1000000", lo=1, hi=1000000),
    _p(
        "max.in.flight",
        "*",
        "integer",
        default="1000000",
        lo=1,
        hi=1000000,
        alias_of="max.in.flight.requests.per.connection",
    ),
    _p("metadata.recovery.strategy", "*", "enum", default="rebootstrap", values="none, rebootstrap"),
    _p("metadata.recovery.rebootstrap.trigger.ms", "*", "integer", default="300000", lo=0, hi=2147483647),
    _p("topic.metadata.refresh.interval.ms", "*", "integer", default="300000", lo=-1, hi=3600000),
    _p("metadata.max.age.ms", "*", "integer", default="900000", lo=1, hi=86400000),
    _p("topic.metadata.refresh.fast.interval.ms", "*", "integer", default="100", lo=1, hi=60000),
    _p("topic.metadata.refresh.fast.cnt", "*", "integer", default="10", lo=0, hi=1000, deprecated=True),
    _p("topic.metadata.refresh.sparse", "*", "boolean", default="true"),
    _p("topic.metadata.propagation.max.ms", "*", "integer", default="30000", lo=0, hi=3600000),
    _p("topic.blacklist", "*", "pattern list"),
    _p(
        "debug",
        "*",
        "flags",
        values=(
            "generic, broker, topic, metadata, feature, queue, msg, protocol, cgrp, security, fetch,"
            " interceptor, plugin, consumer, admin, eos, mock, assignor, conf, telemetry, all"
        ),
    ),
    _p("socket.timeout.ms", "*", "integer", default="60000", lo=10, hi=300000),
    _p("socket.blocking.max.ms", "*", "integer", default="1000", lo=1, hi=60000, deprecated=True),
    _p("socket.send.buffer.bytes", "*", "integer", default="0", lo=0, hi=100000000),
    _p("socket.receive.buffer.bytes", "*", "integer", default="0", lo=0, hi=100000000),
    _p("socket.keepalive.enable", "*", "boolean", default="false"),
    _p("socket.nagle.disable", "*", "boolean", default="true"),
    _p("socket.max.fails", "*", "integer", default="1", lo=0, hi=1000000),
    _p("broker.address.ttl", "*", "integer", default="1000", lo=0, hi=86400000),
    _p("broker.address.family", "*", "enum", default="any", values="any, v4, v6"),
    _p("socket.connection.setup.timeout.ms", "*", "integer", default="30000", lo=1000, hi=2147483647),
    _p("connections.max.idle.ms", "*", "integer", default="0", lo=0, hi=2147483647),
    _p("reconnect.backoff.jitter.ms", "*", "integer", default="0", lo=0, hi=3600000, deprecated=True),
    _p("reconnect.backoff.ms", "*", "integer", default="100", lo=0, hi=3600000),
    _p("reconnect.backoff.max.ms", "*", "integer", default="10000", lo=0, hi=3600000),
    _p("statistics.interval.ms", "*", "integer", default="0", lo=0, hi=86400000),
    _p("enabled_events", "*", "integer", default="0", lo=0, hi=2147483647),
    _p("error_cb", "*", "pointer"),
    _p("throttle_cb", "*", "pointer"),
    _p("stats_cb", "*", "pointer"),
    _p("log_cb", "*", "pointer"),
    _p("log_level", "*", "integer", default="6", lo=0, hi=7),
    _p("log.queue", "*", "boolean", default="false"),
    _p("log.thread.name", "*", "boolean", default="true"),
    _p("enable.random.seed", "*", "boolean", default="true"),
    _p("log.connection.close", "*", "boolean", default="true"),
    _p("background_event_cb", "*", "pointer"),
    _p("socket_cb", "*", "pointer"),
    _p("connect_cb", "*", "pointer"),
    _p("closesocket_cb", "*", "pointer"),
    _p("open_cb", "*", "pointer"),
    _p("resolve_cb", "*", "pointer"),
    _p("opaque", "*", "pointer"),
    _p("default_topic_conf", "*", "pointer"),
    _p("internal.termination.signal", "*", "integer", default="0", lo=0, hi=128),
    _p("api.version.request", "*", "boolean", default="true", deprecated=True),
    _p("api.version.request.timeout.ms", "*", "integer", default="10000", lo=1, hi=300000),
    _p("api.version.fallback.ms", "*", "integer", default="0", lo=0, hi=604800000, deprecated=True),
    _p("broker.version.fallback", "*", "string", default="0.10.0", deprecated=True),
    _p("allow.auto.create.topics", "*", "boolean", default="false"),
    _p(
        "security.protocol",
        "*",
        "enum",
        default="plaintext",
        values="plaintext, ssl, sasl_plaintext, sasl_ssl",
    ),
    _p("ssl.cipher.suites", "*", "string"),
    _p("ssl.curves.list", "*", "string"),
    _p("ssl.sigalgs.list", "*", "string"),
    _p("ssl.key.location", "*", "string", secret=True),
    _p("ssl.key.password", "*", "string", secret=True),
    _p("ssl.key.pem", "*", "string", secret=True),
    _p("ssl_key", "*", "pointer", secret=True),
    _p("ssl.certificate.location", "*", "string"),
    _p("ssl.certificate.pem", "*", "string"),
    _p("ssl_certificate", "*", "pointer"),
    _p("ssl.ca.location", "*", "string"),
    _p("https.ca.location", "*", "string"),
    _p("https.ca.pem", "*", "string"),
    _p("ssl.ca.pem", "*", "string", secret=True),
    _p("ssl_ca", "*", "pointer"),
    _p("ssl.ca.certificate.stores", "*", "string", default="Root"),
    _p("ssl.crl.location", "*", "string"),
    _p("ssl.keystore.location", "*", "string"),
    _p("ssl.keystore.password", "*", "string", secret=True),
    _p("ssl.providers", "*", "string"),
    _p("ssl.engine.location", "*", "string", deprecated=True),
    _p("ssl.engine.id", "*", "string", default="dynamic"),
    _p("ssl_engine_callback_data", "*", "pointer"),
    _p("enable.ssl.certificate.verification", "*", "boolean", default="true"),
    _p("ssl.endpoint.identification.algorithm", "*", "enum", default="https", values="none, https"),
    _p("ssl.certificate.verify_cb", "*", "pointer"),
    _p("sasl.mechanisms", "*", "string", default="GSSAPI"),
    _p("sasl.mechanism", "*", "string", default="GSSAPI", alias_of="sasl.mechanisms"),
    _p("sasl.kerberos.service.name", "*", "string", default="kafka"),
    _p("sasl.kerberos.principal", "*", "string", default="kafkaclient"),
    _p(
        "sasl.kerberos.kinit.cmd",
        "*",
        "string",
        default=(
            'kinit -R -t "%{sasl.kerberos.keytab}" -k %{sasl.kerberos.principal}'
            ' || kinit -t "%{sasl.kerberos.keytab}" -k %{sasl.kerberos.principal}'
        ),
    ),
    _p("sasl.kerberos.keytab", "*", "string"),
    _p("sasl.kerberos.min.time.before.relogin", "*", "integer", default="60000", lo=0, hi=86400000),
    _p("sasl.username", "*", "string", secret=True),
    _p("sasl.password", "*", "string", secret=True),
    _p("sasl.oauthbearer.config", "*", "string", secret=True),
    _p("enable.sasl.oauthbearer.unsecure.jwt", "*", "boolean", default="false"),
    _p("oauthbearer_token_refresh_cb", "*", "pointer"),
    _p("sasl.oauthbearer.method", "*", "enum", default="default", values="default, oidc"),
    _p("sasl.oauthbearer.client.id", "*", "string"),
    _p("sasl.oauthbearer.client.credentials.client.id", "*", "string", alias_of="sasl.oauthbearer.client.id"),
    _p(
        "sasl.oauthbearer.client.credentials.client.secret",
        "*",
        "string",
        alias_of="sasl.oauthbearer.client.secret",
        secret=True,
    ),
    _p("sasl.oauthbearer.client.secret", "*", "string", secret=True),
    _p("sasl.oauthbearer.scope", "*", "string"),
    _p("sasl.oauthbearer.extensions", "*", "string"),
    _p("sasl.oauthbearer.token.endpoint.url", "*", "string"),
    _p("sasl.oauthbearer.sub.claim.name", "*", "string", default="sub"),
    _p(
        "sasl.oauthbearer.grant.type",
        "*",
        "enum",
        default="client_credentials",
        values="client_credentials, urn:ietf:params:oauth:grant-type:jwt-bearer",
    ),
    _p("sasl.oauthbearer.assertion.algorithm", "*", "enum", default="RS256", values="RS256, ES256"),
    _p("sasl.oauthbearer.assertion.private.key.file", "*", "string", secret=True),
    _p("sasl.oauthbearer.assertion.private.key.passphrase", "*", "string", secret=True),
    _p("sasl.oauthbearer.assertion.private.key.pem", "*", "string", secret=True),
    _p("sasl.oauthbearer.assertion.file", "*", "string"),
    _p("sasl.oauthbearer.assertion.claim.aud", "*", "string"),
    _p("sasl.oauthbearer.assertion.claim.exp.seconds", "*", "integer", default="300", lo=1, hi=2147483647),
    _p("sasl.oauthbearer.assertion.claim.iss", "*", "string"),
    _p("sasl.oauthbearer.assertion.claim.jti.include", "*", "boolean", default="false"),
    _p("sasl.oauthbearer.assertion.claim.nbf.seconds", "*", "integer", default="60", lo=0, hi=2147483647),
    _p("sasl.oauthbearer.assertion.claim.sub", "*", "string"),
    _p("sasl.oauthbearer.assertion.jwt.template.file", "*", "string"),
    _p(
        "sasl.oauthbearer.metadata.authentication.type",
        "*",
        "enum",
        default="none",
        values="none, azure_imds, aws_iam",
    ),
    _p("plugin.library.paths", "*", "string"),
    _p("interceptors", "*", "pointer"),
    _p("group.id", "C", "string"),
    _p("group.instance.id", "C", "string"),
    _p("partition.assignment.strategy", "C", "string", default="range,roundrobin"),
    _p("session.timeout.ms", "C", "integer", default="45000", lo=1, hi=3600000),
    _p("heartbeat.interval.ms", "C", "integer", default="3000", lo=1, hi=3600000),
    _p("group.protocol.type", "C", "string", default="consumer"),
    _p("group.protocol", "C", "enum", default="classic", values="classic, consumer"),
    _p("group.remote.assignor", "C", "string"),
    _p("coordinator.query.interval.ms", "C", "integer", default="600000", lo=1, hi=3600000),
    _p("max.poll.interval.ms", "C", "integer", default="300000", lo=1, hi=86400000),
    _p("enable.auto.commit", "C", "boolean", default="true"),
    _p("auto.commit.interval.ms", "C", "integer", default="5000", lo=0, hi=86400000),
    _p("enable.auto.offset.store", "C", "boolean", default="true"),
    _p("queued.min.messages", "C", "integer", default="100000", lo=1, hi=10000000),
    _p("queued.max.messages.kbytes", "C", "integer", default="65536", lo=1, hi=2097151),
    _p("fetch.wait.max.ms", "C", "integer", default="500", lo=0, hi=300000),
    _p("fetch.queue.backoff.ms", "C", "integer", default="1000", lo=0, hi=300000),
    _p("fetch.message.max.bytes", "C", "integer", default="1048576", lo=1, hi=1000000000),
    _p(
        "max.partition.fetch.bytes",
        "C",
        "integer",
        default="1048576",
        lo=1,
        hi=1000000000,
        alias_of="fetch.message.max.bytes",
    ),
    _p("fetch.max.bytes", "C", "integer", default="52428800", lo=0, hi=2147483135),
    _p("fetch.min.bytes", "C", "integer", default="1", lo=0, hi=2147483647),
    _p("fetch.error.backoff.ms", "C", "integer", default="500", lo=0, hi=300000),
    _p("offset.store.method", "C", "enum", default="broker", values="none, file, broker", deprecated=True),
    _p("isolation.level", "C", "enum", default="read_committed", values="read_uncommitted, read_committed"),
    _p("consume_cb", "C", "pointer"),
    _p("rebalance_cb", "C", "pointer"),
    _p("offset_commit_cb", "C", "pointer"),
    _p("enable.partition.eof", "C", "boolean", default="false"),
    _p("check.crcs", "C", "boolean", default="false"),
    _p("client.rack", "*", "string"),
    _p("max.poll.records", "C", "integer", default="500", lo=1, hi=2147483647),
    _p("share.acknowledgement.mode", "C", "string", default="implicit"),
    _p("transactional.id", "P", "string"),
    _p("transaction.timeout.ms", "P", "integer", default="60000", lo=1000, hi=2147483647),
    _p("enable.idempotence", "P", "boolean", default="false"),
    _p("enable.gapless.guarantee", "P", "boolean", default="false"),
    _p("queue.buffering.max.messages", "P", "integer", default="100000", lo=0, hi=2147483647),
    _p("queue.buffering.max.kbytes", "P", "integer", default="1048576", lo=1, hi=2147483647),
    _p("queue.buffering.max.ms", "P", "float", default="5", lo=0, hi=900000),
    _p("linger.ms", "P", "float", default="5", lo=0, hi=900000, alias_of="queue.buffering.max.ms"),
    _p("message.send.max.retries", "P", "integer", default="2147483647", lo=0, hi=2147483647),
    _p(
        "retries",
        "P",
        "integer",
        default="2147483647",
        lo=0,
        hi=2147483647,
        alias_of="message.send.max.retries",
    ),
    _p("retry.backoff.ms", "*", "integer", default="100", lo=1, hi=300000),
    _p("retry.backoff.max.ms", "*", "integer", default="1000", lo=1, hi=300000),
    _p("queue.buffering.backpressure.threshold", "P", "integer", default="1", lo=1, hi=1000000),
    _p("compression.codec", "P", "enum", default="none", values="none, gzip, snappy, lz4, zstd"),
    _p(
        "compression.type",
        "P",
        "enum",
        default="none",
        values="none, gzip, snappy, lz4, zstd",
        alias_of="compression.codec",
    ),
    _p("batch.num.messages", "P", "integer", default="10000", lo=1, hi=1000000),
    _p("batch.size", "P", "integer", default="1000000", lo=1, hi=2147483647),
    _p("delivery.report.only.error", "P", "boolean", default="false"),
    _p("dr_cb", "P", "pointer"),
    _p("dr_msg_cb", "P", "pointer"),
    _p("sticky.partitioning.linger.ms", "P", "integer", default="10", lo=0, hi=900000),
    _p(
        "client.dns.lookup",
        "*",
        "enum",
        default="use_all_dns_ips",
        values="use_all_dns_ips, resolve_canonical_bootstrap_servers_only",
    ),
    _p("enable.metrics.push", "*", "boolean", default="true"),
    # Topic-level properties (librdkafka also accepts them in the global config).
    _p("request.required.acks", "P", "integer", default="-1", values="all", lo=-1, hi=1000, topic_level=True),
    _p(
        "acks",
        "P",
        "integer",
        default="-1",
        values="all",
        lo=-1,
        hi=1000,
        alias_of="request.required.acks",
        topic_level=True,
    ),
    _p("request.timeout.ms", "P", "integer", default="30000", lo=1, hi=900000, topic_level=True),
    _p("message.timeout.ms", "P", "integer", default="300000", lo=0, hi=2147483647, topic_level=True),
    _p(
        "delivery.timeout.ms",
        "P",
        "integer",
        default="300000",
        lo=0,
        hi=2147483647,
        alias_of="message.timeout.ms",
        topic_level=True,
    ),
    _p(
        "queuing.strategy",
        "P",
        "enum",
        default="fifo",
        values="fifo, lifo",
        deprecated=True,
        topic_level=True,
    ),
    _p("produce.offset.report", "P", "boolean", default="false", deprecated=True, topic_level=True),
    _p("partitioner", "P", "string", default="consistent_random", topic_level=True),
    _p("partitioner_cb", "P", "pointer", topic_level=True),
    _p("msg_order_cmp", "P", "pointer", deprecated=True, topic_level=True),
    _p("compression.level", "P", "integer", default="-1", lo=-1, hi=12, topic_level=True),
    _p("auto.commit.enable", "C", "boolean", default="true", deprecated=True, topic_level=True),
    _p(
        "auto.offset.reset",
        "C",
        "enum",
        default="largest",
        values="smallest, earliest, beginning, largest, latest, end, error",
        topic_level=True,
    ),
    _p("offset.store.path", "C", "string", default=".", deprecated=True, topic_level=True),
    _p(
        "offset.store.sync.interval.ms",
        "C",
        "integer",
        default="-1",
        lo=-1,
        hi=86400000,
        deprecated=True,
        topic_level=True,
    ),
    _p("consume.callback.max.messages", "C", "integer", default="0", lo=0, hi=1000000, topic_level=True),
)

PROPERTIES: Mapping[str, PropertyInfo] = MappingProxyType({p.name: p for p in _LIBRDKAFKA_TABLE})
_SETTABLE_NAMES = tuple(p.name for p in _LIBRDKAFKA_TABLE if p.settable)

# A producer's declared fields and the librdkafka key each becomes: compile sets them, and the checks refuse a
# producer that sets one both as a field and in its `config` (the field would silently lose).
PRODUCER_FIELDS: Mapping[str, str] = MappingProxyType(
    {
        "acks": "acks",
        "retries": "retries",
        "linger_ms": "linger.ms",
        "batch_size": "batch.size",
        "compression": "compression.type",
        "idempotent": "enable.idempotence",
        "delivery_timeout_ms": "delivery.timeout.ms",
        "client_id": "client.id",
    }
)


TopicConfigType = Literal["integer", "float", "boolean", "enum", "list", "string"]


@dataclass(frozen=True)
class TopicConfigInfo:
    """One broker-side topic config (what `kafka-configs --entity-type topics` accepts)."""

    name: str
    type: TopicConfigType
    # enum / list: the allowed values (case-sensitive, as the broker checks them);
    # integer: values accepted outside [minimum, maximum] (compression.gzip.level's -1).
    values: tuple[str, ...] | None = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    default: str | None = None
    # Kafka version that removed the config; brokers before it still accept it.
    removed_in: str | None = None


_INT_MAX = 2**31 - 1
_LONG_MAX = 2**63 - 1
_LONG_MIN = -(2**63)


def _t(
    name: str,
    type_: TopicConfigType,
    default: str | None,
    *,
    values: tuple[str, ...] | None = None,
    lo: int | float | None = None,
    hi: int | float | None = None,
    removed_in: str | None = None,
) -> TopicConfigInfo:
    return TopicConfigInfo(name, type_, values, lo, hi, default, removed_in)


# Java INT configs are bounded by _INT_MAX and LONG configs by _LONG_MAX; lower bounds are the
# broker's validators. Defaults are Kafka 4.x's.
_TOPIC_TABLE: tuple[TopicConfigInfo, ...] = (
    _t("cleanup.policy", "list", "delete", values=("compact", "delete")),
    _t("compression.gzip.level", "integer", "-1", values=("-1",), lo=1, hi=9),
    _t("compression.lz4.level", "integer", "9", lo=1, hi=17),
    _t(
        "compression.type",
        "enum",
        "producer",
        values=("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"),
    ),
    _t("compression.zstd.level", "integer", "3", lo=-131072, hi=22),
    _t("delete.retention.ms", "integer", "86400000", lo=0, hi=_LONG_MAX),
    _t("file.delete.delay.ms", "integer", "60000", lo=0, hi=_LONG_MAX),
    _t("flush.messages", "integer", str(_LONG_MAX), lo=1, hi=_LONG_MAX),
    _t("flush.ms", "integer", str(_LONG_MAX), lo=0, hi=_LONG_MAX),
    # "*" or "partition:broker,partition:broker,..."
    _t("follower.replication.throttled.replicas", "string", ""),
    _t("index.interval.bytes", "integer", "4096", lo=0, hi=_INT_MAX),
    _t("leader.replication.throttled.replicas", "string", ""),
    _t("local.retention.bytes", "integer", "-2", lo=-2, hi=_LONG_MAX),
    _t("local.retention.ms", "integer", "-2", lo=-2, hi=_LONG_MAX),
    _t("max.compaction.lag.ms", "integer", str(_LONG_MAX), lo=1, hi=_LONG_MAX),
    _t("max.message.bytes", "integer", "1048588", lo=0, hi=_INT_MAX),
    _t("message.downconversion.enable", "boolean", "true", removed_in="4.0"),
    _t("message.format.version", "string", None, removed_in="4.0"),
    # Kafka 3.x defaulted this to Long.MAX_VALUE; 4.0 lowered it to one hour.
    _t("message.timestamp.after.max.ms", "integer", "3600000", lo=0, hi=_LONG_MAX),
    _t("message.timestamp.before.max.ms", "integer", str(_LONG_MAX), lo=0, hi=_LONG_MAX),
    _t(
        "message.timestamp.difference.max.ms", "integer", str(_LONG_MAX), lo=0, hi=_LONG_MAX, removed_in="4.0"
    ),
    _t("message.timestamp.type", "enum", "CreateTime", values=("CreateTime", "LogAppendTime")),
    _t("min.cleanable.dirty.ratio", "float", "0.5", lo=0, hi=1),
    _t("min.compaction.lag.ms", "integer", "0", lo=0, hi=_LONG_MAX),
    _t("min.insync.replicas", "integer", "1", lo=1, hi=_INT_MAX),
    _t("preallocate", "boolean", "false"),
    _t("remote.log.copy.disable", "boolean", "false"),
    _t("remote.log.delete.on.disable", "boolean", "false"),
    _t("remote.storage.enable", "boolean", "false"),
    _t("retention.bytes", "integer", "-1", lo=_LONG_MIN, hi=_LONG_MAX),
    _t("retention.ms", "integer", "604800000", lo=-1, hi=_LONG_MAX),
    _t("segment.bytes", "integer", "1073741824", lo=1048576, hi=_INT_MAX),
    _t("segment.index.bytes", "integer", "10485760", lo=4, hi=_INT_MAX),
    _t("segment.jitter.ms", "integer", "0", lo=0, hi=_LONG_MAX),
    _t("segment.ms", "integer", "604800000", lo=1, hi=_LONG_MAX),
    _t("unclean.leader.election.enable", "boolean", "false"),
)

TOPIC_CONFIGS: Mapping[str, TopicConfigInfo] = MappingProxyType({t.name: t for t in _TOPIC_TABLE})

# Vendor topic configs (Confluent Server / Confluent Cloud) that Apache Kafka does not define.
_VENDOR_TOPIC_PREFIXES = ("confluent.",)

# Java-client settings people copy into librdkafka config; librdkafka has no equivalent.
_JAVA_ONLY = frozenset(
    {
        "key.serializer",
        "value.serializer",
        "key.deserializer",
        "value.deserializer",
        "buffer.memory",
        "max.block.ms",
        "interceptor.classes",
        "partitioner.class",
        "metric.reporters",
        "sasl.jaas.config",
        "sasl.login.callback.handler.class",
        "ssl.truststore.location",
        "ssl.truststore.password",
        "ssl.truststore.type",
        "ssl.keystore.type",
        "default.api.timeout.ms",
        "exclude.internal.topics",
        "auto.include.jmx.reporter",
    }
)

# Valid names that this build of librdkafka (Linux/macOS wheels) rejects.
_PLATFORM_ONLY = {"ssl.ca.certificate.stores": "Windows"}

# Unknown names that look like they carry a secret are redacted all the same.
_SECRET_LOOKING = re.compile(r"password|passwd|secret|passphrase|private\.key|credential|jaas")

_KIND_SCOPE: dict[ClientKind, frozenset[str]] = {
    "producer": frozenset({"*", "P"}),
    "consumer": frozenset({"*", "C"}),
    "admin": frozenset({"*"}),
}
_SCOPE_NOUN = {"P": "producer", "C": "consumer"}
_KIND_NOUN: dict[ClientKind, str] = {
    "producer": "a producer",
    "consumer": "a consumer",
    "admin": "an admin client",
}


def lookup(name: str) -> PropertyInfo | None:
    """The librdkafka property called exactly `name` (names are case-sensitive), or None."""
    return PROPERTIES.get(name)


def canonical_name(name: str) -> str:
    """The property an alias stands for (`linger.ms` -> `queue.buffering.max.ms`); other names unchanged."""
    info = PROPERTIES.get(name)
    return info.alias_of if info is not None and info.alias_of else name


def is_secret(name: str) -> bool:
    """Whether a client property's value must be redacted when shown."""
    info = PROPERTIES.get(name)
    if info is None:
        return bool(_SECRET_LOOKING.search(name.lower()))
    if info.secret:
        return True
    return info.alias_of is not None and is_secret(info.alias_of)


def remember_secret_values(data: Any) -> None:
    """Register the value of every secret-named key in a parsed file with kpipe.redaction, so it is masked
    wherever it is printed (a diagnostic quoting it, `render`, a log line)."""
    from kpipe.redaction import remember

    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, str) and is_secret(key) and not isinstance(value, dict | list):
                    remember(value)
                else:
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)


def check_client_property(name: str, value: object, kind: ClientKind) -> tuple[str | None, str | None]:
    """Check one passthrough key and its YAML value for a client of `kind`.

    Returns (error, hint). An error of None with a hint means the setting works but deserves a warning
    (a deprecated property).
    """
    info = PROPERTIES.get(name)
    if info is None:
        return f"unknown librdkafka property '{name}'", _unknown_client_hint(name)
    if not info.settable:
        return (
            f"'{name}' cannot be set from YAML; librdkafka takes it through a dedicated API",
            None,
        )
    if info.scope not in _KIND_SCOPE[kind]:
        owner = _SCOPE_NOUN[info.scope]
        return (
            f"'{name}' is a {owner} property; it has no effect on {_KIND_NOUN[kind]}",
            f"set it in a {owner}'s config",
        )
    problem = _check_value(
        name, info.type, info.values, info.minimum, info.maximum, value, case_sensitive=False, c_ints=True
    )
    if problem is not None:
        return problem
    if info.name in _PLATFORM_ONLY:
        return None, f"'{name}' only works with librdkafka on {_PLATFORM_ONLY[info.name]}"
    if info.deprecated:
        return None, f"'{name}' is deprecated in librdkafka"
    return None, None


def check_topic_config(name: str, value: object) -> tuple[str | None, str | None]:
    """Check one topic-level `config:` entry (broker side) and its YAML value. Same contract as above."""
    info = TOPIC_CONFIGS.get(name)
    if info is None:
        if name.startswith(_VENDOR_TOPIC_PREFIXES):
            return None, None
        hint = did_you_mean(name, TOPIC_CONFIGS)
        if hint is None and name in PROPERTIES:
            hint = f"'{name}' is a librdkafka client property; set it in a client's config"
        return f"unknown topic config '{name}'", hint
    problem = _check_value(
        name, info.type, info.values, info.minimum, info.maximum, value, case_sensitive=True, c_ints=False
    )
    if problem is not None:
        return problem
    if info.removed_in is not None:
        return None, f"'{name}' was removed in Kafka {info.removed_in}; only older brokers accept it"
    return None, None


def _unknown_client_hint(name: str) -> str | None:
    if name in TOPIC_CONFIGS:
        return f"'{name}' is a topic config; set it in the topic's config"
    if name in _JAVA_ONLY:
        return f"'{name}' is a Java client setting; librdkafka has no such property"
    return did_you_mean(name, _SETTABLE_NAMES)


def _show(value: object) -> str:
    """A value as the user wrote it in YAML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return str(value)


def _between(lo: int | float | None, hi: int | float | None) -> str:
    if hi is None or hi >= _LONG_MAX:
        return f"at least {lo}"
    return f"between {lo} and {hi}"


_C_INT = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|[0-9]+)")
_JAVA_INT = re.compile(r"[+-]?[0-9]+")


def _as_int(value: object, *, c_ints: bool) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if c_ints and _C_INT.fullmatch(text):
            # librdkafka parses with strtol(base 0): hex is fine; a leading zero means octal there,
            # but "010" meaning 8 would surprise anyone, so read digits as decimal.
            return int(text, 16) if text.lstrip("+-")[:2].lower() == "0x" else int(text, 10)
        if not c_ints and _JAVA_INT.fullmatch(text):
            return int(text)
    return None


def _as_float(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _one_of(allowed: tuple[str, ...]) -> str:
    return ", ".join(allowed)


Problem = tuple[str | None, str | None] | None


@dataclass(frozen=True)
class _Expected:
    """What a property's value must be, as the table says, and how its value reads."""

    name: str
    allowed: tuple[str, ...]
    lo: int | float | None
    hi: int | float | None
    case_sensitive: bool
    c_ints: bool
    got: str


def _check_value(
    name: str,
    type_: str,
    allowed: tuple[str, ...] | None,
    lo: int | float | None,
    hi: int | float | None,
    value: object,
    *,
    case_sensitive: bool,
    c_ints: bool,
) -> Problem:
    """(error, hint) when `value` will not do for the property, else None."""
    if value is None:
        return f"'{name}' has no value", None
    if isinstance(value, str) and has_token(value):
        # An env() value: checked as the client will get it, named by its token (kpipe.redaction).
        real = reveal(value, remember=False)
        options = {"case_sensitive": case_sensitive, "c_ints": c_ints}
        if _check_value(name, type_, allowed, lo, hi, real, **options) is None:
            return None
        kind = {"integer": "an integer", "float": "a number", "boolean": "true or false"}.get(type_, "")
        shown_kind = kind or (f"one of {_one_of(allowed)}" if allowed else "a valid value")
        return f"'{name}' must be {shown_kind} (got {_show(value)})", None
    expected = _Expected(name, allowed or (), lo, hi, case_sensitive, c_ints, _show(value))
    return _CHECKS.get(type_, _check_string)(expected, value)


def _check_boolean(e: _Expected, value: object) -> Problem:
    text = str(value).strip().lower() if not isinstance(value, bool) else ""
    ok = isinstance(value, bool) or text in ("true", "false") or (e.c_ints and text in ("t", "f", "1", "0"))
    return None if ok else (f"'{e.name}' must be true or false (got {e.got})", None)


def _check_integer(e: _Expected, value: object) -> Problem:
    if isinstance(value, str | int) and not isinstance(value, bool):
        spelled = str(value).strip()
        if any(spelled.lower() == a.lower() for a in e.allowed):
            return None
    number = _as_int(value, c_ints=e.c_ints)
    named = "".join(f"{a} or " for a in e.allowed)
    if number is None:
        if e.allowed:
            return f"'{e.name}' must be {named}an integer {_between(e.lo, e.hi)} (got {e.got})", None
        return f"'{e.name}' must be an integer (got {e.got})", None
    if (e.lo is not None and number < e.lo) or (e.hi is not None and number > e.hi):
        return f"'{e.name}' must be {named}{_between(e.lo, e.hi)} (got {e.got})", None
    return None


def _check_float(e: _Expected, value: object) -> Problem:
    number = _as_float(value)
    if number is None:
        return f"'{e.name}' must be a number {_between(e.lo, e.hi)} (got {e.got})", None
    if (e.lo is not None and number < e.lo) or (e.hi is not None and number > e.hi):
        return f"'{e.name}' must be {_between(e.lo, e.hi)} (got {e.got})", None
    return None


def _check_enum(e: _Expected, value: object) -> Problem:
    if isinstance(value, str):
        text = value.strip()
        if text in e.allowed or (not e.case_sensitive and text.lower() in {a.lower() for a in e.allowed}):
            return None
    return (
        f"'{e.name}' must be one of {_one_of(e.allowed)} (got {e.got})",
        did_you_mean(str(value), e.allowed) if isinstance(value, str) else None,
    )


def _check_list(e: _Expected, value: object) -> Problem:
    if isinstance(value, list | tuple):
        items = [v.strip() if isinstance(v, str) else v for v in value]
    elif isinstance(value, str):
        # librdkafka flags may carry a +/- prefix (add to / remove from the default set).
        items = [v.strip().lstrip("+-") if e.c_ints else v.strip() for v in value.split(",")]
    else:
        return f"'{e.name}' must be a comma-separated list of {_one_of(e.allowed)} (got {e.got})", None
    folded = {a if e.case_sensitive else a.lower() for a in e.allowed}
    for item in items:
        if item == "":
            continue
        key = item if e.case_sensitive or not isinstance(item, str) else item.lower()
        if key not in folded:
            return (
                f"'{e.name}' has unknown value {_show(item)}; allowed: {_one_of(e.allowed)}",
                did_you_mean(str(item), e.allowed),
            )
    return None


def _check_string(e: _Expected, value: object) -> Problem:
    # string and pattern list: any scalar; librdkafka and the broker both take it as text.
    if isinstance(value, list | tuple | dict):
        hint = "write the values as one comma-separated string" if isinstance(value, list | tuple) else None
        return f"'{e.name}' must be a string (got {e.got})", hint
    return None


_CHECKS = {
    "boolean": _check_boolean,
    "integer": _check_integer,
    "float": _check_float,
    "enum": _check_enum,
    "flags": _check_list,
    "list": _check_list,
}

"""Compile an assembled, checked Declarations into plain client configs and topic specs. Pure.

Every librdkafka setting is built from layers, lowest first, and each remembers where it came from so
`kpipe explain` can show it:

    kpipe default  →  embedded broker default  →  cluster.config  →  declared field  →  passthrough
        →  runtime overrides (`--bootstrap-servers`, `kpipe run -X KEY=VALUE`)

"embedded broker default" applies only when the project talks to kpipe's embedded broker (`local`).

A consumer group's config is final: the worker passes it to Consumer(...) as compiled, adding only callbacks
(error_cb, logger, rebalance callbacks). The settings its at-least-once delivery depends on (group.id,
enable.auto.offset.store, enable.auto.commit, auto.commit.interval.ms) are applied last, over passthrough and
overrides alike (the check step has already refused a passthrough that contradicts them). Each instance of a
group gets a client.id of its own: `ConsumerGroupSettings.client_for(instance)`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kpipe.check.rules import dead_letter_topic
from kpipe.compilation.compiled import (
    ClientConfig,
    CommitPolicy,
    ConsumerGroupSettings,
    ErrorPolicy,
    MetricsSettings,
    ProducerSettings,
    Provisioning,
    Setting,
    TopicSettings,
    commit_settings,
)
from kpipe.model import librdkafka as props
from kpipe.model.assemble import Declarations, Declared
from kpipe.model.librdkafka import PRODUCER_FIELDS
from kpipe.model.pipeline import ConsumerGroupSpec, ProducerSpec

# librdkafka's own default fetch.queue.backoff.ms is 1000 ms: when the local queue fills, the consumer stops
# fetching for a whole second. Measured on the local broker, that one stall cut a 200k-event run from ~426k to
# ~149k events/s. 10 ms costs nothing noticeable on Apache Kafka and removes the stall.
CONSUMER_DEFAULTS: dict[str, str] = {
    "enable.partition.eof": "false",
    "fetch.queue.backoff.ms": "10",
    # librdkafka reads ahead up to 64 MB per consumer by default; 8 MB keeps a worker under 100 MB RSS with
    # no measurable throughput cost (benchmarks/RESULTS.md).
    "queued.max.messages.kbytes": "8192",
}
PRODUCER_DEFAULTS: dict[str, str] = {}
# The embedded broker (Tansu) holds a JoinGroup for half the session timeout (in whole seconds, rounded up), so
# librdkafka's 45 s default makes a first `kpipe run` wait ~23 s for its partitions. On `local` every consumer
# (run, dev, the Python API) joins in ~2 s with these instead (6000 took ~3 s: a second more before a 50-group
# run is ready); 4 s still spans four heartbeats, so a member is dropped only after missing several of them.
# fetch.wait.max.ms keeps a local event's round trip short. cluster.config and a group's own config still win.
EMBEDDED_BROKER_DEFAULTS: dict[str, str] = {
    "session.timeout.ms": "4000",
    "heartbeat.interval.ms": "1000",
    "fetch.wait.max.ms": "100",
}
EMBEDDED_BROKER_SOURCE = "embedded broker default"
# The producer a consumer group writes dead letters and emitted events with.
GROUP_PRODUCER_DEFAULTS: dict[str, str] = {"acks": "all", "enable.idempotence": "true", "linger.ms": "5"}


# Where runtime overrides come from, for `kpipe explain`.
BOOTSTRAP_OVERRIDE_ORIGIN = "--bootstrap-servers"
CONSUMER_OVERRIDE_ORIGIN = "--consumer-config"


def config_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(config_value(v) for v in value)
    return str(value)


def _applies_to(key: str, kind: str) -> bool:
    """Whether a cluster-wide setting is meant for this kind of client (a producer-only key skips consumers)."""
    info = props.lookup(key)
    if info is None or info.scope == "*":
        return True
    return {"P": "producer", "C": "consumer"}[info.scope] == kind


# With metrics on, librdkafka statistics (consumer lag) once a second.
STATISTICS_INTERVAL_MS = 1000


class _Layers:
    """An ordered dict of settings where a later layer replaces an earlier value and its provenance."""

    def __init__(self) -> None:
        self._settings: dict[str, Setting] = {}

    def set(self, key: str, value: object, source: str, origin: str | None = None, position=None) -> None:
        self._settings[key] = Setting(
            key, config_value(value), source, origin, position, props.is_secret(key)
        )

    def update(
        self, items: Mapping[str, object], source: str, owner: Declared | None, origin_prefix: str, kind: str
    ) -> None:
        for key, value in items.items():
            if not _applies_to(key, kind):
                continue  # a cluster-wide setting meant for another kind of client
            position = owner.locate("config", key) if owner else None
            self.set(key, value, source, f"{origin_prefix}.config.{key}", position)

    def source_of(self, key: str) -> str | None:
        """Where the current value of `key` (under any of its names) came from, or None when unset."""
        canonical = props.canonical_name(key)
        for setting in self._settings.values():
            if props.canonical_name(setting.key) == canonical:
                return setting.source
        return None

    def freeze(self) -> ClientConfig:
        return ClientConfig(tuple(self._settings.values()))


def _base(
    project: Declarations,
    kind: str,
    bootstrap_override: str | None,
    defaults: Mapping[str, str] | None = None,
    embedded: bool = False,
) -> _Layers:
    layers = _Layers()
    cluster = project.cluster_spec
    if bootstrap_override:
        layers.set("bootstrap.servers", bootstrap_override, "override", BOOTSTRAP_OVERRIDE_ORIGIN)
    else:
        position = project.cluster.locate("bootstrap_servers") if project.cluster else None
        source = "declared" if project.cluster else "kpipe default"
        layers.set(
            "bootstrap.servers", cluster.bootstrap_servers, source, "cluster.bootstrap_servers", position
        )
    if defaults is None:
        defaults = CONSUMER_DEFAULTS if kind == "consumer" else PRODUCER_DEFAULTS
    for key, value in defaults.items():
        layers.set(key, value, "kpipe default")
    if embedded and kind == "consumer":
        for key, value in EMBEDDED_BROKER_DEFAULTS.items():
            layers.set(key, value, EMBEDDED_BROKER_SOURCE, "bootstrap_servers: local")
    if project.cluster:
        layers.update(cluster.config, "cluster.config", project.cluster, "cluster", kind)
    return layers


def compile_producer(
    project: Declarations, name: str, bootstrap_override: str | None = None, *, embedded: bool = False
) -> ProducerSettings:
    declared = project.producers[name]
    spec: ProducerSpec = declared.spec
    layers = _base(project, "producer", bootstrap_override, embedded=embedded)
    layers.set("client.id", f"kpipe-{name}", "kpipe default")
    for field_name, key in PRODUCER_FIELDS.items():
        value = getattr(spec, field_name)
        if value is None:
            continue
        explicit = declared.written(field_name)
        if not explicit and layers.source_of(key) == "cluster.config":
            continue  # a field's default is a kpipe default: cluster.config comes after it
        layers.set(
            key,
            value,
            "declared" if explicit else "kpipe default",
            f"producers.{name}.{field_name}" if explicit else None,
            declared.locate(field_name) if explicit else None,
        )
    layers.update(spec.config, "passthrough", declared, f"producers.{name}", "producer")
    topic = project.topics.get(spec.topic)
    return ProducerSettings(
        name=name,
        topic=spec.topic,
        key_field=topic.spec.key if topic else None,
        schema_name=topic.spec.schema_ if topic else None,
        client=layers.freeze(),
        position=declared.position,
    )


def compile_consumer_group(
    project: Declarations,
    name: str,
    bootstrap_override: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    embedded: bool = False,
    metrics: bool = False,
) -> ConsumerGroupSettings:
    """The group's settings with its final consumer config; `overrides` are runtime -X settings. With
    `metrics` (kpipe run serving /metrics, kpipe dev's table), librdkafka reports statistics every
    STATISTICS_INTERVAL_MS for consumer lag, unless the group's config or an override sets the interval."""
    declared = project.consumers[name]
    spec: ConsumerGroupSpec = declared.spec
    layers = _base(project, "consumer", bootstrap_override, embedded=embedded)
    layers.set(
        "client.id", spec.client_id or f"kpipe-{name}", "declared" if spec.client_id else "kpipe default"
    )
    explicit_reset = declared.written("auto_offset_reset")
    layers.set(
        "auto.offset.reset",
        spec.auto_offset_reset,
        "declared" if explicit_reset else "kpipe default",
        f"consumers.{name}.auto_offset_reset" if explicit_reset else None,
        declared.locate("auto_offset_reset") if explicit_reset else None,
    )
    if metrics:
        layers.set("statistics.interval.ms", STATISTICS_INTERVAL_MS, "derived", "metrics (consumer lag)")
    layers.update(spec.config, "passthrough", declared, f"consumers.{name}", "consumer")
    for key, value in (overrides or {}).items():
        layers.set(key, value, "override", f"{CONSUMER_OVERRIDE_ORIGIN} {key}")
    commit = spec.commit
    policy = _commit_policy(commit)
    # What at-least-once depends on comes last: no passthrough or override can change it.
    layers.set("group.id", name, "declared", f"consumers.{name}", declared.position)
    origin = f"consumers.{name}.commit"
    position = declared.locate("commit")
    for key, value in commit_settings(policy).items():
        if key == "auto.commit.interval.ms":
            layers.set(key, value, "declared", f"{origin}.interval_ms", position)
        else:
            layers.set(key, value, "derived", origin, position)
    return ConsumerGroupSettings(
        group_id=name,
        topics=tuple(spec.topics),
        handler=spec.handler,
        instances=spec.instances,
        commit=policy,
        on_error=_error_policy(name, spec),
        client=layers.freeze(),
        topic_schemas={
            t: (project.topics[t].spec.schema_ if t in project.topics else None) for t in spec.topics
        },
        producer_client=_group_producer(project, name, spec, bootstrap_override),
        import_paths=tuple(project.directories),
        max_poll_records=spec.max_poll_records,
        position=declared.position,
        concurrency=spec.concurrency,
        ordering=spec.ordering,
        emits=tuple(spec.emits),
    )


def _group_producer(
    project: Declarations, name: str, spec: ConsumerGroupSpec, bootstrap_override: str | None
) -> ClientConfig | None:
    """The config of the group's own producer, which writes its dead letters and its declared emits, or None
    when the group can do neither (an on_error action other than dead_letter, no `emits`): its workers then
    build no producer, saving its threads and buffers. Events a handler sends through a kpipe Producer
    (`ctx.emit(producer, event)`) go through that producer's client, not this one. kpipe's durable defaults,
    which cluster.config may override (e.g. idempotence off where the cluster grants no IdempotentWrite)."""
    if dead_letter_topic(name, spec) is None and not spec.emits:
        return None
    producer = _base(project, "producer", bootstrap_override, defaults=GROUP_PRODUCER_DEFAULTS)
    producer.set("client.id", f"kpipe-{name}-dlq", "kpipe default")
    return producer.freeze()


def _commit_policy(commit: Any) -> CommitPolicy:
    if commit.strategy == "auto":
        return CommitPolicy("auto", interval_ms=commit.interval_ms)
    if commit.strategy == "per_message":
        return CommitPolicy("per_message")
    return CommitPolicy("batch", batch_size=commit.batch_size, interval_ms=commit.interval_ms)


def _error_policy(name: str, spec: ConsumerGroupSpec) -> ErrorPolicy:
    on_error = spec.on_error
    return ErrorPolicy(
        action=on_error.action,
        retries=on_error.retries,
        backoff_ms=on_error.backoff_ms,
        max_backoff_ms=on_error.max_backoff_ms,
        dead_letter_topic=dead_letter_topic(name, spec),
        timeout_ms=on_error.timeout_ms,
    )


def compile_topics(project: Declarations) -> list[TopicSettings]:
    """Declared topics plus the dead-letter topics consumer groups need, sorted by name."""
    topics: dict[str, TopicSettings] = {}
    for name, declared in project.topics.items():
        spec = declared.spec
        topics[name] = TopicSettings(
            name=name,
            partitions=spec.partitions,
            replication_factor=spec.replication_factor if spec.replication_factor is not None else -1,
            config={k: config_value(v) for k, v in spec.config.items()},
            key_field=spec.key,
            schema_name=spec.schema_,
            position=declared.position,
        )
    for name, declared in sorted(project.consumers.items()):
        dlq = dead_letter_topic(name, declared.spec)
        if dlq is None or dlq in topics:
            continue
        sources = [topics[t] for t in declared.spec.topics if t in topics]
        topics[dlq] = TopicSettings(
            name=dlq,
            # Dead letters keep the source partitioning's parallelism; they hold no schema (they carry
            # whatever failed, byte for byte).
            partitions=max((t.partitions for t in sources), default=1),
            replication_factor=max((t.replication_factor for t in sources), default=-1),
            config={},
            position=declared.locate("on_error"),
            implicit=True,
        )
    return [topics[n] for n in sorted(topics)]


def compile_metrics(
    project: Declarations, port_override: int | None = None, host_override: str | None = None
) -> MetricsSettings:
    """The files' `metrics:` section, with `kpipe run --metrics-port/--metrics-host` winning over it."""
    declared = project.metrics_spec
    return MetricsSettings(
        port=port_override if port_override is not None else declared.port,
        host=host_override or declared.host,
    )


def compile_provisioning(
    project: Declarations, groups: Iterable[str] = (), producers: Iterable[str] = ()
) -> Provisioning:
    """The declared topics the given groups read, dead-letter to and emit to, and the producers write to."""
    wanted: set[str] = set()
    for name in groups:
        spec = project.consumers[name].spec
        dlq = dead_letter_topic(name, spec)
        wanted.update([*spec.topics, *spec.emits, *([dlq] if dlq else [])])
    wanted.update(project.producers[name].spec.topic for name in producers)
    # A name no file declares has no partitions or configs to create it with: the check step reports it.
    topics = tuple(t for t in compile_topics(project) if t.name in wanted)
    return Provisioning(topics, create_missing=project.cluster_spec.create_missing_topics)


def compile_cluster_client(project: Declarations, bootstrap_override: str | None = None) -> ClientConfig:
    return _base(project, "admin", bootstrap_override).freeze()

"""Compiled objects: what the spec becomes once every default, template and reference is resolved.

These are frozen, plain data (no pydantic, no I/O, no confluent_kafka). The execute layers take only these:
`plan`/`apply` take TopicSettings, the producer takes ProducerSettings, the worker takes ConsumerGroupSettings.
Tests compare them directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from kpipe.diagnostics import Position
from kpipe.redaction import reveal

CommitStrategy = Literal["auto", "per_message", "batch"]
ErrorAction = Literal["dead_letter", "stop", "skip"]
Ordering = Literal["key", "partition", "none"]


@dataclass(frozen=True)
class Setting:
    """One final librdkafka setting and where its value came from (for `kpipe explain`)."""

    key: str
    value: str
    # "kpipe default" | "declared" | "cluster.config" | "passthrough" | "derived"
    source: str
    # Where in the user's files, e.g. "producers.order-api.acks" at pipelines/orders.yaml:20:5.
    origin: str | None = None
    position: Position | None = None
    secret: bool = False


@dataclass(frozen=True)
class ClientConfig:
    """A librdkafka configuration with the provenance of every key.

    A value from env() is held as its token (kpipe.redaction), which is what `explain` shows, through
    `settings`; `as_dict` and `get` are the config as the client is given it, with the real values."""

    settings: tuple[Setting, ...]

    def as_dict(self) -> dict[str, str]:
        return {s.key: reveal(s.value) for s in self.settings}

    def get(self, key: str, default: str | None = None) -> str | None:
        for s in self.settings:
            if s.key == key:
                return reveal(s.value)
        return default


@dataclass(frozen=True)
class TopicSettings:
    name: str
    partitions: int
    replication_factor: int
    # Only the keys the user declared: plan compares these and never broker defaults.
    config: Mapping[str, str] = field(default_factory=dict)
    key_field: str | None = None
    schema_name: str | None = None
    position: Position | None = None
    # True for a dead-letter topic kpipe derived for a consumer group rather than one the user declared.
    implicit: bool = False


@dataclass(frozen=True)
class ProducerSettings:
    name: str
    topic: str
    key_field: str | None
    schema_name: str | None
    client: ClientConfig
    position: Position | None = None


@dataclass(frozen=True)
class CommitPolicy:
    strategy: CommitStrategy
    batch_size: int = 100
    interval_ms: int = 5000


def commit_settings(commit: CommitPolicy) -> dict[str, str]:
    """The consumer settings a commit policy depends on. The worker stores each offset itself, and only once
    its message is processed (enable.auto.offset.store=false), in every policy; `auto` lets librdkafka commit
    the stored offsets every interval, the others commit synchronously. Here rather than in the compiler, which
    sets them, so that a worker can check its settings without importing the compiler and, with it, the models
    of what users write (the fork server imports what workers import)."""
    settings = {"enable.auto.offset.store": "false"}
    if commit.strategy == "auto":
        settings["enable.auto.commit"] = "true"
        settings["auto.commit.interval.ms"] = str(commit.interval_ms)
    else:
        settings["enable.auto.commit"] = "false"
    return settings


@dataclass(frozen=True)
class ErrorPolicy:
    action: ErrorAction
    retries: int = 0
    backoff_ms: int = 200
    max_backoff_ms: int = 30_000
    dead_letter_topic: str | None = None
    # A handler call running longer: an async handler is cancelled (a failure); a sync one in the sequential
    # worker is hung: reported, the worker restarts, and after HANG_LIMIT hangs its event fails (runtime.worker.hangs).
    # None: no limit (long calls are still reported).
    timeout_ms: int | None = None


@dataclass(frozen=True)
class ConsumerGroupSettings:
    group_id: str
    topics: tuple[str, ...]
    handler: str  # "module.path:function"
    instances: int
    commit: CommitPolicy
    on_error: ErrorPolicy
    client: ClientConfig
    # Schema name per subscribed topic (None: the handler gets raw bytes).
    topic_schemas: Mapping[str, str | None] = field(default_factory=dict)
    # librdkafka config for the producer that writes dead letters and events emitted by topic name; None when
    # the group can send neither (no dead-letter topic, no `emits`): its workers then build no producer.
    producer_client: ClientConfig | None = None
    # Directories added to sys.path before importing the handler: the pipeline files' directories, then the
    # project root (docs/pipeline-format.md, "Handlers and model schemas: how they are found").
    import_paths: tuple[str, ...] = ()
    # Consumer batch size handed to Consumer.consume(n).
    max_poll_records: int = 500
    position: Position | None = None
    # Events handled at once per instance (1: the sequential worker) and what stays in order among them.
    concurrency: int = 1
    ordering: Ordering = "key"
    # Topics the handler may send to with ctx.emit (declared `emits`); anything else is refused at emit time.
    emits: tuple[str, ...] = ()

    def client_for(self, instance: int) -> ClientConfig:
        """The final consumer config of one instance of the group: `client` with a client.id of its own
        ('<client.id>-<instance>'), so broker logs and metrics tell the group's processes apart. A runtime
        override (`-X client.id=...`) names every instance alike."""
        settings = []
        for s in self.client.settings:
            if s.key == "client.id" and s.source != "override":
                origin = f"{s.origin or s.source} + instance {instance}"
                s = replace(s, value=f"{s.value}-{instance}", source="derived", origin=origin)
            settings.append(s)
        return ClientConfig(tuple(settings))


# The metrics port the Kubernetes export gives `kpipe run --metrics-port` and declares for scraping. Metrics are
# off unless a port is given (flag or the files' `metrics.port`).
DEFAULT_METRICS_PORT = 9464


@dataclass(frozen=True)
class MetricsSettings:
    """Where `kpipe run` serves /metrics, /healthz and /readyz; port None: no server."""

    port: int | None = None
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class Provisioning:
    """The topics a command's clients use (what `run` and `produce` make sure exist before they start)."""

    topics: tuple[TopicSettings, ...]
    # cluster.create_missing_topics: create the missing ones (True) or refuse to start without them (False).
    create_missing: bool = True

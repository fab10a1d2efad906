"""The pipeline file format: pydantic models of exactly what users write. Pure: no I/O, no Kafka.

One file may hold any of the sections; a project is the union of its files. Every model forbids unknown keys so
a typo is an error (with a did-you-mean), and variants (commit strategies) are a discriminated union so an error
speaks only of the variant chosen. Rules that span objects or files live in `kpipe.check.rules`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    field_validator,
)

from kpipe.redaction import reveal, shown

# A librdkafka / Kafka config value as YAML gives it; compile turns it into the string librdkafka wants.
# A list is joined with commas (cleanup.policy: [compact, delete]).
ConfigValue = str | bool | int | float | list[str]
ConfigMap = dict[str, ConfigValue]

IMPORT_PATH = (
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
)
ImportPath = Annotated[str, StringConstraints(pattern=IMPORT_PATH)]
FieldName = Annotated[str, StringConstraints(min_length=1)]
TopicRef = Annotated[str, StringConstraints(min_length=1)]

Compatibility = Literal[
    "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE", "NONE"
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)


TracesExporter = Literal["otlp", "console", "none"]
TracesSampler = Literal[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
]


class TracingSpec(Strict):
    """OpenTelemetry tracing of every worker and producer (needs kpipe's `otel` extra). Each key has a
    standard OTEL_* environment variable, which wins over it; the block itself turns tracing on."""

    exporter: TracesExporter = Field(
        default="otlp", description="Where spans go (OTEL_TRACES_EXPORTER); `none` turns tracing off."
    )
    endpoint: str | None = Field(
        default=None,
        min_length=1,
        description="The OTLP collector, e.g. http://otel-collector:4318 (OTEL_EXPORTER_OTLP_ENDPOINT).",
    )
    protocol: Literal["http/protobuf", "grpc"] = Field(
        default="http/protobuf",
        description="OTLP protocol (OTEL_EXPORTER_OTLP_PROTOCOL); grpc needs opentelemetry-exporter-otlp-proto-grpc.",
    )
    service_name: str | None = Field(
        default=None,
        min_length=1,
        description="service.name of the spans (OTEL_SERVICE_NAME; default: kpipe).",
    )
    sampler: TracesSampler = Field(
        default="parentbased_always_on", description="Which traces are kept (OTEL_TRACES_SAMPLER)."
    )
    sampler_arg: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="The ratio of the traceidratio samplers (OTEL_TRACES_SAMPLER_ARG; default 1.0).",
    )
    resource_attributes: dict[str, str] = Field(
        default_factory=dict,
        description="More resource attributes, e.g. deployment.environment (OTEL_RESOURCE_ATTRIBUTES wins per key).",
    )


class ClusterSpec(Strict):
    """How every client reaches the cluster. `bootstrap_servers: local` means kpipe's embedded broker."""

    bootstrap_servers: str = "localhost:9092"
    config: ConfigMap = Field(
        default_factory=dict, description="librdkafka settings applied to every client."
    )
    create_missing_topics: bool = Field(
        default=True,
        description="`kpipe run` and `kpipe produce` create the declared topics they use if missing.",
    )
    tracing: TracingSpec | None = Field(
        default=None,
        description="OpenTelemetry tracing; off unless this block or OTEL_TRACES_EXPORTER is set.",
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _bootstrap(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        # An env() value is checked as it will be used, but named by its token in the message (kpipe.redaction).
        checked = reveal(value, remember=False).strip()
        if checked != "local":
            for server in checked.split(","):
                host, sep, port = server.strip().rpartition(":")
                if not sep or not host or not port.isdigit():
                    shown_as = f"'{server.strip()}'" if checked == value else shown(value)
                    raise ValueError(f"{shown_as} is not host:port")
        return value


class SchemaFile(Strict):
    file: str = Field(description="Path of a JSON Schema document (YAML or JSON), relative to this file.")
    compatibility: Compatibility = "BACKWARD"


class SchemaModel(Strict):
    model: ImportPath = Field(description="A pydantic model by import path, 'package.module:ClassName'.")
    compatibility: Compatibility = "BACKWARD"


def _schema_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "model" if "model" in value else "file"
    return "model" if isinstance(value, SchemaModel) else "file"


def _schema_shorthand(value: Any) -> Any:
    # A bare string is shorthand for {file: ...}.
    return {"file": value} if isinstance(value, str) else value


SchemaSpec = Annotated[
    Annotated[SchemaFile, Tag("file")] | Annotated[SchemaModel, Tag("model")],
    Discriminator(_schema_kind),
    BeforeValidator(_schema_shorthand),
]


class TopicSpec(Strict):
    partitions: int = Field(ge=1, le=100_000)
    replication_factor: int | None = Field(
        default=None, ge=1, le=32, description="Omit to use the broker's default.replication.factor."
    )
    key: FieldName | None = Field(default=None, description="Event field whose value is the message key.")
    schema_: str | None = Field(default=None, alias="schema", description="Name of an entry under `schemas`.")
    config: ConfigMap = Field(default_factory=dict, description="Kafka topic configs (retention.ms, ...).")
    description: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)


class ProducerSpec(Strict):
    topic: TopicRef
    acks: Literal["all", "0", "1", "-1"] = "all"
    retries: int = Field(default=2147483647, ge=0)
    linger_ms: int = Field(default=5, ge=0, le=900_000)
    batch_size: int | None = Field(default=None, ge=1, description="Maximum batch size in bytes.")
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"
    idempotent: bool = True
    delivery_timeout_ms: int | None = Field(default=None, ge=1)
    client_id: str | None = None
    config: ConfigMap = Field(default_factory=dict)
    description: str | None = None

    @field_validator("acks", mode="before")
    @classmethod
    def _acks(cls, value: Any) -> Any:
        # YAML reads `acks: 1` as an int and `acks: all` as a string; accept both spellings.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class AutoCommit(Strict):
    strategy: Literal["auto"]
    interval_ms: int = Field(default=5000, ge=1)


class PerMessageCommit(Strict):
    strategy: Literal["per_message"]


class BatchCommit(Strict):
    strategy: Literal["batch"]
    batch_size: int = Field(default=100, ge=1)
    interval_ms: int = Field(default=5000, ge=1)


CommitSpec = Annotated[AutoCommit | PerMessageCommit | BatchCommit, Field(discriminator="strategy")]


class OnErrorSpec(Strict):
    action: Literal["dead_letter", "stop", "skip"] = "dead_letter"
    retries: int = Field(default=3, ge=0, le=1000)
    backoff_ms: int = Field(default=200, ge=0)
    max_backoff_ms: int = Field(default=30_000, ge=0)
    dead_letter_topic: TopicRef | None = None
    timeout_ms: int | None = Field(
        default=None,
        ge=1,
        description="A handler call running longer than this is reported as hung (off when unset).",
    )


# A Kubernetes resource quantity as kpipe accepts it: "250m", "0.5", "512Mi", "1Gi" (YAML numbers too).
QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


def _quantity(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and not QUANTITY_RE.match(value):
        raise ValueError(f"'{value}' is not a Kubernetes quantity (e.g. 250m, 0.5, 512Mi, 1Gi)")
    return value


Quantity = Annotated[str, BeforeValidator(_quantity)]


class ResourceAmounts(Strict):
    cpu: Quantity | None = None
    memory: Quantity | None = None


class ResourcesSpec(Strict):
    """Container resources of each pod; what is not written keeps the export's default (requests cpu 100m,
    memory 256Mi; limits memory 512Mi, and no CPU limit so a busy worker is not throttled)."""

    requests: ResourceAmounts = Field(default_factory=ResourceAmounts)
    limits: ResourceAmounts = Field(default_factory=ResourceAmounts)


class AutoscaleSpec(Strict):
    """KEDA autoscaling on consumer lag (kpipe export kubernetes writes a ScaledObject for the group)."""

    min_replicas: int = Field(default=1, ge=0, le=1000, description="0 lets KEDA scale the group to zero.")
    max_replicas: int | None = Field(
        default=None, ge=1, le=1000, description="At most the partitions of the group's topics (the default)."
    )
    lag_threshold: int = Field(default=100, ge=1, description="Target lag per member before KEDA adds one.")


class DeploySpec(Strict):
    """How `kpipe export kubernetes` deploys the group; ignored by `kpipe run`."""

    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    autoscale: AutoscaleSpec | None = None


class ConsumerGroupSpec(Strict):
    topics: list[TopicRef] = Field(min_length=1)
    handler: ImportPath
    instances: int = Field(default=1, ge=1, le=1000)
    auto_offset_reset: Literal["earliest", "latest", "error"] = "earliest"
    commit: CommitSpec = Field(default_factory=lambda: BatchCommit(strategy="batch"))
    on_error: OnErrorSpec = Field(default_factory=OnErrorSpec)
    max_poll_records: int = Field(
        default=500, ge=1, le=100_000, description="Messages fetched per consume() call."
    )
    concurrency: int = Field(
        default=1, ge=1, le=10_000, description="Events handled at once per instance (1: one at a time)."
    )
    ordering: Literal["key", "partition", "none"] = Field(
        default="key",
        description="What stays in order when concurrency > 1: per key, per partition, or nothing.",
    )
    emits: list[TopicRef] = Field(
        default_factory=list,
        description="Topics the handler may send to with ctx.emit (validated by their schema).",
    )
    deploy: DeploySpec = Field(
        default_factory=DeploySpec, description="Kubernetes resources and KEDA autoscaling (export only)."
    )
    client_id: str | None = None
    config: ConfigMap = Field(default_factory=dict)
    description: str | None = None

    @field_validator("topics", "emits")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        seen = set()
        for name in value:
            if name in seen:
                raise ValueError(f"topic '{name}' is listed twice")
            seen.add(name)
        return value


class MetricsSpec(Strict):
    """Where `kpipe run` serves Prometheus metrics, /healthz and /readyz (its --metrics-port/--metrics-host win)."""

    port: int | None = Field(
        default=None, ge=1, le=65535, description="Port of the metrics and health server (unset: no server)."
    )
    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address the metrics server listens on (0.0.0.0 for every interface, e.g. in a container).",
    )


class PipelineFile(Strict):
    """One pipeline file. Every section is optional; names are global across the project's files."""

    cluster: ClusterSpec | None = None
    schemas: dict[str, SchemaSpec] = Field(default_factory=dict)
    topics: dict[str, TopicSpec] = Field(default_factory=dict)
    producers: dict[str, ProducerSpec] = Field(default_factory=dict)
    consumers: dict[str, ConsumerGroupSpec] = Field(default_factory=dict)
    metrics: MetricsSpec | None = None

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"title": "kpipe pipeline file", "$id": "https://kpipe.dev/schema/pipeline.json"},
    )

    @field_validator("schemas", "topics", "producers", "consumers", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        # `topics:` with nothing under it parses as None; treat it as an empty section.
        return {} if value is None else value


SECTION_NAMES = ("cluster", "schemas", "topics", "producers", "consumers", "metrics")

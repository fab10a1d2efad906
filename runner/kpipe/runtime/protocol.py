"""What passes between the supervisor and its worker processes: small, picklable, import-light.

The supervisor starts one process per consumer-group instance with a WorkerStart: the group's compiled settings
and what rebuilding its models needs (never paths to read again). The worker runs the group, reports
WorkerStatus snapshots on a pipe, and ends with one of the exit codes below, which tell the supervisor whether
a restart can help.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kpipe.compilation.compiled import ConsumerGroupSettings
from kpipe.errors import LocalBrokerError

# Worker process exit codes.
WORKER_EXIT_OK = 0  # stopped on request (SIGTERM/SIGINT), offsets committed
WORKER_EXIT_CRASH = 1  # unexpected error: restart with backoff
WORKER_EXIT_CLUSTER = (
    3  # broker unreachable for longer than the worker's bounded retries: restart with backoff
)
WORKER_EXIT_DEAD_LETTER = (
    4  # a dead letter could not be written even without its payload: restart with backoff
)
WORKER_EXIT_HUNG = (
    5  # a handler call outlived on_error.timeout_ms: restart (the hang is counted, see HangCounts)
)
WORKER_EXIT_HALT = 78  # do not restart: invalid project, handler import failed, or on_error: stop was hit

# A running worker reports its status at least every 2 s, also while a handler call runs long: a worker silent
# for this long is stale (frozen: SIGSTOP, or a handler holding the GIL), and not ready.
STALE_AFTER = 15.0


@dataclass(frozen=True)
class ModelSource:
    """How a worker rebuilds one schema model without reading a project file: from the JSON Schema document
    the supervisor compiled (JSON text), or, for a pydantic-model schema, by importing it."""

    name: str
    document: str | None = None  # a JSON Schema schema
    import_target: str | None = None  # a pydantic-model schema: "package.module:ClassName"


@dataclass(frozen=True)
class WorkerStart:
    """What one worker process is given: the group's compiled, frozen settings (its final client configs
    included, as `kpipe explain` shows them) and what rebuilding its models needs. No project file is read
    again in the worker, so editing the files during a run changes nothing until `kpipe run` restarts."""

    settings: ConsumerGroupSettings
    instance: int
    # The schemas the group reads and emits (by schema name); topic -> schema name is in the settings
    # (topic_schemas) and in emit_schemas.
    models: tuple[ModelSource, ...] = ()
    emit_schemas: tuple[tuple[str, str | None], ...] = ()  # emitted-to topic -> its schema name
    emit_key_fields: tuple[tuple[str, str | None], ...] = ()  # every topic -> its key field
    log_format: str = "text"  # "text" | "json"
    # Measure for Prometheus (kpipe run --metrics-port): histograms, and consumer lag from statistics.
    metrics: bool = False
    # Set by the supervisor: a directory for this run's shared worker state (hung-handler counts), and how
    # long a worker has between SIGTERM and SIGKILL.
    state_dir: str | None = None
    shutdown_timeout: float = 30.0

    @property
    def group(self) -> str:
        return self.settings.group_id


# Upper bounds (seconds) of the histogram buckets a worker counts into; the last bucket is +Inf.
DURATION_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
AGE_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86400.0,
)  # fmt: skip


@dataclass(frozen=True)
class Histogram:
    """Observations counted into fixed buckets: counts[i] for values <= bounds[i] (and above bounds[i-1]);
    the last count is for values above every bound. Per-bucket, not cumulative, so two add up bucket by bucket."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...] = ()
    sum: float = 0.0

    @property
    def count(self) -> int:
        return sum(self.counts)

    def __add__(self, other: Histogram) -> Histogram:
        if not other.counts:
            return self
        if not self.counts:
            return other
        if other.bounds != self.bounds:
            raise ValueError("histograms with different buckets do not add up")
        return Histogram(
            self.bounds,
            tuple(a + b for a, b in zip(self.counts, other.counts, strict=True)),
            self.sum + other.sum,
        )


@dataclass(frozen=True)
class WorkerCounters:
    """Cumulative counts of one worker process, or summed over every process a group instance has had (the
    supervisor adds a dead process's last counts to its successor's, so they never go backwards)."""

    handled: int = 0  # handler returned normally
    failed: int = 0  # processing failed for good (schema or handler, after retries)
    retried: int = 0  # handler calls repeated after a failure
    dead_lettered: int = 0
    skipped: int = 0
    commits: int = 0
    commit_failures: int = 0
    rebalances: int = 0  # assignments and revocations
    handler_seconds: Histogram = field(default_factory=lambda: Histogram(DURATION_BUCKETS))
    commit_seconds: Histogram = field(default_factory=lambda: Histogram(DURATION_BUCKETS))
    # Now minus the event's timestamp when its handler starts: the end-to-end latency users feel.
    event_age_seconds: Histogram = field(default_factory=lambda: Histogram(AGE_BUCKETS))

    def __add__(self, other: WorkerCounters) -> WorkerCounters:
        return WorkerCounters(
            **{name: getattr(self, name) + getattr(other, name) for name in self.__dataclass_fields__}
        )


@dataclass(frozen=True)
class WorkerStatus:
    """A snapshot a worker sends about once a second (and on assignment, commit and exit)."""

    group: str
    instance: int
    pid: int
    handled: int = 0
    dead_lettered: int = 0
    skipped: int = 0
    committed: int = 0  # number of commits done
    last_commit_at: float | None = None  # time.time()
    assigned: tuple[tuple[str, int], ...] = field(default=())
    state: str = "starting"  # starting | running | stopping | stopped | failed
    error: str | None = None
    # Subscribed and waiting for the group's assignment (at start, and during a rebalance).
    joining: bool = False
    # A handler call running for long: "orders[0]@42 for 35 s" (the supervisor names it if it must kill).
    busy: str | None = None
    # Concurrent workers (concurrency > 1): events being handled, events buffered and not started yet, and
    # per partition the lowest offset not finished yet, as (topic, partition, offset).
    in_flight: int = 0
    queued: int = 0
    oldest_unfinished: tuple[tuple[str, int, int], ...] = field(default=())
    # Handler threads left running past on_error.timeout_ms (concurrent sync handlers; they cannot be stopped).
    abandoned: int = 0
    # Holding unfinished events, none finished for the group's hang limit: "2 events unfinished, none finished
    # for 31 s" (on_error.timeout_ms, or 30 s without one). The instance is not ready while this is set.
    stalled: str | None = None
    # Every broker unreachable (librdkafka's all-brokers-down, or the monitor's own check): "no broker reachable
    # at HOST:PORT". The instance is not ready while this is set; it exits for a restart after cluster_timeout.
    unreachable: str | None = None
    # Everything a worker counts for metrics; None from a worker that does not count them.
    counters: WorkerCounters | None = None
    # Consumer lag per assigned partition, (topic, partition, lag), from librdkafka's statistics.
    lag: tuple[tuple[str, int, int], ...] = ()

    def totals(self) -> WorkerCounters:
        """This process's counters; from the fields every worker reports when it sends no `counters`."""
        if self.counters is not None:
            return self.counters
        return WorkerCounters(
            handled=self.handled,
            dead_lettered=self.dead_lettered,
            skipped=self.skipped,
            commits=self.committed,
        )


def worker_starts(
    project: Any, groups: Iterable[tuple[str, int]], *, log_format: str = "text", metrics: bool = False
) -> list[WorkerStart]:
    """One WorkerStart per instance of each (group id, instances) pair of a compiled project
    (kpipe.compilation.project.CompiledProject, loaded with its code imported). With `metrics`, the groups are
    compiled with metrics on (librdkafka statistics for consumer lag), as `kpipe explain` shows them."""
    if getattr(project, "uses_local_broker", False):
        # `local` is resolved where the workers are started (kpipe run, kpipe dev), never in a worker.
        raise LocalBrokerError(
            "bootstrap servers are `local`, but the worker was not given the local broker's address"
        )
    starts = []
    key_fields = tuple((t.name, t.key_field) for t in project.topic_settings())
    for group, instances in groups:
        settings = project.consumer_group(group, metrics=metrics)
        emit_schemas = tuple((topic, _schema_of(project, topic)) for topic in settings.emits)
        names = {n for n in settings.topic_schemas.values() if n} | {n for _, n in emit_schemas if n}
        common = dict(
            settings=settings, models=tuple(_model_source(project, n) for n in sorted(names)),
            emit_schemas=emit_schemas, emit_key_fields=key_fields, log_format=log_format, metrics=metrics,
        )  # fmt: skip
        starts += [WorkerStart(instance=i, **common) for i in range(instances)]  # type: ignore[arg-type]
    return starts


def _schema_of(project: Any, topic: str) -> str | None:
    declared = project.declarations.topics.get(topic)
    return declared.spec.schema_ if declared is not None else None


def _model_source(project: Any, name: str) -> ModelSource:
    target = getattr(project.declarations.schemas[name].spec, "model", None)
    if target is not None:
        return ModelSource(name, import_target=target)
    document = project.schema_model(name).__kpipe_json_schema__
    return ModelSource(name, document=json.dumps(document))

"""Prometheus metrics of `kpipe run`, read at scrape time from the supervisor's view of its workers.

Nothing is counted here, and nothing is locked per event. Workers count as they go, add their counts up once
per consume() batch, and send the totals in their WorkerStatus snapshots about once a second. The supervisor
keeps the latest snapshot of each group instance and adds the counts of a restarted instance's earlier
processes. `WorkerCollector` turns that view into metric families when Prometheus scrapes, so a scrape costs
one pass over the workers and their partitions, and one port serves every worker of the process.

`METRICS` lists every metric: name, type, labels and help (the README's table is checked against it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.utils import floatToGoString

from kpipe.runtime.protocol import Histogram, WorkerCounters
from kpipe.runtime.supervisor import WorkerView

Views = Mapping[tuple[str, int], WorkerView]
# States in which a worker's process exists (see WorkerView.state).
UP_STATES = frozenset({"starting", "running", "stopping"})


@dataclass(frozen=True)
class MetricDef:
    name: str
    kind: str  # counter | gauge | histogram
    labels: tuple[str, ...]
    help: str
    # The WorkerCounters field a counter or histogram reads.
    field: str | None = None


_INSTANCE = ("group", "instance")
METRICS: tuple[MetricDef, ...] = (
    MetricDef(
        "kpipe_events_handled_total", "counter", _INSTANCE, "Events whose handler returned.", "handled"
    ),
    MetricDef(
        "kpipe_events_failed_total",
        "counter",
        _INSTANCE,
        "Events that failed for good: invalid for their schema, or the handler raised after every retry.",
        "failed",
    ),
    MetricDef(
        "kpipe_events_retried_total",
        "counter",
        _INSTANCE,
        "Handler calls retried after a failure.",
        "retried",
    ),
    MetricDef(
        "kpipe_events_dead_lettered_total",
        "counter",
        _INSTANCE,
        "Failed events written to the group's dead-letter topic.",
        "dead_lettered",
    ),
    MetricDef(
        "kpipe_events_skipped_total",
        "counter",
        _INSTANCE,
        "Failed events skipped (on_error: skip).",
        "skipped",
    ),
    MetricDef("kpipe_commits_total", "counter", _INSTANCE, "Offset commits that succeeded.", "commits"),
    MetricDef(
        "kpipe_commit_failures_total", "counter", _INSTANCE, "Offset commits that failed.", "commit_failures"
    ),
    MetricDef(
        "kpipe_rebalances_total",
        "counter",
        _INSTANCE,
        "Partition assignments and revocations the worker went through.",
        "rebalances",
    ),
    MetricDef(
        "kpipe_worker_restarts_total",
        "counter",
        _INSTANCE,
        "Times the supervisor restarted the instance's worker process after it died.",
    ),
    MetricDef(
        "kpipe_handler_duration_seconds",
        "histogram",
        _INSTANCE,
        "Time one handler call took (timed events; see the README for sampling).",
        "handler_seconds",
    ),
    MetricDef(
        "kpipe_commit_duration_seconds",
        "histogram",
        _INSTANCE,
        "Time one offset commit took.",
        "commit_seconds",
    ),
    MetricDef(
        "kpipe_event_age_seconds",
        "histogram",
        _INSTANCE,
        "Now minus the event's timestamp when its handler starts: end-to-end latency (timed events).",
        "event_age_seconds",
    ),
    MetricDef(
        "kpipe_assigned_partitions", "gauge", _INSTANCE, "Partitions currently assigned to the instance."
    ),
    MetricDef(
        "kpipe_consumer_lag",
        "gauge",
        ("group", "topic", "partition"),
        "Events behind the partition's log end, from librdkafka statistics of the instance that holds it.",
    ),
    MetricDef(
        "kpipe_events_in_flight",
        "gauge",
        _INSTANCE,
        "Events whose handler is running or waiting for a retry (concurrent groups; 0 for sequential ones).",
    ),
    MetricDef(
        "kpipe_events_queued",
        "gauge",
        _INSTANCE,
        "Events fetched and buffered, not started yet (concurrent groups; 0 for sequential ones).",
    ),
    MetricDef(
        "kpipe_oldest_unfinished_offset",
        "gauge",
        ("group", "instance", "topic", "partition"),
        "Lowest offset of the partition not finished yet, where the next commit stops (concurrent groups, "
        "partitions with unfinished events).",
    ),
    MetricDef("kpipe_workers_up", "gauge", ("group",), "Worker processes of the group that are running."),
    MetricDef("kpipe_workers_desired", "gauge", ("group",), "Instances the group is declared to run."),
)


def _family(metric: MetricDef) -> Any:
    if metric.kind == "counter":
        return CounterMetricFamily(metric.name, metric.help, labels=metric.labels)
    if metric.kind == "gauge":
        return GaugeMetricFamily(metric.name, metric.help, labels=metric.labels)
    return HistogramMetricFamily(metric.name, metric.help, labels=metric.labels)


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    """Prometheus buckets are cumulative and end with +Inf; ours are per bucket."""
    counts = histogram.counts or (0,) * (len(histogram.bounds) + 1)
    out, running = [], 0
    for bound, count in zip((*histogram.bounds, float("inf")), counts, strict=True):
        running += count
        out.append((floatToGoString(bound), running))
    return out


class WorkerCollector:
    """A prometheus_client collector over `source()`, the supervisor's snapshot of its workers."""

    def __init__(self, source: Callable[[], Views]):
        self._source = source

    def describe(self) -> Iterator[Metric]:
        # Registering must not read the supervisor: the families, without samples.
        for metric in METRICS:
            yield _family(metric)

    def collect(self) -> Iterator[Metric]:
        views = self._source()
        families = {m.name: _family(m) for m in METRICS}
        up: dict[str, int] = {}
        desired: dict[str, int] = {}
        lag: dict[tuple[str, str, int], tuple[bool, int]] = {}
        for (group, instance), view in sorted(views.items()):
            labels = [group, str(instance)]
            counters: WorkerCounters = view.counters
            for metric in METRICS:
                if metric.field is None:
                    continue
                value = getattr(counters, metric.field)
                if metric.kind == "counter":
                    families[metric.name].add_metric(labels, value)
                else:
                    families[metric.name].add_metric(labels, _buckets(value), value.sum)
            families["kpipe_worker_restarts_total"].add_metric(labels, view.restarts)
            alive = view.state in UP_STATES
            desired[group] = desired.get(group, 0) + 1
            up[group] = up.get(group, 0) + (1 if alive else 0)
            # A worker that is not up holds nothing and runs nothing, whatever its last status said.
            status = view.status if alive else None
            families["kpipe_assigned_partitions"].add_metric(labels, len(status.assigned) if status else 0)
            families["kpipe_events_in_flight"].add_metric(labels, status.in_flight if status else 0)
            families["kpipe_events_queued"].add_metric(labels, status.queued if status else 0)
            if status is None:
                continue
            for topic, partition, offset in status.oldest_unfinished:
                families["kpipe_oldest_unfinished_offset"].add_metric(
                    [*labels, topic, str(partition)], offset
                )
            held = set(status.assigned)
            for topic, partition, behind in status.lag:
                key = (group, topic, partition)
                owner = (topic, partition) in held
                # Mid-rebalance two instances may report a partition: the one holding it wins.
                if key not in lag or (owner and not lag[key][0]):
                    lag[key] = (owner, behind)
        for (group, topic, partition), (_, behind) in sorted(lag.items()):
            families["kpipe_consumer_lag"].add_metric([group, topic, str(partition)], behind)
        for group in sorted(desired):
            families["kpipe_workers_up"].add_metric([group], up[group])
            families["kpipe_workers_desired"].add_metric([group], desired[group])
        yield from families.values()


def make_registry(source: Callable[[], Views]) -> CollectorRegistry:
    """A registry with the workers' metrics and the supervisor process's own (process_*: CPU, memory, fds)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(WorkerCollector(source))
    ProcessCollector(registry=registry)
    return registry

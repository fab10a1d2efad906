"""What every part of the worker shares: whether it was asked to stop, why it halted, and what it has done."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from confluent_kafka import KafkaError, TopicPartition

from kpipe.runtime.meter import Buckets, WorkerMeter
from kpipe.runtime.protocol import DURATION_BUCKETS, WORKER_EXIT_OK, WorkerCounters

# How long shutdown still waits for acknowledgements (dead letters, emitted events) before giving up on them.
SHUTDOWN_SETTLE_TIMEOUT = 10.0


class Control:
    """Stop requests (stop(), a signal, a fatal condition) and the exit code and reason of a halt.

    `stop()` is safe from any thread; the consume loop checks `requested` between messages, and waits (retry
    backoff, acknowledgements) check it, or sleep on `event`, in short slices.
    """

    def __init__(self) -> None:
        self.requested = False
        self.requested_at: float | None = None
        self.event = threading.Event()
        self.exit_code: int | None = None
        self.error: str | None = None

    def stop(self) -> None:
        if not self.requested:
            self.requested_at = time.monotonic()
        self.requested = True
        self.event.set()

    def halt(self, code: int, reason: str) -> None:
        """Stop with an exit code and reason; the first failure's reason is the one kept."""
        if self.exit_code is None or self.exit_code == WORKER_EXIT_OK:
            self.exit_code = code
            self.error = reason
        self.stop()

    def gave_up(self) -> bool:
        """True once a stop has waited SHUTDOWN_SETTLE_TIMEOUT for acknowledgements: waiting longer is futile."""
        return self.requested and time.monotonic() - (self.requested_at or 0.0) > SHUTDOWN_SETTLE_TIMEOUT


@dataclass
class Counters:
    """What the worker did, for status snapshots, metrics (and tests). The hot path adds `handled` once per
    batch; the rest change on rare paths (failures, commits, rebalances)."""

    handled: int = 0
    failed: int = 0  # failed for good: schema-invalid, or the handler raised after every retry
    retried: int = 0  # handler calls repeated after a failure
    dead_lettered: int = 0
    skipped: int = 0
    commits: int = 0
    commit_failures: int = 0
    rebalances: int = 0  # assignments, revocations and losses
    last_commit_at: float | None = None  # time.time()
    commit_seconds: Buckets = field(default_factory=lambda: Buckets(DURATION_BUCKETS))
    # Since when every commit attempt has failed (time.monotonic()), and the last failure: cluster_health.py gives up
    # on a cluster that refuses commits for as long as on one that does not answer at all.
    commit_failing_since: float | None = None
    last_commit_error: str = ""

    def committed(self, seconds: float | None = None) -> None:
        """A commit succeeded; `seconds`: how long it took (None: it happened in librdkafka's background)."""
        self.commits += 1
        self.last_commit_at = time.time()
        self.commit_failing_since = None
        if seconds is not None:
            self.commit_seconds.observe(seconds)

    def commit_failed(self, seconds: float | None = None, error: str = "") -> None:
        """A commit failed; `error`: why (the last one is kept for cluster_health.py's message)."""
        self.commit_failures += 1
        if seconds is not None:
            self.commit_seconds.observe(seconds)
        if self.commit_failing_since is None:
            self.commit_failing_since = time.monotonic()
        self.last_commit_error = error or self.last_commit_error

    def on_background_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's on_commit, for the commits it makes by itself (enable.auto.commit)."""
        if err is None:
            self.committed()
        elif err.code() != KafkaError._NO_OFFSET:
            self.commit_failed()

    def status_fields(self, meter: WorkerMeter | None) -> dict[str, Any]:
        """What a WorkerStatus reports of these counters (and of the meter, when metrics are on)."""
        return dict(
            handled=self.handled, dead_lettered=self.dead_lettered, skipped=self.skipped, committed=self.commits,
            last_commit_at=self.last_commit_at, counters=self.snapshot(meter),
            lag=meter.lag if meter is not None else (),
        )  # fmt: skip

    def snapshot(self, meter: WorkerMeter | None) -> WorkerCounters:
        """The counters for a status report, with the meter's histograms when metrics are on."""
        counters = WorkerCounters(
            handled=self.handled, failed=self.failed, retried=self.retried, dead_lettered=self.dead_lettered,
            skipped=self.skipped, commits=self.commits, commit_failures=self.commit_failures,
            rebalances=self.rebalances, commit_seconds=self.commit_seconds.snapshot(),
        )  # fmt: skip
        if meter is None:
            return counters
        return replace(
            counters,
            handler_seconds=meter.handler_seconds.snapshot(),
            event_age_seconds=meter.event_age_seconds.snapshot(),
        )

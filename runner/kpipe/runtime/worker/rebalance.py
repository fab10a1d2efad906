"""Rebalance: the consumer's rebalance callbacks (run inside consume()) and the join in flight (logged while no
assignment has come; waited for, bounded, when the worker stops mid-join)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from confluent_kafka import KafkaException, TopicPartition

from kpipe.runtime.worker.cluster_health import ClusterHealth
from kpipe.runtime.worker.commit import CommitStrategy
from kpipe.runtime.worker.control import Counters
from kpipe.runtime.worker.membership import Membership, Partition, describe

log = logging.getLogger("kpipe.runtime.worker")


class ConsumeLoopLike(Protocol):
    """A consume loop's part of a rebalance (loop.ConsumeLoop: sequential.SequentialLoop, concurrent.ConcurrentLoop)."""

    def on_assign(self, keys: Iterable[Partition]) -> None: ...

    def before_revoke(self, keys: Iterable[Partition]) -> None: ...

    def on_lost(self, keys: Iterable[Partition]) -> None: ...


# While no assignment has come, "joining group 'x'…" is logged at start and every this many seconds.
JOIN_LOG_EVERY = 10.0
# Stopped mid-join, the worker leaves this much of the supervisor's shutdown timeout for closing.
JOIN_CLOSE_MARGIN = 3.0


class Rebalance:
    """on_assign/on_revoke/on_lost for consumer.subscribe(), and the join tracking around them. One path for
    every loop: the loop's own part (events in flight, hung events) is its on_assign/before_revoke/on_lost."""

    def __init__(
        self,
        group: str,
        max_poll_records: int,
        consumer_config: dict[str, str],
        shutdown_timeout: float,
        membership: Membership,
        health: ClusterHealth,
        counters: Counters,
        strategy: CommitStrategy,
        loop: ConsumeLoopLike,
        report: Callable[[], None],
    ):
        self._group = group
        self._max_poll_records = max_poll_records
        self._membership = membership
        self._health = health
        self._counters = counters
        self._strategy = strategy
        self._loop = loop
        self._report = report
        # Stopped while its join is in flight, the worker waits this long for the join to finish (finish_join).
        session_timeout = int(consumer_config.get("session.timeout.ms", 45_000)) / 1000.0
        self._join_wait = max(0.0, min(session_timeout / 2 + 5.0, shutdown_timeout - JOIN_CLOSE_MARGIN))
        self._next_join_log = 0.0

    # -- rebalance callbacks (run inside consume()) -----------------------------------------------------------

    def on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._counters.rebalances += 1
        self._health.down_since = None
        self._membership.joined(partitions)
        self._loop.on_assign([(tp.topic, tp.partition) for tp in partitions])
        log.info("assigned %s", describe(partitions) or "no partitions")
        self._report()

    def on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._counters.rebalances += 1
        keys = [(tp.topic, tp.partition) for tp in partitions]
        try:
            # Wait (bounded) for the revoked partitions' events in flight; what they finish is committed.
            self._loop.before_revoke(keys)
            # With no broker reachable a commit can only block (and a revocation then comes from close()).
            if self._health.down_since is None:
                self._strategy.commit_all("partitions revoked", keys)
        except Exception:  # an exception here would escape from consume(); log it and carry on
            log.exception("commit on revocation failed")
        self._forget(keys)
        log.info("revoked %s", describe(partitions) or "no partitions")

    def on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        # Lost (not revoked): another member may own them already, so committing would be wrong.
        self._counters.rebalances += 1
        keys = [(tp.topic, tp.partition) for tp in partitions]
        self._loop.on_lost(keys)
        self._forget(keys)
        log.warning(
            "lost %s (session timed out?); their uncommitted offsets will be re-read", describe(partitions)
        )

    def _forget(self, keys: list[tuple[str, int]]) -> None:
        self._strategy.forget(keys)
        self._membership.forget(keys)
        self._report()

    # -- the join in flight -----------------------------------------------------------------------------------

    def housekeeping(self, now: float) -> None:
        """While no assignment has come, say so every JOIN_LOG_EVERY (the consume loop's housekeeping)."""
        if self._membership.joining and now >= self._next_join_log:
            self.log_joining(now)

    def log_joining(self, now: float) -> None:
        """Say what the worker waits for while no assignment has come: at start and every JOIN_LOG_EVERY."""
        self._next_join_log = now + JOIN_LOG_EVERY
        waited = now - self._membership.joining_since
        if waited < 1.0:
            log.info("joining group '%s'…", self._group)
        else:
            log.info("joining group '%s'… (%.0f s so far, no assignment yet)", self._group, waited)

    def finish_join(self, consumer: Any) -> None:
        """Stopped while a join is in flight: wait (bounded) for its assignment, so that close() leaves a formed
        group. Closing mid-join sends a LeaveGroup that Tansu mishandles: it removes the member but keeps it as
        the forming group's leader, and every later member waits forever for that leader's assignment (the
        group stays stuck until the broker restarts). Messages fetched meanwhile are not handled or committed.
        """
        if self._join_wait <= 0:
            return
        log.info(
            "stopping while joining group '%s': waiting up to %.0f s for the join to finish before leaving",
            self._group, self._join_wait,
        )  # fmt: skip
        deadline = time.monotonic() + self._join_wait
        membership = self._membership
        while membership.joining and time.monotonic() < deadline:
            try:
                consumer.consume(self._max_poll_records, 0.1)
            except (KafkaException, RuntimeError) as exc:
                log.debug("polling while joining: %s", exc)
                return

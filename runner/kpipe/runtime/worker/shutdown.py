"""Shutdown: committing what was processed and closing the clients, at the end of run() (the loop's thread) or
for a restart while a handler is still running (hangs.py; the monitor thread). Whichever comes first closes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException

from kpipe.runtime.client_protocols import ConsumerClient, ProducerClient
from kpipe.runtime.worker.cluster_health import ClusterHealth
from kpipe.runtime.worker.commit import CommitStrategy
from kpipe.runtime.worker.control import SHUTDOWN_SETTLE_TIMEOUT
from kpipe.runtime.worker.membership import Membership
from kpipe.runtime.worker.rebalance import Rebalance

log = logging.getLogger("kpipe.runtime.worker")

# Leaving because a handler hung: how long committing and leaving the group may take before the process ends.
LEAVE_TIMEOUT = 10.0


class Shutdown:
    """Built with the clients it closes and the strategy whose final commit it makes."""

    def __init__(
        self,
        group: str,
        instance: int,
        consumer: ConsumerClient,
        producer: ProducerClient | None,
        strategy: CommitStrategy,
        membership: Membership,
        health: ClusterHealth,
        rebalance: Rebalance,
        exit_process: Callable[[int], None] | None,
    ):
        self._group = group
        self._instance = instance
        self._membership = membership
        self._health = health
        self._rebalance = rebalance
        self._exit_process = exit_process
        self._leaving = threading.Lock()  # close (the loop) and _close_for_restart (the monitor): one closes
        self._left = False
        # True when the worker stopped mid-join and left the consumer unclosed (no LeaveGroup): its process
        # must then end with os._exit, since destroying the client would send the LeaveGroup after all.
        self.left_without_close = False
        self.consumer = consumer
        self.producer = producer
        self.strategy = strategy

    def close(self) -> None:
        """Commit what was processed, close the consumer, and let the producer deliver what it holds."""
        consumer = self.consumer
        with self._leaving:  # a handler that returns just as the monitor leaves for it: one of them closes
            if self._left:
                return
            self._left = True
            unreachable = self._health.down_since is not None
            try:
                if unreachable:
                    log.warning(
                        "no broker reachable: nothing more is committed (uncommitted events will be read again)"
                    )
                else:
                    self.strategy.commit_all("shutdown")
            except Exception:
                log.exception("final commit failed")
            if self._membership.joining and not unreachable:
                self._rebalance.finish_join(consumer)
            self._close_consumer(consumer, unreachable)
            if self.producer is not None:
                # Without a broker, waiting serves nothing: what they belong to is uncommitted and read again.
                left = self.producer.flush(1.0 if unreachable else SHUTDOWN_SETTLE_TIMEOUT)
                if left:
                    log.warning("%d dead-letter/emitted events undelivered at shutdown", left)
            log.info("consumer group '%s' instance %d stopped", self._group, self._instance)

    def _close_consumer(self, consumer: Any, unreachable: bool) -> None:
        if unreachable:
            # close() would try to commit and leave through a broker that is gone, blocking for up to the
            # session timeout; the group drops this member by itself.
            self.left_without_close = True
            log.warning("no broker reachable: leaving without closing the consumer")
        elif self._membership.joining:
            self.left_without_close = True
            log.warning(
                "consumer group '%s' instance %d: still joining the group; leaving without closing the consumer "
                "(a LeaveGroup sent mid-join can leave the group without a leader on some brokers); "
                "the group drops this member after session.timeout.ms",
                self._group, self._instance,
            )  # fmt: skip
        else:
            try:
                consumer.close()
            except (KafkaException, RuntimeError) as exc:
                log.warning("closing the consumer: %s", exc)

    # -- leaving with a handler still running (hangs.py; the monitor thread) -------------------------------------

    def leave(self, code: int) -> None:
        """In a worker process, commit what was processed and leave the group from this thread (bounded, so that
        it cannot hang too), then end the process; the hung event stays uncommitted. In-process: nothing."""
        if self._exit_process is None:
            return
        closing = threading.Thread(target=self._close_for_restart, name="kpipe-leave", daemon=True)
        closing.start()
        closing.join(LEAVE_TIMEOUT)
        self._exit_process(code)

    def _close_for_restart(self) -> None:
        consumer = self.consumer
        if self._health.down_since is not None:
            return
        with self._leaving:
            if self._left:
                return
            self._left = True
            self._commit_and_leave(consumer)

    def _commit_and_leave(self, consumer: Any) -> None:
        try:
            self.strategy.commit_all("leaving for a restart")
            if not self._membership.joining:
                consumer.close()  # the partitions move now rather than after session.timeout.ms
        except Exception as exc:
            log.warning("leaving the group: %s", exc)

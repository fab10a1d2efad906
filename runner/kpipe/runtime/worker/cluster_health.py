"""Client errors and cluster loss: log them without flooding, and give up on a cluster that stays away.

While every broker is unreachable librdkafka keeps retrying by itself; the worker asks for metadata every
CLUSTER_PROBE_INTERVAL to learn that one is back, and after `cluster_timeout` seconds without one it halts with
exit code CLUSTER so the supervisor restarts it (with backoff). Messages still arriving are no sign of a
broker: librdkafka prefetches, so a worker with a backlog in hand keeps receiving long after the broker is
gone, and only an answer (a probe between batches, an assignment) clears the alarm. The timeout is checked in
the monitor thread, so it also fires in the middle of a long batch. The same limit holds for commits: when
every commit has failed for `cluster_timeout` seconds ("Waiting for coordinator"), the worker halts too,
since what it handles meanwhile could never be committed.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from kpipe.logs import RateLimitedLog
from kpipe.runtime.protocol import WORKER_EXIT_CLUSTER
from kpipe.runtime.worker.control import Control, Counters

log = logging.getLogger("kpipe.runtime.worker")

# How often, while every broker is down, the worker asks for metadata to learn that one is back.
CLUSTER_PROBE_INTERVAL = 5.0
# A loop that has not polled the consumer for this long hears nothing of librdkafka's errors: probe directly.
BUSY_PROBE_AFTER = 5.0


class ClusterHealth:
    def __init__(
        self,
        bootstrap: str | None,
        cluster_timeout: float,
        control: Control,
        limited: RateLimitedLog,
        counters: Counters | None = None,
    ):
        self._bootstrap = bootstrap
        self._timeout = cluster_timeout
        self._control = control
        self._limited = limited
        self._counters = counters if counters is not None else Counters()
        self.down_since: float | None = None  # when librdkafka said every broker is down; None: some answer
        self._next_probe = 0.0
        self._next_busy_probe = 0.0

    @property
    def unreachable(self) -> str | None:
        """What the worker's status says while no broker answers (WorkerStatus.unreachable), else None."""
        return None if self.down_since is None else f"no broker reachable at {self._bootstrap}"

    # -- callbacks (librdkafka's error_cb, failed messages) --------------------------------------------------

    def on_client_error(self, err: KafkaError) -> None:
        code = err.code()
        if code == KafkaError._ALL_BROKERS_DOWN:
            if self.down_since is None:
                self.down_since = time.monotonic()
            # librdkafka's own text ("0/2 brokers are down") can miscount; say what it means and what follows.
            self._limited(
                logging.WARNING, ("client", code),
                "no broker reachable at %s; retrying, and exiting for a restart if none answers within %g s",
                self._bootstrap, self._timeout,
            )  # fmt: skip
            return
        if err.fatal():
            self._control.halt(WORKER_EXIT_CLUSTER, f"fatal client error: {err.str()}")
        self._limited(logging.WARNING, ("client", code), "kafka: %s", err.str())

    def on_producer_error(self, err: KafkaError) -> None:
        self._limited(logging.WARNING, ("producer", err.code()), "kafka (producer): %s", err.str())

    def on_message_error(self, msg: Any) -> None:
        err = msg.error()
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.fatal():
            self._control.halt(WORKER_EXIT_CLUSTER, f"fatal consumer error: {err.str()}")
        self._limited(logging.WARNING, ("msg", err.code()), "consumer error: %s", err.str())

    # -- between batches -------------------------------------------------------------------------------------

    def probe(self, now: float, consumer: Any) -> None:
        """Between batches (the consume loop's thread): while no broker answers, ask for metadata to learn
        that one is back. Never from another thread: a client call racing the loop's consume() can block."""
        if self.down_since is None or now < self._next_probe:
            return
        self._next_probe = now + CLUSTER_PROBE_INTERVAL
        if _reachable(consumer):
            self.down_since = None
            log.info("brokers reachable again")

    def probe_while_busy(self, now: float, last_poll: float) -> None:
        """From the monitor thread: librdkafka reports a lost broker through error_cb, which runs only inside
        the loop's consume(). A loop busy with a long batch (prefetched events, a slow handler) has not called
        it for a while, so the monitor checks itself whether any bootstrap server accepts a connection."""
        if now - last_poll < BUSY_PROBE_AFTER or now < self._next_busy_probe:
            return
        self._next_busy_probe = now + CLUSTER_PROBE_INTERVAL
        if tcp_reachable(self._bootstrap):
            if self.down_since is not None:
                self.down_since = None
                log.info("brokers reachable again")
            return
        if self.down_since is None:
            self.down_since = now
            self._limited(
                logging.WARNING, ("busy", "down"),
                "no broker reachable at %s (checked while handling a long batch); exiting for a restart if "
                "none answers within %g s", self._bootstrap, self._timeout,
            )  # fmt: skip

    def expire(self, now: float) -> None:
        """From the monitor thread, so also in the middle of a long batch: halt once no broker has answered,
        or every commit has failed, for cluster_timeout seconds. No client calls here."""
        if self._control.requested:
            return  # stopping already (or halted): nothing more to decide
        failing = self._counters.commit_failing_since
        # With no broker reachable, the rule below names the cause better: it decides.
        if failing is not None and self.down_since is None and now - failing >= self._timeout:
            reason = (
                f"every commit has failed for {now - failing:.0f} s "
                f"(last: {self._counters.last_commit_error}); the cluster at {self._bootstrap} is not usable"
            )
            log.error("%s; exiting so the supervisor can restart the worker", reason)
            self._control.halt(WORKER_EXIT_CLUSTER, reason)
            return
        down_since = self.down_since
        if down_since is not None and now - down_since >= self._timeout:
            reason = f"no broker reachable at {self._bootstrap} for {now - down_since:.0f} s"
            log.error("%s; exiting so the supervisor can restart the worker", reason)
            self._control.halt(WORKER_EXIT_CLUSTER, reason)


def _reachable(consumer: Any) -> bool:
    try:
        consumer.list_topics(timeout=1.0)
        return True
    except KafkaException:
        return False


def tcp_reachable(bootstrap: str | None, timeout: float = 1.0) -> bool:
    """Whether any of the bootstrap servers accepts a TCP connection (an unparsable list counts as reachable:
    this probe must never be the reason a worker gives up)."""
    addresses = [a.strip() for a in (bootstrap or "").split(",") if a.strip()]
    if not addresses:
        return True
    for address in addresses:
        address = address.split("://", 1)[-1]
        host, _, port = address.rpartition(":")
        try:
            number = int(port)
        except ValueError:
            return True
        try:
            socket.create_connection((host.strip("[]") or "localhost", number), timeout=timeout).close()
            return True
        except OSError:
            continue
    return False

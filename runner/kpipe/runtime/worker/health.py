"""Client errors and cluster loss: log them without flooding, and give up on a cluster that stays away.

While every broker is unreachable librdkafka keeps retrying by itself; the worker asks for metadata every
CLUSTER_PROBE_INTERVAL to learn that one is back, and after `cluster_timeout` seconds without one it halts with
exit code CLUSTER so the supervisor restarts it (with backoff).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from kpipe.logs import RateLimitedLog
from kpipe.runtime.protocol import WORKER_EXIT_CLUSTER
from kpipe.runtime.worker.state import Control

log = logging.getLogger("kpipe.runtime.worker")

# How often, while every broker is down, the worker asks for metadata to learn that one is back.
CLUSTER_PROBE_INTERVAL = 5.0


class ClusterHealth:
    def __init__(
        self, bootstrap: str | None, cluster_timeout: float, control: Control, limited: RateLimitedLog
    ):
        self._bootstrap = bootstrap
        self._timeout = cluster_timeout
        self._control = control
        self._limited = limited
        self.down_since: float | None = None  # when librdkafka said every broker is down; None: some answer
        self._next_probe = 0.0

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

    def check(self, now: float, consumer: Any) -> None:
        """While no broker answers: probe for one, and halt once none has for cluster_timeout seconds."""
        if self.down_since is None:
            return
        down_for = now - self.down_since
        if now >= self._next_probe:
            self._next_probe = now + CLUSTER_PROBE_INTERVAL
            if _reachable(consumer):
                self.down_since = None
                log.info("brokers reachable again")
                return
        if down_for >= self._timeout:
            reason = f"no broker reachable at {self._bootstrap} for {down_for:.0f} s"
            log.error("%s; exiting so the supervisor can restart the worker", reason)
            self._control.halt(WORKER_EXIT_CLUSTER, reason)


def _reachable(consumer: Any) -> bool:
    try:
        consumer.list_topics(timeout=1.0)
        return True
    except KafkaException:
        return False

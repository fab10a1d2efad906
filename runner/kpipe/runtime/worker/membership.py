"""The member's partitions, and keeping its place in the group while a message takes long.

A wait (retry backoff, a dead-letter acknowledgement, emitted events settling before a commit) that nears
max.poll.interval.ms would get the member thrown out of the group. `keep_alive()`, called throughout such
waits, pauses the assigned partitions and polls the consumer: the poll serves rebalance callbacks, paused
partitions deliver nothing, and messages of newly assigned ones are carried over to the next batch. The
consume loop calls `resume()` once the wait is over.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaException

from kpipe.runtime.client_protocols import SYSTEM_CLOCK, Clock, ConsumerClient

log = logging.getLogger("kpipe.runtime.worker")

Partition = tuple[str, int]


class Membership:
    def __init__(
        self,
        consumer: ConsumerClient,
        max_records: int,
        max_poll_interval: float,
        clock: Clock = SYSTEM_CLOCK,
    ):
        """clock: the worker's (Outside.clock), whose monotonic() the loop also stamps last_poll with."""
        self.consumer = consumer
        self._clock = clock
        self.assigned: set[Partition] = set()
        # Partitions revoked or lost while the current batch was processed: its remaining messages are skipped.
        self.revoked_in_batch: set[Partition] = set()
        self.in_batch = False
        self.carry: list[Any] = []  # messages a keep-alive poll returned, processed as the next batch
        self.paused: list[Any] = []
        self.last_poll = clock.monotonic()
        # The first join is in flight from subscribe() until the first assignment: leaving the group then is
        # what core._close avoids. (Rejoins during a rebalance are not tracked: with cooperative assignment a
        # revocation need not be followed by an assignment, and a stop would wait for one in vain.)
        self.joining = True
        self.joining_since = clock.monotonic()
        self._max_records = max_records
        self._max_poll_interval = max_poll_interval
        self._polling = False

    def keep_alive(self) -> None:
        """Poll the consumer (partitions paused) before max.poll.interval.ms runs out, so the group keeps us."""
        if self._polling or self._clock.monotonic() - self.last_poll < self._max_poll_interval / 3:
            return
        consumer = self.consumer
        if not self.paused:
            self.paused = list(consumer.assignment())
            if self.paused:
                consumer.pause(self.paused)
        self._polling = True  # rebalance callbacks may commit, and a commit may wait: no nested polls
        try:
            msgs = consumer.consume(self._max_records, 0)
        finally:
            self._polling = False
        self.last_poll = self._clock.monotonic()
        if msgs:
            self.carry.extend(msgs)

    def take_carry(self) -> list[Any]:
        msgs, self.carry = self.carry, []
        return msgs

    def resume(self) -> None:
        """Read again from the partitions a keep-alive paused (those still assigned)."""
        still = [tp for tp in self.paused if (tp.topic, tp.partition) in self.assigned]
        self.paused = []
        if still:
            try:
                self.consumer.resume(still)
            except KafkaException as exc:
                log.warning("could not resume %s: %s", describe(still), exc.args[0].str())

    def joined(self, partitions: Iterable[Any]) -> None:
        """An assignment arrived (possibly of no partitions): the join is over."""
        self.assigned.update((tp.topic, tp.partition) for tp in partitions)
        self.joining = False

    def forget(self, keys: list[Partition]) -> None:
        """Partitions revoked or lost (called from the rebalance callback, while they are still assigned)."""
        for key in keys:
            self.assigned.discard(key)
        if self.in_batch:
            self.revoked_in_batch.update(keys)
        if self.carry:  # fetched by a keep-alive poll and no longer ours: a new owner reads them again
            gone_keys = set(keys)
            self.carry = [m for m in self.carry if (m.topic(), m.partition()) not in gone_keys]
        gone = [tp for tp in self.paused if (tp.topic, tp.partition) in keys]
        if gone:
            # librdkafka keeps a partition paused through a rebalance: resume it now, or it would stay paused
            # (and never be read) if the group gave it back to this member.
            self.paused = [tp for tp in self.paused if (tp.topic, tp.partition) not in keys]
            try:
                self.consumer.resume(gone)
            except KafkaException as exc:
                log.debug("could not resume %s on revocation: %s", describe(gone), exc.args[0].str())


def describe(partitions: Iterable[Any]) -> str:
    """'orders[0]@42, orders[1]' for log lines."""
    parts = []
    for tp in partitions:
        offset = getattr(tp, "offset", None)
        text = f"{tp.topic}[{tp.partition}]"
        if offset is not None and offset >= 0:
            text += f"@{offset}"
        parts.append(text)
    return ", ".join(parts)

"""Back-pressure for the concurrent loop (concurrent.py): pause the assigned partitions while its buffer stays
full, resume them once it drained to half (the scheduler decides when: KeyScheduler.flow), keep partitions
assigned meanwhile paused too, and never leave a partition paused through a rebalance."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from kpipe.runtime.concurrent.scheduler import PAUSE, RESUME, KeyScheduler
from kpipe.runtime.worker.membership import Membership, Partition, describe

log = logging.getLogger("kpipe.runtime.worker")


class FlowControl:
    def __init__(self, consumer: Any, membership: Membership, scheduler: KeyScheduler):
        self._consumer = consumer
        self._membership = membership
        self._scheduler = scheduler
        self._paused: list[TopicPartition] = []

    def update(self, stalled: bool = False) -> None:
        """Pause or resume as the scheduler says (`stalled`: no fetch was possible for a while)."""
        change = self._scheduler.flow(stalled)
        if change is None:
            return
        consumer = self._consumer
        membership = self._membership
        try:
            if change == PAUSE:
                self._paused = [TopicPartition(t, p) for t, p in sorted(membership.assigned)]
                if self._paused:
                    consumer.pause(self._paused)
                log.debug("buffer full (%d events): paused %s", self._scheduler.buffered,
                          describe(self._paused))  # fmt: skip
            elif change == RESUME:
                paused = {(tp.topic, tp.partition) for tp in self._paused + membership.paused}
                still = [TopicPartition(t, p) for t, p in sorted(paused & membership.assigned)]
                self._paused, membership.paused = [], []
                if still:
                    consumer.resume(still)
                log.debug("buffer drained: resumed %s", describe(still))
        except KafkaException as exc:
            log.warning("could not %s partitions: %s", change, exc.args[0].str())

    def assigned(self, keys: Iterable[Partition]) -> None:
        """New partitions: while the buffer is full they wait like the others (resumed with them)."""
        keys = list(keys)
        if not (self._scheduler.paused and keys):
            return
        new = [TopicPartition(t, p) for t, p in keys]
        try:
            self._consumer.pause(new)
            self._paused.extend(new)
        except KafkaException as exc:
            log.warning("could not pause %s: %s", describe(new), exc.args[0].str())

    def release(self, keys: set[Partition]) -> None:
        """Partitions revoked or lost: librdkafka keeps a partition paused through a rebalance, so resume the
        ones paused here while they are still ours, or they would stay paused if they came back to this member
        (Membership.forget does the same for its own pauses)."""
        mine = [tp for tp in self._paused if (tp.topic, tp.partition) in keys]
        if not mine:
            return
        self._paused = [tp for tp in self._paused if (tp.topic, tp.partition) not in keys]
        try:
            self._consumer.resume(mine)
        except KafkaException as exc:
            log.debug("could not resume %s on revocation: %s", describe(mine), exc.args[0].str())

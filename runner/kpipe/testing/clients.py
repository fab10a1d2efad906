"""In-memory librdkafka clients: the methods of confluent-kafka's Consumer and Producer that kpipe's runtime calls,
served by a MemoryCluster instead of a broker. They are handed to the runtime through its client factories, so
the worker, its commit strategies, failure policy and dead-letter writer run unchanged on top of them.

Consumer: subscribe (rebalance callbacks), consume, assignment, pause, resume, store_offsets, commit,
list_topics, close. Producer: produce, poll, flush, purge, len(). Anything else raises AttributeError, as a
method the runtime started to call without a memory version should fail loudly rather than be guessed.

The consumer's consume() is where a worker thread gives the turn back (Turns): one worker runs at a time.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from types import SimpleNamespace
from typing import Any

from confluent_kafka import TIMESTAMP_CREATE_TIME, KafkaError, KafkaException, TopicPartition

from kpipe.testing.memory_cluster import MemoryCluster, Partition, Partitioner, Record, UnknownTopic
from kpipe.testing.turns import Turns

# librdkafka's defaults for the settings the memory clients honour.
DEFAULT_MESSAGE_MAX_BYTES = 1_000_000
OFFSET_INVALID = -1001


class MemoryMessage:
    """A consumed (or delivered) record, with confluent_kafka.Message's accessors."""

    __slots__ = ("_record",)

    def __init__(self, record: Record):
        self._record = record

    def topic(self) -> str:
        return self._record.topic

    def partition(self) -> int:
        return self._record.partition

    def offset(self) -> int:
        return self._record.offset

    def key(self) -> bytes | None:
        return self._record.key

    def value(self) -> bytes | None:
        return self._record.value

    def headers(self) -> list[tuple[str, bytes]] | None:
        headers = self._record.headers
        return list(headers) if headers is not None else None

    def timestamp(self) -> tuple[int, int]:
        return TIMESTAMP_CREATE_TIME, self._record.timestamp

    def error(self) -> KafkaError | None:
        return None

    def latency(self) -> float | None:
        return None

    def __len__(self) -> int:
        return len(self._record.value or b"")

    def __repr__(self) -> str:
        return f"MemoryMessage({self.topic()}[{self.partition()}]@{self.offset()})"


def _true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


class MemoryConsumer:
    """The one member of its consumer group: assigned every partition of the topics it subscribes to."""

    def __init__(self, config: Mapping[str, Any], cluster: MemoryCluster, turns: Turns, name: str):
        self._cluster = cluster
        self._turns = turns
        self._name = name
        self.group = str(config["group.id"])
        self._auto_commit = _true(config.get("enable.auto.commit", "true"))
        self._auto_store = _true(config.get("enable.auto.offset.store", "true"))
        self._reset_latest = str(config.get("auto.offset.reset", "largest")) in ("latest", "largest", "end")
        self._on_commit: Callable[..., Any] | None = config.get("on_commit")
        # Asynchronous commits whose on_commit is served by the next consume(), as librdkafka does.
        self._answers: list[list[TopicPartition]] = []
        self._topics: list[str] = []
        self._callbacks: dict[str, Callable[..., Any] | None] = {}
        self._assigned: list[Partition] = []
        self._position: dict[Partition, int] = {}
        self._joined_at: dict[Partition, int] = {}  # where reading started: the committed offset or the reset
        self._stored: dict[Partition, int] = {}
        self._paused: set[Partition] = set()
        self._closed = False
        self.fetched = 0  # messages the last consume() returned (the scheduler reads it)

    # -- group membership ---------------------------------------------------------------------------------

    def subscribe(
        self,
        topics: list[str],
        on_assign: Callable[..., Any] | None = None,
        on_revoke: Callable[..., Any] | None = None,
        on_lost: Callable[..., Any] | None = None,
    ) -> None:
        self._open()
        for topic in topics:
            self._cluster.partitions(topic)  # an unknown topic fails here, not silently later
        self._topics = list(topics)
        self._callbacks = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}

    def _join(self) -> None:
        """The first consume() after subscribe: the group forms, and this member gets every partition."""
        cluster = self._cluster
        committed = cluster.committed(self.group)
        self._assigned = [(t, p) for t in self._topics for p in range(cluster.partitions(t))]
        for tp in self._assigned:
            start = committed.get(tp)
            if start is None:
                start = cluster.end(*tp) if self._reset_latest else 0
            self._position[tp] = self._joined_at[tp] = start
        on_assign = self._callbacks.get("assign")
        if on_assign is not None:
            on_assign(self, [TopicPartition(t, p, OFFSET_INVALID) for t, p in self._assigned])

    def assignment(self) -> list[TopicPartition]:
        self._open()
        return [TopicPartition(t, p) for t, p in self._assigned]

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self._paused.update((tp.topic, tp.partition) for tp in partitions)

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self._paused.difference_update((tp.topic, tp.partition) for tp in partitions)

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        self._open()
        names = [topic] if topic is not None else self._cluster.topic_names
        return SimpleNamespace(topics={name: SimpleNamespace(topic=name) for name in names}, brokers={})

    # -- fetching -----------------------------------------------------------------------------------------

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[MemoryMessage]:
        self._open()
        self._turns.wait_turn(self._name)
        if self._closed:
            return []
        if self._topics and not self._assigned and self._callbacks:
            self._join()
        if self._auto_commit:
            # Between polls is where librdkafka's auto-commit timer fires; here each poll is an interval.
            self._commit_stored(background=True)
        while self._answers:
            answered = self._answers.pop(0)
            if self._on_commit is not None:
                self._on_commit(None, answered)
        out = self._fetch(num_messages)
        self.fetched = len(out)
        return out

    def poll(self, timeout: float = -1) -> MemoryMessage | None:
        msgs = self.consume(1, timeout)
        return msgs[0] if msgs else None

    def _fetch(self, limit: int) -> list[MemoryMessage]:
        """Up to `limit` records of the readable partitions, in the order they were written across them: one
        order a broker may deliver too, and the one a test author expects (events handled in the order sent)."""
        cluster = self._cluster
        position = self._position
        pending: list[Record] = []
        for tp in self._assigned:
            if tp not in self._paused:
                pending += cluster.read(tp[0], tp[1], position[tp], limit)
        if not pending:
            return []
        taken = sorted(pending, key=lambda r: r.seq)[:limit]
        for record in taken:
            tp = (record.topic, record.partition)
            position[tp] = record.offset + 1
            if self._auto_store:
                self._stored[tp] = position[tp]
        return [MemoryMessage(r) for r in taken]

    # -- offsets ------------------------------------------------------------------------------------------

    def store_offsets(
        self, message: MemoryMessage | None = None, offsets: list[TopicPartition] | None = None
    ) -> None:
        self._open()
        if message is not None:
            self._stored[(message.topic(), message.partition())] = message.offset() + 1
        for tp in offsets or ():
            self._stored[(tp.topic, tp.partition)] = tp.offset

    def commit(
        self,
        message: MemoryMessage | None = None,
        offsets: list[TopicPartition] | None = None,
        asynchronous: bool = True,
    ) -> list[TopicPartition] | None:
        self._open()
        if message is not None:
            wanted = {(message.topic(), message.partition()): message.offset() + 1}
        elif offsets is not None:
            wanted = {(tp.topic, tp.partition): tp.offset for tp in offsets}
        else:
            return self._commit_stored(background=False)
        self._cluster.commit(self.group, wanted)
        results = [TopicPartition(t, p, o) for (t, p), o in wanted.items()]
        if asynchronous:
            self._answers.append(results)
            return None
        return results

    def _commit_stored(self, *, background: bool) -> list[TopicPartition] | None:
        committed = self._cluster.committed(self.group)
        wanted = {tp: o for tp, o in self._stored.items() if committed.get(tp) != o and tp in self._assigned}
        if not wanted:
            if background:
                return None
            raise KafkaException(KafkaError(KafkaError._NO_OFFSET))
        self._cluster.commit(self.group, wanted)
        results = [TopicPartition(t, p, o) for (t, p), o in wanted.items()]
        if background and self._on_commit is not None:
            self._on_commit(None, results)
        return results

    def committed(self, partitions: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        have = self._cluster.committed(self.group)
        return [
            TopicPartition(tp.topic, tp.partition, have.get((tp.topic, tp.partition), OFFSET_INVALID))
            for tp in partitions
        ]

    def uncommitted(self) -> bool:
        """Whether records were read past the group's committed offsets (for the driver: once every event is
        processed, a commit is still to come, e.g. at a batch commit's interval)."""
        committed = self._cluster.committed(self.group)
        return not self._closed and any(
            position > committed.get(tp, self._joined_at[tp]) for tp, position in self._position.items()
        )

    # -- leaving ------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Leave the group as librdkafka does: the revocation callback first, then the final auto-commit."""
        if self._closed:
            return
        if self._assigned:
            on_revoke = self._callbacks.get("revoke")
            if on_revoke is not None:
                on_revoke(self, [TopicPartition(t, p) for t, p in self._assigned])
            if self._auto_commit:
                self._commit_stored(background=True)
        self._assigned = []
        self._closed = True

    def _open(self) -> None:
        if self._closed:
            raise RuntimeError("Consumer closed")


class MemoryProducer:
    """Appends each produced record to the cluster at once; its delivery report waits for poll() or flush()."""

    def __init__(self, config: Mapping[str, Any], cluster: MemoryCluster):
        self._cluster = cluster
        self._default_on_delivery: Callable[..., Any] | None = config.get("on_delivery") or config.get(
            "delivery.report.callback"
        )
        self._only_errors = _true(config.get("delivery.report.only.error", False))
        self._max_bytes = int(config.get("message.max.bytes", DEFAULT_MESSAGE_MAX_BYTES))
        # Unkeyed records: spread at random as librdkafka does, from the run's seed so that a run repeats.
        self._partitioner = Partitioner(
            str(config.get("partitioner", "consistent_random")), random.Random(cluster.seed)
        )
        self._reports: deque[tuple[Callable[..., Any] | None, KafkaError | None, Any]] = deque()

    def produce(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        partition: int = -1,
        on_delivery: Callable[..., Any] | None = None,
        callback: Callable[..., Any] | None = None,
        timestamp: int = 0,
        headers: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
    ) -> None:
        value_bytes = value.encode() if isinstance(value, str) else value
        key_bytes = key.encode() if isinstance(key, str) else key
        report_to = on_delivery or callback or self._default_on_delivery
        size = len(value_bytes or b"") + len(key_bytes or b"")
        if size > self._max_bytes:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Message size too large"))
        try:
            partitions = self._cluster.partitions(topic)
            if partition < 0:
                partition = self._partitioner(key_bytes, partitions)
            record = self._cluster.append(
                topic, partition, key_bytes, value_bytes, _header_list(headers), timestamp or None
            )
        except UnknownTopic:
            error = KafkaError(KafkaError._UNKNOWN_TOPIC, f"Unknown topic {topic}")
            self._reports.append((report_to, error, None))
            return
        if report_to is not None and not self._only_errors:
            self._reports.append((report_to, None, MemoryMessage(record)))

    def poll(self, timeout: float = -1) -> int:
        served = 0
        while self._reports:
            report_to, error, msg = self._reports.popleft()
            served += 1
            if report_to is not None:
                report_to(error, msg)
        return served

    def flush(self, timeout: float = -1) -> int:
        self.poll(0)
        return 0

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None:
        """Every record is already on the cluster: nothing is left to purge."""

    def __len__(self) -> int:
        return len(self._reports)


def _header_list(headers: Mapping[str, Any] | list[tuple[str, Any]] | None) -> list[tuple[str, bytes]] | None:
    if headers is None:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(k), v.encode() if isinstance(v, str) else v) for k, v in items]

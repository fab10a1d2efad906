"""MemoryCluster: the broker `kpipe test` replaces, in memory.

It holds what a Kafka cluster holds for a pipeline's clients and nothing more: topics with their declared
partition counts, each partition an append-only log of records with offsets, and each consumer group's committed
offsets. Every consumer group has exactly one member, which is assigned every partition of the topics it reads.

Keyed records go to the partition librdkafka's default partitioner (`consistent_random`) picks: the CRC-32 of the
key modulo the partition count, so a key lands where it would on a broker. Unkeyed (and empty-keyed) records are
spread at random by librdkafka; here the random choice comes from a seeded generator, so a run is repeatable.
"""

from __future__ import annotations

import random
import threading
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

Partition = tuple[str, int]

DEFAULT_SEED = 0


@dataclass(frozen=True)
class Record:
    """One record of a partition's log, as a consumer reads it back."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] | None
    timestamp: int  # milliseconds since the epoch (create time)
    seq: int = 0  # the order of every append across the cluster (one partition's offsets follow it)


def crc32_partition(key: bytes, partitions: int) -> int:
    """librdkafka's `consistent` partitioner: CRC-32 of the key, modulo the partition count."""
    return zlib.crc32(key) % partitions


def murmur2_partition(key: bytes, partitions: int) -> int:
    """librdkafka's `murmur2` partitioner, the Java client's default: murmur2 (seed 0x9747b28c), positive."""
    return (_murmur2(key) & 0x7FFFFFFF) % partitions


def _murmur2(data: bytes) -> int:
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length % 4
    if rest >= 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h ^= data[whole]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


class Partitioner:
    """Picks a partition for a record as librdkafka's partitioner of that name does (`partitioner` setting)."""

    # name -> (hash of a non-empty key, whether an empty or missing key is placed at random)
    HASHES = {
        "consistent_random": (crc32_partition, True),
        "consistent": (crc32_partition, False),
        "murmur2_random": (murmur2_partition, True),
        "murmur2": (murmur2_partition, False),
    }

    def __init__(self, name: str = "consistent_random", rng: random.Random | None = None):
        if name not in self.HASHES and name != "random":
            known = ", ".join(sorted([*self.HASHES, "random"]))
            raise ValueError(f"partitioner '{name}' is not supported in memory (supported: {known})")
        self.name = name
        self._rng = rng or random.Random(DEFAULT_SEED)

    def __call__(self, key: bytes | None, partitions: int) -> int:
        if self.name == "random":
            return self._rng.randrange(partitions)
        hash_key, random_when_empty = self.HASHES[self.name]
        if not key:
            if random_when_empty:
                return self._rng.randrange(partitions)
            return hash_key(key or b"", partitions)
        return hash_key(key, partitions)


@dataclass
class _Topic:
    logs: list[list[Record]] = field(default_factory=list)


class UnknownTopic(LookupError):
    """A client named a topic the cluster does not have (a broker answers UNKNOWN_TOPIC_OR_PART)."""


class MemoryCluster:
    """Topics, their partitions' logs, and committed offsets per group. Thread-safe."""

    def __init__(self, topics: Mapping[str, int], *, seed: int = DEFAULT_SEED):
        """topics: name -> partition count (every topic the pipeline declares, dead-letter topics included)."""
        self._lock = threading.Lock()
        self._topics = {name: _Topic([[] for _ in range(count)]) for name, count in topics.items()}
        self._committed: dict[str, dict[Partition, int]] = {}
        self.seed = seed
        self.appended = 0  # every record ever appended: a cheap "did anything happen" for the scheduler

    # -- topics -------------------------------------------------------------------------------------------

    @property
    def topic_names(self) -> list[str]:
        return sorted(self._topics)

    def partitions(self, topic: str) -> int:
        return len(self._known(topic).logs)

    def _known(self, topic: str) -> _Topic:
        found = self._topics.get(topic)
        if found is None:
            raise UnknownTopic(topic)
        return found

    def append(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        headers: Iterable[tuple[str, bytes]] | None,
        timestamp: int | None = None,
    ) -> Record:
        with self._lock:
            logs = self._known(topic).logs
            if not 0 <= partition < len(logs):
                raise UnknownTopic(f"{topic}[{partition}]")
            log = logs[partition]
            record = Record(
                topic, partition, len(log), key, value,
                tuple(headers) if headers is not None else None,
                timestamp if timestamp else int(time.time() * 1000), self.appended,
            )  # fmt: skip
            log.append(record)
            self.appended += 1
            return record

    def read(self, topic: str, partition: int, offset: int, limit: int) -> list[Record]:
        with self._lock:
            log = self._known(topic).logs[partition]
            return log[offset : offset + limit]

    def end(self, topic: str, partition: int) -> int:
        """The partition's log-end offset (the high watermark: every record here is committed)."""
        return len(self._known(topic).logs[partition])

    def records(self, topic: str, *, as_written: bool = False) -> list[Record]:
        """Every record of a topic: partition by partition, each in offset order; or, `as_written`, in the
        order they were appended across partitions."""
        with self._lock:
            records = [record for log in self._known(topic).logs for record in log]
        return sorted(records, key=lambda r: r.seq) if as_written else records

    # -- consumer groups ----------------------------------------------------------------------------------

    def commit(self, group: str, offsets: Mapping[Partition, int]) -> None:
        with self._lock:
            self._committed.setdefault(group, {}).update(offsets)

    def committed(self, group: str) -> dict[Partition, int]:
        """{(topic, partition): the next offset the group reads} for the partitions it committed."""
        with self._lock:
            return dict(sorted(self._committed.get(group, {}).items()))

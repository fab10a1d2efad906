"""`kpipe tail`: a topic's events from a position, decoded, one at a time.

    start_offsets(position, bounds)              pure: where reading starts in each partition
    tail(reader, cluster, request, model)        the events, streamed: nothing is kept but a counter, so memory
                                                 stays bounded whatever the topic holds

The log end of each partition is taken once, at the start, from what a fetch reports (ListOffsets "latest" is
wrong on the embedded broker): without `follow` the tail stops there, so events written meanwhile do not keep it
running. A DATETIME start is looked up with the broker's offsets-for-times and made exact by skipping the events
before it (brokers may answer at record-batch granularity).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel

from kpipe.errors import UsageError
from kpipe.operate.events import ShownEvent, decode
from kpipe.operate.positions import AtTime, Bounds, Position
from kpipe.runtime.records import RecordReader
from kpipe.topics.cluster import Partition, Watermarks
from kpipe.topics.plan import ClusterState


class ReadCluster(Protocol):
    """What reading a topic needs from the cluster boundary (KafkaCluster has it)."""

    def describe(self, config_for: Collection[str] = ()) -> ClusterState: ...

    def watermarks(
        self, partitions: Collection[Partition], start: Mapping[Partition, int] | None = None
    ) -> dict[Partition, Watermarks]: ...


@dataclass(frozen=True)
class TailRequest:
    topic: str
    start: Position
    count: int | None = None  # stop after this many events (all partitions together)
    follow: bool = False
    partition: int | None = None
    key: str | None = None


def partitions_of(cluster: ReadCluster, topic: str, partition: int | None = None) -> list[Partition]:
    """The topic's partitions on the cluster (or the one asked for); UsageError when there is no such topic."""
    live = cluster.describe().topics.get(topic)
    if live is None:
        raise UsageError(f"topic '{topic}' is not on the cluster (create it with `kpipe apply`)")
    if partition is None:
        return [(topic, p) for p in range(live.partitions)]
    if not 0 <= partition < live.partitions:
        raise UsageError(
            f"--partition {partition}: topic '{topic}' has partitions 0 to {live.partitions - 1}"
        )
    return [(topic, partition)]


def bounds_of(
    reader: RecordReader, cluster: ReadCluster, partitions: list[Partition], position: Position
) -> dict[Partition, Bounds]:
    """Each partition's log start and end, and for a DATETIME position the broker's offset for that time."""
    marks = cluster.watermarks(partitions)
    at_time: Mapping[Partition, int | None] = {}
    if isinstance(position, AtTime):
        at_time = reader.offsets_for_time(partitions, position.timestamp_ms)
    return {tp: Bounds(marks[tp].low, marks[tp].high, at_time=at_time.get(tp)) for tp in partitions}


def start_offsets(position: Position, bounds: Mapping[Partition, Bounds]) -> dict[Partition, int]:
    return {tp: position.offset(b) for tp, b in bounds.items()}


def tail(
    reader: RecordReader, cluster: ReadCluster, request: TailRequest, model: type[BaseModel] | None
) -> Iterator[ShownEvent]:
    partitions = partitions_of(cluster, request.topic, request.partition)
    bounds = bounds_of(reader, cluster, partitions, request.start)
    starts = start_offsets(request.start, bounds)
    ends = {tp: b.high for tp, b in bounds.items()}
    # A DATETIME start may land a few events early (batch granularity): skip those until the first at or after it.
    not_there_yet = set(partitions) if isinstance(request.start, AtTime) else set()
    since = request.start.timestamp_ms if isinstance(request.start, AtTime) else 0
    # A key given as bytes that are not UTF-8 arrives surrogate-escaped (as the command line decodes them): the same
    # bytes are wanted.
    wanted_key = None if request.key is None else request.key.encode("utf-8", "surrogateescape")
    shown = 0
    if request.count == 0:
        return
    for record in reader.read(starts, ends, follow=request.follow):
        tp = (record.topic, record.partition)
        if tp in not_there_yet:
            if record.timestamp_ms is not None and record.timestamp_ms < since:
                continue
            not_there_yet.discard(tp)
        if wanted_key is not None and record.key != wanted_key:
            continue
        yield decode(record, model)
        shown += 1
        if request.count is not None and shown >= request.count:
            return

"""Which offset of a partition may be committed when events finish out of order.

Events of a partition are tracked in the order the consumer delivered them (increasing offsets, possibly with
gaps: compaction and transaction markers leave holes). They finish in any order. The committable offset of a
partition is the next offset a restarted consumer must read:

    the lowest tracked offset that is not finished yet, or, when every tracked offset is finished,
    the highest tracked offset + 1.

So a finished event above an unfinished one waits: committing past an unfinished event could lose it. The
events above the gap that already finished are handled again after a crash (at least once, never at most once).

Revocation forgets a partition. An assignment starts a new epoch for it, so the completion of an event that
was in flight when its partition was revoked (and perhaps assigned again) cannot mark anything of the new
assignment finished.

Pure and single-threaded: the worker's consumer thread owns it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

TP = tuple[str, int]  # (topic, partition)


class PartitionOffsets:
    """The tracked offsets of one partition in one assignment epoch."""

    __slots__ = ("epoch", "_pending", "_unfinished", "_payloads", "_next")

    def __init__(self, epoch: int):
        self.epoch = epoch
        # Tracked offsets from the oldest unfinished one on, in delivery (increasing) order.
        self._pending: deque[int] = deque()
        # The tracked offsets that have not finished.
        self._unfinished: set[int] = set()
        # What the caller tracked with each offset in _pending (the message), handed back once committable.
        self._payloads: dict[int, Any] = {}
        # The committable offset once everything tracked finished: highest tracked + 1 (None: nothing seen).
        self._next: int | None = None

    def track(self, offset: int, payload: Any = None) -> None:
        if self._next is not None and offset < self._next:
            raise ValueError(f"offset {offset} tracked after {self._next - 1}: offsets must increase")
        self._pending.append(offset)
        self._unfinished.add(offset)
        self._payloads[offset] = payload
        self._next = offset + 1

    def finish(self, offset: int) -> list[Any]:
        """Mark an offset finished; returns the payloads of the events this moved below the committable
        offset, in offset order (none when it finished above an unfinished one)."""
        unfinished = self._unfinished
        if offset not in unfinished:
            raise ValueError(f"offset {offset} is not in flight")
        unfinished.remove(offset)
        pending = self._pending
        moved = []
        payloads = self._payloads
        while pending and pending[0] not in unfinished:
            moved.append(payloads.pop(pending.popleft()))
        return moved

    @property
    def committable(self) -> int | None:
        """The offset to commit (the next to read), or None when nothing was tracked in this epoch."""
        if self._pending:
            return self._pending[0]
        return self._next

    @property
    def next_offset(self) -> int | None:
        """The highest tracked offset + 1 (None: nothing tracked yet)."""
        return self._next

    @property
    def oldest_unfinished(self) -> int | None:
        return self._pending[0] if self._pending else None

    @property
    def unfinished(self) -> int:
        return len(self._unfinished)

    @property
    def uncommittable(self) -> int:
        """Tracked events at or above the committable offset (unfinished, or finished above an unfinished one)."""
        return len(self._pending)


class OffsetTracker:
    """Per-partition offset bookkeeping for a consumer whose events finish out of order."""

    def __init__(self) -> None:
        self._partitions: dict[TP, PartitionOffsets] = {}
        self._epoch = 0

    # -- assignment ---------------------------------------------------------------------------------------------

    def assign(self, tps: Iterable[TP]) -> None:
        """Start tracking newly assigned partitions, each in a fresh epoch."""
        for tp in tps:
            self._epoch += 1
            self._partitions[tp] = PartitionOffsets(self._epoch)

    def revoke(self, tps: Iterable[TP]) -> None:
        """Forget partitions (revoked or lost); later completions of their events are ignored."""
        for tp in tps:
            self._partitions.pop(tp, None)

    def __contains__(self, tp: TP) -> bool:
        return tp in self._partitions

    def partitions(self) -> list[TP]:
        return list(self._partitions)

    # -- events ---------------------------------------------------------------------------------------------------

    def track(self, tp: TP, offset: int, payload: Any = None) -> int:
        """Record a delivered event (with whatever `finish` should hand back once it is committable); returns
        the epoch its completion must quote. A partition the tracker does not know (delivered before its
        assignment callback ran, which librdkafka does not do) is assigned."""
        part = self._partitions.get(tp)
        if part is None:
            self.assign([tp])
            part = self._partitions[tp]
        part.track(offset, payload)
        return part.epoch

    def seen(self, tp: TP, offset: int) -> bool:
        """True when this partition already tracked `offset` or a later one in this epoch (a redelivery)."""
        part = self._partitions.get(tp)
        return part is not None and part.next_offset is not None and offset < part.next_offset

    def finish(self, tp: TP, offset: int, epoch: int) -> list[Any] | None:
        """Mark an event finished; returns the payloads of the events that became committable by it, in offset
        order (empty: it finished above an unfinished one), or None (and nothing changes) when its partition
        was revoked since."""
        part = self._partitions.get(tp)
        if part is None or part.epoch != epoch:
            return None
        return part.finish(offset)

    def is_current(self, tp: TP, epoch: int) -> bool:
        part = self._partitions.get(tp)
        return part is not None and part.epoch == epoch

    # -- committing -----------------------------------------------------------------------------------------------

    def committable(self, tp: TP) -> int | None:
        part = self._partitions.get(tp)
        return None if part is None else part.committable

    # -- metrics --------------------------------------------------------------------------------------------------

    def oldest_unfinished(self) -> dict[TP, int]:
        """Per partition with unfinished events, the lowest unfinished offset."""
        out = {}
        for tp, part in self._partitions.items():
            oldest = part.oldest_unfinished
            if oldest is not None:
                out[tp] = oldest
        return out

    def unfinished(self) -> int:
        return sum(p.unfinished for p in self._partitions.values())

    def uncommittable(self) -> int:
        """Events held because an offset below them is unfinished (and the unfinished ones themselves): what a
        worker keeps in memory for commits. A stuck event makes it grow; the worker bounds it."""
        return sum(p.uncommittable for p in self._partitions.values())

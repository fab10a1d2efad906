"""Which buffered events may start now, so that order holds where the group asked for it.

Every event belongs to a lane; a lane runs one event at a time, in the order its events arrived (offset order
within a partition):

    ordering: key        lane = (topic, partition, key): same key one at a time, different keys in parallel.
                         Events without a key share their partition's lane (ordered per partition).
    ordering: partition  lane = (topic, partition)
    ordering: none       every event is its own lane

At most `max_in_flight` events run at once. Among the lanes that could start, the one whose next event arrived
first starts first, which keeps the oldest unfinished offset (the committable point) moving.

The buffer (events queued + in flight) is bounded by `capacity`: `fetch_room()` says how many events to fetch
now (in batches of at least a quarter of the buffer while events are queued), and `flow()` says when the
consumer should pause its partitions (it could not fetch for a while) and resume them (drained to half).

Pure and single-threaded: the worker's consumer thread owns it.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Hashable, Iterable
from typing import Any

TP = tuple[str, int]

KEY, PARTITION, NONE = "key", "partition", "none"
ORDERINGS = (KEY, PARTITION, NONE)

PAUSE, RESUME = "pause", "resume"


class Work:
    """One event from delivery to completion. `payload` is whatever the caller attaches (the message)."""

    __slots__ = ("tp", "offset", "lane", "seq", "epoch", "payload", "event", "ctx", "attempts", "emits", "acks",
                 "state", "seconds")  # fmt: skip

    def __init__(self, tp: TP, offset: int, lane: Hashable, seq: int, epoch: int = 0, payload: Any = None):
        self.tp = tp
        self.offset = offset
        self.lane = lane
        self.seq = seq
        self.epoch = epoch
        self.payload = payload
        # Bookkeeping the executor and the worker use; the scheduler ignores them.
        self.event: Any = None
        self.ctx: Any = None
        self.attempts = 0
        self.emits = 0
        self.acks = 0
        self.state: Any = None
        # Set (to 0.0) to time this call of the handler: the executor puts its duration here.
        self.seconds: float | None = None

    def __repr__(self) -> str:
        return f"Work({self.tp[0]}[{self.tp[1]}]@{self.offset})"


def lane_of(ordering: str, tp: TP, key: Any, seq: int) -> Hashable:
    """The lane of an event: see the module docstring."""
    if ordering == KEY:
        return (tp, key)
    if ordering == PARTITION:
        return tp
    return seq


class KeyScheduler:
    def __init__(self, max_in_flight: int, capacity: int, ordering: str = KEY):
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if ordering not in ORDERINGS:
            raise ValueError(f"ordering must be one of {', '.join(ORDERINGS)}")
        self.max_in_flight = max_in_flight
        self.capacity = max(capacity, max_in_flight)
        self.ordering = ordering
        self._seq = 0
        # Queued (not started) events per lane, in arrival order.
        self._lanes: dict[Hashable, deque[Work]] = {}
        # Lanes with an event in flight.
        self._busy: set[Hashable] = set()
        # (seq of the lane's next event, lane) for lanes that may start now; stale entries are skipped.
        self._ready: list[tuple[int, Hashable]] = []
        self.queued = 0
        self.in_flight = 0
        self.paused = False

    # -- intake ---------------------------------------------------------------------------------------------------

    def offer(self, tp: TP, offset: int, key: Any = None, epoch: int = 0, payload: Any = None) -> Work:
        """Buffer an event (call in offset order per partition). The caller respects room(); the bound is
        not enforced here, so that a consumer that must accept what it was handed can."""
        seq = self._seq = self._seq + 1
        lane = lane_of(self.ordering, tp, key, seq)
        work = Work(tp, offset, lane, seq, epoch, payload)
        queue = self._lanes.get(lane)
        if queue is None:
            queue = self._lanes[lane] = deque()
        if not queue and lane not in self._busy:
            heapq.heappush(self._ready, (seq, lane))
        queue.append(work)
        self.queued += 1
        return work

    def room(self) -> int:
        """How many more events may be buffered."""
        return self.capacity - self.queued - self.in_flight

    @property
    def buffered(self) -> int:
        return self.queued + self.in_flight

    # -- starting and finishing ---------------------------------------------------------------------------------

    def take(self, limit: int | None = None) -> list[Work]:
        """Events that may start now (oldest first), marked in flight."""
        free = self.max_in_flight - self.in_flight
        if limit is not None:
            free = min(free, limit)
        out: list[Work] = []
        ready, lanes, busy = self._ready, self._lanes, self._busy
        while free > 0 and ready:
            seq, lane = heapq.heappop(ready)
            queue = lanes.get(lane)
            if not queue or queue[0].seq != seq or lane in busy:
                continue  # stale: the lane was dropped or already started
            work = queue.popleft()
            if not queue:
                del lanes[lane]
            busy.add(lane)
            out.append(work)
            free -= 1
        self.queued -= len(out)
        self.in_flight += len(out)
        return out

    def done(self, work: Work) -> None:
        """The event finished (or was given up): its lane may start its next event."""
        lane = work.lane
        self._busy.discard(lane)
        self.in_flight -= 1
        queue = self._lanes.get(lane)
        if queue:
            heapq.heappush(self._ready, (queue[0].seq, lane))

    def drop(self, tps: Iterable[TP]) -> list[Work]:
        """Remove the queued (not started) events of these partitions; returns them. In-flight ones stay
        counted until done()."""
        gone = set(tps)
        dropped: list[Work] = []
        for lane in [lane for lane, q in self._lanes.items() if q and q[0].tp in gone]:
            dropped.extend(self._lanes.pop(lane))
        self.queued -= len(dropped)
        return dropped

    def drain(self) -> list[Work]:
        """Remove every queued event (shutdown); returns them."""
        dropped = [w for q in self._lanes.values() for w in q]
        self._lanes.clear()
        self._ready.clear()
        self.queued = 0
        return dropped

    # -- back-pressure --------------------------------------------------------------------------------------------

    def fetch_room(self) -> int:
        """How many events to fetch now: the room left, once a quarter of the buffer is free (or nothing is
        queued), so a busy consumer fetches in batches rather than one event per finished one."""
        room = self.room()
        if room <= 0 or (self.queued and room < max(1, self.capacity // 4)):
            return 0
        return room

    def flow(self, stalled: bool = False) -> str | None:
        """PAUSE when the caller could not fetch for a while (`stalled`: the buffer stayed full); RESUME once
        paused and drained to half; None: no change."""
        if not self.paused and stalled:
            self.paused = True
            return PAUSE
        if self.paused and self.queued + self.in_flight <= self.capacity // 2:
            self.paused = False
            return RESUME
        return None

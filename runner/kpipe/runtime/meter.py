"""What a worker measures for `kpipe run --metrics-port`: histograms, and consumer lag from librdkafka.

The worker's exact counters (handled, failed, retried, …) are plain ints it adds to once per consume() batch
or on the rare paths (failures, commits, rebalances). This module holds what costs more than an int:

    Buckets          a histogram being counted in this process (snapshot() -> protocol.Histogram)
    WorkerMeter      the worker's handler-duration and event-age histograms, which events to time, and the lag
                     from statistics (commit durations are the worker's counters'; the sequential loop wraps the
                     handler with timed(), the concurrent loop's executor times the events it marks and reports
                     them through event_started/handler_done)
    lag_from_stats   librdkafka's statistics JSON -> ((topic, partition, lag), ...)

Which events are timed: reading the clock and the message timestamp around every handler call costs about
0.5 µs, a third of a no-op handler's whole per-event cost. So when the last batch's events took under
`slow_after` (50 µs) each on average, only the first event of a batch is timed (hundreds of observations a
second at high rates, nothing measurable in throughput); slower than that, every event is (under 1 %).
"""

from __future__ import annotations

import json
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from kpipe.runtime.protocol import AGE_BUCKETS, DURATION_BUCKETS, Histogram

SLOW_AFTER = 50e-6  # seconds per event, on average over a batch, from which every event is timed


class Buckets:
    """Observations counted into fixed buckets (values <= bounds[i] go to bucket i; the last is +Inf)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def snapshot(self) -> Histogram:
        return Histogram(self.bounds, tuple(self.counts), self.sum)


class WorkerMeter:
    """One worker's histograms, its timing choice per batch, and the consumer lag librdkafka last reported."""

    def __init__(self, slow_after: float = SLOW_AFTER, wall_clock: Callable[[], float] = time.time):
        self.handler_seconds = Buckets(DURATION_BUCKETS)
        self.event_age_seconds = Buckets(AGE_BUCKETS)
        self.time_every_event = False
        self.lag: tuple[tuple[str, int, int], ...] = ()
        self._slow_after = slow_after
        self._wall_clock = wall_clock

    def timed(self, handler: Callable[[Any, Any], Any], message_of: Callable[[Any], Any]) -> Callable:
        """`handler` wrapped to observe its duration and its event's age; message_of(ctx) is the message."""
        perf = time.perf_counter
        wall = self._wall_clock
        observe_duration = self.handler_seconds.observe
        observe_age = self.event_age_seconds.observe

        def timed_handler(event: Any, ctx: Any) -> Any:
            kind, millis = message_of(ctx).timestamp()
            if kind:  # 0: the message has no timestamp
                observe_age(max(0.0, wall() - millis / 1000.0))
            started = perf()
            try:
                return handler(event, ctx)
            finally:
                observe_duration(perf() - started)

        return timed_handler

    def event_started(self, msg: Any) -> None:
        """The concurrent loop starts a timed event: observe its age (now minus its timestamp)."""
        kind, millis = msg.timestamp()
        if kind:  # 0: the message has no timestamp
            self.event_age_seconds.observe(max(0.0, self._wall_clock() - millis / 1000.0))

    def handler_done(self, seconds: float) -> None:
        """The concurrent loop's timed handler call took `seconds`: observe it, and time every event from now
        on while calls take `slow_after` or more (the concurrent loop's rule for batch_done)."""
        self.handler_seconds.observe(seconds)
        self.time_every_event = seconds >= self._slow_after

    def batch_done(self, events: int, seconds: float) -> None:
        """After a batch: time every event of the next one if these took `slow_after` or more each."""
        if events:
            self.time_every_event = seconds >= self._slow_after * events

    def on_statistics(self, stats: str) -> None:
        """librdkafka's stats_cb: keep the consumer lag of every partition it fetches."""
        self.lag = lag_from_stats(stats)


def lag_from_stats(stats: str) -> tuple[tuple[str, int, int], ...]:
    """(topic, partition, lag) for each partition being fetched: the log end (high watermark, as fetches
    report it) minus the committed offset, or minus the position before the group has committed anything."""
    try:
        topics = json.loads(stats).get("topics") or {}
    except (ValueError, AttributeError):
        return ()
    out = []
    for topic, data in sorted(topics.items()):
        for key, p in (data.get("partitions") or {}).items():
            partition = int(key)
            if partition < 0 or p.get("fetch_state") in (None, "none", "stopped"):
                continue  # -1 is librdkafka's internal unassigned partition
            end = p.get("hi_offset", -1)
            lag = p.get("consumer_lag", -1)
            if lag < 0 and end >= 0 and p.get("app_offset", -1) >= 0:
                lag = end - p["app_offset"]
            if lag >= 0:
                out.append((topic, partition, int(lag)))
    return tuple(sorted(out, key=lambda t: (t[0], t[1])))

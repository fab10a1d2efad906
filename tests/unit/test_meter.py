"""kpipe.runtime.meter: histogram buckets, timed handler calls, and consumer lag from librdkafka statistics."""

from __future__ import annotations

import json

import pytest

from kpipe.runtime.meter import Buckets, WorkerMeter, lag_from_stats


def test_a_value_on_a_bound_counts_in_that_bucket_as_prometheus_le_means() -> None:
    buckets = Buckets((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        buckets.observe(value)
    snap = buckets.snapshot()
    assert snap.counts == (2, 2, 1)
    assert snap.sum == pytest.approx(8.65)


class Message:
    def __init__(self, timestamp: tuple[int, int]):
        self._timestamp = timestamp

    def timestamp(self) -> tuple[int, int]:
        return self._timestamp


class Ctx:
    def __init__(self, message: Message):
        self.message = message


def test_a_timed_call_observes_its_duration_and_the_event_age_even_when_it_raises() -> None:
    meter = WorkerMeter(wall_clock=lambda: 1000.25)
    seen = []
    timed = meter.timed(lambda event, ctx: seen.append(event), lambda ctx: ctx.message)
    timed("a", Ctx(Message((1, 1_000_000))))  # CreateTime 1000.000 s: 0.25 s old when handled
    timed("b", Ctx(Message((0, -1))))  # no timestamp: no age

    def boom(event: object, ctx: object) -> None:
        raise ValueError("no")

    with pytest.raises(ValueError):
        meter.timed(boom, lambda ctx: ctx.message)("c", Ctx(Message((1, 1_000_000))))
    assert seen == ["a", "b"]
    assert meter.handler_seconds.snapshot().count == 3
    ages = meter.event_age_seconds.snapshot()
    assert (ages.count, ages.sum) == (2, 0.5)


def test_every_event_is_timed_only_after_a_slow_batch() -> None:
    meter = WorkerMeter(slow_after=50e-6)
    meter.batch_done(1000, 0.002)  # 2 µs each
    assert not meter.time_every_event
    meter.batch_done(10, 0.001)  # 100 µs each
    assert meter.time_every_event
    meter.batch_done(0, 0.0)  # an empty poll changes nothing
    assert meter.time_every_event


def test_lag_comes_from_the_committed_offset_or_the_position_before_a_commit() -> None:
    # Trimmed from a real statistics document (confluent-kafka 2.16 against the embedded broker).
    stats = {
        "topics": {
            "orders": {
                "partitions": {
                    "0": {"fetch_state": "active", "hi_offset": 500, "app_offset": 480, "committed_offset": -1001,
                          "consumer_lag": -1},
                    "1": {"fetch_state": "active", "hi_offset": 500, "app_offset": 500, "committed_offset": 300,
                          "consumer_lag": 200},
                    "2": {"fetch_state": "none", "hi_offset": -1001, "consumer_lag": -1},
                    "-1": {"fetch_state": "none", "hi_offset": -1001, "consumer_lag": -1},
                }
            }
        }
    }  # fmt: skip
    assert lag_from_stats(json.dumps(stats)) == (("orders", 0, 20), ("orders", 1, 200))
    assert lag_from_stats("not json") == ()
    meter = WorkerMeter()
    meter.on_statistics(json.dumps(stats))
    assert meter.lag == (("orders", 0, 20), ("orders", 1, 200))

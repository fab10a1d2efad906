"""What a worker counts and measures for `kpipe run --metrics-port`, against fake clients built through its
constructor's factories (the Harness of test_worker_processing)."""

from __future__ import annotations

import json
import time

from confluent_kafka import KafkaError, Message
from test_worker_processing import Event, Harness, messages

from kpipe.runtime.handler import HandlerContext


def stamped(count: int, start: int = 0, created_ms: int | None = None) -> list[Message]:
    """Messages with a CreateTime timestamp (now, unless given)."""
    created_ms = created_ms if created_ms is not None else int(time.time() * 1000)
    return [
        Message(
            topic="t",
            partition=0,
            offset=i,
            key=b"k",
            value=json.dumps({"key": "k", "n": i}).encode(),
            timestamp=(1, created_ms),
        )  # fmt: skip
        for i in range(start, start + count)
    ]


def test_every_outcome_is_counted_and_reported_in_the_status() -> None:
    def handler(event: Event, ctx: HandlerContext) -> None:
        if event.n == 1:
            raise RuntimeError("always")

    h = Harness(handler, action="skip", retries=2, batch_size=3)
    h.run(messages(5, bad={3}))  # 1 fails after 2 retries; 3 is not JSON
    counters = h.worker.status().counters
    assert counters is not None
    assert (counters.handled, counters.failed, counters.retried, counters.skipped) == (3, 2, 2, 2)
    assert counters.commits == len(h.commits) >= 2
    assert counters.commit_seconds.count == counters.commits
    assert counters.rebalances == 1  # the assignment
    # Metrics off: nothing is timed.
    assert counters.handler_seconds.count == 0 and counters.event_age_seconds.count == 0
    assert h.worker.status().lag == ()


def test_a_fast_group_times_the_first_event_of_each_batch() -> None:
    h = Harness(lambda e, ctx: None, metrics=True)
    h.run(stamped(50), stamped(50, start=50, created_ms=int(time.time() * 1000) - 2000))
    counters = h.worker.status().counters
    assert counters is not None and counters.handled == 100
    assert counters.handler_seconds.count == 2
    ages = counters.event_age_seconds
    assert ages.count == 2
    # One event just created, one two seconds old: at least 2 s, and in seconds (a slip to milliseconds would
    # give 2,000); the slack above is for a loaded machine, where handling comes later.
    assert 2.0 <= ages.sum < 30


def test_after_a_slow_batch_every_event_is_timed() -> None:
    h = Harness(lambda e, ctx: time.sleep(0.0002), metrics=True)
    h.run(stamped(3), stamped(4, start=3))
    counters = h.worker.status().counters
    assert counters is not None
    assert counters.handler_seconds.count == 1 + 4
    assert counters.handler_seconds.sum >= 5 * 0.0002


def test_lag_comes_from_the_statistics_callback() -> None:
    h = Harness(lambda e, ctx: None, metrics=True)
    h.run(messages(1))
    config = h.consumer.config
    assert config is not None
    stats = {
        "topics": {"t": {"partitions": {"0": {"fetch_state": "active", "hi_offset": 9, "consumer_lag": 8}}}}
    }
    config["stats_cb"](json.dumps(stats))
    assert h.worker.status().lag == (("t", 0, 8),)
    plain = Harness(lambda e, ctx: None)
    plain.run(messages(1))
    assert plain.consumer.config is not None and "stats_cb" not in plain.consumer.config


def test_auto_counts_the_commits_librdkafka_makes_in_the_background() -> None:
    h = Harness(lambda e, ctx: None, "auto")
    h.run(messages(2))
    config = h.consumer.config
    assert config is not None
    before = h.worker.status().counters
    assert before is not None
    config["on_commit"](None, [])
    config["on_commit"](KafkaError(KafkaError._NO_OFFSET), [])  # nothing new to commit: not a failure
    config["on_commit"](KafkaError(KafkaError.REBALANCE_IN_PROGRESS), [])
    after = h.worker.status().counters
    assert after is not None
    assert (after.commits - before.commits, after.commit_failures - before.commit_failures) == (1, 1)
    batch = Harness(lambda e, ctx: None, "batch")
    batch.run(messages(1))
    assert batch.consumer.config is not None and "on_commit" not in batch.consumer.config

"""The offset tracker: the committable offset is the lowest unfinished one, whatever order events finish in."""

from __future__ import annotations

import random

import pytest

from kpipe.runtime.concurrent.offset_tracker import OffsetTracker, PartitionOffsets

TP = ("orders", 0)
TP1 = ("orders", 1)


def tracked(*offsets: int) -> tuple[OffsetTracker, int]:
    tracker = OffsetTracker()
    tracker.assign([TP])
    epoch = 0
    for offset in offsets:
        epoch = tracker.track(TP, offset)
    return tracker, epoch


def test_nothing_tracked_means_nothing_to_commit() -> None:
    tracker = OffsetTracker()
    tracker.assign([TP])
    assert tracker.committable(TP) is None


def test_in_order_completion_commits_past_the_last_finished() -> None:
    tracker, epoch = tracked(0, 1, 2)
    assert tracker.committable(TP) == 0
    tracker.finish(TP, 0, epoch)
    assert tracker.committable(TP) == 1
    tracker.finish(TP, 1, epoch)
    tracker.finish(TP, 2, epoch)
    assert tracker.committable(TP) == 3


def test_finished_events_above_an_unfinished_one_wait() -> None:
    tracker = OffsetTracker()
    tracker.assign([TP])
    epoch = 0
    for offset in (10, 11, 12, 13):
        epoch = tracker.track(TP, offset, f"msg{offset}")
    for offset in (13, 11, 12):
        assert tracker.finish(TP, offset, epoch) == []  # nothing became committable
        assert tracker.committable(TP) == 10  # 10 is still running
    # 10..13 at once, handed back in offset order (the worker feeds them to the commit strategy).
    assert tracker.finish(TP, 10, epoch) == ["msg10", "msg11", "msg12", "msg13"]
    assert tracker.committable(TP) == 14


def test_gaps_in_offsets_are_skipped_not_waited_for() -> None:
    # Compaction and transaction markers leave holes: 5 and 6..8 never arrive.
    tracker, epoch = tracked(4, 7, 9)
    tracker.finish(TP, 4, epoch)
    assert tracker.committable(TP) == 7  # the next unfinished, not 5
    tracker.finish(TP, 9, epoch)
    assert tracker.committable(TP) == 7
    tracker.finish(TP, 7, epoch)
    assert tracker.committable(TP) == 10


def test_an_offset_in_a_gap_cannot_be_finished() -> None:
    tracker, epoch = tracked(4, 7)
    with pytest.raises(ValueError, match="not in flight"):
        tracker.finish(TP, 5, epoch)
    assert tracker.committable(TP) == 4


def test_finishing_twice_or_tracking_backwards_is_refused() -> None:
    part = PartitionOffsets(1)
    part.track(3)
    part.finish(3)
    with pytest.raises(ValueError):
        part.finish(3)
    with pytest.raises(ValueError, match="must increase"):
        part.track(3)


def test_revocation_drops_the_partition_and_stale_completions_change_nothing() -> None:
    tracker, old = tracked(0, 1)
    tracker.revoke([TP])
    assert TP not in tracker
    assert tracker.finish(TP, 0, old) is None
    # Assigned again: a new epoch; the old event's completion must not count in it.
    tracker.assign([TP])
    new = tracker.track(TP, 0)
    assert new != old
    assert tracker.finish(TP, 0, old) is None
    assert tracker.committable(TP) == 0
    assert tracker.finish(TP, 0, new) == [None]
    assert tracker.committable(TP) == 1


def test_metrics_oldest_unfinished_and_count() -> None:
    tracker = OffsetTracker()
    tracker.assign([TP, TP1])
    e = tracker.track(TP, 5)
    tracker.track(TP, 6)
    tracker.track(TP1, 2)
    tracker.finish(TP, 5, e)
    assert tracker.oldest_unfinished() == {TP: 6, TP1: 2}
    assert tracker.unfinished() == 2
    for offset in (7, 8):
        tracker.track(TP, offset)
        tracker.finish(TP, offset, e)
    assert tracker.unfinished() == 2
    assert tracker.uncommittable() == 4  # 6 (unfinished), 7 and 8 (finished above it), and TP1's 2


@pytest.mark.parametrize("seed", range(20))
def test_random_completion_order_never_commits_past_an_unfinished_event(seed: int) -> None:
    rng = random.Random(seed)
    offsets = sorted(rng.sample(range(1000), 200))  # with gaps
    tracker = OffsetTracker()
    tracker.assign([TP])
    unfinished: set[int] = set()
    pending = []
    epoch = 0
    feed = iter(offsets)
    done = False
    while not done or pending:
        # Interleave deliveries and completions, as the worker does.
        if not done and (not pending or rng.random() < 0.5):
            offset = next(feed, None)
            if offset is None:
                done = True
                continue
            epoch = tracker.track(TP, offset)
            unfinished.add(offset)
            pending.append(offset)
        else:
            offset = pending.pop(rng.randrange(len(pending)))
            assert tracker.finish(TP, offset, epoch) is not None
            unfinished.discard(offset)
        commit = tracker.committable(TP)
        assert commit is not None
        assert all(commit <= u for u in unfinished), (commit, min(unfinished))
        if unfinished:
            assert commit == min(unfinished)
    assert tracker.committable(TP) == offsets[-1] + 1

"""The hang counts: hung-handler counts per event, shared through the run's state directory."""

from __future__ import annotations

from pathlib import Path

from kpipe.runtime.hang_counts import HANG_LIMIT, HangCounts


def test_counts_are_shared_by_every_worker_of_the_group(tmp_path: Path) -> None:
    first, second = HangCounts(str(tmp_path), "billing"), HangCounts(str(tmp_path), "billing")
    assert first.record(("orders", 1, 42)) == 1
    assert first.exhausted() == {}
    assert second.record(("orders", 1, 42)) == 2  # e.g. the instance the partition moved to
    assert second.record(("orders", 0, 7)) == 1
    assert HANG_LIMIT == 2
    assert first.exhausted() == second.exhausted() == {("orders", 1, 42): 2}
    # Another group's counts are its own.
    assert HangCounts(str(tmp_path), "audit").counts() == {}


def test_a_torn_line_is_ignored(tmp_path: Path) -> None:
    book = HangCounts(str(tmp_path), "g")
    book.record(("t", 0, 1))
    path = next(tmp_path.iterdir())
    path.write_bytes(path.read_bytes() + b'["t",0')  # a worker killed while writing
    assert book.record(("t", 0, 1)) == 1 + 1
    assert book.counts() == {("t", 0, 1): 2}


def test_without_a_state_directory_counts_stay_in_memory() -> None:
    book = HangCounts(None, "g")
    assert book.record(("t", 0, 1)) == 1
    assert book.record(("t", 0, 1)) == 2
    assert book.exhausted() == {("t", 0, 1): 2}

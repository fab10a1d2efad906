"""`kpipe dev`'s live table stays readable in an 80-column terminal, from the totals `kpipe run` reports too."""

from __future__ import annotations

import time

from rich.console import Console

from builders import worker_view
from kpipe.local.devloop import partition_ranges, render_table
from kpipe.runtime.protocol import WorkerCounters
from kpipe.runtime.summary import GroupTotals, group_totals, rate


def test_partition_ranges() -> None:
    held = [("orders", 2), ("orders", 0), ("orders", 1), ("audit", 5), ("orders", 7)]
    assert partition_ranges(held) == "audit[5] orders[0-2,7]"
    assert partition_ranges([]) == ""


def test_the_table_fits_80_columns_with_every_header_and_value_whole() -> None:
    now = time.time()
    rows = {
        "order-processors": GroupTotals(
            "order-processors", instances=2, running=2, handled=1234567, dead_lettered=3,
            last_commit_at=now - 3, partitions=[("orders", i) for i in range(12)], lag=250000,
        ),
        "analytics": GroupTotals("analytics", 1, 1, 302, restarts=1, partitions=[("orders", 0)]),
        "welcome-mailer": GroupTotals("welcome-mailer", 1, 1, 5, skipped=1, last_commit_at=now - 40),
    }  # fmt: skip
    rates = {"order-processors": 4123.4, "analytics": 10, "welcome-mailer": 0.05}
    console = Console(width=80, record=True, color_system=None)
    console.print(render_table(rows, rates, "127.0.0.1:19092", now, frozenset({"analytics"})))
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    assert "…" not in text
    header = next(line for line in lines if line.strip().startswith("group"))
    assert header.split() == ["group", "inst", "handled", "ev/s", "lag", "dead", "skip", "commit", "rst"]
    first = next(line for line in lines if line.strip().startswith("order-processors"))
    assert first.split() == ["order-processors", "2/2", "1234567", "4123", "250000", "3", "0", "3s", "0"]
    # No lag reported yet (no statistics from the workers): a dash.
    second = next(line for line in lines if line.strip().startswith("analytics"))
    assert second.split()[3:5] == ["10", "-"]
    # A slow group does not read as stopped.
    third = next(line for line in lines if line.strip().startswith("welcome-mailer"))
    assert third.split()[3] == "<0.1"
    assert "orders[0-11]" in text and "auto" in text


def test_group_totals_add_up_instances_counting_earlier_processes() -> None:
    totals = group_totals(
        {
            ("g", 0): worker_view(
                "g", 0, restarts=2, counters=WorkerCounters(handled=10, dead_lettered=1),
                assigned=(("t", 0),), lag=(("t", 0, 5), ("t", 9, 99)), last_commit_at=50.0,
            ),
            # Restarting: its counts stay, but it holds nothing and its old lag does not count.
            ("g", 1): worker_view(
                "g", 1, state="restarting", counters=WorkerCounters(handled=3, skipped=2),
                assigned=(("t", 1),), lag=(("t", 1, 7),), last_commit_at=60.0,
            ),
            ("h", 0): worker_view("h", 0, state="starting"),
            ("j", 0): worker_view("j", 0, joining=True),
        }
    )  # fmt: skip
    assert list(totals) == ["g", "h", "j"]
    assert (totals["j"].running, totals["j"].joining) == (1, 1)
    g = totals["g"]
    assert (g.instances, g.running, g.handled, g.dead_lettered, g.skipped, g.restarts) == (2, 1, 13, 1, 2, 2)
    assert g.partitions == [("t", 0)] and g.lag == 5 and g.last_commit_at == 60.0
    assert rate(g, GroupTotals("g", handled=6), 2.0) == 5.0  # (16 - 6) events done in 2 s
    assert totals["h"].lag is None and totals["h"].running == 0

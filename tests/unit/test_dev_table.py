"""`kpipe dev`'s live table stays readable in an 80-column terminal."""

from __future__ import annotations

import time

from rich.console import Console

from kpipe.local.devloop import GroupRow, partition_ranges, render_table


def test_partition_ranges() -> None:
    assert partition_ranges(["orders[2]", "orders[0]", "orders[1]", "audit[5]", "orders[7]"]) == (
        "audit[5] orders[0-2,7]"
    )
    assert partition_ranges([]) == ""


def test_the_table_fits_80_columns_with_every_header_and_value_whole() -> None:
    now = time.time()
    rows = {
        "order-processors": GroupRow(
            "order-processors",
            2,
            2,
            1234567,
            3,
            0,
            0,
            now - 3,
            [f"orders[{i}]" for i in range(12)],
            4123.4,
            lag=250000,
        ),
        "analytics": GroupRow("analytics", 1, 1, 302, 0, 0, 1, None, ["orders[0]"], 10),
        "welcome-mailer": GroupRow("welcome-mailer", 1, 1, 5, 0, 1, 0, now - 40, [], 0),
    }
    console = Console(width=80, record=True, color_system=None)
    console.print(render_table(rows, "127.0.0.1:19092", now, frozenset({"analytics"})))
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
    assert second.split()[4] == "-"
    assert "orders[0-11]" in text and "auto" in text

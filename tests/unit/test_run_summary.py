"""`kpipe run` says what it did: one line per group every `summary_every` seconds, and a final line on stop."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from test_supervisor import FAST_BACKOFF, Running, scripted_worker, specs, starts

from helpers import wait_for
from kpipe.runtime.summary import GroupTotals, format_rate, summary_lines
from kpipe.runtime.supervisor import Supervisor


def test_summary_lines_give_counts_rate_and_workers() -> None:
    before = {"orders": GroupTotals("orders", 2, 2, handled=15, dead_lettered=1)}
    now = {
        "orders": GroupTotals("orders", 2, 1, handled=114, dead_lettered=3, skipped=3, lag=12),
        "mail": GroupTotals("mail", 1, 1),
    }
    assert summary_lines(now, before, 30.0) == [
        "group 'mail': handled 0 (0/s), dead-lettered 0, skipped 0; 1/1 worker running",
        "group 'orders': handled 114 (3.5/s), dead-lettered 3, skipped 3; 1/2 workers running, lag 12",
    ]
    assert summary_lines({"orders": now["orders"]}, {}, 125.0, final=True) == [
        "final: group 'orders': handled 114 (1.0/s), dead-lettered 3, skipped 3 in 2 min 5 s"
    ]


def test_workers_waiting_for_their_assignment_are_joining_not_running() -> None:
    totals = {"g": GroupTotals("g", instances=2, running=2, joining=1)}
    assert summary_lines(totals, {}, 30.0) == [
        "group 'g': handled 0 (0/s), dead-lettered 0, skipped 0; 1/2 workers running, 1 joining the group"
    ]


def test_a_slow_group_reads_per_minute_not_as_stopped() -> None:
    assert [format_rate(r) for r in (0.0, 1 / 30, 0.0001, 0.1, 3.46, 4123.4)] == [
        "0/s", "2.0/min", "<0.1/min", "0.1/s", "3.5/s", "4123/s",
    ]  # fmt: skip
    totals = {"mail": GroupTotals("mail", 1, 1, handled=1)}
    assert summary_lines(totals, {}, 60.0) == [
        "group 'mail': handled 1 (1.0/min), dead-lettered 0, skipped 0; 1/1 worker running"
    ]


def test_the_supervisor_logs_a_summary_periodically_and_a_final_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kpipe.runtime.supervisor")
    # The scripted worker reports handled = how many times its slot has started: the second instance fails
    # once, so its restarted process reports 2 and the first process's 1 still counts (1 + 2 + 1 in all).
    workers = specs(tmp_path, "g", 1, behaviour="fail_first", failures="1") + specs(tmp_path, "h", 1)
    sup = Supervisor(workers, scripted_worker, restart_backoff=FAST_BACKOFF, summary_every=0.5)
    running = Running(sup)

    def lines(prefix: str) -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith(prefix)]

    wait_for(lambda: len(starts(tmp_path, "g")) == 2, timeout=20)
    wait_for(
        lambda: "group 'g': handled 3" in " ".join(lines("group 'g'")) and lines("group 'h'"),
        timeout=20,
        message=lambda: "\n".join(r.getMessage() for r in caplog.records),
    )
    assert lines("group 'g'")[-1].endswith("; 1/1 worker running")
    sup.stop()
    assert running.wait() == 0
    final = [re.sub(r"\([\d.<]+/(s|min)\)", "(R/s)", line) for line in lines("final: ")]
    assert [re.sub(r" in \d+ s$", " in N s", line) for line in final] == [
        "final: group 'g': handled 3 (R/s), dead-lettered 0, skipped 0 in N s",
        "final: group 'h': handled 1 (R/s), dead-lettered 0, skipped 0 in N s",
    ]


def test_no_summary_unless_asked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kpipe.runtime.supervisor")
    sup = Supervisor(specs(tmp_path, "g", 1), scripted_worker)
    running = Running(sup)
    wait_for(lambda: starts(tmp_path, "g"), timeout=20)
    sup.stop()
    assert running.wait() == 0
    assert not [r for r in caplog.records if "handled" in r.getMessage()]

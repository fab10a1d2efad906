"""The fidelity scenarios in memory: what each one must show on its own (the integration test then proves the
broker shows the same), and that two runs of one scenario give the same outcome."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline_scenarios import SCENARIOS, Scenario, run_in_memory, write_project

BY_NAME = {s.name: s for s in SCENARIOS}
PREFIX = "sc"


def _run(name: str, tmp_path: Path) -> dict[str, Any]:
    write_project(tmp_path, PREFIX)
    return run_in_memory(BY_NAME[name], tmp_path, PREFIX)


def _values(rows: list[tuple[Any, ...]]) -> list[Any]:
    return [row[1] for row in rows]


def test_valid_events_are_handled_and_emitted(tmp_path: Path) -> None:
    got = _run("valid", tmp_path)
    assert got["handled"] == {"main": 2}
    assert sorted(v["id"] for v in _values(got["topics"]["out"])) == ["a1", "a2"]
    assert got["topics"]["dlq"] == []


def test_schema_invalid_events_are_dead_lettered_without_the_handler(tmp_path: Path) -> None:
    got = _run("schema-invalid", tmp_path)
    assert got["handled"] == {"main": 1}
    letters = [
        (value if isinstance(value, bytes) else value["id"], kind) for _, value, kind in got["topics"]["dlq"]
    ]
    assert letters == [("b1", "schema"), (b"not json", "schema")]


def test_a_retry_that_succeeds_counts_as_handled(tmp_path: Path) -> None:
    got = _run("raises-then-succeeds", tmp_path)
    assert got["handled"] == {"main": 1}
    assert [v["id"] for v in _values(got["topics"]["out"])] == ["c1"]
    assert got["topics"]["dlq"] == []


def test_a_handler_that_always_raises_dead_letters_the_event(tmp_path: Path) -> None:
    got = _run("always-raises", tmp_path)
    assert got["handled"] == {"main": 1}
    assert [(value["id"], kind) for _, value, kind in got["topics"]["dlq"]] == [("d1", "handler")]


def test_skip_lets_the_failed_event_go(tmp_path: Path) -> None:
    got = _run("skip", tmp_path)
    assert got["handled"] == {"skipper": 1}
    assert got["stopped"] == []


def test_stop_halts_the_group_at_the_failed_event(tmp_path: Path) -> None:
    got = _run("stop", tmp_path)
    assert got["handled"] == {"stopper": 1}  # f1; f2 fails, f3 is never handed to the handler
    assert got["stopped"] == ["stopper"]


def test_emits_feed_the_group_that_reads_their_topic(tmp_path: Path) -> None:
    got = _run("emits-chain", tmp_path)
    assert got["handled"] == {"main": 6, "chained": 6}
    assert sorted(v["n"] for v in _values(got["topics"]["final"])) == [0, 10, 20, 30, 40, 50]


def test_concurrency_keeps_each_keys_order(tmp_path: Path) -> None:
    got = _run("key-order-concurrency-8", tmp_path)
    assert got["handled"] == {"conc": 60}
    per_key = got["topics"]["conc-out"]
    assert sorted(per_key) == [f"k{i}" for i in range(5)]
    for key, values in per_key.items():
        ns = [v["n"] for v in values]
        assert ns == sorted(ns) and len(ns) == 12, key


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if not s.per_key], ids=lambda s: s.name)
def test_runs_repeat(scenario: Scenario, tmp_path: Path) -> None:
    """Same scenario, same outcome, partitions and offsets included (the concurrent one promises key order only)."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    write_project(first, PREFIX)
    write_project(second, PREFIX)
    assert run_in_memory(scenario, first, PREFIX) == run_in_memory(scenario, second, PREFIX)

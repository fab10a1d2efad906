"""The metrics collector, /healthz and /readyz rules, and the `metrics:` section, without a broker."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from builders import worker_view
from kpipe.compilation.project import load_project
from kpipe.observe.health import MetricsServer, health, readiness
from kpipe.observe.metrics import METRICS, make_registry
from kpipe.runtime.protocol import DURATION_BUCKETS, Histogram, WorkerCounters, WorkerStatus
from kpipe.runtime.supervisor import WorkerView

README = Path(__file__).resolve().parents[2] / "README.md"


def view(group: str, instance: int, state: str = "running", **status: Any) -> WorkerView:
    """A worker that reported half a second ago, unless `status_age` says otherwise."""
    status.setdefault("status_age", 0.5)
    return worker_view(group, instance, state, **status)


class FakeSupervisor:
    """What the server reads from a Supervisor: a snapshot and the loop's heartbeat."""

    def __init__(self, views: list[WorkerView], since_loop: float | None = 0.1):
        self.views = {(v.group, v.instance): v for v in views}
        self.since_loop = since_loop

    def snapshot(self) -> dict[tuple[str, int], WorkerView]:
        return dict(self.views)

    def seconds_since_loop(self) -> float | None:
        return self.since_loop


def samples(views: list[WorkerView]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(make_registry(FakeSupervisor(views).snapshot)).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counters_histograms_and_gauges_per_group_and_instance() -> None:
    handler = Histogram(DURATION_BUCKETS, (0, 0, 3, 1) + (0,) * 14, 0.0021)
    counters = WorkerCounters(
        handled=7, failed=2, retried=3, dead_lettered=1, commits=4, handler_seconds=handler
    )
    views = [
        view(
            "billing",
            0,
            counters=counters,
            restarts=2,
            assigned=(("orders", 0), ("orders", 1)),
            lag=(("orders", 0, 5), ("orders", 1, 0)),
        ),  # fmt: skip
        view("billing", 1, state="restarting", assigned=(("orders", 2),), lag=(("orders", 2, 9),)),
    ]
    got = samples(views)
    b0 = (("group", "billing"), ("instance", "0"))
    assert got[("kpipe_events_handled_total", b0)] == 7
    assert got[("kpipe_events_failed_total", b0)] == 2
    assert got[("kpipe_events_retried_total", b0)] == 3
    assert got[("kpipe_events_dead_lettered_total", b0)] == 1
    assert got[("kpipe_commits_total", b0)] == 4
    assert got[("kpipe_worker_restarts_total", b0)] == 2
    assert got[("kpipe_assigned_partitions", b0)] == 2
    assert got[("kpipe_handler_duration_seconds_bucket", (*b0, ("le", "0.00025")))] == 0
    assert got[("kpipe_handler_duration_seconds_bucket", (*b0, ("le", "0.0005")))] == 3
    assert got[("kpipe_handler_duration_seconds_bucket", (*b0, ("le", "+Inf")))] == 4
    assert got[("kpipe_handler_duration_seconds_count", b0)] == 4
    assert got[("kpipe_handler_duration_seconds_sum", b0)] == pytest.approx(0.0021)
    assert got[("kpipe_consumer_lag", (("group", "billing"), ("partition", "0"), ("topic", "orders")))] == 5
    # A worker that is not up reports no partitions and no lag.
    b1 = (("group", "billing"), ("instance", "1"))
    assert got[("kpipe_assigned_partitions", b1)] == 0
    assert ("kpipe_consumer_lag", (("group", "billing"), ("partition", "2"), ("topic", "orders"))) not in got
    assert got[("kpipe_workers_up", (("group", "billing"),))] == 1
    assert got[("kpipe_workers_desired", (("group", "billing"),))] == 2


def test_concurrency_gauges_per_instance_and_partition() -> None:
    views = [
        view(
            "g",
            0,
            assigned=(("t", 0), ("t", 1)),
            in_flight=12,
            queued=40,
            oldest_unfinished=(("t", 0, 1500), ("t", 1, 77)),
        ),  # fmt: skip
        view("g", 1, assigned=(("t", 2),)),  # sequential: reports no concurrency fields
        # Dead: its last status must not count as events in flight.
        view("g", 2, state="restarting", in_flight=5, queued=3, oldest_unfinished=(("t", 3, 9),)),
    ]
    got = samples(views)
    g0, g1, g2 = ((("group", "g"), ("instance", str(i))) for i in range(3))
    assert got[("kpipe_events_in_flight", g0)] == 12
    assert got[("kpipe_events_queued", g0)] == 40
    assert got[("kpipe_oldest_unfinished_offset", (*g0, ("partition", "0"), ("topic", "t")))] == 1500
    assert got[("kpipe_oldest_unfinished_offset", (*g0, ("partition", "1"), ("topic", "t")))] == 77
    assert got[("kpipe_events_in_flight", g1)] == 0 and got[("kpipe_events_queued", g1)] == 0
    assert got[("kpipe_events_in_flight", g2)] == 0 and got[("kpipe_events_queued", g2)] == 0
    oldest = {labels for name, labels in got if name == "kpipe_oldest_unfinished_offset"}
    assert len(oldest) == 2


def test_lag_of_a_partition_two_instances_report_comes_from_its_holder() -> None:
    views = [
        view("g", 0, assigned=(), lag=(("t", 0, 50),)),  # revoked a moment ago, still reporting
        view("g", 1, assigned=(("t", 0),), lag=(("t", 0, 7),)),
    ]
    assert samples(views)[("kpipe_consumer_lag", (("group", "g"), ("partition", "0"), ("topic", "t")))] == 7


def test_health_fails_when_the_loop_stalls_or_an_instance_gave_up() -> None:
    assert health(FakeSupervisor([view("g", 0)])) == (True, [])
    assert health(FakeSupervisor([view("g", 0)], since_loop=None)) == (
        False,
        ["the supervisor is not running"],
    )
    assert health(FakeSupervisor([view("g", 0)], since_loop=60.0)) == (
        False,
        ["the supervisor loop has not run for 60 s"],
    )
    ok, reasons = health(FakeSupervisor([view("g", 0, state="gave_up"), view("h", 0, state="halted")]))
    assert not ok
    assert reasons == ["g[0] gave up (crash loop)", "h[0] gave up (halted)"]
    # Restarting is not giving up.
    assert health(FakeSupervisor([view("g", 0, state="restarting")]))[0]


def test_readiness_needs_every_instance_running_and_holding_partitions() -> None:
    one = (("t", 0),)
    assert readiness(FakeSupervisor([view("g", 0, assigned=one)]).snapshot(), {"g": 1}) == (True, [])
    joining = FakeSupervisor([view("g", 0, assigned=one), view("g", 1)]).snapshot()
    assert readiness(joining, {"g": 4}) == (False, ["g[1] has no partitions assigned yet"])
    # Three instances, two partitions: one idle instance is expected once both partitions are held.
    idle = FakeSupervisor([view("g", 0, assigned=one), view("g", 1, assigned=(("t", 1),)), view("g", 2)])
    assert readiness(idle.snapshot(), {"g": 2}) == (True, [])
    starting = FakeSupervisor([view("g", 0, state="starting"), view("g", 1, state="restarting")])
    assert readiness(starting.snapshot(), {"g": 2}) == (False, ["g[0] is starting", "g[1] is restarting"])


def test_readiness_names_a_stale_instance_and_a_stuck_one() -> None:
    one, two = (("t", 0),), (("t", 1),)
    frozen = FakeSupervisor([view("g", 0, assigned=one, status_age=16.2), view("g", 1, assigned=two)])
    assert readiness(frozen.snapshot(), {"g": 2}) == (
        False,
        ["g[0] is stale: no status report for 16 s (frozen?)"],
    )
    recent = FakeSupervisor([view("g", 0, assigned=one, status_age=14.0)])
    assert readiness(recent.snapshot(), {"g": 1}) == (True, [])
    stuck = FakeSupervisor([view("g", 0, assigned=one, stalled="1 event unfinished, none finished for 31 s")])
    assert readiness(stuck.snapshot(), {"g": 1}) == (
        False,
        ["g[0] is stuck: 1 event unfinished, none finished for 31 s"],
    )


def test_readiness_names_an_instance_cut_off_from_the_cluster() -> None:
    one = (("t", 0),)
    cut_off = FakeSupervisor([view("g", 0, assigned=one, unreachable="no broker reachable at b:9092")])
    assert readiness(cut_off.snapshot(), {"g": 1}) == (
        False,
        ["g[0] is cut off: no broker reachable at b:9092"],
    )


def test_the_server_answers_each_path() -> None:
    supervisor = FakeSupervisor([view("g", 0, state="gave_up")])
    server = MetricsServer(supervisor, "127.0.0.1", 0, {"g": 1})
    try:
        with urllib.request.urlopen(server.url + "/metrics", timeout=5) as response:
            assert response.status == 200
            assert "kpipe_events_handled_total" in response.read().decode()
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(server.url + "/healthz", timeout=5)
        assert failed.value.code == 503
        assert json.loads(failed.value.read()) == {
            "status": "unavailable",
            "reasons": ["g[0] gave up (crash loop)"],
        }
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(server.url + "/nope", timeout=5)
        assert missing.value.code == 404
    finally:
        server.close()


def test_counters_carry_over_by_adding_up() -> None:
    a = WorkerCounters(handled=3, handler_seconds=Histogram(DURATION_BUCKETS, (1,) + (0,) * 17, 0.5))
    b = WorkerCounters(handled=4, skipped=1)
    total = a + b
    assert (total.handled, total.skipped, total.handler_seconds.count, total.handler_seconds.sum) == (
        7,
        1,
        1,
        0.5,
    )
    assert WorkerStatus("g", 0, 1, handled=5, committed=2).totals() == WorkerCounters(handled=5, commits=2)


def test_the_metrics_section_and_the_flags_that_win_over_it(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("topics: {}\nmetrics:\n  port: 9500\n  host: 0.0.0.0\n")
    project = load_project([tmp_path])
    assert (project.metrics_settings().port, project.metrics_settings().host) == (9500, "0.0.0.0")
    assert (
        project.metrics_settings(9600, "127.0.0.2").port,
        project.metrics_settings(9600, "127.0.0.2").host,
    ) == (
        9600,
        "127.0.0.2",
    )
    (tmp_path / "p.yaml").write_text("topics: {}\n")
    assert load_project([tmp_path]).metrics_settings().port is None


def test_the_readme_documents_every_metric() -> None:
    text = README.read_text()
    missing = [m.name for m in METRICS if f"`{m.name}`" not in text]
    assert missing == []


def test_the_grafana_dashboard_uses_only_metrics_that_exist_and_shows_each() -> None:
    import re

    dashboard = json.loads((README.parent / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {re.sub(r"_(bucket|sum|count)$", "", n) for e in exprs for n in re.findall(r"kpipe_\w+", e)}
    assert used == {m.name for m in METRICS}

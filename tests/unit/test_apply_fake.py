"""kpipe.topics.apply against FakeCluster: behaviour Tansu lacks (CreatePartitions) and failures hard to provoke."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from fake_cluster import FakeCluster
from kpipe.compilation.compiled import TopicSettings
from kpipe.errors import ClusterError, UnsafePlanRefused
from kpipe.topics.apply import PROGRESS_THRESHOLD, apply_plan, read_plan
from kpipe.topics.cluster import ClusterAPI
from kpipe.topics.plan import LiveTopic


def quiet() -> Console:
    return Console(file=io.StringIO(), force_terminal=False)


def test_fake_implements_the_cluster_protocol() -> None:
    assert isinstance(FakeCluster(), ClusterAPI)


def test_partition_increase_goes_through_create_partitions() -> None:
    cluster = FakeCluster([LiveTopic("orders", 3, 1)])
    desired = [TopicSettings("orders", 6, 1, key_field="customer_id")]
    plan = read_plan(cluster, desired)
    assert plan.warnings()[0].startswith("topic orders is keyed by 'customer_id': about 50% of keys")
    report = apply_plan(plan, cluster, desired, console=quiet())
    assert [r.line() for r in report.results] == ["increased partitions of topic orders"]
    assert cluster.request_kinds() == ["create_partitions"]
    assert cluster.topics["orders"].partitions == 6
    assert not read_plan(cluster, desired).has_changes


def test_all_kinds_batched_one_request_each() -> None:
    cluster = FakeCluster(
        [LiveTopic("cfg1", 1, 1), LiveTopic("cfg2", 1, 1), LiveTopic("grow1", 1, 1), LiveTopic("grow2", 1, 1)]
        + [LiveTopic("old1", 1, 1), LiveTopic("old2", 1, 1)]
    )
    desired = [TopicSettings(f"new{i}", 1, 1) for i in range(5)] + [
        TopicSettings("cfg1", 1, 1, config={"retention.ms": "5"}),
        TopicSettings("cfg2", 1, 1, config={"retention.ms": "6"}),
        TopicSettings("grow1", 2, 1),
        TopicSettings("grow2", 3, 1),
    ]
    plan = read_plan(cluster, desired, prune=True)
    report = apply_plan(plan, cluster, desired, console=quiet())
    assert not report.failed
    assert cluster.requests[1:] == [
        ("create_topics", [f"new{i}" for i in range(5)]),
        ("alter_configs", ["cfg1", "cfg2"]),
        ("create_partitions", ["grow1", "grow2"]),
        ("delete_topics", ["old1", "old2"]),
    ]
    assert report.summary_line().startswith("Apply complete: 5 created, 4 updated, 2 deleted in ")
    assert not read_plan(cluster, desired, prune=True).has_changes


def test_refused_plan_makes_no_request() -> None:
    cluster = FakeCluster([LiveTopic("orders", 6, 1)])
    desired = [TopicSettings("orders", 3, 1), TopicSettings("new", 1, 1)]
    plan = read_plan(cluster, desired)
    with pytest.raises(UnsafePlanRefused, match="decrease partitions of topic orders: 6 -> 3"):
        apply_plan(plan, cluster, desired, console=quiet())
    assert cluster.request_kinds() == []


def test_partial_failure_reports_each_topic() -> None:
    cluster = FakeCluster()
    cluster.fail["b"] = "INVALID_REPLICATION_FACTOR"
    desired = [TopicSettings(n, 1, 1) for n in ("a", "b", "c")]
    report = apply_plan(read_plan(cluster, desired), cluster, desired, console=quiet())
    assert report.render_text().splitlines() == [
        "failed: create topic b (partitions 1, replication 1): fake broker refused b (INVALID_REPLICATION_FACTOR)",
        "created topic a",
        "created topic c",
        "Apply failed for 1 of 3 changes (2 created, 0 updated, 0 deleted).",
    ]
    with pytest.raises(ClusterError, match="apply failed for 1 of 3 changes: create topic b") as info:
        report.raise_if_failed()
    assert info.value.exit_code == 3
    assert info.value.code == "INVALID_REPLICATION_FACTOR"
    assert sorted(cluster.topics) == ["a", "c"]


def test_topic_created_meanwhile_is_done_then_reconciled() -> None:
    cluster = FakeCluster()
    # Someone else creates "orders" after our plan, with a different retention.
    cluster.created_concurrently["orders"] = LiveTopic("orders", 3, 1, {"retention.ms": "1"})
    desired = [TopicSettings("orders", 3, 1, config={"retention.ms": "2"})]
    plan = read_plan(cluster, desired)
    report = apply_plan(plan, cluster, desired, console=quiet())
    assert not report.failed
    assert [r.line() for r in report.results] == [
        "topic orders already existed (created meanwhile by someone else)",
        "updated config of topic orders (after a concurrent creation)",
    ]
    # Counted as already existing, not as created by this apply (issue 11.10).
    assert report.summary_line().startswith(
        "Apply complete: 0 created, 1 updated, 0 deleted, 1 already existed"
    )
    assert cluster.topics["orders"].config == {"retention.ms": "2"}


def test_topic_created_meanwhile_with_fewer_partitions_grows_and_with_more_fails() -> None:
    cluster = FakeCluster()
    cluster.created_concurrently["small"] = LiveTopic("small", 1, 1)
    cluster.created_concurrently["big"] = LiveTopic("big", 9, 1)
    desired = [TopicSettings("small", 3, 1), TopicSettings("big", 3, 1)]
    report = apply_plan(read_plan(cluster, desired), cluster, desired, console=quiet())
    lines = report.render_text().splitlines()
    assert lines[0] == (
        "failed: decrease partitions of topic big: 9 -> 3: it was created meanwhile by someone else and "
        "differs: Kafka cannot remove partitions from a topic; recreate it under a new name (or delete it) "
        "to have fewer"
    )
    assert "increased partitions of topic small (after a concurrent creation)" in lines
    assert cluster.topics["small"].partitions == 3


def test_delete_guard_rechecks_offsets_right_before_deleting() -> None:
    cluster = FakeCluster([LiveTopic("old", 1, 1)])
    plan = read_plan(cluster, [], prune=True)
    cluster.committed["old"] = ["late-group"]  # a group commits between plan and apply
    report = apply_plan(plan, cluster, [], console=quiet())
    (result,) = report.results
    assert not result.ok
    assert "late-group have committed offsets on it" in str(result.error)
    assert "old" in cluster.topics
    assert "delete_topics" not in cluster.request_kinds()


def test_forced_delete_of_a_topic_with_offsets() -> None:
    cluster = FakeCluster([LiveTopic("old", 1, 1)], committed={"old": ["billing"]})
    with pytest.raises(UnsafePlanRefused, match="consumer groups billing have committed offsets"):
        apply_plan(read_plan(cluster, [], prune=True), cluster, [], console=quiet())
    report = apply_plan(
        read_plan(cluster, [], prune=True, force=True), cluster, [], force=True, console=quiet()
    )
    assert [r.line() for r in report.results] == ["deleted topic old"]
    assert cluster.topics == {}


def test_progress_is_printed_on_large_applies() -> None:
    out = io.StringIO()
    cluster = FakeCluster()
    desired = [TopicSettings(f"t{i}", 1, 1) for i in range(PROGRESS_THRESHOLD)]
    apply_plan(read_plan(cluster, desired), cluster, desired, console=Console(file=out, force_terminal=False))
    lines = out.getvalue().splitlines()
    assert lines[0] == f"creating topics: {PROGRESS_THRESHOLD}…"
    assert lines[1].startswith(f"creating topics: {PROGRESS_THRESHOLD} answered in ")


def test_progress_bar_on_a_terminal_advances_per_topic() -> None:
    out = io.StringIO()
    cluster = FakeCluster()
    desired = [TopicSettings(f"t{i}", 1, 1) for i in range(PROGRESS_THRESHOLD)]
    console = Console(file=out, force_terminal=True, width=100)
    report = apply_plan(read_plan(cluster, desired), cluster, desired, console=console)
    assert len(report.results) == PROGRESS_THRESHOLD
    assert f"{PROGRESS_THRESHOLD}/{PROGRESS_THRESHOLD}" in out.getvalue()


def test_small_applies_print_no_progress() -> None:
    out = io.StringIO()
    cluster = FakeCluster()
    desired = [TopicSettings("t", 1, 1)]
    apply_plan(read_plan(cluster, desired), cluster, desired, console=Console(file=out))
    assert out.getvalue() == ""


def test_apply_off_a_terminal_prints_plain_progress_without_importing_rich() -> None:
    """`kpipe apply --yes` in CI or a script: progress lines on stderr, and rich (a tenth of the CLI's own time
    on a 1,000-topic apply) is never imported."""
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).resolve().parents[1]
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(tests)!r})\n"
        "from fake_cluster import FakeCluster\n"
        "from kpipe.compilation.compiled import TopicSettings\n"
        "from kpipe.topics.apply import PROGRESS_THRESHOLD, apply_plan, read_plan\n"
        "cluster = FakeCluster()\n"
        "desired = [TopicSettings(f't{i}', 1, 1) for i in range(PROGRESS_THRESHOLD)]\n"
        "report = apply_plan(read_plan(cluster, desired), cluster, desired)\n"
        "assert len(report.results) == PROGRESS_THRESHOLD\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'rich'))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    lines = done.stderr.splitlines()
    assert lines[0] == f"creating topics: {PROGRESS_THRESHOLD}…"
    assert lines[1].startswith(f"creating topics: {PROGRESS_THRESHOLD} answered in ")

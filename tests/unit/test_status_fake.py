"""kpipe.observe.status against a fake cluster boundary: what Tansu cannot show (group members, rebalancing
states) and the lag rules, without a broker."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import pytest

from fake_cluster import FakeCluster
from kpipe.compilation.project import CompiledProject, load_project
from kpipe.observe.status import Status, read_status
from kpipe.topics.cluster import GroupDescription, GroupMember, GroupsAPI, Partition, Watermarks
from kpipe.topics.plan import LiveTopic


class FakeGroupsCluster(FakeCluster):
    """FakeCluster plus the consumer-group reads of kpipe.topics.cluster.GroupsAPI, from plain dicts."""

    def __init__(
        self,
        topics: Sequence[LiveTopic],
        groups: Mapping[str, GroupDescription] = (),  # type: ignore[assignment]
        committed: Mapping[str, Mapping[Partition, int]] | None = None,
        marks: Mapping[Partition, Watermarks] | None = None,
    ):
        super().__init__(topics)
        self.groups = dict(groups)
        self.offsets = {g: dict(o) for g, o in (committed or {}).items()}
        self.marks = dict(marks or {})
        self.watermark_starts: dict[Partition, int] = {}

    def describe_groups(self, groups: Sequence[str]) -> dict[str, GroupDescription]:
        return {g: self.groups.get(g, GroupDescription(g, "dead")) for g in groups}

    def committed_offsets(
        self, partitions_by_group: Mapping[str, Sequence[Partition]]
    ) -> dict[str, dict[Partition, int | None]]:
        return {
            g: {tp: self.offsets.get(g, {}).get(tp) for tp in tps} for g, tps in partitions_by_group.items()
        }

    def watermarks(
        self, partitions: Collection[Partition], start: Mapping[Partition, int] | None = None
    ) -> dict[Partition, Watermarks]:
        self.watermark_starts = dict(start or {})
        return {tp: self.marks.get(tp, Watermarks(0, 0)) for tp in partitions}


PROJECT = """\
cluster:
  bootstrap_servers: "fake:9092"
topics:
  orders:
    partitions: 2
    replication_factor: 1
    config:
      retention.ms: 60000
  refunds:
    partitions: 1
    replication_factor: 1
consumers:
  billing:
    topics: [orders]
    handler: app:handle
    on_error: {action: dead_letter}
  newest:
    topics: [orders, refunds]
    handler: app:handle
    auto_offset_reset: latest
    on_error: {action: skip}
"""


@pytest.fixture
def project(tmp_path: Path) -> CompiledProject:
    (tmp_path / "project.yaml").write_text(PROJECT)
    return load_project([tmp_path])


def cluster_with(**kwargs) -> FakeGroupsCluster:  # type: ignore[no-untyped-def]
    return FakeGroupsCluster(
        [LiveTopic("orders", 2, 1, {"retention.ms": "60000"})],
        marks={("orders", 0): Watermarks(100, 500), ("orders", 1): Watermarks(0, 300)},
        **kwargs,
    )


def test_the_fake_is_a_groups_api() -> None:
    assert isinstance(cluster_with(), GroupsAPI)


def test_members_client_ids_hosts_and_lag(project: CompiledProject) -> None:
    members = (
        GroupMember("kpipe-billing-0", "/10.0.0.1", (("orders", 0),)),
        GroupMember("kpipe-billing-1", "/10.0.0.2", (("orders", 1),)),
    )
    cluster = cluster_with(
        groups={"billing": GroupDescription("billing", "stable", members)},
        committed={"billing": {("orders", 0): 450, ("orders", 1): 300}, "newest": {("orders", 0): 480}},
    )
    status = read_status(cluster, [project.consumer_group("billing")], project.topic_settings())
    (group,) = status.groups
    assert (group.state, group.lag, group.no_committed_offset) == ("stable", 50, False)
    assert group.to_json()["members"] == 2
    assert group.to_json()["clients"] == [
        {
            "client_id": "kpipe-billing-0",
            "host": "/10.0.0.1",
            "partitions": [{"topic": "orders", "partition": 0}],
        },
        {
            "client_id": "kpipe-billing-1",
            "host": "/10.0.0.2",
            "partitions": [{"topic": "orders", "partition": 1}],
        },
    ]
    assert status.render_text().splitlines()[:3] == [
        "consumer group billing: stable, 2 members, lag 50",
        "  member kpipe-billing-0 on /10.0.0.1",
        "  member kpipe-billing-1 on /10.0.0.2",
    ]


def test_uncommitted_partitions_count_from_the_log_start_or_not_at_all_for_latest(
    project: CompiledProject,
) -> None:
    cluster = cluster_with(committed={"newest": {("orders", 0): 480}})
    status = read_status(cluster, project.consumer_groups(), project.topic_settings())
    billing, newest = status.groups
    # earliest (kpipe's default): everything from the log start is still to come.
    assert [(p.committed, p.lag) for p in billing.partitions] == [(None, 400), (None, 300)]
    assert billing.no_committed_offset
    # latest: a partition without offsets starts at the end, so nothing is owed on it.
    assert [(p.committed, p.lag) for p in newest.partitions] == [(480, 20), (None, 0)]
    assert newest.missing_topics == ("refunds",)
    assert "  topic refunds is not on the cluster" in status.render_text().splitlines()
    # Fetched from the furthest committed offset, the log start elsewhere.
    assert cluster.watermark_starts == {("orders", 0): 480}


def test_a_committed_offset_past_the_end_is_no_negative_lag(project: CompiledProject) -> None:
    cluster = cluster_with(committed={"billing": {("orders", 0): 900, ("orders", 1): 300}})
    status = read_status(cluster, [project.consumer_group("billing")], [])
    assert [p.lag for p in status.groups[0].partitions] == [0, 0]


def test_topic_verdicts_come_from_the_plan(project: CompiledProject) -> None:
    cluster = FakeGroupsCluster([LiveTopic("orders", 2, 1, {"retention.ms": "1000"})])
    status = read_status(cluster, [], project.topic_settings())
    verdicts = {t.topic: (t.verdict, t.changes, t.implicit) for t in status.topics}
    assert verdicts == {
        "billing.dlq": ("missing", (), True),
        "orders": ("differs", ("update config of topic orders",), False),
        "refunds": ("missing", (), False),
    }


def test_over_and_the_json_shape(project: CompiledProject) -> None:
    cluster = cluster_with(
        groups={"billing": GroupDescription("billing", "preparing_rebalance")},
        committed={"billing": {("orders", 0): 100, ("orders", 1): 0}},
    )
    status = read_status(cluster, [project.consumer_group("billing")], project.topic_settings())
    assert [g.group for g in status.over(699)] == ["billing"]
    assert status.over(700) == []
    data = json.loads(status.render_json())
    assert data["groups"][0] == {
        "group": "billing",
        "state": "preparing_rebalance",
        "members": 0,
        "clients": [],
        "lag": 700,
        "no_committed_offset": False,
        "missing_topics": [],
        "partitions": [
            {"topic": "orders", "partition": 0, "committed": 100, "end": 500, "lag": 400},
            {"topic": "orders", "partition": 1, "committed": 0, "end": 300, "lag": 300},
        ],
    }
    assert data["topics"][1] == {"topic": "orders", "status": "in_sync", "implicit": False, "changes": []}


def test_the_watch_view_renders(project: CompiledProject) -> None:
    from rich.console import Console

    status: Status = read_status(cluster_with(), project.consumer_groups(), project.topic_settings())
    console = Console(width=100, record=True, color_system=None)
    console.print(status.renderable(max_lag=10))
    text = console.export_text()
    assert "billing: dead, 0 members, lag 700" in text
    assert "missing" in text

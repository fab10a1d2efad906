"""`kpipe status`: where each declared consumer group stands, and whether each declared topic is on the cluster
as declared.

    read_status(cluster, groups, topics) -> Status       the only I/O: through the cluster boundary
    Status.render_text() / to_json() / renderable()      what `kpipe status` prints (text, json, --watch)
    Status.over(max_lag)                                 the groups whose total lag is above max_lag

Per group: its state and members (count, client ids, hosts), and per partition of the topics it subscribes to
the committed offset, the log-end offset and the lag. A partition with no committed offset is flagged; its lag
counts from the log start when the group would start there (auto_offset_reset: earliest, kpipe's default, or
error), and is 0 when it would start at the end (latest). Per declared topic: in sync, differs (with the plan's
changes) or missing, straight from the plan.

The JSON shape is stable (fields are only ever added):

    {"groups": [{"group": str, "state": str, "members": int,
                 "clients": [{"client_id": str, "host": str, "partitions": [{"topic": str, "partition": int}]}],
                 "lag": int, "no_committed_offset": bool, "missing_topics": [str],
                 "partitions": [{"topic": str, "partition": int, "committed": int | null, "end": int,
                                 "lag": int}]}],
     "topics": [{"topic": str, "status": "in_sync" | "differs" | "missing", "implicit": bool,
                 "changes": [str]}]}
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from rich.console import Group as RenderGroup
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from kpipe.compilation.compiled import ConsumerGroupSettings, TopicSettings
from kpipe.topics.cluster import GroupMember, GroupsAPI, Partition
from kpipe.topics.plan import ClusterState, CreateTopic, make_plan

TopicVerdict = Literal["in_sync", "differs", "missing"]
_VERDICT_TEXT = {"in_sync": "in sync", "differs": "differs", "missing": "missing"}


class StatusCluster(GroupsAPI, Protocol):
    """The cluster boundary as status uses it: topics (`describe`) and groups."""

    def describe(self, config_for: Sequence[str] = ()) -> ClusterState: ...


@dataclass(frozen=True)
class PartitionStatus:
    topic: str
    partition: int
    committed: int | None  # None: the group has committed nothing on this partition
    end: int
    lag: int

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "committed": self.committed,
            "end": self.end,
            "lag": self.lag,
        }


@dataclass(frozen=True)
class GroupStatus:
    group: str
    state: str
    members: tuple[GroupMember, ...]
    partitions: tuple[PartitionStatus, ...]
    # Subscribed topics that are not on the cluster (so they have no partitions to show).
    missing_topics: tuple[str, ...] = ()

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def no_committed_offset(self) -> bool:
        return any(p.committed is None for p in self.partitions)

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "state": self.state,
            "members": len(self.members),
            "clients": [
                {
                    "client_id": m.client_id,
                    "host": m.host,
                    "partitions": [{"topic": t, "partition": p} for t, p in m.partitions],
                }
                for m in self.members
            ],
            "lag": self.lag,
            "no_committed_offset": self.no_committed_offset,
            "missing_topics": list(self.missing_topics),
            "partitions": [p.to_json() for p in self.partitions],
        }


@dataclass(frozen=True)
class TopicStatus:
    topic: str
    verdict: TopicVerdict
    changes: tuple[str, ...] = ()  # the plan's summary of each change, for `differs`
    implicit: bool = False  # a dead-letter topic kpipe derived rather than one the files declare

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "status": self.verdict,
            "implicit": self.implicit,
            "changes": list(self.changes),
        }


@dataclass(frozen=True)
class Status:
    groups: tuple[GroupStatus, ...]
    topics: tuple[TopicStatus, ...]

    def over(self, max_lag: int) -> list[GroupStatus]:
        return [g for g in self.groups if g.lag > max_lag]

    def to_json(self) -> dict[str, Any]:
        return {"groups": [g.to_json() for g in self.groups], "topics": [t.to_json() for t in self.topics]}

    def render_json(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def render_text(self) -> str:
        lines: list[str] = []
        for g in self.groups:
            lines.append(f"consumer group {g.group}: {g.state}, {_members(g.members)}, lag {g.lag}")
            lines.extend(f"  member {m.client_id} on {m.host or '?'}" for m in g.members)
            rows = [("topic", "partition", "committed", "end", "lag", "")]
            rows += [
                (
                    p.topic,
                    str(p.partition),
                    "-" if p.committed is None else str(p.committed),
                    str(p.end),
                    str(p.lag),
                    "no committed offset" if p.committed is None else "",
                )
                for p in g.partitions
            ]
            if g.partitions:
                lines.extend("  " + line for line in _columns(rows))
            lines.extend(f"  topic {t} is not on the cluster" for t in g.missing_topics)
        if self.topics:
            lines.append("topics:")
            width = max(len(t.topic) for t in self.topics)
            for t in self.topics:
                note = f": {'; '.join(t.changes)}" if t.changes and t.verdict == "differs" else ""
                dlq = " (dead-letter topic)" if t.implicit else ""
                lines.append(f"  {t.topic:<{width}}  {_VERDICT_TEXT[t.verdict]}{note}{dlq}")
        return "\n".join(lines)

    def renderable(self, max_lag: int | None = None) -> RenderableType:
        """A rich table per group and one of topics, for `--watch`; lags above max_lag in red."""
        parts: list[RenderableType] = []
        for g in self.groups:
            over = max_lag is not None and g.lag > max_lag
            table = Table(
                title=Text(
                    f"{g.group}: {g.state}, {_members(g.members)}, lag {g.lag}", style="red" if over else ""
                ),
                title_justify="left",
            )
            for name in ("topic", "partition", "committed", "end", "lag"):
                table.add_column(name, justify="left" if name == "topic" else "right")
            for p in g.partitions:
                committed = Text("none", style="yellow") if p.committed is None else str(p.committed)
                table.add_row(p.topic, str(p.partition), committed, str(p.end), str(p.lag))
            for t in g.missing_topics:
                table.add_row(Text(t, style="red"), "-", "-", "-", "missing")
            parts.append(table)
        if self.topics:
            topics = Table(title="topics", title_justify="left")
            topics.add_column("topic")
            topics.add_column("status")
            style = {"in_sync": "green", "differs": "yellow", "missing": "red"}
            for t in self.topics:
                topics.add_row(t.topic, Text(_VERDICT_TEXT[t.verdict], style=style[t.verdict]))
            parts.append(topics)
        return RenderGroup(*parts)


def read_status(
    cluster: StatusCluster, groups: Sequence[ConsumerGroupSettings], topics: Sequence[TopicSettings]
) -> Status:
    """Read the cluster once: topics and their configs, the groups, their offsets, and the log ends."""
    live = cluster.describe(config_for=[t.name for t in topics])
    partitions_by_group: dict[str, list[Partition]] = {}
    for g in groups:
        partitions_by_group[g.group_id] = [
            (topic, p)
            for topic in g.topics
            if topic in live.topics
            for p in range(live.topics[topic].partitions)
        ]
    described = cluster.describe_groups([g.group_id for g in groups])
    committed = cluster.committed_offsets(partitions_by_group)
    # Fetch from the furthest committed offset: the nearest to the end, so the fewest bytes come back.
    start: dict[Partition, int] = {}
    for offsets in committed.values():
        for tp, offset in offsets.items():
            if offset is not None:
                start[tp] = max(offset, start.get(tp, offset))
    marks = cluster.watermarks({tp for tps in partitions_by_group.values() for tp in tps}, start)

    out: list[GroupStatus] = []
    for g in groups:
        from_start = g.client.get("auto.offset.reset", "earliest") != "latest"
        rows = []
        for tp in partitions_by_group[g.group_id]:
            mark = marks[tp]
            offset = committed.get(g.group_id, {}).get(tp)
            if offset is not None:
                lag = max(mark.high - offset, 0)
            else:
                lag = mark.high - mark.low if from_start else 0
            rows.append(PartitionStatus(tp[0], tp[1], offset, mark.high, lag))
        description = described.get(g.group_id)
        out.append(
            GroupStatus(
                g.group_id,
                description.state if description else "unknown",
                description.members if description else (),
                tuple(rows),
                tuple(t for t in g.topics if t not in live.topics),
            )
        )
    return Status(tuple(out), topic_statuses(topics, live))


def topic_statuses(topics: Sequence[TopicSettings], live: ClusterState) -> tuple[TopicStatus, ...]:
    """One verdict per declared topic, from the plan `kpipe plan` would show."""
    plan = make_plan(topics, live)
    changes: dict[str, list[Any]] = {}
    for change in plan.changes:
        changes.setdefault(change.topic, []).append(change)
    implicit: dict[str, bool] = {}
    for t in topics:  # a topic the files declare is not implicit, even when it is also a dead-letter topic
        implicit[t.name] = implicit.get(t.name, True) and t.implicit
    out = []
    for name in sorted(implicit):
        mine = changes.get(name, [])
        if any(isinstance(c, CreateTopic) for c in mine):
            out.append(TopicStatus(name, "missing", implicit=implicit[name]))
        elif mine:
            out.append(TopicStatus(name, "differs", tuple(c.summary() for c in mine), implicit[name]))
        else:
            out.append(TopicStatus(name, "in_sync", implicit=implicit[name]))
    return tuple(out)


def _members(members: Sequence[GroupMember]) -> str:
    return f"{len(members)} member{'' if len(members) == 1 else 's'}"


def _columns(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]

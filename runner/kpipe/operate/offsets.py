"""`kpipe offsets`: a consumer group's committed offsets reset as a plan, shown first and executed only when asked.

    plan_reset(...)                      pure: per partition, current → new, and how many events that puts back
                                         in front of the group (to read again) or skips
    read_reset_plan(cluster, reader, ...)  the plan for a group as the cluster stands (the only reads)
    ResetPlan.raise_if_unsafe()          UnsafePlanRefused (exit 4) while the group is active
    execute_reset(plan, cluster, admin)  checks the group again, commits the new offsets, reads them back

A group is active while it has members or its state is neither `empty` nor `dead` (a group that never existed
is `dead`). The embedded broker lists no members of an active group but reports its state (`stable`), so the
state is what decides; Apache Kafka also refuses to alter the offsets of a group with members.

Where a partition has no committed offset, or one outside the log (below its start once retention deleted it, or
past its end), the group would start where its auto_offset_reset says (the log start for earliest, kpipe's
default; the log end for latest): that is what the counts are measured from.

The JSON shape (fields are only ever added):

    {"group": str, "group_id": str, "target": str, "state": str, "members": int, "active": bool,
     "changes": int, "reread": int, "skipped": int,
     "partitions": [{"topic": str, "partition": int, "current": int | null, "new": int, "low": int,
                     "high": int, "reread": int, "skipped": int}]}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from kpipe.compilation.compiled import ConsumerGroupSettings
from kpipe.errors import ClusterError, UnsafePlanRefused, UsageError
from kpipe.operate.events import json_text
from kpipe.operate.positions import AtTime, Bounds, Position
from kpipe.operate.tail import ReadCluster, partitions_of
from kpipe.redaction import safe_text
from kpipe.runtime.records import RecordReader
from kpipe.topics.cluster import GroupDescription, Partition

IDLE_STATES = ("empty", "dead")


class OffsetsCluster(ReadCluster, Protocol):
    def describe_groups(self, groups: Sequence[str]) -> dict[str, GroupDescription]: ...

    def committed_offsets(
        self, partitions_by_group: Mapping[str, Sequence[Partition]]
    ) -> dict[str, dict[Partition, int | None]]: ...


class OffsetsAdmin(Protocol):
    def alter(self, group: str, offsets: Mapping[Partition, int]) -> None: ...


@dataclass(frozen=True)
class OffsetChange:
    topic: str
    partition: int
    current: int | None  # the committed offset; None: nothing committed
    new: int
    low: int
    high: int
    # Where the group stands now: its committed offset, or where it would start without one.
    starts_at: int

    @property
    def changed(self) -> bool:
        return self.current != self.new

    @property
    def reread(self) -> int:
        """Events put back in front of the group: read again."""
        return max(0, self.starts_at - self.new)

    @property
    def skipped(self) -> int:
        return max(0, self.new - self.starts_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "current": self.current,
            "new": self.new,
            "low": self.low,
            "high": self.high,
            "reread": self.reread,
            "skipped": self.skipped,
        }

    def render_text(self) -> str:
        if self.current is None:
            current = f"none (starts at {self.starts_at})"
        elif self.current != self.starts_at:
            current = f"{self.current} (outside the log: starts at {self.starts_at})"
        else:
            current = str(self.current)
        if not self.changed:
            effect = "unchanged"
        elif self.reread:
            effect = f"{self.reread} event(s) to read again"
        elif self.skipped:
            effect = f"{self.skipped} event(s) skipped"
        else:
            effect = "commits where it would start"
        return f"  {self.topic}[{self.partition}]  {current} → {self.new}  {effect}"


@dataclass(frozen=True)
class ResetPlan:
    group: str  # the name the files give it
    group_id: str
    target: str
    state: str
    members: int
    changes: tuple[OffsetChange, ...]

    @property
    def active(self) -> bool:
        return self.members > 0 or self.state not in IDLE_STATES

    @property
    def has_changes(self) -> bool:
        return any(c.changed for c in self.changes)

    @property
    def offsets(self) -> dict[Partition, int]:
        """The offsets to commit: the partitions that change."""
        return {(c.topic, c.partition): c.new for c in self.changes if c.changed}

    def why_active(self) -> str:
        members = f", {self.members} member(s)" if self.members else ""
        return (
            f"consumer group '{self.group}' (id {self.group_id}) is active (state {self.state}{members}): "
            "stop its consumers (every `kpipe run` of it) and wait until `kpipe status` shows it empty, then "
            "reset; offsets reset under running consumers would be overwritten by their next commit"
        )

    def raise_if_unsafe(self) -> None:
        if self.active:
            raise UnsafePlanRefused(self.why_active())

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "group_id": self.group_id,
            "target": self.target,
            "state": self.state,
            "members": self.members,
            "active": self.active,
            "changes": sum(c.changed for c in self.changes),
            "reread": sum(c.reread for c in self.changes),
            "skipped": sum(c.skipped for c in self.changes),
            "partitions": [c.to_json() for c in self.changes],
        }

    def render_json(self) -> str:
        return json_text(self.to_json(), indent=2)

    def render_text(self) -> str:
        lines = [
            f"Consumer group '{self.group}' (id {self.group_id}, state {self.state}): reset to {self.target}",
            *(c.render_text() for c in self.changes),
        ]
        changing = [c for c in self.changes if c.changed]
        if not changing:
            lines.append("Plan: no change; the group is already there.")
        else:
            reread, skipped = sum(c.reread for c in changing), sum(c.skipped for c in changing)
            lines.append(
                f"Plan: {len(changing)} of {len(self.changes)} partition(s) change: "
                f"{reread} event(s) to read again, {skipped} skipped."
            )
        return "\n".join(safe_text(line) for line in lines)


def plan_reset(
    name: str,
    group: ConsumerGroupSettings,
    target: Position,
    bounds: Mapping[Partition, Bounds],
    committed: Mapping[Partition, int | None],
    description: GroupDescription,
) -> ResetPlan:
    """The reset of `group` to `target` on each partition of `bounds`. `bounds[tp].current` is not needed: it is
    filled in here from `committed` and the group's auto_offset_reset."""
    starts_at_end = (group.client.get("auto.offset.reset") or "earliest") in ("latest", "largest", "end")
    changes = []
    for tp in sorted(bounds):
        b = bounds[tp]
        current = committed.get(tp)
        # Nothing committed, or a commit outside the log (retention deleted it, or the log was truncated): the
        # group starts where its auto_offset_reset says.
        in_log = current is not None and b.low <= current <= b.high
        starts_at = current if in_log else (b.high if starts_at_end else b.low)
        placed = Bounds(b.low, b.high, current=starts_at, at_time=b.at_time)
        changes.append(OffsetChange(tp[0], tp[1], current, target.offset(placed), b.low, b.high, starts_at))
    return ResetPlan(
        group=name,
        group_id=group.group_id,
        target=target.describe(),
        state=description.state,
        members=len(description.members),
        changes=tuple(changes),
    )


def parse_topic_selection(
    values: Iterable[str], group: ConsumerGroupSettings
) -> list[tuple[str, int | None]]:
    """`--topic T[:P]` values as (topic, partition or None); every topic must be one the group reads."""
    out: list[tuple[str, int | None]] = []
    for value in values:
        topic, sep, part = value.rpartition(":") if ":" in value else (value, "", "")
        if sep and not part.isdigit():
            raise UsageError(f"--topic {value!r}: expected TOPIC or TOPIC:PARTITION (a partition number)")
        if topic not in group.topics:
            reads = ", ".join(group.topics)
            raise UsageError(
                f"--topic {topic}: consumer group '{group.group_id}' does not read it (it reads {reads})"
            )
        out.append((topic, int(part) if sep else None))
    return out or [(t, None) for t in group.topics]


def read_reset_plan(
    cluster: OffsetsCluster,
    reader: RecordReader,
    group: ConsumerGroupSettings,
    name: str,
    target: Position,
    selection: Sequence[tuple[str, int | None]],
) -> ResetPlan:
    partitions: list[Partition] = []
    for topic, partition in selection:
        partitions += [tp for tp in partitions_of(cluster, topic, partition) if tp not in partitions]
    marks = cluster.watermarks(partitions)
    at_time: dict[Partition, int | None] = {}
    if isinstance(target, AtTime):
        hints = reader.offsets_for_time(partitions, target.timestamp_ms)
        # Exact, whatever the broker's granularity: the first event at or after the time, read from the hint.
        at_time = {
            tp: None
            if hint is None
            else reader.first_at_or_after(tp, max(hint, marks[tp].low), marks[tp].high, target.timestamp_ms)
            for tp, hint in hints.items()
        }
    bounds = {tp: Bounds(marks[tp].low, marks[tp].high, at_time=at_time.get(tp)) for tp in partitions}
    committed = cluster.committed_offsets({group.group_id: partitions})[group.group_id]
    description = cluster.describe_groups([group.group_id])[group.group_id]
    return plan_reset(name, group, target, bounds, committed, description)


def execute_reset(plan: ResetPlan, cluster: OffsetsCluster, admin: OffsetsAdmin) -> dict[Partition, int]:
    """Commit the plan's new offsets: the group is checked again first (it may have started since the plan was
    read), and the committed offsets are read back. Returns what was committed."""
    description = cluster.describe_groups([plan.group_id])[plan.group_id]
    if description.members or description.state not in IDLE_STATES:
        now = replace(plan, state=description.state, members=len(description.members))
        raise UnsafePlanRefused(now.why_active())
    offsets = plan.offsets
    admin.alter(plan.group_id, offsets)
    after = cluster.committed_offsets({plan.group_id: sorted(offsets)})[plan.group_id]
    wrong = {tp: got for tp, got in after.items() if got != offsets[tp]}
    if wrong:
        shown = ", ".join(
            f"{t}[{p}] is {got}, not {offsets[(t, p)]}" for (t, p), got in sorted(wrong.items())
        )
        raise ClusterError(f"the reset of consumer group '{plan.group}' did not hold: {shown}")
    return offsets

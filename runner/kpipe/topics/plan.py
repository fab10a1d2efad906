"""The plan: desired topics vs the live cluster, as an ordered list of typed changes. Pure; no I/O.

    make_plan(desired, live, prune=..., force=...) -> Plan
    Plan.changes            CreateTopic | UpdateConfig | IncreasePartitions | DeleteTopic
                            | DecreasePartitions | ChangeReplicationFactor
    Plan.refused            the changes kpipe will not make (Kafka cannot, or they need --force)
    Plan.raise_if_unsafe()  UnsafePlanRefused naming each of them
    render_text / to_json   what `kpipe plan` prints

Only the config keys a topic declares are compared, so broker defaults never show as drift. Names starting
with "_" (`__consumer_offsets`, `_schemas`, …) belong to the cluster and are never proposed for deletion.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kpipe.compilation.compiled import TopicSettings
from kpipe.errors import UnsafePlanRefused
from kpipe.redaction import reveal


# --- live state (what cluster.py reads; plain data so the plan stays pure) ---------------------------------
@dataclass(frozen=True)
class LiveTopic:
    name: str
    partitions: int
    replication_factor: int
    # The topic's config as the broker reports it. Apache Kafka includes defaults; Tansu only explicit keys.
    config: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterState:
    topics: Mapping[str, LiveTopic]
    # topic -> consumer groups with committed offsets on it; filled only when a deletion is being planned.
    committed_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def is_internal(topic: str) -> bool:
    return topic.startswith("_")


def moved_key_share(old: int, new: int) -> float:
    """Share of keys that map to another partition when a topic goes from `old` to `new` partitions.

    With hash % n partitioning and hashes uniform over [0, lcm(old, new)), a hash keeps its partition only
    when h % old == h % new == r, which (CRT) means h ≡ r mod lcm for one r < min(old, new): min(old, new)
    hashes out of lcm(old, new) stay.
    """
    if old <= 0 or new <= 0 or old == new:
        return 0.0
    return 1.0 - min(old, new) / math.lcm(old, new)


# --- changes ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConfigDiff:
    key: str
    old: str | None  # None: not set on the broker (or the broker did not report it)
    new: str


@dataclass(frozen=True)
class Change:
    topic: str
    # Why kpipe will not make this change; None when it will.
    refused: str | None = None

    kind = "change"
    symbol = "?"
    order = 9

    @property
    def is_refused(self) -> bool:
        return self.refused is not None

    def summary(self) -> str:
        raise NotImplementedError

    def details(self) -> list[str]:
        return []

    def warnings(self) -> list[str]:
        return []

    def data(self) -> dict[str, Any]:
        return {}

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.kind,
            "topic": self.topic,
            **self.data(),
            "refused": self.refused,
            "warnings": self.warnings(),
        }


@dataclass(frozen=True)
class CreateTopic(Change):
    partitions: int = 1
    replication_factor: int = 1
    config: Mapping[str, str] = field(default_factory=dict)
    implicit: bool = False

    kind = "create_topic"
    symbol = "+"
    order = 0

    def summary(self) -> str:
        dlq = ", dead-letter topic" if self.implicit else ""
        return (
            f"create topic {self.topic} "
            f"(partitions {self.partitions}, replication {_rf(self.replication_factor)}{dlq})"
        )

    def details(self) -> list[str]:
        return [f"{k} = {v}" for k, v in sorted(self.config.items())]

    def data(self) -> dict[str, Any]:
        return {
            "partitions": self.partitions,
            "replication_factor": self.replication_factor,
            "config": dict(sorted(self.config.items())),
            "implicit": self.implicit,
        }


@dataclass(frozen=True)
class UpdateConfig(Change):
    diffs: tuple[ConfigDiff, ...] = ()

    kind = "update_config"
    symbol = "~"
    order = 1

    def summary(self) -> str:
        return f"update config of topic {self.topic}"

    def details(self) -> list[str]:
        return [f"{d.key}: {'(unset)' if d.old is None else d.old} -> {d.new}" for d in self.diffs]

    def data(self) -> dict[str, Any]:
        return {"config": [{"key": d.key, "old": d.old, "new": d.new} for d in self.diffs]}


@dataclass(frozen=True)
class IncreasePartitions(Change):
    old: int = 0
    new: int = 0
    key_field: str | None = None

    kind = "increase_partitions"
    symbol = "~"
    order = 2

    @property
    def moved_share(self) -> float:
        return moved_key_share(self.old, self.new)

    def summary(self) -> str:
        return f"increase partitions of topic {self.topic}: {self.old} -> {self.new}"

    def warnings(self) -> list[str]:
        if self.key_field is None:
            return []
        return [
            f"topic {self.topic} is keyed by '{self.key_field}': about {self.moved_share:.0%} of keys will "
            "move to another partition, so per-key ordering is not kept across the change"
        ]

    def data(self) -> dict[str, Any]:
        return {
            "old_partitions": self.old,
            "new_partitions": self.new,
            "key_field": self.key_field,
            "moved_key_share": round(self.moved_share, 4) if self.key_field else None,
        }


@dataclass(frozen=True)
class DeleteTopic(Change):
    partitions: int = 0
    committed_groups: tuple[str, ...] = ()

    kind = "delete_topic"
    symbol = "-"
    order = 3

    def summary(self) -> str:
        return f"delete topic {self.topic} (partitions {self.partitions}; no file declares it)"

    def warnings(self) -> list[str]:
        if not self.committed_groups or self.is_refused:
            return []
        return [f"consumer groups with committed offsets on it: {', '.join(self.committed_groups)}"]

    def data(self) -> dict[str, Any]:
        return {"partitions": self.partitions, "committed_groups": list(self.committed_groups)}


@dataclass(frozen=True)
class DecreasePartitions(Change):
    old: int = 0
    new: int = 0

    kind = "decrease_partitions"
    symbol = "!"
    order = 4

    def summary(self) -> str:
        return f"decrease partitions of topic {self.topic}: {self.old} -> {self.new}"

    def data(self) -> dict[str, Any]:
        return {"old_partitions": self.old, "new_partitions": self.new}


@dataclass(frozen=True)
class ChangeReplicationFactor(Change):
    old: int = 0
    new: int = 0

    kind = "change_replication_factor"
    symbol = "!"
    order = 4

    def summary(self) -> str:
        return f"change replication factor of topic {self.topic}: {self.old} -> {self.new}"

    def data(self) -> dict[str, Any]:
        return {"old_replication_factor": self.old, "new_replication_factor": self.new}


# --- the plan -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    # Topics on the cluster that no file declares and that were not proposed for deletion (no --prune).
    undeclared: tuple[str, ...] = ()
    # Declared topics that already match.
    unchanged: tuple[str, ...] = ()

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    @property
    def refused(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.is_refused)

    @property
    def actionable(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if not c.is_refused)

    def of_kind(self, kind: type[Change]) -> list[Any]:
        return [c for c in self.actionable if isinstance(c, kind)]

    def warnings(self) -> list[str]:
        return [w for c in self.changes for w in c.warnings()]

    def raise_if_unsafe(self) -> None:
        refused = self.refused
        if not refused:
            return
        if len(refused) == 1:
            raise UnsafePlanRefused(f"refusing to {refused[0].summary()}: {refused[0].refused}")
        # The plan printed above lists each one with its reason; one line here says what happened.
        topics = sorted({c.topic for c in refused})
        shown = ", ".join(topics[:5]) + (f" and {len(topics) - 5} more" if len(topics) > 5 else "")
        raise UnsafePlanRefused(f"refusing {len(refused)} changes (topics {shown}); see the plan for why")

    def counts(self) -> dict[str, int]:
        return {
            "create": len(self.of_kind(CreateTopic)),
            "update": len(self.of_kind(UpdateConfig)) + len(self.of_kind(IncreasePartitions)),
            "delete": len(self.of_kind(DeleteTopic)),
            "refused": len(self.refused),
        }

    def summary_line(self) -> str:
        if not self.changes:
            return f"No changes: the cluster matches the files ({len(self.unchanged)} topics)."
        n = self.counts()
        text = f"Plan: {n['create']} to create, {n['update']} to update, {n['delete']} to delete"
        if n["refused"]:
            text += f", {n['refused']} refused"
        return text + "."

    def render_text(self) -> str:
        lines: list[str] = []
        for c in self.changes:
            prefix = "!" if c.is_refused else c.symbol
            lines.append(f"{prefix} {c.summary()}")
            lines.extend(f"    {d}" for d in c.details())
            if c.refused:
                lines.append(f"    refused: {c.refused}")
            lines.extend(f"    warning: {w}" for w in c.warnings())
        if self.undeclared:
            n = len(self.undeclared)
            lines.append(
                f"{n} topic{'s' if n != 1 else ''} on the cluster not declared in any file "
                "(not shown; pass --prune to list them for deletion)"
            )
        lines.append(self.summary_line())
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "has_changes": self.has_changes,
            "summary": self.counts(),
            "changes": [c.to_json() for c in self.changes],
            "unchanged": list(self.unchanged),
            "undeclared": len(self.undeclared),
        }

    def render_json(self) -> str:
        return json.dumps(self.to_json(), indent=2)


def make_plan(
    desired: Sequence[TopicSettings],
    live: ClusterState,
    *,
    prune: bool = False,
    force: bool = False,
) -> Plan:
    """Compare desired topics with the live cluster. `force` allows deleting topics that groups still use."""
    changes: list[Change] = []
    unchanged: list[str] = []
    declared = {spec.name for spec in desired}
    for spec in _unique(desired):
        current = live.topics.get(spec.name)
        if current is None:
            changes.append(
                CreateTopic(
                    spec.name,
                    partitions=spec.partitions,
                    replication_factor=spec.replication_factor,
                    config=dict(spec.config),
                    implicit=spec.implicit,
                )
            )
            continue
        topic_changes = list(_topic_changes(spec, current))
        changes.extend(topic_changes)
        if not topic_changes:
            unchanged.append(spec.name)

    orphans = sorted(n for n in live.topics if n not in declared and not is_internal(n))
    if prune:
        for name in orphans:
            groups = tuple(sorted(live.committed_groups.get(name, ())))
            refused = None
            if groups and not force:
                refused = (
                    f"consumer groups {', '.join(groups)} have committed offsets on it; "
                    "pass --force to delete it anyway"
                )
            changes.append(
                DeleteTopic(
                    name, refused=refused, partitions=live.topics[name].partitions, committed_groups=groups
                )
            )
    changes.sort(key=lambda c: (c.order, c.topic))
    return Plan(
        tuple(changes), undeclared=() if prune else tuple(orphans), unchanged=tuple(sorted(unchanged))
    )


def _topic_changes(spec: TopicSettings, current: LiveTopic) -> Iterable[Change]:
    if spec.implicit:
        # A derived dead-letter topic's partitions and replication are only a choice made when creating it;
        # once it exists, whatever it has is right (the user can declare it to manage it).
        return
    if spec.partitions > current.partitions:
        yield IncreasePartitions(
            spec.name, old=current.partitions, new=spec.partitions, key_field=spec.key_field
        )
    elif spec.partitions < current.partitions:
        yield DecreasePartitions(
            spec.name,
            refused="Kafka cannot remove partitions from a topic; "
            "recreate it under a new name (or delete it) to have fewer",
            old=current.partitions,
            new=spec.partitions,
        )
    # replication_factor <= 0 means "the broker's default": nothing to compare.
    if spec.replication_factor > 0 and spec.replication_factor != current.replication_factor:
        yield ChangeReplicationFactor(
            spec.name,
            refused="changing the replication factor needs a partition reassignment, "
            "which kpipe does not do; use kafka-reassign-partitions",
            old=current.replication_factor,
            new=spec.replication_factor,
        )
    diffs = tuple(
        ConfigDiff(key, current.config.get(key), str(value))
        for key, value in sorted(spec.config.items())
        if current.config.get(key) != reveal(str(value), remember=False)  # an env() token: its real value
    )
    if diffs:
        yield UpdateConfig(spec.name, diffs=diffs)


def _unique(specs: Sequence[TopicSettings]) -> list[TopicSettings]:
    # The check step rejects duplicate declarations; a declared topic wins over an implicit dead-letter one.
    by_name: dict[str, TopicSettings] = {}
    for spec in specs:
        if spec.name not in by_name or by_name[spec.name].implicit:
            by_name[spec.name] = spec
    return list(by_name.values())


def _rf(replication_factor: int) -> str:
    return str(replication_factor) if replication_factor > 0 else "broker default"

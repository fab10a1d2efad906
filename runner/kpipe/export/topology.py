"""Who produces what and who consumes it: the edges every export draws, read from a compiled project.

producer ──send──▶ topic ──receive──▶ consumer group ──dead letters / emits──▶ topic
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from kpipe.compilation.compiled import ConsumerGroupSettings, ProducerSettings, TopicSettings

EdgeKind = Literal["send", "receive", "dead_letter", "emit"]


@dataclass(frozen=True)
class Edge:
    kind: EdgeKind
    source: str  # a producer or group name for send/dead_letter/emit, a topic for receive
    target: str


@dataclass(frozen=True)
class Topology:
    topics: tuple[TopicSettings, ...]
    producers: tuple[ProducerSettings, ...]
    groups: tuple[ConsumerGroupSettings, ...]

    def topic(self, name: str) -> TopicSettings | None:
        return next((t for t in self.topics if t.name == name), None)

    def edges(self) -> list[Edge]:
        out = [Edge("send", p.name, p.topic) for p in self.producers]
        for group in self.groups:
            out += [Edge("receive", topic, group.group_id) for topic in group.topics]
            if group.on_error.dead_letter_topic:
                out.append(Edge("dead_letter", group.group_id, group.on_error.dead_letter_topic))
            out += [Edge("emit", group.group_id, topic) for topic in group.emits]
        return out

    def dead_letter_sources(self, topic: str) -> list[ConsumerGroupSettings]:
        """The groups whose failed events go to `topic`."""
        return [g for g in self.groups if g.on_error.dead_letter_topic == topic]


def topology(project: Any) -> Topology:
    """The compiled topics, producers and groups of a loaded kpipe Project, each sorted by name."""
    return Topology(
        topics=tuple(project.topic_settings()),
        producers=tuple(project.producer_settings(n) for n in project.producer_names()),
        groups=tuple(project.consumer_groups()),
    )


def partitions_read(topology: Topology, group: ConsumerGroupSettings) -> int:
    """The most partitions of any topic the group reads: members beyond that sit idle."""
    return max((t.partitions for name in group.topics if (t := topology.topic(name))), default=1)


def commit_label(group: ConsumerGroupSettings) -> str:
    commit = group.commit
    if commit.strategy == "batch":
        return f"batch commit ({commit.batch_size} / {commit.interval_ms} ms)"
    if commit.strategy == "auto":
        return f"auto commit ({commit.interval_ms} ms)"
    return "commit per message"

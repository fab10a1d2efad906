"""FakeCluster: an in-memory stand-in for kpipe.topics.cluster.KafkaCluster, implementing the same ClusterAPI protocol.

It exists for behaviour the embedded Tansu broker lacks (CreatePartitions) and for failures that are hard to
provoke on a real broker (one topic of a batch failing, a topic created by someone else mid-apply). It records
every request so tests can check batching.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

from kpipe.errors import ClusterError, UnsafePlanRefused
from kpipe.topics.cluster import GroupDescription, GroupMember, ResultCallback, TopicResult, Watermarks
from kpipe.topics.plan import ClusterState, ConfigDiff, CreateTopic, LiveTopic


class FakeCluster:
    bootstrap = "fake:9092"

    def __init__(
        self, topics: Sequence[LiveTopic] = (), committed: Mapping[str, Sequence[str]] | None = None
    ):
        self.topics: dict[str, LiveTopic] = {t.name: t for t in topics}
        # topic -> groups with committed offsets on it
        self.committed: dict[str, list[str]] = {k: list(v) for k, v in (committed or {}).items()}
        self.requests: list[tuple[str, list[str]]] = []
        # topic -> error code name: the next request touching that topic fails for it with this code
        self.fail: dict[str, str] = {}
        # topics another client "creates" between our plan and our CreateTopics request
        self.created_concurrently: dict[str, LiveTopic] = {}
        self.closed = False

    # --- ClusterAPI ---
    def describe(self, config_for: Collection[str] = ()) -> ClusterState:
        self.requests.append(("describe", sorted(config_for)))
        wanted = set(config_for)
        return ClusterState({n: t if n in wanted else replace(t, config={}) for n, t in self.topics.items()})

    def committed_groups(self, topics: Collection[str]) -> dict[str, tuple[str, ...]]:
        return {t: tuple(sorted(self.committed[t])) for t in topics if self.committed.get(t)}

    def create_topics(
        self, topics: Sequence[CreateTopic], on_result: ResultCallback | None = None
    ) -> list[TopicResult]:
        self.requests.append(("create_topics", [t.topic for t in topics]))
        self.topics.update(self.created_concurrently)
        out = []
        for t in topics:
            if (result := self._failure(t.topic)) is None:
                if t.topic in self.topics:
                    result = TopicResult(t.topic, ok=True, already_existed=True)
                else:
                    self.topics[t.topic] = LiveTopic(
                        t.topic, t.partitions, t.replication_factor, dict(t.config)
                    )
                    result = TopicResult(t.topic, ok=True)
            out.append(self._report(result, on_result))
        return out

    def alter_configs(
        self, updates: Mapping[str, Sequence[ConfigDiff]], on_result: ResultCallback | None = None
    ) -> list[TopicResult]:
        self.requests.append(("alter_configs", sorted(updates)))
        out = []
        for topic, diffs in updates.items():
            if (result := self._failure(topic)) is None:
                t = self.topics[topic]
                self.topics[topic] = replace(t, config={**t.config, **{d.key: d.new for d in diffs}})
                result = TopicResult(topic, ok=True)
            out.append(self._report(result, on_result))
        return out

    def create_partitions(
        self, totals: Mapping[str, int], on_result: ResultCallback | None = None
    ) -> list[TopicResult]:
        self.requests.append(("create_partitions", sorted(totals)))
        out = []
        for topic, total in totals.items():
            if (result := self._failure(topic)) is None:
                if total <= self.topics[topic].partitions:
                    result = self._error(topic, "INVALID_PARTITIONS")
                else:
                    self.topics[topic] = replace(self.topics[topic], partitions=total)
                    result = TopicResult(topic, ok=True)
            out.append(self._report(result, on_result))
        return out

    def delete_topics(
        self, names: Sequence[str], on_result: ResultCallback | None = None
    ) -> list[TopicResult]:
        self.requests.append(("delete_topics", sorted(names)))
        out = []
        for name in names:
            if (result := self._failure(name)) is None:
                if self.topics.pop(name, None) is None:
                    result = self._error(name, "UNKNOWN_TOPIC_OR_PART")
                else:
                    result = TopicResult(name, ok=True)
            out.append(self._report(result, on_result))
        return out

    def close(self) -> None:
        self.closed = True

    # --- helpers ---
    def _failure(self, topic: str) -> TopicResult | None:
        code = self.fail.pop(topic, None)
        return None if code is None else self._error(topic, code)

    @staticmethod
    def _error(topic: str, code: str) -> TopicResult:
        return TopicResult(
            topic, ok=False, error=ClusterError(f"fake broker refused {topic} ({code})", code=code)
        )

    @staticmethod
    def _report(result: TopicResult, on_result: ResultCallback | None) -> TopicResult:
        if on_result is not None:
            on_result(result)
        return result

    def request_kinds(self) -> list[str]:
        return [kind for kind, _ in self.requests if kind != "describe"]


class FakeGroups:
    """A fake of the cluster as `kpipe offsets` and `kpipe dlq replay` use it (OffsetsCluster and OffsetsAdmin),
    for what only Apache Kafka shows: an active group's members, and AlterConsumerGroupOffsets refused while the
    group has them. The embedded broker lists no members and accepts the alter."""

    def __init__(
        self,
        partitions: Mapping[str, int],
        marks: Mapping[tuple[str, int], tuple[int, int]],
        committed: Mapping[str, Mapping[tuple[str, int], int]] | None = None,
    ):
        self.partitions = dict(partitions)
        self.marks = dict(marks)
        self.committed: dict[str, dict[tuple[str, int], int]] = {
            g: dict(o) for g, o in (committed or {}).items()
        }
        # group -> (state, member client ids)
        self.groups: dict[str, tuple[str, tuple[str, ...]]] = {}
        self.altered: list[tuple[str, dict[tuple[str, int], int]]] = []

    def describe(self, config_for: Collection[str] = ()) -> ClusterState:
        return ClusterState({t: LiveTopic(t, n, 1) for t, n in self.partitions.items()})

    def watermarks(
        self, partitions: Collection[tuple[str, int]], start: Mapping[tuple[str, int], int] | None = None
    ) -> dict[tuple[str, int], Watermarks]:
        return {tp: Watermarks(*self.marks[tp]) for tp in partitions}

    def describe_groups(self, groups: Sequence[str]) -> dict[str, GroupDescription]:
        out = {}
        for g in groups:
            state, members = self.groups.get(g, ("dead", ()))
            out[g] = GroupDescription(g, state, tuple(GroupMember(m, "/10.0.0.1") for m in members))
        return out

    def committed_offsets(
        self, partitions_by_group: Mapping[str, Sequence[tuple[str, int]]]
    ) -> dict[str, dict[tuple[str, int], int | None]]:
        return {
            g: {tp: self.committed.get(g, {}).get(tp) for tp in tps} for g, tps in partitions_by_group.items()
        }

    def group_ids(self, prefix: str) -> list[str]:
        return sorted(g for g in {*self.committed, *self.groups} if g.startswith(prefix))

    def committed_groups(self, topics: Collection[str]) -> dict[str, tuple[str, ...]]:
        found = {
            t: tuple(sorted(g for g, o in self.committed.items() if any(tp[0] == t for tp in o)))
            for t in topics
        }
        return {t: gs for t, gs in found.items() if gs}

    # OffsetsAdmin
    def alter(self, group: str, offsets: Mapping[tuple[str, int], int]) -> None:
        if self.groups.get(group, ("dead", ()))[1]:
            raise UnsafePlanRefused(f"consumer group '{group}' is active (the broker says UNKNOWN_MEMBER_ID)")
        self.altered.append((group, dict(offsets)))
        self.committed.setdefault(group, {}).update(offsets)

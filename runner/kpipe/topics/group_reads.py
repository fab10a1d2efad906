"""Consumer groups as the cluster reports them, for `kpipe status`: their state and members, their committed
offsets, and each partition's log-end offset (`GroupsAPI`; `GroupReads` implements it for KafkaCluster).

The log-end offset is the high watermark a *fetch* reports: Tansu answers ListOffsets "latest" with the last
batch's base offset + 1 (measured: 501 and 1 for partitions holding 510 and 500 records), while a fetch from any
offset reports the true high watermark (510 and 500) on Tansu and on Apache Kafka alike. So a short-lived
consumer, outside any group, fetches one byte per partition.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from confluent_kafka import (
    OFFSET_BEGINNING,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from kpipe.errors import ClusterError
from kpipe.topics.kafka_errors import UNREACHABLE, error_of, translate

_GROUP_STATES = {
    ConsumerGroupState.UNKNOWN: "unknown",
    ConsumerGroupState.PREPARING_REBALANCING: "preparing_rebalance",
    ConsumerGroupState.COMPLETING_REBALANCING: "completing_rebalance",
    ConsumerGroupState.STABLE: "stable",
    ConsumerGroupState.DEAD: "dead",
    ConsumerGroupState.EMPTY: "empty",
}
# The group.id of the consumer that reads high watermarks. confluent-kafka insists on one; the consumer only
# assigns partitions, so it never joins this group nor commits to it.
WATERMARK_PROBE_GROUP = "kpipe-status-probe"

Partition = tuple[str, int]  # (topic, partition)


@dataclass(frozen=True)
class GroupMember:
    client_id: str
    host: str
    partitions: tuple[Partition, ...] = ()


@dataclass(frozen=True)
class GroupDescription:
    """A consumer group as the coordinator describes it. Tansu lists no members, even for an active group."""

    group: str
    # stable | empty | dead | preparing_rebalance | completing_rebalance | unknown
    state: str
    members: tuple[GroupMember, ...] = ()


@dataclass(frozen=True)
class Watermarks:
    """A partition's log-start (low) and log-end (high) offsets, as a fetch reports them."""

    low: int
    high: int


ConsumerFactory = Callable[[dict[str, Any]], Any]


@runtime_checkable
class GroupsAPI(Protocol):
    """What `kpipe status` needs besides `describe`. Real: KafkaCluster. Tests: a fake with the same methods."""

    def describe_groups(self, groups: Sequence[str]) -> dict[str, GroupDescription]: ...

    def committed_offsets(
        self, partitions_by_group: Mapping[str, Sequence[Partition]]
    ) -> dict[str, dict[Partition, int | None]]:
        """group -> partition -> its committed offset, None when it has none."""
        ...

    def watermarks(
        self, partitions: Collection[Partition], start: Mapping[Partition, int] | None = None
    ) -> dict[Partition, Watermarks]:
        """The true log-start and log-end offsets of each partition. `start`: where to fetch from (a committed
        offset is cheapest: it is near the end); the log start otherwise."""
        ...


class GroupReads:
    """GroupsAPI for KafkaCluster, over its admin client and a short-lived watermark consumer."""

    bootstrap: str
    timeout: float
    request_timeout: float
    _admin: Any
    _client_config: dict[str, Any]
    _consumer_factory: ConsumerFactory
    _call: Callable[[str, Callable[[], Any]], Any]
    _result: Callable[[Any, str], Any]

    def describe_groups(self, groups: Sequence[str]) -> dict[str, GroupDescription]:
        if not groups:
            return {}
        futures = self._call(
            "describing consumer groups",
            lambda: self._admin.describe_consumer_groups(list(groups), request_timeout=self.request_timeout),
        )
        out: dict[str, GroupDescription] = {}
        for group, future in futures.items():
            try:
                described = self._result(future, f"describing consumer group {group}")
            except ClusterError as exc:
                if exc.code != "GROUP_ID_NOT_FOUND":
                    raise
                out[group] = GroupDescription(group, "dead")
                continue
            members = tuple(
                GroupMember(
                    m.client_id,
                    m.host,
                    tuple(sorted((tp.topic, tp.partition) for tp in (m.assignment.topic_partitions or ()))),
                )
                for m in described.members or ()
            )
            out[group] = GroupDescription(group, _GROUP_STATES.get(described.state, "unknown"), members)
        return out

    def committed_offsets(
        self, partitions_by_group: Mapping[str, Sequence[Partition]]
    ) -> dict[str, dict[Partition, int | None]]:
        # librdkafka takes one group per ListConsumerGroupOffsets request; send them all, then wait.
        futures = {
            group: next(
                iter(
                    self._call(
                        "listing committed offsets",
                        lambda g=group, ps=partitions: self._admin.list_consumer_group_offsets(
                            [ConsumerGroupTopicPartitions(g, [TopicPartition(t, p) for t, p in ps])],
                            request_timeout=self.request_timeout,
                        ),
                    ).values()
                )
            )
            for group, partitions in partitions_by_group.items()
            if partitions
        }
        out: dict[str, dict[Partition, int | None]] = {
            group: dict.fromkeys(partitions) for group, partitions in partitions_by_group.items()
        }
        for group, future in futures.items():
            try:
                result = self._result(future, f"listing the committed offsets of group {group}")
            except ClusterError as exc:
                if exc.code == "GROUP_ID_NOT_FOUND":
                    continue  # no such group: it has committed nothing
                raise
            for tp in result.topic_partitions or ():
                if tp.error is not None:
                    raise translate(
                        tp.error,
                        f"reading the committed offset of group {group} on {tp.topic}[{tp.partition}]",
                    )
                out[group][(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else None
        return out

    def watermarks(
        self, partitions: Collection[Partition], start: Mapping[Partition, int] | None = None
    ) -> dict[Partition, Watermarks]:
        wanted = sorted(set(partitions))
        if not wanted:
            return {}
        start = start or {}
        config = {
            **self._client_config,
            "group.id": WATERMARK_PROBE_GROUP,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",  # a start beyond the log (a recreated topic): fetch from the start
            # The log end, not the last stable offset: lag as `kafka-consumer-groups --describe` counts it.
            "isolation.level": "read_uncommitted",
            "max.partition.fetch.bytes": 1,  # the answer's header is what counts, not the records
            "fetch.wait.max.ms": 10,
        }
        try:
            consumer = self._consumer_factory(config)
        except KafkaException as exc:
            error = error_of(exc)
            if error is None:
                raise
            raise ClusterError(f"invalid client configuration: {error.str()}", code=error.name()) from None
        try:
            return self._fetch_watermarks(consumer, wanted, start)
        finally:
            consumer.close()

    def _fetch_watermarks(
        self, consumer: Any, wanted: Sequence[Partition], start: Mapping[Partition, int]
    ) -> dict[Partition, Watermarks]:
        self._call(
            "assigning partitions",
            lambda: consumer.assign(
                [TopicPartition(t, p, start.get((t, p), OFFSET_BEGINNING)) for t, p in wanted]
            ),
        )
        found: dict[Partition, Watermarks] = {}
        deadline = time.monotonic() + self.timeout
        while len(found) < len(wanted):
            # consume() drives the fetches; the records themselves (one byte's worth) are dropped.
            for message in consumer.consume(1000, 0.05):
                error = message.error()
                if error is not None and error.code() in UNREACHABLE | {KafkaError.UNKNOWN_TOPIC_OR_PART}:
                    raise translate(error, "fetching from the log end", self.bootstrap, self.timeout)
            for topic, partition in wanted:
                if (topic, partition) in found:
                    continue
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
                if high >= 0:
                    found[(topic, partition)] = Watermarks(max(low, 0), high)
            if len(found) < len(wanted) and time.monotonic() >= deadline:
                missing = [f"{t}[{p}]" for t, p in wanted if (t, p) not in found]
                shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                raise ClusterError(
                    f"no log-end offset for {shown} within {self.timeout:g} s",
                    code="_TIMED_OUT",
                    retriable=True,
                )
        return found

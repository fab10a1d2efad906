"""The cluster boundary for changing a consumer group's committed offsets (`kpipe offsets`, `kpipe dlq replay`),
and for finding groups by the start of their id (`group_ids`: the replay cursors of a dead-letter topic).

`GroupOffsetsAdmin.alter(group, offsets)` commits offsets for a group from outside it, with the admin API's
AlterConsumerGroupOffsets. Apache Kafka refuses that while the group has members (UNKNOWN_MEMBER_ID, or
REBALANCE_IN_PROGRESS while it rebalances); kpipe checks the group's state first, because the embedded broker
accepts it even for an active group. Either way, an active group ends as UnsafePlanRefused (exit 4), never as a
reset applied under a running consumer. Errors are translated by code with `translate`, as in cluster.py.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from kpipe.errors import ClusterError, UnsafePlanRefused
from kpipe.topics.cluster import DEFAULT_REQUEST_TIMEOUT_S, Partition, translate

# What Apache Kafka answers when offsets are altered for a group that has members.
_GROUP_ACTIVE = {KafkaError.UNKNOWN_MEMBER_ID, KafkaError.REBALANCE_IN_PROGRESS}
AdminFactory = Callable[[dict[str, Any]], Any]


class GroupOffsetsAdmin:
    """Commits offsets for a consumer group from outside it. `admin_factory` builds the AdminClient (tests may
    pass a fake)."""

    def __init__(
        self,
        client_config: Mapping[str, str],
        *,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
        admin_factory: AdminFactory = AdminClient,
    ):
        self.bootstrap = str(client_config.get("bootstrap.servers", ""))
        self.request_timeout = request_timeout
        config: dict[str, Any] = {**client_config}
        config.setdefault("client.id", "kpipe-admin")
        try:
            self._admin = admin_factory(config)
        except KafkaException as exc:
            error = exc.args[0]
            raise ClusterError(f"invalid client configuration: {error.str()}", code=error.name()) from None

    def alter(self, group: str, offsets: Mapping[Partition, int]) -> None:
        """Set `group`'s committed offset of each partition. UnsafePlanRefused when the broker says the group is
        active; ClusterError for anything else, naming the partition."""
        if not offsets:
            return
        request = ConsumerGroupTopicPartitions(
            group, [TopicPartition(t, p, offset) for (t, p), offset in sorted(offsets.items())]
        )
        context = f"resetting the offsets of consumer group '{group}'"
        try:
            futures = self._admin.alter_consumer_group_offsets(
                [request], request_timeout=self.request_timeout
            )
            result = next(iter(futures.values())).result(timeout=self.request_timeout + 5)
        except concurrent.futures.TimeoutError:
            raise ClusterError(
                f"{context}: no answer within {self.request_timeout:g} s; the offsets may or may not be reset "
                "(see `kpipe status`)",
                code="_TIMED_OUT",
                retriable=True,
            ) from None
        except KafkaException as exc:
            raise self._translate(exc.args[0], group, context) from None
        for tp in result.topic_partitions or ():
            if tp.error is not None:
                raise self._translate(tp.error, group, f"{context} on {tp.topic}[{tp.partition}]")

    def group_ids(self, prefix: str) -> list[str]:
        """The ids of the consumer groups whose id starts with `prefix` (one ListGroups request; no group's
        offsets are read, so this stays cheap on a cluster with thousands of groups)."""
        context = "listing consumer groups"
        try:
            future = self._admin.list_consumer_groups(request_timeout=self.request_timeout)
            listing = future.result(timeout=self.request_timeout + 5)
        except concurrent.futures.TimeoutError:
            raise ClusterError(
                f"{context}: no answer within {self.request_timeout:g} s", code="_TIMED_OUT", retriable=True
            ) from None
        except KafkaException as exc:
            raise translate(exc.args[0], context, self.bootstrap) from None
        return sorted(g.group_id for g in listing.valid if g.group_id.startswith(prefix))

    def _translate(self, error: KafkaError, group: str, context: str) -> Exception:
        if error.code() in _GROUP_ACTIVE:
            return UnsafePlanRefused(
                f"consumer group '{group}' is active (the broker says {error.name()}): stop its consumers "
                "(every `kpipe run` of it) and try again"
            )
        return translate(error, context, self.bootstrap)

    def close(self) -> None:
        self._admin = None

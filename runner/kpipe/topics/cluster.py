"""The cluster boundary: the only module that talks to Kafka's admin API.

`ClusterAPI` is the protocol plan/apply work against; `KafkaCluster` implements it with confluent_kafka's
AdminClient, and tests use a fake with the same protocol (Tansu lacks CreatePartitions, for one).
Every KafkaError is translated at this boundary (kpipe.topics.kafka_errors), by `KafkaError.code()`, into
kpipe.errors.ClusterError or BrokerUnreachable; nothing above it sees a confluent_kafka type.

Consumer groups are read by the same client (`GroupsAPI`, for `kpipe status`), in kpipe.topics.group_reads.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from kpipe.errors import ClusterError
from kpipe.redaction import reveal
from kpipe.topics.group_reads import (
    WATERMARK_PROBE_GROUP,
    ConsumerFactory,
    GroupDescription,
    GroupMember,
    GroupReads,
    GroupsAPI,
    Partition,
    Watermarks,
)
from kpipe.topics.kafka_errors import ALREADY_EXISTS, error_of, translate
from kpipe.topics.plan import ClusterState, ConfigDiff, CreateTopic, LiveTopic

# Re-exported: callers import the group types and the error translation from the cluster boundary.
__all__ = [
    "WATERMARK_PROBE_GROUP",
    "ClusterAPI",
    "GroupDescription",
    "GroupMember",
    "GroupsAPI",
    "KafkaCluster",
    "Partition",
    "ResultCallback",
    "TopicResult",
    "Watermarks",
    "connect",
    "translate",
]

DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_REQUEST_TIMEOUT_S = 60.0


# librdkafka prints connection failures to stderr unless given a logger; kpipe reports one line of its own.
_librdkafka_log = logging.getLogger("kpipe.librdkafka")
_librdkafka_log.addHandler(logging.NullHandler())


@dataclass(frozen=True)
class TopicResult:
    """The outcome of one topic's part of a batched admin request."""

    topic: str
    ok: bool
    # True when the topic was already there (created meanwhile by someone else): treated as done.
    already_existed: bool = False
    error: ClusterError | None = None


ResultCallback = Callable[[TopicResult], None]


@runtime_checkable
class ClusterAPI(Protocol):
    """What plan and apply need from a cluster. Real: KafkaCluster. Tests: a fake with the same methods."""

    bootstrap: str

    def describe(self, config_for: Collection[str] = ()) -> ClusterState:
        """All topics with partitions and replication; configs only for the topics in `config_for`."""
        ...

    def committed_groups(self, topics: Collection[str]) -> dict[str, tuple[str, ...]]:
        """topic -> the consumer groups that have committed offsets on it (only topics that have some)."""
        ...

    def create_topics(
        self, topics: Sequence[CreateTopic], on_result: ResultCallback | None = None
    ) -> list[TopicResult]: ...

    def alter_configs(
        self, updates: Mapping[str, Sequence[ConfigDiff]], on_result: ResultCallback | None = None
    ) -> list[TopicResult]: ...

    def create_partitions(
        self, totals: Mapping[str, int], on_result: ResultCallback | None = None
    ) -> list[TopicResult]: ...

    def delete_topics(
        self, names: Sequence[str], on_result: ResultCallback | None = None
    ) -> list[TopicResult]: ...

    def close(self) -> None: ...


class KafkaCluster(GroupReads):
    """ClusterAPI over confluent_kafka's AdminClient; creating one checks a broker answers in `timeout`."""

    def __init__(
        self,
        client_config: Mapping[str, str],
        *,
        timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
        consumer_factory: ConsumerFactory = Consumer,
    ):
        """consumer_factory builds the consumer that reads high watermarks (tests pass a fake)."""
        config: dict[str, Any] = dict(client_config)
        self.bootstrap = str(config.get("bootstrap.servers", ""))
        if not self.bootstrap:
            raise ClusterError(
                "no bootstrap servers: pass --bootstrap-servers or set cluster.bootstrap_servers"
            )
        config.setdefault("client.id", "kpipe-admin")
        config["logger"] = _librdkafka_log
        config.setdefault("log.connection.close", False)
        self.timeout = timeout
        self.request_timeout = max(request_timeout, timeout)
        self._client_config = config
        self._consumer_factory = consumer_factory
        try:
            self._admin = AdminClient(config)
        except KafkaException as exc:
            error = error_of(exc)
            if error is None:
                raise
            raise ClusterError(f"invalid client configuration: {error.str()}", code=error.name()) from None
        # Fail fast, within `timeout`, when no broker answers. The listing that proved it is kept for the first
        # describe() (plan and apply read the cluster right after connecting), unless something is written
        # first: one metadata round trip instead of two, and a fresh one for every later describe().
        self._probe: dict[str, Any] | None = self._metadata()

    # --- reading ---
    def _metadata(self) -> dict[str, Any]:
        try:
            metadata = self._admin.list_topics(timeout=self.timeout)
        except KafkaException as exc:
            error = error_of(exc)
            if error is None:
                raise
            raise translate(error, "listing topics", self.bootstrap, self.timeout) from None
        return dict(metadata.topics)

    def describe(self, config_for: Collection[str] = ()) -> ClusterState:
        topics_md, self._probe = (self._probe if self._probe is not None else self._metadata()), None
        topics: dict[str, LiveTopic] = {}
        for name, md in topics_md.items():
            if md.error is not None and md.error.code() != KafkaError.NO_ERROR:
                continue
            partitions = md.partitions.values()
            replication = max((len(p.replicas) for p in partitions), default=0)
            topics[name] = LiveTopic(name, len(md.partitions), replication)
        wanted = [n for n in config_for if n in topics]
        for name, config in self._describe_configs(wanted).items():
            t = topics[name]
            topics[name] = LiveTopic(name, t.partitions, t.replication_factor, config)
        return ClusterState(topics)

    def _describe_configs(self, names: Sequence[str]) -> dict[str, dict[str, str | None]]:
        if not names:
            return {}
        futures = self._call(
            "describing topic configs",
            lambda: self._admin.describe_configs(
                [ConfigResource(ResourceType.TOPIC, n) for n in names], request_timeout=self.request_timeout
            ),
        )
        out: dict[str, dict[str, str | None]] = {}
        for resource, future in futures.items():
            entries = self._result(future, f"describing the config of topic {resource.name}")
            out[resource.name] = {e.name: e.value for e in entries.values()}
        return out

    def committed_groups(self, topics: Collection[str]) -> dict[str, tuple[str, ...]]:
        wanted = set(topics)
        if not wanted:
            return {}
        listing = self._result(
            self._call(
                "listing consumer groups",
                lambda: self._admin.list_consumer_groups(request_timeout=self.request_timeout),
            ),
            "listing consumer groups",
        )
        group_ids = sorted(g.group_id for g in listing.valid)
        # librdkafka takes one group per ListConsumerGroupOffsets request; send them all, then wait.
        futures = {
            g: next(
                iter(
                    self._call(
                        "listing committed offsets",
                        lambda g=g: self._admin.list_consumer_group_offsets(
                            [ConsumerGroupTopicPartitions(g)], request_timeout=self.request_timeout
                        ),
                    ).values()
                )
            )
            for g in group_ids
        }
        found: dict[str, set[str]] = {}
        for group, future in futures.items():
            try:
                result = self._result(future, f"listing the committed offsets of group {group}")
            except ClusterError as exc:
                if exc.code == "GROUP_ID_NOT_FOUND":
                    continue  # deleted between the listing and this request: it holds no offsets now
                raise  # anything else: the offsets are unknown, so a deletion must not go ahead
            for tp in result.topic_partitions or ():
                if tp.topic in wanted and tp.offset >= 0:
                    found.setdefault(tp.topic, set()).add(group)
        return {t: tuple(sorted(gs)) for t, gs in sorted(found.items())}

    # --- writing ---
    def create_topics(
        self, topics: Sequence[CreateTopic], on_result: ResultCallback | None = None
    ) -> list[TopicResult]:
        if not topics:
            return []
        new = [
            NewTopic(
                t.topic,
                num_partitions=t.partitions,
                replication_factor=t.replication_factor if t.replication_factor > 0 else -1,
                config={k: reveal(str(v)) for k, v in t.config.items()},  # env() tokens: real values
            )
            for t in topics
        ]
        # One CreateTopics request for all of them.
        futures = self._call(
            "creating topics",
            lambda: self._admin.create_topics(
                new, operation_timeout=self.request_timeout, request_timeout=self.request_timeout
            ),
        )
        return self._collect(futures, "creating topic", on_result, lambda key: key)

    def alter_configs(
        self, updates: Mapping[str, Sequence[ConfigDiff]], on_result: ResultCallback | None = None
    ) -> list[TopicResult]:
        if not updates:
            return []
        resources = [
            ConfigResource(
                ResourceType.TOPIC,
                topic,
                incremental_configs=[
                    ConfigEntry(d.key, reveal(d.new), incremental_operation=AlterConfigOpType.SET)
                    for d in diffs
                ],
            )
            for topic, diffs in updates.items()
        ]
        futures = self._call(
            "altering topic configs",
            lambda: self._admin.incremental_alter_configs(resources, request_timeout=self.request_timeout),
        )
        return self._collect(futures, "updating the config of topic", on_result, lambda key: key.name)

    def create_partitions(
        self, totals: Mapping[str, int], on_result: ResultCallback | None = None
    ) -> list[TopicResult]:
        if not totals:
            return []
        futures = self._call(
            "adding partitions",
            lambda: self._admin.create_partitions(
                [NewPartitions(topic, total) for topic, total in totals.items()],
                operation_timeout=self.request_timeout,
                request_timeout=self.request_timeout,
            ),
        )
        return [
            _no_create_partitions(r)
            for r in self._collect(futures, "adding partitions to topic", on_result, lambda key: key)
        ]

    def delete_topics(
        self, names: Sequence[str], on_result: ResultCallback | None = None
    ) -> list[TopicResult]:
        if not names:
            return []
        futures = self._call(
            "deleting topics",
            lambda: self._admin.delete_topics(
                list(names), operation_timeout=self.request_timeout, request_timeout=self.request_timeout
            ),
        )
        return self._collect(futures, "deleting topic", on_result, lambda key: key)

    def close(self) -> None:
        # AdminClient has no close(); dropping the reference destroys the handle.
        self._admin = None  # type: ignore[assignment]

    # --- plumbing ---
    def _call(self, context: str, request: Callable[[], Any]) -> Any:
        self._probe = None  # the kept listing stands only until the next request: a write may change it
        try:
            return request()
        except KafkaException as exc:
            error = error_of(exc)
            if error is None:
                raise
            raise translate(error, context, self.bootstrap) from None

    def _result(self, future: concurrent.futures.Future, context: str) -> Any:
        try:
            return future.result(timeout=self.request_timeout + 5)
        except concurrent.futures.TimeoutError:
            raise ClusterError(
                f"{context}: no answer within {self.request_timeout:g} s", code="_TIMED_OUT", retriable=True
            ) from None
        except KafkaException as exc:
            error = error_of(exc)
            if error is None:
                raise
            raise translate(error, context, self.bootstrap) from None

    def _collect(
        self,
        futures: Mapping[Any, concurrent.futures.Future],
        context: str,
        on_result: ResultCallback | None,
        topic_of: Callable[[Any], str],
    ) -> list[TopicResult]:
        """Each topic's result of one batched request, in the order of `futures`, each handed to `on_result`
        as it is read. One request gets one response, so its futures complete together: waiting on each in
        turn costs little, where watching them all for the next to complete (as_completed) put a waiter on
        every one of them. A topic without an answer by the deadline is reported as unknown."""
        deadline = time.monotonic() + self.request_timeout + 5
        results: list[TopicResult] = []
        for key, future in futures.items():
            topic = topic_of(key)
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
                result = TopicResult(topic, ok=True)
            except concurrent.futures.TimeoutError:
                error = ClusterError(
                    f"{context} {topic}: no answer within {self.request_timeout:g} s; its state is unknown",
                    code="_TIMED_OUT",
                    retriable=True,
                )
                result = TopicResult(topic, ok=False, error=error)
            except KafkaException as exc:
                result = self._topic_failure(topic, exc, context)
            results.append(result)
            if on_result is not None:
                on_result(result)
        return results

    def _topic_failure(self, topic: str, exc: KafkaException, context: str) -> TopicResult:
        error = error_of(exc)
        if error is None:
            raise exc
        if error.code() in ALREADY_EXISTS:
            return TopicResult(topic, ok=True, already_existed=True)
        return TopicResult(topic, ok=False, error=translate(error, f"{context} {topic}", self.bootstrap))


# librdkafka says "requires broker version >= 1.0.0" when a broker does not offer CreatePartitions at all, which
# misleads on a broker that is new but never implemented it (kpipe's embedded broker, Tansu).
_UNSUPPORTED = {"_UNSUPPORTED_FEATURE", "UNSUPPORTED_VERSION", "UNSUPPORTED_FEATURE"}


def _no_create_partitions(result: TopicResult) -> TopicResult:
    if result.ok or result.error is None or result.error.code not in _UNSUPPORTED:
        return result
    error = ClusterError(
        "this broker cannot add partitions to a topic (it does not support CreatePartitions, as the embedded "
        f"broker does not); recreate {result.topic} with the partitions you want: on the embedded broker, "
        "restart it (`kpipe broker --stop`, then `kpipe broker`; it keeps events in memory only) and apply again",
        code=result.error.code,
    )
    return TopicResult(result.topic, ok=False, error=error)


def connect(
    client_config: Mapping[str, str],
    *,
    timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
) -> KafkaCluster:
    return KafkaCluster(client_config, timeout=timeout, request_timeout=request_timeout)

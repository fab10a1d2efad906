"""Records read and written as they are on the log, for the commands that inspect and repair data (`kpipe tail`,
`kpipe dlq`, `kpipe offsets`): no group membership, no handler, no schema.

    RecordReader.read(starts, ends)      stream the records of some partitions from `starts` up to `ends`
                                         (or forever with follow=True); nothing is collected, memory stays bounded
    RecordReader.offsets_for_time(...)   the first offset at or after a time, as the broker answers it
    RecordWriter.send(...) / flush()     raw bytes out, acks=all, idempotent, every delivery checked

A `Record` is plain data, so nothing above this module sees a confluent_kafka type. The reader never joins a
consumer group and never commits: reading leaves no trace on the cluster. Kafka errors are translated by code
with the cluster boundary's `translate`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka import Producer as _KafkaProducer

from kpipe.errors import ClusterError
from kpipe.runtime import tracing
from kpipe.topics.cluster import Partition, translate

# The group.id confluent-kafka insists on; the reader only assigns partitions, so it never joins nor commits.
READER_GROUP = "kpipe-reader"
# Records fetched ahead of the caller: what bounds the reader's memory, whatever the topic holds.
QUEUE_KBYTES = 16 * 1024
BATCH = 500
# Errors that end a read: no broker, or the topic or partition is gone (others are retried by librdkafka).
_FATAL = {
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._RESOLVE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
}
ClientFactory = Callable[[dict[str, Any]], Any]
# librdkafka prints connection failures to stderr unless given a logger; kpipe reports one line of its own.
_librdkafka_log = logging.getLogger("kpipe.librdkafka")


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None  # None when the broker gave none
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def coordinates(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def _client(factory: ClientFactory, config: dict[str, Any]) -> Any:
    try:
        return factory(config)
    except KafkaException as exc:
        error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if error is None:
            raise
        raise ClusterError(f"invalid client configuration: {error.str()}", code=error.name()) from None


class RecordReader:
    """Reads partitions by assignment (no group). `timeout`: how long a partition that still has records to give
    may stay silent before the read fails (exit 3), so a lost broker never leaves a command hanging."""

    def __init__(
        self,
        client_config: Mapping[str, str],
        *,
        timeout: float = 10.0,
        consumer_factory: ClientFactory = Consumer,
    ):
        self.bootstrap = str(client_config.get("bootstrap.servers", ""))
        self.timeout = timeout
        config: dict[str, Any] = {
            **client_config,
            "group.id": READER_GROUP,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            # A start below the log start (retention deleted it): the log start.
            "auto.offset.reset": "earliest",
            "isolation.level": "read_uncommitted",
            "queued.max.messages.kbytes": QUEUE_KBYTES,
            "fetch.wait.max.ms": 100,
            "fetch.queue.backoff.ms": 10,
        }
        config.setdefault("client.id", "kpipe-reader")
        config.setdefault("logger", _librdkafka_log)
        self._consumer = _client(consumer_factory, config)

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def offsets_for_time(
        self, partitions: Sequence[Partition], timestamp_ms: int
    ) -> dict[Partition, int | None]:
        """partition -> the broker's first offset whose timestamp is at or after `timestamp_ms`; None when no record
        is that late. Some brokers answer at record-batch granularity (the embedded one does): the offset can be
        a few records early, so callers that must be exact read forward from it (`read`, `first_at_or_after`)."""
        if not partitions:
            return {}
        try:
            found = self._consumer.offsets_for_times(
                [TopicPartition(t, p, timestamp_ms) for t, p in partitions], timeout=self.timeout
            )
        except KafkaException as exc:
            raise translate(exc.args[0], "looking up offsets by time", self.bootstrap, self.timeout) from None
        out: dict[Partition, int | None] = {}
        for tp in found:
            if tp.error is not None:
                raise translate(tp.error, f"looking up offsets by time on {tp.topic}[{tp.partition}]")
            out[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else None
        return out

    def read(
        self,
        starts: Mapping[Partition, int],
        ends: Mapping[Partition, int] | None = None,
        *,
        follow: bool = False,
    ) -> Iterator[Record]:
        """The records of each partition from its start offset up to (not including) its end offset, in order per
        partition. With `follow`, `ends` is ignored and reading goes on until the caller stops iterating."""
        ends = ends or {}
        pending = {tp for tp, start in starts.items() if follow or start < ends.get(tp, start)}
        if not pending:
            return
        assignment = [TopicPartition(t, p, starts[(t, p)]) for t, p in sorted(pending)]
        self._call("assigning partitions", lambda: self._consumer.assign(assignment))
        # A partition paused at the end of an earlier read stays paused across assign(): fetch it again.
        self._call("resuming partitions", lambda: self._consumer.resume(assignment))
        quiet_since = time.monotonic()
        while follow or pending:
            messages = self._call("reading", lambda: self._consumer.consume(BATCH, 0.2))
            if messages:
                quiet_since = time.monotonic()
            for message in messages:
                error = message.error()
                tp = (message.topic(), message.partition())
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        if not follow and tp in pending and message.offset() >= ends.get(tp, 0):
                            self._done(pending, tp)
                        continue
                    if error.code() in _FATAL:
                        raise translate(error, "reading", self.bootstrap, self.timeout)
                    continue  # a transient fetch error: librdkafka retries it
                if not follow:
                    if tp not in pending or message.offset() >= ends[tp]:
                        self._done(pending, tp)
                        continue
                    if message.offset() + 1 >= ends[tp]:
                        self._done(pending, tp)
                yield _record(message)
            if not follow and pending and time.monotonic() - quiet_since > self.timeout:
                shown = ", ".join(f"{t}[{p}]" for t, p in sorted(pending)[:5])
                raise ClusterError(
                    f"reading: no records from {shown} within {self.timeout:g} s",
                    code="_TIMED_OUT",
                    retriable=True,
                )

    def _done(self, pending: set[Partition], tp: Partition) -> None:
        """A partition read to its end: fetch no more of it (what was fetched already is dropped)."""
        if tp in pending:
            pending.discard(tp)
            self._consumer.pause([TopicPartition(*tp)])

    def first_at_or_after(self, partition: Partition, start: int, end: int, timestamp_ms: int) -> int:
        """The offset of the first record in [start, end) whose timestamp is at or after `timestamp_ms`; `end`
        when there is none. Makes a batch-granular `offsets_for_time` answer exact."""
        for record in self.read({partition: start}, {partition: end}):
            if record.timestamp_ms is not None and record.timestamp_ms >= timestamp_ms:
                return record.offset
        return end

    def _call(self, context: str, request: Callable[[], Any]) -> Any:
        try:
            return request()
        except KafkaException as exc:
            raise translate(exc.args[0], context, self.bootstrap, self.timeout) from None


def _record(message: Any) -> Record:
    kind, stamp = message.timestamp()
    headers = tuple(
        (k, v if isinstance(v, bytes) else b"" if v is None else str(v).encode())
        for k, v in message.headers() or ()
    )
    return Record(
        topic=message.topic(),
        partition=message.partition(),
        offset=message.offset(),
        timestamp_ms=stamp if stamp >= 0 and kind != 0 else None,
        key=message.key(),
        value=message.value(),
        headers=headers,
    )


class RecordWriter:
    """Sends raw records (value, key and headers exactly as given), acks=all and idempotent; `flush` waits for
    every delivery and raises ClusterError naming the first that failed."""

    def __init__(
        self,
        client_config: Mapping[str, str],
        *,
        timeout: float = 30.0,
        producer_factory: ClientFactory = _KafkaProducer,
    ):
        self.bootstrap = str(client_config.get("bootstrap.servers", ""))
        self.timeout = timeout
        self.failed: list[str] = []
        config: dict[str, Any] = {
            **client_config,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": int(timeout * 1000),
            "on_delivery": self._on_delivery,
        }
        config.setdefault("client.id", "kpipe-replay")
        config.setdefault("logger", _librdkafka_log)
        producer_factory = tracing.current().producer_factory(producer_factory)  # tracing hook: send spans
        self._producer = _client(producer_factory, config)

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Sequence[tuple[str, bytes]],
        partition: int | None = None,
    ) -> None:
        """Queue one record; `partition` None: the producer's partitioner picks one by key."""
        placed = {} if partition is None else {"partition": partition}
        while True:
            try:
                self._producer.produce(topic, value, key, headers=list(headers), **placed)
                break
            except BufferError:
                self._producer.poll(0.1)  # the local queue is full: let deliveries drain it
            except KafkaException as exc:
                raise translate(exc.args[0], f"sending to {topic}", self.bootstrap) from None
        self._producer.poll(0)

    def flush(self) -> None:
        left = self._producer.flush(self.timeout + 5)
        if left:
            raise ClusterError(
                f"{left} record(s) not delivered within {self.timeout:g} s", code="_TIMED_OUT", retriable=True
            )
        if self.failed:
            more = f" (and {len(self.failed) - 1} more)" if len(self.failed) > 1 else ""
            raise ClusterError(f"delivery failed: {self.failed[0]}{more}")

    def _on_delivery(self, error: KafkaError | None, message: Any) -> None:
        if error is not None:
            self.failed.append(f"{message.topic()}: {error.str()} ({error.name()})")

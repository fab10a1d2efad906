"""The one fake of each librdkafka client the tests share: FakeConsumer and FakeProducer stand in for
confluent_kafka's Consumer and Producer where no broker can show the behaviour (a scripted rebalance, a refused
dead letter), built through the runtime's client factories (`.build`). They implement the runtime's client
protocols (kpipe.runtime.client_protocols.ConsumerClient, ProducerClient), and a test asserts it.

Messages are confluent_kafka.Message objects built by the test (Message(topic=..., partition=..., ...)).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Message, TopicPartition


class FakeConsumer:
    """confluent_kafka.Consumer as the runtime uses it. Fed one of two ways:

    partitions   {partition: [Message, ...]} of `topic`: all assigned on the first poll, each delivered in order,
                 nothing from a paused partition (the concurrent loop's tests)
    batches      scripted consume() results, in order (a number instead of a batch: that many seconds without
                 messages), then `when_idle()` is called (the harness stops the worker there); the partitions
                 `assignment` (t[0] and t[1]) are assigned on the first poll, and keep-alive polls (timeout 0)
                 deliver nothing (the sequential loop's tests)

    Rebalances: revoke()/lose() run the callbacks inside the next consume(), as librdkafka does; revoke_now()
    runs on_revoke at once. Stores and commits are recorded as (topic, partition, offset); an asynchronous
    commit is answered through the config's on_commit inside the next consume(), as librdkafka does."""

    def __init__(
        self,
        partitions: dict[int, list[Message]] | None = None,
        *,
        topic: str = "t",
        assignment: list[TopicPartition] | None = None,
        clock: Any = None,
    ) -> None:
        """clock: a kpipe.testing VirtualClock to move by a number in `batches` instead of sleeping."""
        self.topic = topic
        self._clock = clock
        self.pending = {p: deque(ms) for p, ms in (partitions or {}).items()}
        self._queued = partitions is not None
        default = [TopicPartition(topic, p) for p in self.pending] if self._queued else None
        self.assigned = list(assignment or default or [TopicPartition(topic, 0), TopicPartition(topic, 1)])
        self.batches: list[Any] = []
        self.when_idle: Callable[[], None] = lambda: None
        self.config: dict[str, Any] | None = None
        self.stored: list[tuple[str, int, int]] = []
        self.commits: list[list[tuple[str, int, int]]] = []
        self.paused: list[TopicPartition] = []  # every pause() call's partitions, in order
        self.resumed: list[TopicPartition] = []
        self.paused_now: set[tuple[str, int]] = set()
        self.keepalive_polls = 0
        self.closed = False
        self._callbacks: dict[str, Any] = {}
        self._started = False
        self._rebalance: list[Callable[[], None]] = []
        self._answers: list[list[TopicPartition]] = []  # asynchronous commits whose on_commit is due

    def build(self, config: dict[str, Any]) -> FakeConsumer:  # the consumer factory
        self.config = config
        return self

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self._callbacks = callbacks

    # -- rebalances, as the group would drive them ------------------------------------------------------------

    def revoke(self, partitions: list[int]) -> None:
        """Take partitions away in the next consume()."""
        tps = [TopicPartition(self.topic, p) for p in partitions]
        self._rebalance.append(lambda: self._take_away("on_revoke", tps))

    def lose(self, partitions: list[int]) -> None:
        tps = [TopicPartition(self.topic, p) for p in partitions]
        self._rebalance.append(lambda: self._take_away("on_lost", tps))

    def revoke_now(self, partitions: list[TopicPartition]) -> None:
        """Run on_revoke at once (from inside a handler: as a poll during a long wait would)."""
        self._callbacks["on_revoke"](self, partitions)

    def lose_now(self, partitions: list[TopicPartition]) -> None:
        """Run on_lost at once (from inside a handler: as a poll during a long wait could)."""
        self._callbacks["on_lost"](self, partitions)

    def assign_now(self, partitions: list[TopicPartition]) -> None:
        """Run on_assign at once, as a rebalance would."""
        self._callbacks["on_assign"](self, partitions)

    def _take_away(self, callback: str, tps: list[TopicPartition]) -> None:
        self._callbacks[callback](self, tps)
        gone = {(tp.topic, tp.partition) for tp in tps}
        self.assigned = [tp for tp in self.assigned if (tp.topic, tp.partition) not in gone]

    # -- the client --------------------------------------------------------------------------------------------

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list:
        if not self._started:
            self._started = True
            self._callbacks["on_assign"](self, list(self.assigned))
        while self._rebalance:
            self._rebalance.pop(0)()
        on_commit = (self.config or {}).get("on_commit")
        while self._answers:
            answered = self._answers.pop(0)
            if on_commit is not None:
                on_commit(None, answered)
        if self._queued:
            return self._from_partitions(num_messages, timeout)
        if timeout == 0:
            self.keepalive_polls += 1
            return []
        if not self.batches:
            self.when_idle()
            return []
        batch = self.batches.pop(0)
        if isinstance(batch, int | float):
            if self._clock is not None:
                self._clock.advance(batch)
            else:
                time.sleep(batch)
            return []
        return batch

    def _from_partitions(self, n: int, timeout: float) -> list:
        out: list[Message] = []
        for tp in self.assigned:
            queue = self.pending[tp.partition]
            while queue and len(out) < n and (tp.topic, tp.partition) not in self.paused_now:
                out.append(queue.popleft())
        if not out and timeout:
            time.sleep(min(timeout, 0.01))
        return out

    def store_offsets(self, message: Any = None, offsets: Any = None) -> None:
        if message is not None:
            self.stored.append((message.topic(), message.partition(), message.offset() + 1))
        self.stored.extend((tp.topic, tp.partition, tp.offset) for tp in offsets or ())

    def commit(self, message: Any = None, offsets: Any = None, asynchronous: bool = True) -> Any:
        if offsets is None:  # auto: commit the offset store
            return []
        self.commits.append(sorted((tp.topic, tp.partition, tp.offset) for tp in offsets))
        if asynchronous:
            self._answers.append([TopicPartition(tp.topic, tp.partition, tp.offset) for tp in offsets])
            return None
        return offsets

    def committed_offset(self, partition: int) -> int | None:
        """The highest offset committed (or stored) for a partition of `topic`, None when none was."""
        done = [*self.stored, *(c for commit in self.commits for c in commit)]
        found = [o for t, p, o in done if (t, p) == (self.topic, partition)]
        return max(found) if found else None

    def assignment(self) -> list[TopicPartition]:
        return list(self.assigned)

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused.extend(partitions)
        self.paused_now |= {(tp.topic, tp.partition) for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.resumed.extend(partitions)
        self.paused_now -= {(tp.topic, tp.partition) for tp in partitions}

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        return None

    def close(self) -> None:
        self.closed = True


class FakeProducer:
    """confluent_kafka.Producer as the runtime uses it: records what is produced (`sent`, dicts of topic, value,
    key and headers) and acknowledges it on the next poll()/flush(), with an error when `fail`. deliver_all()
    acknowledges what waits at once (for code that does not poll, as the executor's tests)."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.config: dict[str, Any] | None = None
        self.sent: list[dict[str, Any]] = []
        self.waiting: list[tuple[Any, str]] = []
        self._lock = threading.Lock()

    def build(self, config: dict[str, Any]) -> FakeProducer:  # the producer factory
        self.config = config
        return self

    def produce(
        self, topic: str, value: Any = None, key: Any = None, headers: Any = None, on_delivery: Any = None
    ) -> None:
        with self._lock:
            self.sent.append({"topic": topic, "value": value, "key": key, "headers": dict(headers or [])})
            self.waiting.append((on_delivery, topic))

    def topics(self) -> list[str]:
        """The topic of each produced event, in order."""
        return [s["topic"] for s in self.sent]

    def poll(self, timeout: float = 0) -> int:
        return self.deliver_all(KafkaError(KafkaError._MSG_TIMED_OUT) if self.fail else None)

    def deliver_all(self, err: Any = None) -> int:
        with self._lock:
            waiting, self.waiting = self.waiting, []
        for callback, topic in waiting:
            if callback is not None:
                callback(err, Message(topic=topic))
        return len(waiting)

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return 0

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None:
        with self._lock:
            self.waiting = []

    def __len__(self) -> int:
        return len(self.waiting)

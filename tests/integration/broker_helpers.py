"""Helpers of the worker tests on a real broker: produce events, read committed offsets and topics back, run
a worker in a thread. (handlers_for_tests holds what spawned worker processes import; this does not.)"""

from __future__ import annotations

import json
import threading
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from helpers import wait_for
from kpipe.compilation.project import load_project
from kpipe.runtime.protocol import WorkerStart, worker_starts
from kpipe.runtime.worker import GroupWorker


def worker_start(path: str, group: str, consumer_config: tuple[tuple[str, str], ...] = ()) -> WorkerStart:
    """What `kpipe run path -X ...` hands the group's instance 0: compiled here, as the supervisor does."""
    project = load_project([path], consumer_overrides=dict(consumer_config))
    return worker_starts(project, [(group, 1)])[0]


def produce(bootstrap: str, topic: str, events: list[Any], partition: int | None = None) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for event in events:
        value = event if isinstance(event, bytes) else json.dumps(event).encode()
        key = None if isinstance(event, bytes) else event["key"]
        if partition is None:
            producer.produce(topic, value, key)
        else:
            producer.produce(topic, value, key, partition=partition)
    assert producer.flush(10) == 0


def committed(bootstrap: str, group: str, topic: str, partitions: int = 1) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return [tp.offset for tp in tps]
    finally:
        consumer.close()


def read_at(bootstrap: str, topic: str, partition: int, offset: int, timeout: float = 10) -> Any:
    """The one message at topic[partition]@offset."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, partition, offset)])
    try:
        return wait_for(lambda: next((m for m in consumer.consume(1, 0.2) if not m.error()), None), timeout,
                        message=f"no message at {topic}[{partition}]@{offset}")  # fmt: skip
    finally:
        consumer.close()


def read_all(bootstrap: str, topic: str, count: int, timeout: float = 10.0) -> list[Any]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: list[Any] = []
    try:
        wait_for(lambda: got.extend(m for m in consumer.consume(100, 0.2) if not m.error()) or len(got) >= count,
                 timeout, message=lambda: f"{len(got)} of {count} messages in '{topic}'")  # fmt: skip
    finally:
        consumer.close()
    return got


class Running:
    """A GroupWorker in a thread."""

    def __init__(self, worker: GroupWorker):
        self.worker = worker
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.worker.run()

    def stop(self, timeout: float = 20) -> int | None:
        self.worker.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not stop"
        return self.code

"""run_pipeline: a pipeline project running in memory, for tests.

    from kpipe.testing import run_pipeline

    with run_pipeline("pipelines/") as p:
        p.send("orders", {"order_id": "o-1", ...})    # validated and keyed as kpipe's producer does
        p.drain()                                     # runs the handlers until no event is left anywhere
        assert [r.value["order_id"] for r in p.topic("orders")] == ["o-1"]
        assert len(p.handled("order-processors")) == 1

The consumer groups are the workers `kpipe run` starts (kpipe.testing.engine); the broker is a MemoryCluster.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kpipe.compilation.compiled import ProducerSettings
from kpipe.compilation.project import CompiledProject, load_project
from kpipe.diagnostics import did_you_mean
from kpipe.errors import UsageError
from kpipe.runtime.producer import Producer
from kpipe.runtime.worker.failures import (
    H_ERROR_MESSAGE,
    H_ERROR_TYPE,
    H_GROUP,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_SOURCE_TOPIC,
)
from kpipe.testing.clients import MemoryProducer
from kpipe.testing.clock import VirtualClock
from kpipe.testing.engine import MemoryEngine
from kpipe.testing.memory_cluster import DEFAULT_SEED, MemoryCluster, Partitioner, Record

# The bootstrap address compiled into every client of an in-memory run: no client ever connects to it.
MEMORY_BOOTSTRAP = "kpipe-testing.invalid:9092"
DEFAULT_DRAIN_TIMEOUT = 60.0
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class TopicRecord:
    """A record of a topic as a test reads it: the value decoded from JSON (bytes when it is not JSON), the key
    as text, and the headers as text."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: Any
    headers: dict[str, str]


@dataclass(frozen=True)
class DeadLetter(TopicRecord):
    """A dead letter, with kpipe's dead-letter headers decoded."""

    error_type: str
    error_message: str
    source_topic: str
    source_partition: int
    source_offset: int
    group: str


class PipelineRun:
    """A running in-memory pipeline (see run_pipeline). Not thread-safe: use it from the test's thread."""

    def __init__(self, project: CompiledProject, groups: Sequence[str], *, seed: int = DEFAULT_SEED):
        self.project = project
        self.cluster = MemoryCluster({t.name: t.partitions for t in project.topic_settings()}, seed=seed)
        self._engine = MemoryEngine(project, groups, self.cluster)
        self._producers: dict[str, Producer] = {}
        self._raw = MemoryProducer({}, self.cluster)
        self._closed = False

    @property
    def groups(self) -> list[str]:
        return list(self._engine.groups)

    @property
    def clock(self) -> VirtualClock:
        """The run's virtual time: `clock.elapsed` is how long the workers waited (retry backoffs, commit
        intervals), none of it in wall time; `clock.advance(seconds)` moves it on by hand."""
        return self._engine.clock

    def start(self) -> None:
        self._engine.start(START_TIMEOUT)
        self.drain()  # every group joins, and is assigned its partitions, before the first event

    # -- sending ------------------------------------------------------------------------------------------

    def send(self, topic: str, event: Any, key: Any = None, headers: Any = None) -> None:
        """Send one event as kpipe's producer does: validated against the topic's schema (EventInvalid when it
        is not valid), keyed by the topic's key field unless `key` is given, serialised to JSON."""
        producer = self._producers.get(topic)
        if producer is None:
            producer = self._producers[topic] = self._producer_for(topic)
        producer.send(event, key=key, headers=headers)
        producer.flush(0)

    def send_raw(self, topic: str, value: bytes | str | None, key: bytes | str | None = None,
                 headers: Any = None) -> None:  # fmt: skip
        """Send bytes as they are (an invalid payload, a message from a producer kpipe does not know)."""
        self._topic_settings(topic)
        self._raw.produce(topic, value, key, headers=headers)
        self._raw.flush(0)

    def _producer_for(self, topic: str) -> Producer:
        settings = self._topic_settings(topic)
        producer_settings = ProducerSettings(
            name="kpipe.testing",
            topic=topic,
            key_field=settings.key_field,
            schema_name=settings.schema_name,
            client=self.project.cluster_client_config(),
        )
        model = self.project.topic_model(topic)
        cluster = self.cluster
        return Producer(
            producer_settings, model, client_factory=lambda config: MemoryProducer(config, cluster)
        )

    def _topic_settings(self, topic: str) -> Any:
        names = {t.name: t for t in self.project.topic_settings()}
        if topic not in names:
            raise UsageError(f"unknown topic '{topic}'{_did_you_mean(topic, names)}")
        return names[topic]

    # -- running ------------------------------------------------------------------------------------------

    def drain(self, timeout: float = DEFAULT_DRAIN_TIMEOUT) -> None:
        """Run the groups' handlers until no event is left to handle anywhere (events emitted to topics other
        selected groups read included), moving virtual time on while they wait for it (retry backoffs, batch
        commit intervals): afterwards every processed event is committed. Raises DrainTimeout when handlers
        are still busy after `timeout` s of wall time."""
        self._engine.drain(timeout)

    def close(self) -> None:
        """Stop every group as `kpipe run` stops: what was processed is committed, the clients close."""
        if not self._closed:
            self._closed = True
            self._engine.stop()

    # -- what happened ------------------------------------------------------------------------------------

    def topic(self, name: str, *, as_written: bool = False) -> list[TopicRecord]:
        """Every record of a topic: partition by partition, each in offset order (`as_written`: in the order
        they were written, across partitions)."""
        self._topic_settings(name)
        return [_topic_record(r) for r in self.cluster.records(name, as_written=as_written)]

    def dead_letters(self, topic: str, *, as_written: bool = False) -> list[DeadLetter]:
        """The records of a dead-letter topic, with kpipe's dead-letter headers decoded."""
        self._topic_settings(topic)
        return [_dead_letter(r) for r in self.cluster.records(topic, as_written=as_written)]

    def handled(self, group: str) -> list[Any]:
        """The events whose handler returned (retries that succeeded included), in the order they returned."""
        return list(self._group(group).handled)

    def skipped(self, group: str) -> int:
        """Events the group's handler failed on and `on_error: skip` let go."""
        return self._group(group).worker.skipped

    def committed(self, group: str) -> dict[tuple[str, int], int]:
        """{(topic, partition): next offset} as the group has committed so far. Its commit policy decides when:
        per_message and auto commit as events are processed, batch at batch_size or interval_ms (of virtual
        time, which drain() moves on: after drain(), or the end of the `with` block, everything processed is
        committed)."""
        self._group(group)
        return self.cluster.committed(group)

    @property
    def stopped(self) -> list[str]:
        """The groups whose worker has stopped (on_error: stop)."""
        return self._engine.stopped()

    def _group(self, name: str) -> Any:
        found = self._engine.groups.get(name)
        if found is None:
            raise UsageError(
                f"consumer group '{name}' is not running{_did_you_mean(name, self._engine.groups)}"
            )
        return found


@contextlib.contextmanager
def run_pipeline(
    *paths: Path | str,
    groups: Iterable[str] | None = None,
    variables: Mapping[str, str] | None = None,
    values_files: Iterable[Path | str] | None = None,
    root: Path | str | None = None,
    seed: int = DEFAULT_SEED,
) -> Iterator[PipelineRun]:
    """Load the project at `paths` (as `kpipe run` does) and run its consumer groups (`groups`; None: every one)
    in memory until the block ends."""
    project = load_memory_project(
        paths or ("pipelines",), variables=variables, values_files=values_files, root=root
    )
    run = start_run(project, groups, seed=seed)
    try:
        yield run
    finally:
        run.close()


def load_memory_project(
    paths: Iterable[Path | str],
    *,
    variables: Mapping[str, str] | None = None,
    values_files: Iterable[Path | str] | None = None,
    root: Path | str | None = None,
) -> CompiledProject:
    return load_project(
        list(paths), variables=variables, values_files=values_files, root=root,
        bootstrap_override=MEMORY_BOOTSTRAP,
    )  # fmt: skip


def start_run(
    project: CompiledProject, groups: Iterable[str] | None, *, seed: int = DEFAULT_SEED
) -> PipelineRun:
    selected = list(groups) if groups is not None else project.consumer_group_names()
    for name in selected:
        project.consumer_group(name)  # an unknown group: UsageError with a did-you-mean
    run = PipelineRun(project, selected, seed=seed)
    try:
        run.start()
    except BaseException:
        run.close()
        raise
    return run


def _topic_record(record: Record) -> TopicRecord:
    return TopicRecord(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key.decode(errors="replace") if record.key is not None else None,
        value=decode_value(record.value),
        headers={k: (v.decode(errors="replace") if v is not None else "") for k, v in record.headers or ()},
    )


def _dead_letter(record: Record) -> DeadLetter:
    base = _topic_record(record)
    h = base.headers
    return DeadLetter(
        **base.__dict__,
        error_type=h.get(H_ERROR_TYPE, ""),
        error_message=h.get(H_ERROR_MESSAGE, ""),
        source_topic=h.get(H_SOURCE_TOPIC, ""),
        source_partition=int(h.get(H_SOURCE_PARTITION, "-1")),
        source_offset=int(h.get(H_SOURCE_OFFSET, "-1")),
        group=h.get(H_GROUP, ""),
    )


def decode_value(value: bytes | None) -> Any:
    """JSON values decoded; anything else stays bytes."""
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    hint = did_you_mean(name, known)
    return f" ({hint})" if hint else ""


__all__ = ["DeadLetter", "Partitioner", "PipelineRun", "TopicRecord", "run_pipeline"]

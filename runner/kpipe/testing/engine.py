"""The one place `kpipe.testing` meets the runtime: each selected consumer group is the GroupWorker `kpipe run`
starts, built from the same compiled settings, schema models and handler, with client factories that make
in-memory clients instead of librdkafka ones. Only the broker is replaced.

`kpipe run` spawns one process per instance (the supervisor); here each group is one worker in a thread of this
process, and the workers take turns (turns.py), so a run opens no socket and starts no process.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kpipe.compilation.project import CompiledProject
from kpipe.runtime.concurrent.executor import is_async_handler
from kpipe.runtime.handler import load_handler
from kpipe.runtime.protocol import WORKER_EXIT_OK
from kpipe.runtime.worker.core import GroupWorker
from kpipe.testing.clients import MemoryConsumer, MemoryProducer
from kpipe.testing.memory_cluster import MemoryCluster
from kpipe.testing.turns import Turns, TurnTimeout

# A drained run is one where every worker polled this many times in a row and found nothing to do.
QUIET_ROUNDS = 2
# How long a worker may take to stop and close once asked.
STOP_TIMEOUT = 30.0

ClientFactory = Callable[[dict[str, Any]], Any]


class DrainTimeout(Exception):
    """Events were still being handled when drain()'s time ran out."""


@dataclass
class GroupRun:
    """One consumer group's worker, its thread, and what its handler returned from."""

    name: str
    worker: GroupWorker
    handled: list[Any] = field(default_factory=list)
    consumers: list[Any] = field(default_factory=list)  # the worker's consumer, once it has made it
    thread: threading.Thread | None = None
    exit_code: int | None = None

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def busy(self) -> bool:
        """Whether events are still in flight in a concurrent worker (the sequential one handles a batch within
        its turn)."""
        status = self.worker.status()
        return bool(status.in_flight or status.queued or status.oldest_unfinished)


def recording(handler: Callable[..., Any], handled: list[Any]) -> Callable[..., Any]:
    """The handler, unchanged for the runtime (sync stays sync, async stays async), noting each event it returned
    from."""
    if is_async_handler(handler):

        async def async_recorded(event: Any, ctx: Any) -> Any:
            result = await handler(event, ctx)
            handled.append(event)
            return result

        return async_recorded

    def recorded(event: Any, ctx: Any) -> Any:
        result = handler(event, ctx)
        handled.append(event)
        return result

    return recorded


def build_group(
    project: CompiledProject,
    group: str,
    *,
    consumer_factory: ClientFactory,
    producer_factory: ClientFactory,
    seed: int = 0,
    **options: Any,
) -> GroupRun:
    """The group's worker as kpipe.runtime.worker.process.build_worker makes it from a loaded project, with these
    client factories, its handler recording what it returned from.

    The only call into the worker's constructor in kpipe.testing: when the consume engine takes its outside
    world as one object (client factories, executors, a Clock), this is where the factories and a
    kpipe.testing.clock.VirtualClock go."""
    settings = project.consumer_group(group)
    models = {
        topic: (project.schema_model(name) if name else None)
        for topic, name in settings.topic_schemas.items()
    }
    handled: list[Any] = []
    handler = recording(load_handler(settings.handler, settings.import_paths), handled)
    key_fields = {t.name: t.key_field for t in project.topic_settings()}
    emit_models = {topic: project.topic_model(topic) for topic in settings.emits}
    worker = GroupWorker(
        settings,
        models,
        handler,
        consumer_factory=consumer_factory,
        producer_factory=producer_factory,
        emit_key_fields=key_fields,
        emit_models=emit_models,
        rng=random.Random(seed).random,  # backoff jitter: the same from run to run
        **options,
    )
    return GroupRun(group, worker, handled)


class MemoryEngine:
    """The selected groups' workers on a MemoryCluster, run in turns until no event is left anywhere."""

    def __init__(self, project: CompiledProject, groups: Sequence[str], cluster: MemoryCluster):
        self.cluster = cluster
        self._turns = Turns()
        self.groups: dict[str, GroupRun] = {}
        for name in groups:
            self.groups[name] = self._build(project, name)

    def _build(self, project: CompiledProject, name: str) -> GroupRun:
        cluster, turns = self.cluster, self._turns
        consumers: list[Any] = []

        def consumer_factory(config: dict[str, Any]) -> MemoryConsumer:
            consumer = MemoryConsumer(config, cluster, turns, name)
            consumers.append(consumer)
            return consumer

        def producer_factory(config: dict[str, Any]) -> MemoryProducer:
            return MemoryProducer(config, cluster)

        run = build_group(
            project, name, consumer_factory=consumer_factory, producer_factory=producer_factory,
            seed=cluster.seed,
        )  # fmt: skip
        run.consumers = consumers
        return run

    def start(self, timeout: float) -> None:
        """Start each worker's thread and let it run to its first poll (where it joins its group)."""
        for run in self.groups.values():
            run.thread = threading.Thread(
                target=self._run_worker, args=(run,), name=f"kpipe-test:{run.name}", daemon=True
            )
            self._turns.give(run.name, lambda run=run: run.alive, timeout, start=run.thread.start)

    def _run_worker(self, run: GroupRun) -> None:
        try:
            run.exit_code = run.worker.run()
        finally:
            self._turns.finished(run.name)

    def drain(self, timeout: float) -> None:
        """Give the workers turns until, for QUIET_ROUNDS rounds, none found an event and none produced one."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while quiet < QUIET_ROUNDS:
            before = self.cluster.appended
            fetched = False
            busy = False
            for run in self.groups.values():
                if not run.alive:
                    continue
                remaining = deadline - time.monotonic()
                try:
                    self._turns.give(run.name, lambda run=run: run.alive, max(remaining, 0.0))
                except TurnTimeout:
                    raise DrainTimeout(
                        f"consumer group '{run.name}' was still handling an event after {timeout:g} s"
                    ) from None
                fetched = fetched or any(consumer.fetched for consumer in run.consumers)
                busy = busy or (run.alive and run.busy())
            if fetched or busy or self.cluster.appended != before:
                quiet = 0
            else:
                quiet += 1
            if quiet < QUIET_ROUNDS and time.monotonic() >= deadline:
                raise DrainTimeout(f"events were still being handled after {timeout:g} s")
            if not any(run.alive for run in self.groups.values()):
                return

    def stop(self) -> None:
        """Ask every worker to stop, let them run freely to commit and close, and wait for their threads."""
        for run in self.groups.values():
            run.worker.stop()
        self._turns.release()
        for run in self.groups.values():
            if run.thread is not None:
                run.thread.join(STOP_TIMEOUT)

    def stopped(self) -> list[str]:
        """Groups whose worker halted (on_error: stop, or a dead letter it could not write)."""
        return sorted(
            name
            for name, run in self.groups.items()
            if not run.alive and run.exit_code is not None and run.exit_code != WORKER_EXIT_OK
        )

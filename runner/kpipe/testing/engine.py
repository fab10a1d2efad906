"""The one place `kpipe.testing` meets the runtime: each selected consumer group is the GroupWorker `kpipe run`
starts, built from the same compiled settings, schema models and handler, with client factories that make
in-memory clients instead of librdkafka ones. Only the broker is replaced.

`kpipe run` spawns one process per instance (the supervisor); here each group is one worker in a thread of this
process, and the workers take turns (turns.py), so a run opens no socket and starts no process. Two more parts
of the outside world are replaced, through the same `Outside`: time (clock.py: a VirtualClock, moved on by
drain() when every worker waits for it) and, for groups with `concurrency` above 1, where handlers run
(executors.py: one after another, in the order the loop starts them), so that a run repeats exactly.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kpipe.compilation.project import CompiledProject
from kpipe.runtime.client_protocols import SYSTEM_CLOCK, Clock
from kpipe.runtime.concurrent.executor import ExecutorFactory, is_async_handler, make_executor
from kpipe.runtime.handler import load_handler
from kpipe.runtime.protocol import WORKER_EXIT_OK
from kpipe.runtime.worker.core import EmitTargets, GroupWorker, Outside
from kpipe.testing.clients import MemoryConsumer, MemoryProducer
from kpipe.testing.clock import VirtualClock
from kpipe.testing.executors import inline_executor
from kpipe.testing.memory_cluster import MemoryCluster
from kpipe.testing.turns import Turns, TurnTimeout

# A drained run is one where every worker polled this many times in a row and found nothing to do.
QUIET_ROUNDS = 2
# When every worker is idle but one waits for the clock (a retry's timer, a batch commit's interval), drain()
# moves virtual time on by FIRST_JUMP, then by twice as much each round nothing happens, until something does
# (the first deadline is passed by less than the time waited for it so far).
FIRST_JUMP = 0.001
# Virtual seconds waited with nothing happening after which drain() gives up on what its workers wait for.
LONGEST_WAIT = 7 * 24 * 3600.0
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

    def waiting(self) -> bool:
        """Between turns, whether the worker waits for time to pass: events in flight (with handlers run inline,
        only those waiting for a retry's timer), or offsets read and not committed yet (a batch commit)."""
        return self.alive and (self.busy() or any(consumer.uncommitted() for consumer in self.consumers))

    def progress(self) -> tuple[int, ...]:
        """What changes when the worker does anything: its counters, and its events in flight and queued."""
        c, status = self.worker.counters, self.worker.status()
        return (
            c.handled, c.failed, c.retried, c.dead_lettered, c.skipped, c.commits, c.rebalances,
            status.in_flight, status.queued,
        )  # fmt: skip


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
    clock: Clock = SYSTEM_CLOCK,
    executors: ExecutorFactory = make_executor,
    **options: Any,
) -> GroupRun:
    """The group's worker as kpipe.runtime.worker.process.build_worker makes it from a loaded project, with these
    client factories, clock and executors, its handler recording what it returned from.

    The only call into the worker's constructor in kpipe.testing: its outside world (Outside) is given here."""
    settings = project.consumer_group(group)
    models = {
        topic: (project.schema_model(name) if name else None)
        for topic, name in settings.topic_schemas.items()
    }
    handled: list[Any] = []
    handler = recording(load_handler(settings.handler, settings.import_paths), handled)
    key_fields = {t.name: t.key_field for t in project.topic_settings()}
    emit_models = {topic: project.topic_model(topic) for topic in settings.emits}
    outside = Outside(
        consumer=consumer_factory,
        producer=producer_factory,
        executors=executors,
        clock=clock,
        rng=random.Random(seed).random,  # backoff jitter: the same from run to run
    )
    worker = GroupWorker(
        settings,
        models,
        handler,
        outside=outside,
        emit_targets=EmitTargets(key_fields, emit_models),
        **options,
    )
    return GroupRun(group, worker, handled)


class MemoryEngine:
    """The selected groups' workers on a MemoryCluster, run in turns until no event is left anywhere."""

    def __init__(self, project: CompiledProject, groups: Sequence[str], cluster: MemoryCluster):
        self.cluster = cluster
        self.clock = VirtualClock()
        self._turns = Turns(overrun=self.clock.advance)
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
            seed=cluster.seed, clock=self.clock, executors=inline_executor,
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
        """Give the workers turns until, for QUIET_ROUNDS rounds, none found an event, produced one or did
        anything else, and none waits for the clock. While every worker is idle and one waits for the clock
        (a retry's backoff, a batch commit's interval), virtual time moves on (FIRST_JUMP, doubling)."""
        deadline = time.monotonic() + timeout
        quiet = 0
        jump = FIRST_JUMP
        waited = 0.0  # virtual seconds jumped since anything happened
        while True:
            before = self._progress()
            fetched = False
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
            if not any(run.alive for run in self.groups.values()):
                return
            if fetched or self._progress() != before:
                quiet, jump, waited = 0, FIRST_JUMP, 0.0
            else:
                quiet += 1
            if quiet >= QUIET_ROUNDS:
                waiting = [run.name for run in self.groups.values() if run.waiting()]
                if not waiting:
                    return
                if waited >= LONGEST_WAIT:
                    raise DrainTimeout(
                        f"consumer group '{waiting[0]}' was still waiting after {waited:g} s of virtual time"
                    )
                self.clock.advance(jump)
                waited += jump
                jump *= 2
            if time.monotonic() >= deadline:
                raise DrainTimeout(f"events were still being handled after {timeout:g} s")

    def _progress(self) -> tuple[Any, ...]:
        """What changes when any worker does anything: records appended, the workers' counters (commits too)."""
        return (self.cluster.appended, *(run.progress() for run in self.groups.values()))

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

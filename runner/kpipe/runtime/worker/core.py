"""GroupWorker: one consumer-group member, built from compiled settings and injected client factories."""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException
from confluent_kafka import Producer as KafkaProducer
from pydantic import BaseModel

from kpipe.compilation.compiled import ConsumerGroupSettings, commit_settings
from kpipe.logs import RateLimitedLog
from kpipe.runtime.client_protocols import (
    SYSTEM_CLOCK,
    Clock,
    ConsumerClient,
    ConsumerFactory,
    ProducerClient,
    ProducerFactory,
)
from kpipe.runtime.concurrent.executor import ExecutorFactory, is_async_handler, make_executor
from kpipe.runtime.handler import Emitter, Handler, HandlerContext
from kpipe.runtime.hang_counts import HangCounts
from kpipe.runtime.meter import WorkerMeter
from kpipe.runtime.producer import LibrdkafkaLog
from kpipe.runtime.protocol import WORKER_EXIT_CRASH, WORKER_EXIT_HALT, WORKER_EXIT_OK, WorkerStatus
from kpipe.runtime.worker.cluster_health import ClusterHealth
from kpipe.runtime.worker.commit import STRATEGIES, CommitConfirmations
from kpipe.runtime.worker.concurrent import ConcurrentLoop
from kpipe.runtime.worker.control import Control, Counters
from kpipe.runtime.worker.emits import EmitSettler
from kpipe.runtime.worker.failures import FailurePolicy
from kpipe.runtime.worker.hangs import HangWatch, StallWatch
from kpipe.runtime.worker.loop import STATUS_INTERVAL, ConsumeLoop, Validators
from kpipe.runtime.worker.membership import Membership
from kpipe.runtime.worker.monitor import Monitor
from kpipe.runtime.worker.rebalance import Rebalance
from kpipe.runtime.worker.sequential import SequentialLoop
from kpipe.runtime.worker.shutdown import Shutdown

log = logging.getLogger("kpipe.runtime.worker")

DEFAULT_POLL_TIMEOUT = 0.1
DEFAULT_CLUSTER_TIMEOUT = 60.0
DEFAULT_SHUTDOWN_TIMEOUT = 30.0
# The monitor thread sends a status when none was sent for this long (the loop is in a long batch or call).
HEARTBEAT_AFTER = 2 * STATUS_INTERVAL


@dataclass(frozen=True)
class Outside:
    """What a worker talks to outside itself, each replaceable by a test or an in-memory harness: its
    librdkafka clients (built from their final config), the executor of a concurrent group's handler, time,
    and the randomness of retry jitter."""

    consumer: ConsumerFactory = Consumer
    producer: ProducerFactory = KafkaProducer
    executors: ExecutorFactory = make_executor
    clock: Clock = SYSTEM_CLOCK
    rng: Callable[[], float] = random.random


@dataclass(frozen=True)
class Limits:
    """How long a worker waits: for one consume() call, for an unreachable cluster before it exits for a
    restart, and for a handler at a stop (the supervisor's SIGKILL comes after shutdown)."""

    poll: float = DEFAULT_POLL_TIMEOUT
    cluster: float = DEFAULT_CLUSTER_TIMEOUT
    shutdown: float = DEFAULT_SHUTDOWN_TIMEOUT


@dataclass(frozen=True)
class Hooks:
    """What the worker tells its host. status(WorkerStatus): about once a second and on changes. on_stuck(reason):
    a librdkafka call blocked past the cluster limit. exit_process(code): how the process ends at once when a
    handler hangs or will not return at a stop (worker_main: os._exit); None (in-process) only stops the
    worker, which then ends when the handler returns."""

    status: Callable[[WorkerStatus], None] | None = None
    on_stuck: Callable[[str], None] | None = None
    exit_process: Callable[[int], None] | None = None


@dataclass(frozen=True)
class EmitTargets:
    """The topics a handler may emit to: each one's key field and schema model (None: raw bytes)."""

    key_fields: Mapping[str, str | None] | None = None
    models: Mapping[str, type[BaseModel] | None] | None = None


class _Engine:
    """The parts that exist once the clients do, built whole by GroupWorker._build."""

    def __init__(
        self,
        consumer: ConsumerClient,
        producer: ProducerClient | None,
        membership: Membership,
        loop: ConsumeLoop,
        rebalance: Rebalance,
        shutdown: Shutdown,
    ):
        self.consumer = consumer
        self.producer = producer
        self.membership = membership
        self.loop = loop
        self.rebalance = rebalance
        self.shutdown = shutdown


class GroupWorker:
    """One member of a consumer group. `run()` blocks until stop() or a fatal condition; returns an exit code.

    settings: compiled (kpipe.compilation): `settings.client_for(instance)` is the consumer's final config,
    which the worker passes to `outside.consumer` as it is, adding only callbacks; `settings.producer_client`
    likewise to `outside.producer` (dead letters, events emitted by topic name), when the group has one.
    """

    def __init__(
        self,
        settings: ConsumerGroupSettings,
        models: Mapping[str, type[BaseModel] | None],
        handler: Handler,
        *,
        instance: int = 0,
        outside: Outside = Outside(),
        limits: Limits = Limits(),
        hooks: Hooks = Hooks(),
        emit_targets: EmitTargets = EmitTargets(),
        state_dir: str | None = None,
        metrics: bool = False,
    ):
        """state_dir: the run's shared state (hung-handler counts, kpipe.runtime.hang_counts); None keeps them in
        memory. metrics: measure histograms and lag for Prometheus (None keeps the hot path free of timing)."""
        self.settings = settings
        self.group = settings.group_id
        self.instance = instance
        # The final client configs, exactly as compiled (kpipe explain shows the same).
        self.consumer_config: dict[str, str] = settings.client_for(instance).as_dict()
        self.producer_config: dict[str, str] | None = (
            settings.producer_client.as_dict() if settings.producer_client is not None else None
        )
        _require_compiled(settings, self.consumer_config)
        self._handler = handler
        self._models = models
        self._outside = outside
        self._limits = limits
        self._hooks = hooks
        self._emit_targets = emit_targets
        self.state = "starting"
        self.counters = Counters()
        # Histograms and lag for Prometheus; None keeps the hot path free of any timing.
        self.meter = WorkerMeter() if metrics else None
        self._control = Control()
        self._limited = RateLimitedLog(log)
        bootstrap = self.consumer_config.get("bootstrap.servers")
        self._health = ClusterHealth(bootstrap, limits.cluster, self._control, self._limited, self.counters)
        self._monitor = Monitor(self.group, limits.cluster, hooks.on_stuck, outside.clock)
        self._report_lock = threading.Lock()  # the monitor thread reports too
        self._hangs = HangCounts(state_dir, self.group)
        self._watch = HangWatch(
            self.group, settings.on_error.timeout_ms, self._hangs, self._control, limits.shutdown,
            self._leave, self._report,
        )  # fmt: skip
        self._stall = StallWatch(settings.on_error.timeout_ms)
        self._engine: _Engine | None = None  # built by run(), once the clients exist
        self._reported_at = 0.0

    # -- control and state ------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to finish the message in hand, commit what it processed, and close. Thread-safe."""
        self._control.stop()

    @property
    def stopping(self) -> bool:
        return self._control.requested

    @property
    def exit_code(self) -> int | None:
        return self._control.exit_code

    @property
    def error(self) -> str | None:
        return self._control.error

    @property
    def assigned(self) -> set[tuple[str, int]]:
        return self._engine.membership.assigned if self._engine is not None else set()

    @property
    def left_without_close(self) -> bool:
        """True when the worker stopped mid-join (or with no broker) and left the consumer unclosed (no
        LeaveGroup): its process must then end with os._exit, since destroying the client would send it after all.
        """
        return self._engine is not None and self._engine.shutdown.left_without_close

    @property
    def handled(self) -> int:
        return self.counters.handled

    @property
    def dead_lettered(self) -> int:
        return self.counters.dead_lettered

    @property
    def skipped(self) -> int:
        return self.counters.skipped

    @property
    def commits(self) -> int:
        return self.counters.commits

    def status(self) -> WorkerStatus:
        engine = self._engine
        loop_fields = engine.loop.metrics() if engine is not None else {}
        counters = self.counters
        unfinished = loop_fields.get("in_flight", 0) + (1 if self._watch.current is not None else 0)
        stalled = self._stall.check(
            counters.handled + counters.dead_lettered + counters.skipped, unfinished,
            self._outside.clock.monotonic(),
        )  # fmt: skip
        return WorkerStatus(
            group=self.group,
            instance=self.instance,
            pid=os.getpid(),
            assigned=tuple(sorted(self.assigned)),
            state=self.state,
            error=self.error,
            joining=self.state == "running" and engine is not None and engine.membership.joining,
            busy=self._watch.busy if self._watch.current is not None else None,
            stalled=stalled,
            unreachable=self._health.unreachable,
            **counters.status_fields(self.meter),
            **loop_fields,
        )

    # -- lifecycle --------------------------------------------------------------------------------------------

    def run(self) -> int:
        """Consume until stopped; returns a worker exit code (kpipe.runtime.protocol)."""
        control = self._control
        try:
            engine = self._engine = self._build()
        except KafkaException as exc:
            reason = f"consumer group '{self.group}': invalid client configuration: {exc.args[0].str()}"
            log.error("%s", reason)
            self.state, control.error = "failed", reason
            self._report()
            return WORKER_EXIT_HALT
        self.state = "running"
        self._report()
        self._start_monitor(engine.membership)
        try:
            engine.loop.run()
        except Exception as exc:  # a bug or an unexpected client failure: say so, keep what was processed
            log.exception("consumer group '%s': worker failed", self.group)
            control.halt(WORKER_EXIT_CRASH, f"{type(exc).__name__}: {exc}")
        finally:
            try:
                self.state = "stopping"
                self._report()
                engine.shutdown.close()  # commit what was processed, close the clients
            finally:
                self._monitor.stop()
        code = control.exit_code = control.exit_code if control.exit_code is not None else WORKER_EXIT_OK
        self.state = "stopped" if code == WORKER_EXIT_OK else "failed"
        self._report()
        return code

    def _start_monitor(self, membership: Membership) -> None:
        """The monitor thread runs what must happen while the loop is inside a long batch or handler call:
        the hung-handler checks, the cluster's health, and status reports (their stopping means a frozen
        process: the supervisor's staleness rule)."""
        health = self._health

        def watch_cluster(now: float) -> None:
            health.probe_while_busy(now, membership.last_poll)
            health.expire(now)

        def heartbeat(now: float) -> None:
            if now - self._reported_at >= HEARTBEAT_AFTER:
                self._report()

        for check in (self._watch.tick, watch_cluster, heartbeat):
            self._monitor.every_tick(check)
        self._monitor.start()

    def _build(self) -> _Engine:
        """Build the clients through the factories, then each part that uses them, whole; subscribe."""
        settings, control, counters, outside = self.settings, self._control, self.counters, self._outside
        strategy_class = STRATEGIES[settings.commit.strategy]
        # The consumer's on_commit reports the commits that return before the broker answers (auto, per_message).
        confirmations = CommitConfirmations(counters, self._limited)
        on_commit = confirmations.on_commit if strategy_class.commits_in_background else None
        consumer = outside.consumer(self._consumer_conf(on_commit))
        producer, emitter = self._producer_and_emitter()
        ctx = HandlerContext(self.group, emitter)
        max_poll_interval = int(self.consumer_config.get("max.poll.interval.ms", 300_000)) / 1000.0
        membership = Membership(consumer, settings.max_poll_records, max_poll_interval, outside.clock)
        settler = EmitSettler(emitter, producer, membership, control)
        strategy = strategy_class(
            settings.commit,
            consumer,
            settler,
            membership,
            self._monitor,
            counters,
            self._limited,
            outside.clock,
            confirmations,
            topics=settings.topics,
        )
        policy = FailurePolicy(self.group, settings.on_error, control, counters, outside.rng)
        parts: dict[str, Any] = dict(
            consumer=consumer, handler=self._handler, validators=Validators(settings.topics, self._models),
            strategy=strategy, policy=policy, producer=producer, membership=membership, health=self._health,
            control=control, counters=counters, max_records=settings.max_poll_records,
            poll_timeout=self._limits.poll, housekeeping=self._housekeeping, meter=self.meter, clock=outside.clock,
        )  # fmt: skip
        loop: ConsumeLoop
        if is_concurrent(settings, self._handler):
            loop = ConcurrentLoop(
                **parts, settings=settings, emitter=emitter, executors=outside.executors,
            )  # fmt: skip
        else:
            loop = SequentialLoop(**parts, ctx=ctx, watch=self._watch, hang_counts=self._hangs)
        rebalance = Rebalance(
            self.group, settings.max_poll_records, self.consumer_config, self._limits.shutdown, membership,
            self._health, counters, strategy, loop, self._report,
        )  # fmt: skip
        shutdown = Shutdown(
            self.group, self.instance, consumer, producer, strategy, membership, self._health, rebalance,
            self._hooks.exit_process,
        )  # fmt: skip
        consumer.subscribe(
            list(settings.topics), on_assign=rebalance.on_assign, on_revoke=rebalance.on_revoke,
            on_lost=rebalance.on_lost,
        )  # fmt: skip
        how = loop.describe()
        log.info(
            "consumer group '%s' instance %d: subscribed to %s (commit: %s, on_error: %s%s)",
            self.group, self.instance, ", ".join(settings.topics), strategy.name, settings.on_error.action,
            f", {how}" if how else "",
        )  # fmt: skip
        rebalance.log_joining(outside.clock.monotonic())
        return _Engine(consumer, producer, membership, loop, rebalance, shutdown)

    def _consumer_conf(self, on_commit: Callable[[Any, Any], None] | None) -> dict[str, Any]:
        """The compiled consumer config plus the worker's callbacks (nothing else is added)."""
        conf: dict[str, Any] = {**self.consumer_config, "error_cb": self._health.on_client_error}
        if on_commit is not None:
            conf["on_commit"] = on_commit
        if self.meter is not None:
            conf["stats_cb"] = self.meter.on_statistics  # consumer lag, every statistics.interval.ms
        conf.setdefault("logger", LibrdkafkaLog())
        return conf

    def _producer_and_emitter(self) -> tuple[ProducerClient | None, Emitter]:
        """The group's producer (dead letters, declared emits) when it can send through one, and what ctx.emit
        writes with: only the declared emits, each validated against its topic's schema model, and events sent
        through kpipe Producers, which every group may do (with no producer of its own, only those)."""
        producer: ProducerClient | None = None
        if self.producer_config is not None:
            pconf: dict[str, Any] = {**self.producer_config, "error_cb": self._health.on_producer_error}
            pconf.setdefault("logger", LibrdkafkaLog())
            producer = self._outside.producer(pconf)
        targets = self._emit_targets
        emitter = Emitter(
            producer, targets.key_fields, emits=self.settings.emits, models=targets.models, group=self.group
        )
        return producer, emitter

    # -- status -----------------------------------------------------------------------------------------------

    def _housekeeping(self, now: float) -> None:
        engine = self._engine
        if engine is not None:
            self._health.probe(now, engine.consumer)
            engine.rebalance.housekeeping(now)
        self._report()

    def _report(self) -> None:
        self._reported_at = self._outside.clock.monotonic()
        if self._hooks.status is None:
            return
        try:
            with self._report_lock:
                self._hooks.status(self.status())
        except Exception:  # a status reader's problem must never stop consumption
            log.debug("status callback failed", exc_info=True)

    # -- leaving with a handler still running (hangs.py; the monitor thread) -------------------------------------

    def _leave(self, code: int, reason: str) -> None:
        """A handler hung, or will not return at a stop: stop with `code`, and in a worker process leave now.

        The consume loop is stuck in the handler, so the monitor thread commits what was processed and leaves
        the group (Shutdown.leave, bounded), then ends the process; the hung event stays uncommitted."""
        self._control.halt(code, reason)
        self.state = "failed"
        self._report()
        if self._engine is not None:
            self._engine.shutdown.leave(code)


def is_concurrent(settings: ConsumerGroupSettings, handler: Any) -> bool:
    """Whether a group runs the concurrent loop: `concurrency` above 1, or an `async def` handler (it needs the
    event loop, even one event at a time). `concurrency: 1` with a plain function keeps the sequential loop,
    today's exact path and speed."""
    return settings.concurrency > 1 or is_async_handler(handler)


def _require_compiled(settings: ConsumerGroupSettings, config: Mapping[str, str]) -> None:
    """Refuse settings whose consumer config lacks what at-least-once depends on (not built by the compiler)."""
    wanted = {"group.id": settings.group_id, **commit_settings(settings.commit)}
    wrong = {k: v for k, v in wanted.items() if config.get(k) != v}
    if wrong:
        raise ValueError(
            f"consumer group '{settings.group_id}': the client config is not compiled for its commit policy "
            f"(needs {wrong}); build ConsumerGroupSettings with kpipe.compilation.compiler"
        )
    if (settings.on_error.dead_letter_topic or settings.emits) and settings.producer_client is None:
        raise ValueError(
            f"consumer group '{settings.group_id}': a dead-letter topic or declared emits need producer_client"
        )

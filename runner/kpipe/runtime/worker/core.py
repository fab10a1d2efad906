"""GroupWorker: one consumer-group member, built from compiled settings and injected client factories."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException
from confluent_kafka import Producer as KafkaProducer
from pydantic import BaseModel

from kpipe.compilation.compiled import ConsumerGroupSettings
from kpipe.compilation.compiler import commit_settings
from kpipe.logs import RateLimitedLog
from kpipe.runtime.concurrent.executor import is_async_handler
from kpipe.runtime.handler import Emitter, Handler, HandlerContext
from kpipe.runtime.hangs import HangBook
from kpipe.runtime.meter import WorkerMeter
from kpipe.runtime.producer import LibrdkafkaLog
from kpipe.runtime.protocol import WORKER_EXIT_CRASH, WORKER_EXIT_HALT, WORKER_EXIT_OK, WorkerStatus
from kpipe.runtime.worker.commit import STRATEGIES
from kpipe.runtime.worker.concurrent import ConcurrentLoop
from kpipe.runtime.worker.emits import EmitSettler, NoEmitter
from kpipe.runtime.worker.failures import Failures
from kpipe.runtime.worker.health import ClusterHealth
from kpipe.runtime.worker.hung import HandlerWatch
from kpipe.runtime.worker.loop import ConsumeLoop, Validators
from kpipe.runtime.worker.membership import Membership
from kpipe.runtime.worker.rebalance import Rebalance
from kpipe.runtime.worker.shutdown import Shutdown
from kpipe.runtime.worker.state import Control, Counters
from kpipe.runtime.worker.watchdog import Watchdog

log = logging.getLogger("kpipe.runtime.worker")

DEFAULT_POLL_TIMEOUT = 0.1
DEFAULT_CLUSTER_TIMEOUT = 60.0
DEFAULT_SHUTDOWN_TIMEOUT = 30.0

# Build a librdkafka client from its final config (callbacks included): confluent_kafka's classes, or fakes.
ClientFactory = Callable[[dict[str, Any]], Any]


class GroupWorker:
    """One member of a consumer group. `run()` blocks until stop() or a fatal condition; returns an exit code.

    settings: compiled (kpipe.compilation): `settings.client_for(instance)` is the consumer's final config,
    which the worker passes to `consumer_factory` as it is, adding only callbacks; `settings.producer_client`
    likewise to `producer_factory` (dead letters, emitted events).
    """

    def __init__(
        self,
        settings: ConsumerGroupSettings,
        models: Mapping[str, type[BaseModel] | None],
        handler: Handler,
        *,
        instance: int = 0,
        consumer_factory: ClientFactory = Consumer,
        producer_factory: ClientFactory = KafkaProducer,
        status_callback: Callable[[WorkerStatus], None] | None = None,
        emit_key_fields: Mapping[str, str | None] | None = None,
        emit_models: Mapping[str, type[BaseModel] | None] | None = None,
        poll_timeout: float = DEFAULT_POLL_TIMEOUT,
        cluster_timeout: float = DEFAULT_CLUSTER_TIMEOUT,
        rng: Callable[[], float] = random.random,
        on_stuck: Callable[[str], None] | None = None,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        state_dir: str | None = None,
        exit_process: Callable[[int], None] | None = None,
        metrics: bool = False,
    ):
        """state_dir: the run's shared state (hung-handler counts, kpipe.runtime.hangs); None keeps them in
        memory. exit_process(code): how the worker process ends at once when a handler hangs or will not
        return at a stop (worker_main: os._exit); None (in-process) only stops the worker, which then ends when
        the handler returns."""
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
        self._consumer_factory = consumer_factory
        self._producer_factory = producer_factory
        self._status_callback = status_callback
        self._emit_key_fields = emit_key_fields
        self._emit_models = emit_models
        self._poll_timeout = poll_timeout
        self._rng = rng
        self.state = "starting"
        self.counters = Counters()
        # Histograms and lag for Prometheus; None keeps the hot path free of any timing.
        self.meter = WorkerMeter() if metrics else None
        self._control = Control()
        self._limited = RateLimitedLog(log)
        bootstrap = self.consumer_config.get("bootstrap.servers")
        self._health = ClusterHealth(bootstrap, cluster_timeout, self._control, self._limited, self.counters)
        self._watchdog = Watchdog(self.group, cluster_timeout, on_stuck)
        self._report_lock = threading.Lock()  # the watchdog thread reports too
        self._hangs = HangBook(state_dir, self.group)
        self._watch = HandlerWatch(
            self.group, settings.on_error.timeout_ms, self._hangs, self._control, shutdown_timeout,
            self._leave, self._report,
        )  # fmt: skip
        max_poll_interval = int(self.consumer_config.get("max.poll.interval.ms", 300_000)) / 1000.0
        self._membership = Membership(settings.max_poll_records, max_poll_interval)
        self._rebalance = Rebalance(
            self.group, settings.max_poll_records, self.consumer_config, shutdown_timeout, self._membership,
            self._health, self.counters, self._hangs, self._report,
        )  # fmt: skip
        self._shutdown = Shutdown(
            self.group, instance, self._membership, self._health, self._rebalance, exit_process
        )
        self._consumer: Any = None
        self._producer: Any = None
        # concurrency > 1 or an async handler: the concurrent loop (None: the sequential one).
        self._concurrent: ConcurrentLoop | None = None

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
        return self._membership.assigned

    @property
    def left_without_close(self) -> bool:
        """True when the worker stopped mid-join (or with no broker) and left the consumer unclosed (no
        LeaveGroup): its process must then end with os._exit, since destroying the client would send it after all.
        """
        return self._shutdown.left_without_close

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
        extra = self._concurrent.metrics() if self._concurrent is not None else {}
        return WorkerStatus(
            group=self.group,
            instance=self.instance,
            pid=os.getpid(),
            assigned=tuple(sorted(self.assigned)),
            state=self.state,
            error=self.error,
            joining=self.state == "running" and self._membership.joining,
            busy=self._watch.busy if self._watch.current is not None else None,
            **self.counters.status_fields(self.meter),
            **extra,
        )

    # -- lifecycle --------------------------------------------------------------------------------------------

    def run(self) -> int:
        """Consume until stopped; returns a worker exit code (kpipe.runtime.protocol)."""
        control = self._control
        try:
            loop = self._open()
        except KafkaException as exc:
            reason = f"consumer group '{self.group}': invalid client configuration: {exc.args[0].str()}"
            log.error("%s", reason)
            self.state, control.error = "failed", reason
            self._report()
            return WORKER_EXIT_HALT
        self.state = "running"
        self._report()
        self._watchdog.every_tick(self._watch.tick)
        # The cluster is watched from the watchdog thread too: also while a long batch is being handled.
        health, membership = self._health, self._membership

        def watch_cluster(now: float) -> None:
            health.probe_while_busy(now, membership.last_poll)
            health.expire(now)

        self._watchdog.every_tick(watch_cluster)
        self._watchdog.start()
        try:
            loop.run()
        except Exception as exc:  # a bug or an unexpected client failure: say so, keep what was processed
            log.exception("consumer group '%s': worker failed", self.group)
            control.halt(WORKER_EXIT_CRASH, f"{type(exc).__name__}: {exc}")
        finally:
            try:
                self._close()
            finally:
                self._watchdog.stop()
        code = control.exit_code = control.exit_code if control.exit_code is not None else WORKER_EXIT_OK
        self.state = "stopped" if code == WORKER_EXIT_OK else "failed"
        self._report()
        return code

    def _open(self) -> ConsumeLoop:
        """Build the clients through the factories, and the parts that use them; subscribe."""
        health = self._health
        conf: dict[str, Any] = {**self.consumer_config, "error_cb": health.on_client_error}
        strategy_class = STRATEGIES[self.settings.commit.strategy]
        if strategy_class.commits_in_background:
            conf["on_commit"] = self.counters.on_background_commit
        if self.meter is not None:
            conf["stats_cb"] = self.meter.on_statistics  # consumer lag, every statistics.interval.ms
        conf.setdefault("logger", LibrdkafkaLog())
        consumer = self._consumer = self._shutdown.consumer = self._consumer_factory(conf)
        emitter: Any = NoEmitter()
        ctx = HandlerContext(self.group, None)
        if self.producer_config is not None:
            pconf: dict[str, Any] = {**self.producer_config, "error_cb": health.on_producer_error}
            pconf.setdefault("logger", LibrdkafkaLog())
            self._producer = self._shutdown.producer = self._producer_factory(pconf)
            # Only the declared emits, each validated against its topic's schema model.
            emitter = Emitter(
                self._producer,
                self._emit_key_fields,
                emits=self.settings.emits,
                models=self._emit_models,
                group=self.group,
            )
            ctx = HandlerContext(self.group, emitter)
        membership = self._membership
        membership.consumer = consumer
        settings, control, counters = self.settings, self._control, self.counters
        settler = EmitSettler(emitter, self._producer, membership, control)
        strategy = self._shutdown.strategy = self._rebalance.strategy = strategy_class(
            settings.commit, consumer, settler, membership, self._watchdog, counters, self._limited
        )
        failures = Failures(
            self.group, settings.on_error, self._handler, ctx, self._producer, membership, control, counters,
            self._rng,
        )  # fmt: skip
        rebalance = self._rebalance
        consumer.subscribe(
            list(settings.topics), on_assign=rebalance.on_assign, on_revoke=rebalance.on_revoke,
            on_lost=rebalance.on_lost,
        )  # fmt: skip
        parts: dict[str, Any] = dict(
            consumer=consumer, handler=self._handler, validators=Validators(settings.topics, self._models),
            strategy=strategy, failures=failures, membership=membership, health=health, control=control,
            counters=counters, max_records=settings.max_poll_records, poll_timeout=self._poll_timeout,
            housekeeping=self._housekeeping, meter=self.meter,
        )  # fmt: skip
        if is_concurrent(settings, self._handler):
            loop: ConsumeLoop | ConcurrentLoop = ConcurrentLoop(
                **parts, settings=settings, producer=self._producer,
                emitter=emitter if self._producer is not None else None, rng=self._rng,
            )  # fmt: skip
            self._concurrent = rebalance.concurrent = loop
            how = f", {loop.describe()}"
        else:
            loop = ConsumeLoop(**parts, ctx=ctx, watch=self._watch)
            loop.exhausted = self._hangs.exhausted()
            failures.watch = self._watch  # its retries call the handler too
            how = ""
        log.info(
            "consumer group '%s' instance %d: subscribed to %s (commit: %s, on_error: %s%s)",
            self.group, self.instance, ", ".join(settings.topics), strategy.name, settings.on_error.action, how,
        )  # fmt: skip
        rebalance.log_joining(time.monotonic())
        rebalance.loop = loop
        return loop

    def _close(self) -> None:
        """Commit what was processed, close the consumer, and let the producer deliver what it holds."""
        self.state = "stopping"
        self._report()
        self._shutdown.close()

    # -- status -----------------------------------------------------------------------------------------------

    def _housekeeping(self, now: float) -> None:
        self._health.probe(now, self._consumer)
        self._rebalance.housekeeping(now)
        self._report()

    def _report(self) -> None:
        if self._status_callback is None:
            return
        try:
            with self._report_lock:
                self._status_callback(self.status())
        except Exception:  # a status reader's problem must never stop consumption
            log.debug("status callback failed", exc_info=True)

    # -- leaving with a handler still running (hung.py; the watchdog thread) -------------------------------------

    def _leave(self, code: int, reason: str) -> None:
        """A handler hung, or will not return at a stop: stop with `code`, and in a worker process leave now.

        The consume loop is stuck in the handler, so the watchdog thread commits what was processed and leaves
        the group (Shutdown.leave, bounded), then ends the process; the hung event stays uncommitted."""
        self._control.halt(code, reason)
        self.state = "failed"
        self._report()
        self._shutdown.leave(code)


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
    if settings.on_error.dead_letter_topic and settings.producer_client is None:
        raise ValueError(f"consumer group '{settings.group_id}': a dead-letter topic needs producer_client")

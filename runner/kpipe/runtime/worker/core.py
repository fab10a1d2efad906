"""GroupWorker: one consumer-group member, built from compiled settings and injected client factories."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
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
from kpipe.runtime.protocol import (
    WORKER_EXIT_CRASH,
    WORKER_EXIT_HALT,
    WORKER_EXIT_OK,
    WorkerCounters,
    WorkerStatus,
)
from kpipe.runtime.worker.commit import STRATEGIES, CommitStrategy
from kpipe.runtime.worker.concurrent import ConcurrentLoop
from kpipe.runtime.worker.emits import EmitSettler, NoEmitter
from kpipe.runtime.worker.failures import Failures
from kpipe.runtime.worker.health import ClusterHealth
from kpipe.runtime.worker.hung import HandlerWatch
from kpipe.runtime.worker.loop import ConsumeLoop, Validators
from kpipe.runtime.worker.membership import Membership, describe
from kpipe.runtime.worker.state import SHUTDOWN_SETTLE_TIMEOUT, Control, Counters
from kpipe.runtime.worker.watchdog import Watchdog

log = logging.getLogger("kpipe.runtime.worker")

DEFAULT_POLL_TIMEOUT = 0.1
DEFAULT_CLUSTER_TIMEOUT = 60.0
DEFAULT_SHUTDOWN_TIMEOUT = 30.0
# While no assignment has come, "joining group 'x'…" is logged at start and every this many seconds.
JOIN_LOG_EVERY = 10.0
# Stopped mid-join, the worker leaves this much of the supervisor's shutdown timeout for closing.
JOIN_CLOSE_MARGIN = 3.0
# Leaving because a handler hung: how long committing and leaving the group may take before the process ends.
LEAVE_TIMEOUT = 10.0

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
        self._exit_process = exit_process
        self._report_lock = threading.Lock()  # the watchdog thread reports too
        self._leaving = (
            threading.Lock()
        )  # _close (the loop) and _close_for_restart (the watchdog): one closes
        self._left = False
        self._hangs = HangBook(state_dir, self.group)
        self._watch = HandlerWatch(
            self.group, settings.on_error.timeout_ms, self._hangs, self._control, shutdown_timeout,
            self._leave, self._report,
        )  # fmt: skip
        max_poll_interval = int(self.consumer_config.get("max.poll.interval.ms", 300_000)) / 1000.0
        self._membership = Membership(settings.max_poll_records, max_poll_interval)
        # Stopped while its join is in flight, the worker waits this long for the join to finish (see _close).
        session_timeout = int(self.consumer_config.get("session.timeout.ms", 45_000)) / 1000.0
        self._join_wait = max(0.0, min(session_timeout / 2 + 5.0, shutdown_timeout - JOIN_CLOSE_MARGIN))
        self._next_join_log = 0.0
        # True when the worker stopped mid-join and left the consumer unclosed (no LeaveGroup): its process
        # must then end with os._exit, since destroying the client would send the LeaveGroup after all.
        self.left_without_close = False
        self._consumer: Any = None
        self._producer: Any = None
        self._strategy: CommitStrategy | None = None
        self._loop: ConsumeLoop | ConcurrentLoop | None = None
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
        c = self.counters
        meter = self.meter
        counters = WorkerCounters(
            handled=c.handled, failed=c.failed, retried=c.retried, dead_lettered=c.dead_lettered,
            skipped=c.skipped, commits=c.commits, commit_failures=c.commit_failures, rebalances=c.rebalances,
            commit_seconds=c.commit_seconds.snapshot(),
        )  # fmt: skip
        if meter is not None:
            counters = replace(
                counters,
                handler_seconds=meter.handler_seconds.snapshot(),
                event_age_seconds=meter.event_age_seconds.snapshot(),
            )
        extra = self._concurrent.metrics() if self._concurrent is not None else {}
        return WorkerStatus(
            group=self.group,
            instance=self.instance,
            pid=os.getpid(),
            handled=c.handled,
            dead_lettered=c.dead_lettered,
            skipped=c.skipped,
            committed=c.commits,
            last_commit_at=c.last_commit_at,
            assigned=tuple(sorted(self.assigned)),
            state=self.state,
            error=self.error,
            joining=self.state == "running" and self._membership.joining,
            busy=self._watch.busy if self._watch.current is not None else None,
            counters=counters,
            lag=meter.lag if meter is not None else (),
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
            conf["on_commit"] = self._on_background_commit
        if self.meter is not None:
            conf["stats_cb"] = self.meter.on_statistics  # consumer lag, every statistics.interval.ms
        conf.setdefault("logger", LibrdkafkaLog())
        consumer = self._consumer = self._consumer_factory(conf)
        emitter: Any = NoEmitter()
        ctx = HandlerContext(self.group, None)
        if self.producer_config is not None:
            pconf: dict[str, Any] = {**self.producer_config, "error_cb": health.on_producer_error}
            pconf.setdefault("logger", LibrdkafkaLog())
            self._producer = self._producer_factory(pconf)
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
        strategy = self._strategy = strategy_class(
            settings.commit, consumer, settler, membership, self._watchdog, counters, self._limited
        )
        failures = Failures(
            self.group, settings.on_error, self._handler, ctx, self._producer, membership, control, counters,
            self._rng,
        )  # fmt: skip
        consumer.subscribe(
            list(settings.topics), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
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
            self._concurrent = loop
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
        self._log_joining(time.monotonic())
        self._loop = loop
        return loop

    def _close(self) -> None:
        """Commit what was processed, close the consumer, and let the producer deliver what it holds."""
        self.state = "stopping"
        self._report()
        consumer = self._consumer
        if consumer is None:
            return
        with self._leaving:  # a handler that returns just as the watchdog leaves for it: one of them closes
            if self._left:
                return
            self._left = True
            unreachable = self._health.down_since is not None
            try:
                if unreachable:
                    log.warning(
                        "no broker reachable: nothing more is committed (uncommitted events will be read again)"
                    )
                elif self._strategy is not None:
                    self._strategy.commit_all("shutdown")
            except Exception:
                log.exception("final commit failed")
            if self._membership.joining and not unreachable:
                self._finish_join(consumer)
            if unreachable:
                # close() would try to commit and leave through a broker that is gone, blocking for up to the
                # session timeout; the group drops this member by itself.
                self.left_without_close = True
                log.warning("no broker reachable: leaving without closing the consumer")
            elif self._membership.joining:
                self.left_without_close = True
                log.warning(
                    "consumer group '%s' instance %d: still joining the group; leaving without closing the consumer "
                    "(a LeaveGroup sent mid-join can leave the group without a leader on some brokers); "
                    "the group drops this member after session.timeout.ms",
                    self.group, self.instance,
                )  # fmt: skip
            else:
                try:
                    consumer.close()
                except (KafkaException, RuntimeError) as exc:
                    log.warning("closing the consumer: %s", exc)
            if self._producer is not None:
                # Without a broker, waiting serves nothing: what they belong to is uncommitted and read again.
                left = self._producer.flush(1.0 if unreachable else SHUTDOWN_SETTLE_TIMEOUT)
                if left:
                    log.warning("%d dead-letter/emitted events undelivered at shutdown", left)
            log.info("consumer group '%s' instance %d stopped", self.group, self.instance)

    def _finish_join(self, consumer: Any) -> None:
        """Stopped while a join is in flight: wait (bounded) for its assignment, so that close() leaves a formed
        group. Closing mid-join sends a LeaveGroup that Tansu mishandles: it removes the member but keeps it as
        the forming group's leader, and every later member waits forever for that leader's assignment (the
        group stays stuck until the broker restarts). Messages fetched meanwhile are not handled or committed.
        """
        if self._join_wait <= 0:
            return
        log.info(
            "stopping while joining group '%s': waiting up to %.0f s for the join to finish before leaving",
            self.group, self._join_wait,
        )  # fmt: skip
        deadline = time.monotonic() + self._join_wait
        membership = self._membership
        while membership.joining and time.monotonic() < deadline:
            try:
                consumer.consume(self.settings.max_poll_records, 0.1)
            except (KafkaException, RuntimeError) as exc:
                log.debug("polling while joining: %s", exc)
                return

    # -- rebalance callbacks (run inside consume()) -----------------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.counters.rebalances += 1
        self._health.down_since = None
        self._membership.joined(partitions)
        if self._concurrent is not None:
            self._concurrent.on_assign((tp.topic, tp.partition) for tp in partitions)
        elif isinstance(self._loop, ConsumeLoop):
            # An event another instance hung on may come with these partitions.
            self._loop.exhausted = self._hangs.exhausted()
        log.info("assigned %s", describe(partitions) or "no partitions")
        self._report()

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.counters.rebalances += 1
        keys = [(tp.topic, tp.partition) for tp in partitions]
        try:
            if self._concurrent is not None:
                # Wait (bounded) for the revoked partitions' events in flight; what they finish is committed.
                self._concurrent.before_revoke(keys)
            # With no broker reachable a commit can only block (and a revocation then comes from close()).
            if self._strategy is not None and self._health.down_since is None:
                self._strategy.commit_all("partitions revoked", keys)
        except Exception:  # an exception here would escape from consume(); log it and carry on
            log.exception("commit on revocation failed")
        self._forget(keys)
        log.info("revoked %s", describe(partitions) or "no partitions")

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        # Lost (not revoked): another member may own them already, so committing would be wrong.
        self.counters.rebalances += 1
        keys = [(tp.topic, tp.partition) for tp in partitions]
        if self._concurrent is not None:
            self._concurrent.on_lost(keys)
        self._forget(keys)
        log.warning(
            "lost %s (session timed out?); their uncommitted offsets will be re-read", describe(partitions)
        )

    def _forget(self, keys: list[tuple[str, int]]) -> None:
        if self._strategy is not None:
            self._strategy.forget(keys)
        self._membership.forget(keys)
        self._report()

    def _on_background_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's on_commit, for the commits it makes by itself (enable.auto.commit)."""
        if err is None:
            self.counters.committed()
        elif err.code() != KafkaError._NO_OFFSET:
            self.counters.commit_failed()

    # -- status -----------------------------------------------------------------------------------------------

    def _housekeeping(self, now: float) -> None:
        self._health.probe(now, self._consumer)
        if self._membership.joining and now >= self._next_join_log:
            self._log_joining(now)
        self._report()

    def _log_joining(self, now: float) -> None:
        """Say what the worker waits for while no assignment has come: at start and every JOIN_LOG_EVERY."""
        self._next_join_log = now + JOIN_LOG_EVERY
        waited = now - self._membership.joining_since
        if waited < 1.0:
            log.info("joining group '%s'…", self.group)
        else:
            log.info("joining group '%s'… (%.0f s so far, no assignment yet)", self.group, waited)

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

        The consume loop is stuck in the handler, so this thread commits what was processed and leaves the group
        (bounded, so that it cannot hang too), then ends the process; the hung event stays uncommitted."""
        self._control.halt(code, reason)
        self.state = "failed"
        self._report()
        if self._exit_process is None:
            return
        closing = threading.Thread(target=self._close_for_restart, name="kpipe-leave", daemon=True)
        closing.start()
        closing.join(LEAVE_TIMEOUT)
        self._exit_process(code)

    def _close_for_restart(self) -> None:
        consumer = self._consumer
        if consumer is None or self._health.down_since is not None:
            return
        with self._leaving:
            if self._left:
                return
            self._left = True
            self._commit_and_leave(consumer)

    def _commit_and_leave(self, consumer: Any) -> None:
        try:
            if self._strategy is not None:
                self._strategy.commit_all("leaving for a restart")
            if not self._membership.joining:
                consumer.close()  # the partitions move now rather than after session.timeout.ms
        except Exception as exc:
            log.warning("leaving the group: %s", exc)


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

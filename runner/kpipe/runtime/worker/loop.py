"""The consume loop and the hot path: each message is decoded, validated, handled and marked processed.

Messages arrive in batches from `consume(max_poll_records, poll_timeout)`; each is validated with its topic's
schema model (`model_validate_json`; raw bytes when the topic has none) and passed to `handler(event, ctx)`.
Failures go to Failures (failures.py); processed messages to the commit strategy's per-message hook.

With metrics on (a WorkerMeter), the loop times each batch, and the handler call of the events the meter
chooses (the first of a batch, or all of them after a slow batch) goes through the meter's timed wrapper; the
switch back to the plain handler is one local assignment per event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from kpipe.runtime.client_protocols import SYSTEM_CLOCK, Clock
from kpipe.runtime.handler import Handler, HandlerContext
from kpipe.runtime.hang_counts import HangCounts
from kpipe.runtime.meter import WorkerMeter
from kpipe.runtime.serde import describe_validation_error
from kpipe.runtime.worker.cluster_health import ClusterHealth
from kpipe.runtime.worker.commit import CommitStrategy
from kpipe.runtime.worker.control import Control, Counters
from kpipe.runtime.worker.failures import Failures, Outcome
from kpipe.runtime.worker.membership import Membership, Partition

# How often status is reported and the cluster's health checked.
STATUS_INTERVAL = 1.0

_HALTED, _DROPPED = Outcome.HALTED, Outcome.DROPPED


class Validators:
    """The validator of each topic's schema model; one shared validator (or none) in the usual case."""

    def __init__(self, topics: Iterable[str], models: Mapping[str, type[BaseModel] | None]):
        topic_models: dict[str, type[BaseModel] | None] = {t: models.get(t) for t in topics}
        topic_models.update(models)
        self.by_topic = {
            t: (m.model_validate_json if m is not None else None) for t, m in topic_models.items()
        }
        distinct = set(topic_models.values())
        # One model (or none) for every topic: no per-message lookup.
        self.single = len(distinct) == 1
        only = next(iter(distinct)) if self.single else None
        self.only = only.model_validate_json if only is not None else None


class _Unwatched:
    current: Any = None


class LoopParts:
    """What a consume loop works with (the sequential one here, the concurrent one in concurrent.py), as
    GroupWorker builds it."""

    def __init__(
        self,
        *,
        consumer: Any,
        handler: Handler,
        validators: Validators,
        strategy: CommitStrategy,
        failures: Failures,
        membership: Membership,
        health: ClusterHealth,
        control: Control,
        counters: Counters,
        max_records: int,
        poll_timeout: float,
        housekeeping: Callable[[float], None],
        meter: WorkerMeter | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ):
        self._consumer = consumer
        self._handler = handler
        self._validators = validators
        self._strategy = strategy
        self._failures = failures
        self._membership = membership
        self._health = health
        self._control = control
        self._counters = counters
        self._max_records = max_records
        self._poll_timeout = poll_timeout
        self._housekeeping = housekeeping
        self._meter = meter
        self._clock = clock
        self._timed = meter.timed(handler, _message_of) if meter is not None else handler


class ConsumeLoop(LoopParts):
    """The sequential loop: one message at a time, one HandlerContext reused for every message."""

    def __init__(self, *, ctx: HandlerContext, hang_counts: HangCounts, watch: Any = None, **parts: Any):
        super().__init__(**parts)
        self._ctx = ctx
        # hangs.HangWatch: `current` marks the message whose handler runs (a stand-in when none is given).
        self._watch = watch if watch is not None else _Unwatched()
        self._hang_counts = hang_counts
        # (topic, partition, offset) -> hangs, for events the handler hung on too often (hang_counts.py): not
        # handed to it again. Refreshed on start and on each assignment; empty nearly always, so one truth test
        # per message.
        self.exhausted: dict[tuple[str, int, int], int] = hang_counts.exhausted()

    def describe(self) -> str:
        return ""

    # -- the rebalance path (Rebalance calls these from inside consume()) --------------------------------------

    def on_assign(self, keys: Iterable[Partition]) -> None:
        # An event another instance hung on may come with these partitions.
        self.exhausted = self._hang_counts.exhausted()

    def before_revoke(self, keys: Iterable[Partition]) -> None:
        """Nothing is in flight between two messages: the strategy's commit on revocation has it all."""

    def on_lost(self, keys: Iterable[Partition]) -> None:
        """Messages of lost partitions left in the batch are skipped (Membership.revoked_in_batch)."""

    def metrics(self) -> dict[str, Any]:
        """No WorkerStatus fields of its own (in_flight, queued: the concurrent loop's)."""
        return {}

    def run(self) -> None:
        """Consume until stopped."""
        consume = self._consumer.consume
        max_records = self._max_records
        timeout = self._poll_timeout
        monotonic = self._clock.monotonic
        control = self._control
        membership = self._membership
        strategy = self._strategy
        meter = self._meter
        perf = time.perf_counter
        next_status = 0.0
        while not control.requested:
            if membership.carry:
                msgs = membership.take_carry()
            else:
                msgs = consume(max_records, timeout)
                membership.last_poll = monotonic()
            if msgs:
                # Not a sign that a broker answers: these may have been prefetched before it went away.
                membership.in_batch = True
                started = perf()
                try:
                    self.process(msgs)
                    if meter is not None:
                        meter.batch_done(len(msgs), perf() - started)
                finally:
                    membership.in_batch = False
                    membership.revoked_in_batch.clear()
            now = monotonic()
            strategy.tick(now)
            if now >= next_status:
                next_status = now + STATUS_INTERVAL
                self._housekeeping(now)
            # Whatever paused the partitions to keep the group membership during a long wait (a retry's
            # backoff, emitted events settling before a commit, between batches too) is over: read again.
            if membership.paused:
                membership.resume()

    def _handlers(self) -> tuple[Any, Any]:
        """(handler, first call) for a batch: with metrics on, the first event's call is timed, and after it
        the plain handler (every call timed while handlers are slow: WorkerMeter)."""
        meter = self._meter
        handler = self._timed if meter is not None and meter.time_every_event else self._handler
        return handler, self._timed

    def process(self, msgs: list[Any]) -> None:
        """The hot path: keep per-message work to a few local reads, the handler call and the strategy's hook."""
        handler, call = self._handlers()
        ctx = self._ctx
        validators = self._validators
        one_model = validators.single
        validate = validators.only
        by_topic = validators.by_topic
        control = self._control
        failures = self._failures
        revoked = self._membership.revoked_in_batch
        watch = self._watch
        exhausted = self.exhausted
        processed = self._strategy.begin_batch()
        handled = 0
        try:
            for msg in msgs:
                if control.requested:
                    break
                if msg.error() is not None:
                    self._health.on_message_error(msg)
                    continue
                if revoked and (msg.topic(), msg.partition()) in revoked:
                    continue  # revoked while a retry waited: its new owner reads it from the committed offset
                if not one_model:
                    validate = by_topic.get(msg.topic())
                if validate is None:
                    event = msg.value()
                else:
                    try:
                        event = validate(msg.value())
                    except ValidationError as exc:
                        if _settle(failures.invalid(msg, describe_validation_error(exc)), msg, processed):
                            break
                        continue
                if exhausted and (where := (msg.topic(), msg.partition(), msg.offset())) in exhausted:
                    if _settle(failures.hung_too_often(msg, exhausted[where]), msg, processed):
                        break
                    continue
                ctx._msg = msg
                watch.current = msg
                try:
                    call(event, ctx)
                except Exception as exc:
                    watch.current = None
                    call = handler
                    if _settle(failures.handler_failed(msg, event, exc), msg, processed):
                        break
                    continue
                else:
                    watch.current = None
                    handled += 1
                    call = handler
                # The message is processed: make its offset committable.
                processed(msg)
        finally:
            self._counters.handled += handled
            self._strategy.end_batch()


def _settle(outcome: Outcome, msg: Any, processed: Callable[[Any], None]) -> bool:
    """After a failed message's Outcome: make its offset committable when it was processed (retried, dead-
    lettered, skipped); True when the worker halts (nothing after it is processed)."""
    if outcome is _HALTED:
        return True
    if outcome is not _DROPPED:
        processed(msg)
    return False


def _message_of(ctx: HandlerContext) -> Any:
    return ctx._msg

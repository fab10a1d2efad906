"""The sequential consume loop (concurrency 1, a plain function): the engine's simplest specialisation, and the
hot path: each message of a batch is decoded, validated, handled and settled inline, then marked processed.

Messages arrive in batches from `consume(max_poll_records, poll_timeout)`; each is validated with its topic's
schema model (`model_validate_json`; raw bytes when the topic has none) and passed to `handler(event, ctx)`.
A failure is carried out inline to its final Outcome (InlineFailures, sequential_failures.py, on the one
FailurePolicy's decisions); processed messages go to the commit strategy's per-message hook at once.

With metrics on (a WorkerMeter), the loop times each batch, and the handler call of the events the meter
chooses (the first of a batch, or all of them after a slow batch) goes through the meter's timed wrapper; the
switch back to the plain handler is one local assignment per event.

With tracing on at a sampling ratio, the handler comes with a BatchScope (kpipe.runtime.tracing): entered
around each batch, its `call` stands for the handler there, so an event that is not traced costs a counter and a
headers check rather than a context change of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import ValidationError

from kpipe.runtime.handler import HandlerContext
from kpipe.runtime.hang_counts import HangCounts
from kpipe.runtime.serde import describe_validation_error
from kpipe.runtime.tracing import batch_scope
from kpipe.runtime.worker.failures import Outcome
from kpipe.runtime.worker.loop import ConsumeLoop
from kpipe.runtime.worker.membership import Partition
from kpipe.runtime.worker.sequential_failures import InlineFailures

_HALTED, _DROPPED = Outcome.HALTED, Outcome.DROPPED


class _Unwatched:
    current: Any = None


class SequentialLoop(ConsumeLoop):
    """One message at a time, one HandlerContext reused for every message."""

    def __init__(self, *, ctx: HandlerContext, hang_counts: HangCounts, watch: Any = None, **parts: Any):
        super().__init__(**parts)
        self._ctx = ctx
        # hangs.HangWatch: `current` marks the message whose handler runs (a stand-in when none is given).
        self._watch = watch if watch is not None else _Unwatched()
        self._failures = InlineFailures(
            self._policy, self._handler, ctx, self._producer, self._membership, self._control, self._counters,
            watch=self._watch, clock=self._clock,
        )  # fmt: skip
        self._hang_counts = hang_counts
        # Tracing's cheaper calls of the handler through a batch (None: tracing off, or sampling everything).
        self._scope = batch_scope(self._handler)
        # (topic, partition, offset) -> hangs, for events the handler hung on too often (hang_counts.py): not
        # handed to it again. Refreshed on start and on each assignment; empty nearly always, so one truth test
        # per message.
        self.exhausted: dict[tuple[str, int, int], int] = hang_counts.exhausted()

    def on_assign(self, keys: Iterable[Partition]) -> None:
        # An event another instance hung on may come with these partitions.
        self.exhausted = self._hang_counts.exhausted()

    # before_revoke: nothing is in flight between two messages, the strategy's commit on revocation has it all.
    # on_lost: messages of lost partitions left in the batch are skipped (Membership.revoked_in_batch).

    def _fetch(self) -> Any:
        msgs = self._consumer.consume(self._max_records, self._poll_timeout)
        self._membership.last_poll = self._clock.monotonic()
        return msgs

    def _dispatch(self, msgs: list[Any]) -> None:
        membership = self._membership
        meter = self._meter
        # Not a sign that a broker answers: these may have been prefetched before it went away.
        membership.in_batch = True
        started = time.perf_counter()
        scope = self._scope
        token = scope.enter() if scope is not None else None
        try:
            self.process(msgs)
            if meter is not None:
                meter.batch_done(len(msgs), time.perf_counter() - started)
        finally:
            if scope is not None:
                scope.leave(token)
            membership.in_batch = False
            membership.revoked_in_batch.clear()

    def _handlers(self) -> tuple[Any, Any]:
        """(handler, first call) for a batch: with metrics on, the first event's call is timed, and after it
        the plain handler (every call timed while handlers are slow: WorkerMeter), or tracing's call for a
        batch (process() runs inside its scope: _dispatch)."""
        meter = self._meter
        scope = self._scope
        plain = scope.call if scope is not None else self._handler
        handler = self._timed if meter is not None and meter.time_every_event else plain
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

"""The concurrent consume loop: up to `concurrency` events in flight, in order per key (kpipe.runtime.concurrent).

GroupWorker (kpipe.runtime.worker) builds this specialisation of the consume engine (loop.ConsumeLoop, whose
turns it runs) instead of the SequentialLoop when the group's `concurrency` is above 1 or its handler is
`async def`; everything around it (clients, commit strategies, the failure policy, membership, cluster health,
the monitor, status, shutdown) is the same. What it says of each step of a turn, on the consumer thread:

    fetch     consume() what fits in the buffer (with events queued: once a quarter of it is free); with
              events in flight it does not block, so completions never wait for a fetch
    start     the scheduler's ready events are validated here and handed to the executor; with metrics on,
              the first of them (all of them while handlers are slow) is timed, as in the sequential loop
    finish    completions come back on one queue (handler returned or raised; an emitted event acknowledged;
              a dead letter acknowledged). An event is finished when its handler returned and each event it
              emitted by topic name was acknowledged, or when the error policy disposed of it
    retry     a failed event's next step is the FailurePolicy's decision (failures.py), carried out without
              blocking by EventFailures (event_failures.py): a retry waits for its backoff on a timer, its key
              blocked and its slot held; a dead letter's acknowledgement comes back as a completion
    commit    the messages that became committable (the contiguous finished prefix of each partition, in
              offset order) go to the group's CommitStrategy as processed messages, exactly as the
              sequential loop hands them over; per_message gets the last one per partition per turn
    flow      no fetch possible for FULL_POLL_INTERVAL: pause the assigned partitions (and poll, for
              rebalances and the membership); drained to half: resume them (FlowControl, flow.py)

Revocation (before_revoke, from the worker's rebalance callback) drops the revoked partitions' queued events,
waits (bounded) for their events in flight and hands over what became committable, so the strategy's
commit on revocation includes it. Lost partitions are dropped without waiting. On stop, queued events are
dropped and events in flight finish (bounded) before the worker's final commit.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import ValidationError

from kpipe.compilation.compiled import ConsumerGroupSettings
from kpipe.runtime.concurrent.executor import ACK, DONE, EventLoop, ExecutorFactory, make_executor
from kpipe.runtime.concurrent.offset_tracker import OffsetTracker
from kpipe.runtime.concurrent.scheduler import KeyScheduler, Work
from kpipe.runtime.handler import Emitter
from kpipe.runtime.protocol import WORKER_EXIT_CLUSTER
from kpipe.runtime.serde import describe_validation_error
from kpipe.runtime.worker.control import SHUTDOWN_SETTLE_TIMEOUT
from kpipe.runtime.worker.event_failures import DLQ, EventFailures
from kpipe.runtime.worker.event_failures import DONE as _DONE
from kpipe.runtime.worker.event_failures import HANDLED as _HANDLED
from kpipe.runtime.worker.event_failures import RUNNING as _RUNNING
from kpipe.runtime.worker.flow import FlowControl
from kpipe.runtime.worker.loop import ConsumeLoop
from kpipe.runtime.worker.membership import Partition

log = logging.getLogger("kpipe.runtime.worker")

# Events buffered per slot of concurrency (at least max_poll_records in all): enough distinct keys in the
# buffer to keep every slot busy when keys are spread, bounded memory when one key is hot.
BUFFER_PER_SLOT = 10
# Events kept for commits (finished above an unfinished one, plus the unfinished) are bounded at this many
# buffers: a stuck event stops the fetching (and, after FULL_POLL_INTERVAL, pauses the partitions) rather than
# letting memory grow with everything that finished after it.
HELD_PER_BUFFER = 4
# With events in flight the loop waits at most this long for a completion before fetching again.
IDLE_WAIT = 0.01
# No fetch possible for this long (the buffer stays full): pause the partitions and poll. Pausing at once
# would thrash: a resumed partition is fetched again from scratch.
FULL_POLL_INTERVAL = 0.5
# How long a revocation waits for the revoked partitions' events in flight before releasing them anyway.
REVOKE_TIMEOUT = 10.0


def buffer_capacity(concurrency: int, max_poll_records: int) -> int:
    return max(max_poll_records, concurrency * BUFFER_PER_SLOT)


class ConcurrentLoop(ConsumeLoop):
    def __init__(
        self,
        *,
        settings: ConsumerGroupSettings,
        emitter: Emitter | None,
        executors: ExecutorFactory = make_executor,
        **parts: Any,
    ):
        """executors: builds the executor that runs the handler (make_executor; a test harness may pass a
        deterministic one)."""
        super().__init__(**parts)
        handler = self._handler
        max_records = self._max_records
        self.concurrency = settings.concurrency
        self.ordering = settings.ordering
        self._completions: queue.SimpleQueue = queue.SimpleQueue()
        self._tracker = OffsetTracker()
        self._scheduler = KeyScheduler(
            settings.concurrency, buffer_capacity(settings.concurrency, max_records), settings.ordering
        )
        timeout = self._policy.timeout
        self._executor = executors(
            handler, settings.concurrency, self._completions, group=settings.group_id, emitter=emitter,
            timeout=timeout,
        )  # fmt: skip
        self.is_async = isinstance(self._executor, EventLoop)
        self._errors = EventFailures(
            policy=self._policy, producer=self._producer, completions=self._completions, control=self._control,
            counters=self._counters, finish=self._finish, give_up=self._give_up,
            is_current=self._tracker.is_current, submit=self._executor.submit,
            watch_slow=timeout is not None and not self.is_async, abandon=self._executor.abandon,
            abandon_limit=settings.concurrency, clock=self._clock,
        )  # fmt: skip
        # Events started and not finished or given up yet, per partition.
        self._running: dict[Partition, int] = {}
        # Messages that became committable, not yet handed to the commit strategy.
        self._committable: list[Any] = []
        self._hook: Callable[[Any], None] | None = None
        # Handing over: a hook's commit waits for emitted events and polls, and a revocation or loss from that
        # poll is committed (or dropped) at once; the partitions it took are noted here, and the messages of
        # theirs still to be handed over are skipped (they are not this member's to commit any more).
        self._handing_over = 0
        self._gone: set[Partition] = set()
        self._coalesce = self._strategy.coalesce
        self._flow = FlowControl(self._consumer, self._membership, self._scheduler)
        self._stopping = False

    def describe(self) -> str:
        how = (
            "async handler on one event loop"
            if self.is_async
            else f"sync handler on up to {self.concurrency} threads"
        )
        return f"concurrency {self.concurrency}, ordering {self.ordering}, {how}"

    # -- the steps of a turn (loop.ConsumeLoop runs the turns) -----------------------------------------------

    def _fetch(self) -> Any:
        """What fits in the buffer, not blocking while events are in flight (completions never wait for a
        fetch); with no room for FULL_POLL_INTERVAL, the partitions are paused and polled for the membership."""
        membership = self._membership
        sched = self._scheduler
        monotonic = self._clock.monotonic
        room = sched.fetch_room()
        if room and self._tracker.uncommittable() >= sched.capacity * HELD_PER_BUFFER:
            room = 0  # an old event is stuck: what finished after it waits in memory; fetch no more
        if room:
            msgs = self._consumer.consume(
                min(self._max_records, room), 0 if sched.in_flight else self._poll_timeout
            )
        elif monotonic() - membership.last_poll >= FULL_POLL_INTERVAL:
            self._flow.update(stalled=True)
            msgs = self._consumer.consume(1, 0)  # paused partitions deliver nothing: rebalances, membership
        else:
            return ()
        membership.last_poll = monotonic()
        return msgs

    def _dispatch(self, msgs: list[Any]) -> None:
        self._health.down_since = None
        self._intake(msgs)
        self._start()

    def _settle(self, fetched: bool) -> None:
        """Completions (waiting a little for one when nothing came and events are in flight), retries that are
        due, flow control, the events the completions unblocked, then what became committable."""
        sched = self._scheduler
        self._drain(IDLE_WAIT if not fetched and sched.in_flight else 0.0)
        errors = self._errors
        if errors.timers:
            errors.retry_due()
        if sched.paused:
            self._flow.update()
        self._start()  # what the completions unblocked, before a fetch that may block
        self._hand_over()
        if self._producer is not None:
            self._producer.poll(0)

    def _every_status(self, now: float) -> None:
        if self._errors.slow:
            self._errors.check_slow(now)

    def _may_resume(self) -> bool:
        # A long wait (emits settling) paused everything to keep the membership; flow control's own pause stays.
        return not self._scheduler.paused

    def _close(self) -> None:
        self._executor.close(1.0)

    def _intake(self, msgs: list[Any]) -> None:
        tracker = self._tracker
        offer = self._scheduler.offer
        assigned = self._membership.assigned
        for msg in msgs:
            if msg.error() is not None:
                self._health.on_message_error(msg)
                continue
            tp = (msg.topic(), msg.partition())
            if tp not in assigned:
                continue
            offset = msg.offset()
            if tracker.seen(tp, offset):
                continue  # delivered again after a pause/resume: it is buffered already
            epoch = tracker.track(tp, offset, msg)
            offer(tp, offset, msg.key(), epoch, msg)

    def _start(self) -> None:
        works = self._scheduler.take()
        if not works:
            return
        event_of = self._validators.event_of
        running = self._running
        ready = []
        for work in works:
            running[work.tp] = running.get(work.tp, 0) + 1
            try:
                work.event = event_of(work.payload)
            except ValidationError as exc:
                self._errors.invalid(work, describe_validation_error(exc))
                continue
            work.state = _RUNNING
            ready.append(work)
        if self._errors.watch_slow:
            now = self._clock.monotonic()
            self._errors.slow.update((w.seq, (now, w)) for w in ready)
        if self._meter is not None and ready:
            self._time(ready)
        self._executor.submit(ready)

    def _time(self, ready: list[Work]) -> None:
        """Metrics on: mark the events whose handler call is timed, and observe their age. Like the sequential
        loop, the first of each batch started, or every one while the calls are slow (WorkerMeter)."""
        meter = self._meter
        assert meter is not None
        for work in ready if meter.time_every_event else ready[:1]:
            work.seconds = 0.0
            meter.event_started(work.payload)

    # -- completions ----------------------------------------------------------------------------------------

    def _drain(self, wait: float) -> None:
        completions = self._completions
        try:
            item = completions.get(timeout=wait) if wait > 0 else completions.get_nowait()
        except queue.Empty:
            return
        get = completions.get_nowait
        while True:
            self._complete(*item)
            try:
                item = get()
            except queue.Empty:
                return

    def _complete(self, kind: int, work: Work, error: Any) -> None:
        if kind == DONE:
            if self._errors.watch_slow:
                self._errors.slow.pop(work.seq, None)
            if work.seconds is not None:
                self._meter.handler_done(work.seconds)  # type: ignore[union-attr]
                work.seconds = None
            if work.state is not _RUNNING:
                return  # given up meanwhile (revoked, stopping)
            if error is None:
                self._counters.handled += 1
                work.state = _HANDLED
                if work.acks >= work.emits:
                    self._finish(work)
            else:
                self._errors.handler_failed(work, error)
        elif kind == ACK:
            work.acks += 1
            if error is not None:
                reason = f"events emitted by the handler were not delivered: {error.name()}: {error.str()}"
                log.error("%s; %s stays uncommitted", reason, work)
                self._give_up(work)
                self._control.halt(WORKER_EXIT_CLUSTER, reason)
            elif work.state is _HANDLED and work.acks >= work.emits:
                self._finish(work)
        elif kind == DLQ:
            self._errors.dead_letter_done(work, error)

    def _finish(self, work: Work) -> None:
        """The event is processed: what became committable by it goes to the commit strategy."""
        work.state = _DONE
        self._release(work)
        moved = self._tracker.finish(work.tp, work.offset, work.epoch)
        if moved:
            self._committable.extend(moved)

    def _give_up(self, work: Work) -> None:
        """Stop caring about an event without finishing it (revoked, stopping, halted): it stays uncommitted."""
        if work.state is not _DONE:
            work.state = _DONE
            self._release(work)

    def _release(self, work: Work) -> None:
        self._scheduler.done(work)
        running = self._running
        left = running.get(work.tp, 0) - 1
        if left > 0:
            running[work.tp] = left
        else:
            running.pop(work.tp, None)

    def _hand_over(self) -> None:
        """Give the commit strategy the messages that became committable, as processed messages."""
        msgs = self._committable
        if not msgs:
            return
        self._committable = []
        if self._hook is None:
            self._hook = self._strategy.begin_batch()
        hook = self._hook
        if self._coalesce:  # per_message: one commit per partition per turn, of its highest offset
            msgs = list({(m.topic(), m.partition()): m for m in msgs}.values())
        gone = self._gone
        self._handing_over += 1
        try:
            for msg in msgs:
                if gone and (msg.topic(), msg.partition()) in gone:
                    continue
                hook(msg)
            self._strategy.end_batch()
        finally:
            self._handing_over -= 1
            if not self._handing_over:
                gone.clear()

    # -- revocation and stopping ------------------------------------------------------------------------------

    def _wait_for(self, tps: set[Partition] | None, deadline: float) -> None:
        """Handle completions until no event of `tps` (None: of any partition) is in flight, or the deadline."""
        running = self._running

        def busy() -> bool:
            return bool(running) if tps is None else any(tp in running for tp in tps)

        while busy():
            # Events of these partitions waiting for a retry are not started again: they stay unfinished.
            self._errors.give_up_waiting(tps)
            left = deadline - time.monotonic()
            if not busy() or left <= 0:
                return
            if self._producer is not None:
                self._producer.poll(0)
            self._drain(min(left, 0.05))

    def _finish_in_flight(self) -> None:
        self._stopping = True
        dropped = self._scheduler.drain()
        if self._running:
            log.info("stopping: waiting for %d events in flight (%d queued dropped)",
                     sum(self._running.values()), len(dropped))  # fmt: skip
        self._wait_for(None, time.monotonic() + SHUTDOWN_SETTLE_TIMEOUT)
        if self._running:
            log.warning("stopping: %d events still in flight stay uncommitted", sum(self._running.values()))
        self._hand_over()

    def on_assign(self, keys: Iterable[Partition]) -> None:
        keys = list(keys)
        self._tracker.assign(keys)
        self._flow.assigned(keys)

    def before_revoke(self, keys: Iterable[Partition]) -> None:
        """Partitions are being revoked: drop their queued events, wait (bounded) for those in flight, and hand
        what became committable to the strategy, whose commit on revocation follows."""
        keys = set(keys)
        dropped = self._scheduler.drop(keys)
        waiting = sum(self._running.get(tp, 0) for tp in keys)
        if waiting:
            log.info("revoking %s: waiting for %d events in flight (%d queued dropped)",
                     ", ".join(f"{t}[{p}]" for t, p in sorted(keys)), waiting, len(dropped))  # fmt: skip
        # Stopping, the events in flight were waited for already (closing the consumer revokes everything).
        self._wait_for(keys, time.monotonic() + (0.0 if self._stopping else REVOKE_TIMEOUT))
        self._hand_over()
        self._forget(keys)

    def on_lost(self, keys: Iterable[Partition]) -> None:
        """Partitions lost (another member may own them already): drop everything of theirs, commit nothing."""
        keys = set(keys)
        self._scheduler.drop(keys)
        self._committable = [m for m in self._committable if (m.topic(), m.partition()) not in keys]
        self._forget(keys)

    def _forget(self, keys: set[Partition]) -> None:
        # Events of these partitions still running keep their slot (and key) until they return; their
        # completion no longer counts (the tracker's epoch moved on).
        if self._handing_over:
            self._gone.update(keys)
        self._tracker.revoke(keys)
        self._flow.release(keys)

    # -- status ---------------------------------------------------------------------------------------------

    def metrics(self) -> dict[str, Any]:
        """WorkerStatus fields: events in flight, queued, and the oldest unfinished offset per partition."""
        oldest = self._tracker.oldest_unfinished()
        return {
            "in_flight": self._scheduler.in_flight,
            "queued": self._scheduler.queued,
            "abandoned": self._errors.abandoned,
            "oldest_unfinished": tuple(sorted((t, p, o) for (t, p), o in oldest.items())),
        }

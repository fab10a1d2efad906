"""The concurrent consumer-group member: up to `concurrency` events in flight, in order per key.

ConcurrentGroupWorker is the sequential GroupWorker with another processing loop; everything around it (client
set-up, status, the watchdog, cluster loss, shutdown) is shared. One loop on the consumer thread:

    fetch     consume() at most the room left in the buffer; without events in flight it blocks for the poll
              timeout, with events in flight it does not block (completions must not wait on the fetch)
    start     the scheduler's ready events are validated here, then handed to the executor
    finish    completions (handler returned/raised, emitted event acknowledged, dead letter acknowledged)
              come back on one queue; an event is finished when its handler returned and every event it
              emitted by topic name was acknowledged, or when the error policy disposed of it
    retry     a failed event waits for its backoff on a timer, its key blocked, its slot held; other keys run
    flow      the buffer bounds what is fetched: with events queued, the next fetch waits until a quarter of
              it is free; no fetch for FULL_POLL_INTERVAL: pause the assigned partitions (and poll, for
              rebalances and the membership); drained to half: resume them
    commit    the contiguous finished prefix per partition (OffsetTracker), under the group's strategy:
                auto         store the prefix offsets; librdkafka commits them every interval_ms
                per_message  a synchronous commit whenever the prefix moved (coalesced per loop turn)
                batch        a synchronous commit once batch_size more events became committable, or
                             after interval_ms

Revocation waits (bounded) for the revoked partitions' events in flight, commits their prefix and forgets
them; their queued events are dropped (the new owner reads them from the committed offset). Lost partitions
are forgotten without a commit. On stop (SIGTERM), queued events are dropped, events in flight are finished
(bounded), the prefix is committed and the consumer closed. A crash loses nothing: nothing above the lowest
unfinished offset was ever committed.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import queue
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaException, TopicPartition
from pydantic import BaseModel, ValidationError

from kpipe.compilation.compiled import ConsumerGroupSettings
from kpipe.runtime.concurrent.executor import ACK, DONE, EventLoop, is_async_handler, make_executor
from kpipe.runtime.concurrent.offsets import OffsetTracker
from kpipe.runtime.concurrent.scheduler import PAUSE, RESUME, KeyScheduler, Work
from kpipe.runtime.handler import Handler
from kpipe.runtime.protocol import WORKER_EXIT_CLUSTER, WORKER_EXIT_HALT, WorkerStatus
from kpipe.runtime.serde import describe_validation_error, truncate
from kpipe.runtime.worker import (
    SHUTDOWN_SETTLE_TIMEOUT,
    GroupWorker,
    _tps,
    backoff_delays,
    dead_letter_headers,
)

log = logging.getLogger("kpipe.runtime.worker")

# Events buffered per slot of concurrency (at least max_poll_records in all): enough distinct keys in the
# buffer to keep every slot busy when keys are spread, bounded memory when one key is hot.
BUFFER_PER_SLOT = 10
# With events in flight the loop waits at most this long for a completion before fetching again.
IDLE_WAIT = 0.01
# With the buffer full, the loop stops fetching (librdkafka's own queue is bounded by
# queued.max.messages.kbytes); when it stays full this long, the partitions are paused and the consumer polled
# (rebalances, membership). Pausing at once would thrash: a resumed partition is fetched again from scratch.
FULL_POLL_INTERVAL = 0.5
# How long a revocation waits for the revoked partitions' events in flight before releasing them anyway.
REVOKE_TIMEOUT = 10.0

DLQ = 2  # completion kind: a dead letter was acknowledged (or not)

# Work.state values.
_QUEUED, _RUNNING, _HANDLED, _RETRY_WAIT, _DLQ_WAIT, _GIVEN_UP = None, 1, 2, 3, 4, 5


def buffer_capacity(concurrency: int, max_poll_records: int) -> int:
    return max(max_poll_records, concurrency * BUFFER_PER_SLOT)


class ConcurrentGroupWorker(GroupWorker):
    """One member of a consumer group handling up to `settings.concurrency` events at once."""

    def __init__(
        self,
        settings: ConsumerGroupSettings,
        models: Mapping[str, type[BaseModel] | None],
        handler: Handler,
        **kwargs: Any,
    ):
        super().__init__(settings, models, handler, **kwargs)
        self.concurrency = settings.concurrency
        self.ordering = settings.ordering
        self._completions: queue.SimpleQueue = queue.SimpleQueue()
        self._tracker = OffsetTracker()
        self._scheduler = KeyScheduler(
            settings.concurrency, buffer_capacity(settings.concurrency, settings.max_poll_records),
            settings.ordering,
        )  # fmt: skip
        timeout_ms = settings.on_error.timeout_ms
        self._handler_timeout = timeout_ms / 1000.0 if timeout_ms else None
        self._executor: Any = None
        # (due, seq, work) of failed events waiting for their retry.
        self._timers: list[tuple[float, int, Work]] = []
        # Events started and not yet finished or given up, per partition.
        self._running: dict[tuple[str, int], int] = {}
        self._committable_since_commit = 0
        self._flow_paused: list[TopicPartition] = []
        self._drained = False
        # Sync handlers cannot be cancelled: with a timeout, the calls running over it are reported.
        self._slow: dict[int, tuple[float, Work]] = {}
        self._watch_slow = False

    # -- set-up -------------------------------------------------------------------------------------------------

    def _open(self) -> None:
        super()._open()
        emitter = self._emitter if self._producer is not None else None
        self._executor = make_executor(
            self._handler, self.concurrency, self._completions,
            group=self.group, emitter=emitter, timeout=self._handler_timeout,
        )  # fmt: skip
        log.info(
            "consumer group '%s' instance %d: concurrency %d, ordering %s, %s",
            self.group, self.instance, self.concurrency, self.ordering,
            "async handler on one event loop" if isinstance(self._executor, EventLoop)
            else f"sync handler on up to {self.concurrency} threads",
        )  # fmt: skip
        self._watch_slow = self._handler_timeout is not None and not isinstance(self._executor, EventLoop)

    # -- the loop -------------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        consume = self._consumer.consume
        max_records = self.settings.max_poll_records
        timeout = self._poll_timeout
        monotonic = time.monotonic
        sched = self._scheduler
        while not self._stop_requested:
            self._start()  # what the last turn's completions unblocked, before a fetch that may block
            if self._carry:
                msgs, self._carry = self._carry, []
            else:
                room = sched.fetch_room()
                if room:
                    msgs = consume(min(max_records, room), 0 if sched.in_flight else timeout)
                    self._last_poll = monotonic()
                elif monotonic() - self._last_poll >= FULL_POLL_INTERVAL:
                    # Full for a while (slow handlers): pause fetching, and poll to serve rebalances and keep
                    # the membership (paused partitions deliver nothing).
                    self._flow(stalled=True)
                    msgs = consume(1, 0)
                    self._last_poll = monotonic()
                else:
                    msgs = ()
            if msgs:
                self._all_down_since = None
                self._intake(msgs)
            self._start()
            self._drain(IDLE_WAIT if not msgs and sched.in_flight else 0.0)
            if self._timers:
                self._retry_due()
            if sched.paused:
                self._flow()
            self._commit_progress()
            if self._producer is not None:
                self._producer.poll(0)
            now = monotonic()
            if now >= self._next_status:
                self._housekeeping(now)
            if self._paused and not sched.paused:
                self._resume()  # a long wait (emits settling) paused everything to keep the membership
        self._finish_in_flight()

    def _intake(self, msgs: list[Any]) -> None:
        tracker = self._tracker
        offer = self._scheduler.offer
        assigned = self.assigned
        for msg in msgs:
            if msg.error() is not None:
                self._message_error(msg)
                continue
            tp = (msg.topic(), msg.partition())
            if tp not in assigned:
                continue
            offset = msg.offset()
            if tracker.seen(tp, offset):
                continue  # delivered again after a pause/resume: it is buffered already
            epoch = tracker.track(tp, offset)
            offer(tp, offset, msg.key(), epoch, msg)

    def _start(self) -> None:
        works = self._scheduler.take()
        if not works:
            return
        one_model = self._one_model
        validate = self._single_validator
        validators = self._validators
        running = self._running
        ready = []
        for work in works:
            msg = work.payload
            running[work.tp] = running.get(work.tp, 0) + 1
            if not one_model:
                validate = validators.get(msg.topic())
            if validate is None:
                work.event = msg.value()
            else:
                try:
                    work.event = validate(msg.value())
                except ValidationError as exc:
                    self._dispose(work, "schema", describe_validation_error(exc))
                    continue
            work.state = _RUNNING
            ready.append(work)
        if self._watch_slow:
            now = time.monotonic()
            self._slow.update((w.seq, (now, w)) for w in ready)
        self._executor.submit(ready)

    # -- completions ------------------------------------------------------------------------------------------------

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
            if self._watch_slow:
                self._slow.pop(work.seq, None)
            if work.state is _GIVEN_UP:
                return
            if error is None:
                self.handled += 1
                work.state = _HANDLED
                if work.acks >= work.emits:
                    self._finish(work)
            else:
                self._handler_failed(work, error)
        elif kind == ACK:
            work.acks += 1
            if error is not None:
                reason = f"events emitted by the handler were not delivered: {error.name()}: {error.str()}"
                log.error("%s; %s stays uncommitted", reason, work)
                self._give_up(work)
                self._halt(WORKER_EXIT_CLUSTER, reason)
                return
            if work.state is _HANDLED and work.acks >= work.emits:
                self._finish(work)
        elif kind == DLQ:
            if work.state is not _DLQ_WAIT:
                return
            if error is None:
                self.dead_lettered += 1
                self._finish(work)
            else:
                reason = (
                    f"writing {work} to dead-letter topic '{self._policy.dead_letter_topic}' failed: "
                    f"{error.name()}: {error.str()}"
                )
                log.error("%s; stopping without committing it", reason)
                self._give_up(work)
                self._halt(WORKER_EXIT_CLUSTER, reason)

    def _finish(self, work: Work) -> None:
        """The event is processed: its offset may become committable."""
        work.state = _GIVEN_UP  # any later report about it is ignored
        self._release(work)
        # Progress for the commit strategies is what became committable, not what finished above a gap.
        self._committable_since_commit += len(self._tracker.finish(work.tp, work.offset, work.epoch) or ())

    def _give_up(self, work: Work) -> None:
        """Stop caring about an event without finishing it (revoked, stopping): it stays uncommitted."""
        if work.state is not _GIVEN_UP:
            work.state = _GIVEN_UP
            self._release(work)

    def _release(self, work: Work) -> None:
        self._scheduler.done(work)
        running = self._running
        left = running.get(work.tp, 0) - 1
        if left > 0:
            running[work.tp] = left
        else:
            running.pop(work.tp, None)

    # -- failures -----------------------------------------------------------------------------------------------

    def _handler_failed(self, work: Work, exc: BaseException) -> None:
        work.attempts += 1
        if not self._tracker.is_current(work.tp, work.epoch) or self._stop_requested:
            self._give_up(work)  # revoked or stopping: its next owner (or run) handles it again
            return
        if work.attempts <= self._policy.retries:
            delay = backoff_delays(self._policy, self._rng)[work.attempts - 1]
            log.debug(
                "handler failed for %s (%s: %s); retry %d/%d in %.2f s",
                work, type(exc).__name__, exc, work.attempts, self._policy.retries, delay,
            )  # fmt: skip
            work.state = _RETRY_WAIT
            heapq.heappush(self._timers, (time.monotonic() + delay, work.seq, work))
            return
        attempts = f" after {work.attempts} attempts" if work.attempts > 1 else ""
        self._dispose(work, "handler", f"{type(exc).__name__}: {exc}", attempts)

    def _retry_due(self) -> None:
        now = time.monotonic()
        timers = self._timers
        again = []
        while timers and timers[0][0] <= now:
            work = heapq.heappop(timers)[2]
            if work.state is not _RETRY_WAIT:
                continue
            if not self._tracker.is_current(work.tp, work.epoch):
                self._give_up(work)
                continue
            work.state = _RUNNING
            again.append(work)
            if self._watch_slow:
                self._slow[work.seq] = (now, work)
        if again:
            self._executor.submit(again)

    def _dispose(self, work: Work, error_type: str, text: str, attempts: str = "") -> None:
        """Apply the on_error action to an event that cannot be processed (its key stays blocked meanwhile)."""
        msg = work.payload
        where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
        what = "schema-invalid event" if error_type == "schema" else "handler failed"
        action = self._policy.action
        topic = self._policy.dead_letter_topic
        if error_type == "schema" and topic:
            action = "dead_letter"
        if action == "dead_letter" and topic:
            headers = dead_letter_headers(
                msg.topic(), msg.partition(), msg.offset(), error_type, text, self.group, msg.headers()
            )
            work.state = _DLQ_WAIT
            completions = self._completions

            def on_delivery(err: Any, _msg: Any, work: Work = work) -> None:
                completions.put((DLQ, work, err))

            try:
                self._produce(topic, msg.value(), msg.key(), headers, on_delivery)
            except KafkaException as exc:
                completions.put((DLQ, work, exc.args[0]))
                return
            log.warning(
                "%s %s%s: %s; dead-lettering to '%s'", what, where, attempts, truncate(text, 300), topic
            )
            return
        if action == "skip":
            self.skipped += 1
            log.warning("%s %s%s: %s; skipped (on_error: skip)", what, where, attempts, truncate(text, 300))
            self._finish(work)
            return
        reason = f"{what} {where}{attempts}: {truncate(text, 300)}"
        log.error("%s; stopping (on_error: %s), offset %d not committed", reason, action, msg.offset())
        self._give_up(work)
        self._halt(WORKER_EXIT_HALT, reason)

    # -- back-pressure ----------------------------------------------------------------------------------------------

    def _flow(self, stalled: bool = False) -> None:
        change = self._scheduler.flow(stalled)
        if change is None:
            return
        consumer = self._consumer
        try:
            if change == PAUSE:
                self._flow_paused = [TopicPartition(t, p) for t, p in sorted(self.assigned)]
                if self._flow_paused:
                    consumer.pause(self._flow_paused)
                log.debug(
                    "buffer full (%d events): paused %s", self._scheduler.buffered, _tps(self._flow_paused)
                )
            elif change == RESUME:
                paused = {(tp.topic, tp.partition) for tp in self._flow_paused + self._paused}
                still = [TopicPartition(t, p) for t, p in sorted(paused & self.assigned)]
                self._flow_paused, self._paused = [], []
                if still:
                    consumer.resume(still)
                log.debug("buffer drained: resumed %s", _tps(still))
        except KafkaException as exc:
            log.warning("could not %s partitions: %s", change, exc.args[0].str())

    # -- committing ---------------------------------------------------------------------------------------------

    def _commit_progress(self) -> None:
        if not self._committable_since_commit:
            return
        strategy = self._strategy
        if strategy == "batch":
            if (
                self._committable_since_commit < self.settings.commit.batch_size
                and time.monotonic() < self._commit_deadline
            ):
                return
            self._commit_prefix()
        elif strategy == "per_message":
            self._commit_prefix()
        else:
            self._store_prefix()

    def _store_prefix(self, only: Iterable[tuple[str, int]] | None = None) -> None:
        """auto: store the finished prefix; librdkafka commits the store every interval_ms."""
        self._committable_since_commit = 0
        offsets = self._tracker.to_commit(only)
        if not offsets or not self._settle_emits():
            return
        try:
            self._consumer.store_offsets(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()])
        except KafkaException as exc:
            self._limited(logging.WARNING, ("store", exc.args[0].code()), "storing offsets failed: %s",
                          exc.args[0].str())  # fmt: skip
            return
        self._tracker.committed(offsets)

    def _commit_prefix(self, only: Iterable[tuple[str, int]] | None = None, *, reason: str = "") -> bool:
        """Synchronously commit the finished prefix of every partition (or those of `only`)."""
        self._commit_deadline = time.monotonic() + self.settings.commit.interval_ms / 1000.0
        self._committable_since_commit = 0
        offsets = self._tracker.to_commit(only)
        if not offsets:
            return True
        if not self._settle_emits():
            return False
        tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            self._blocked_what, self._blocked_since = "commit", time.monotonic()
            results = self._consumer.commit(offsets=tps, asynchronous=False)
        except KafkaException as exc:
            err = exc.args[0]
            self._limited(logging.WARNING, ("commit", err.code()), "commit of %s failed: %s", _tps(tps),
                          err.str())  # fmt: skip
            return False
        finally:
            self._blocked_since = None
        failed = {(tp.topic, tp.partition) for tp in results or () if tp.error is not None}
        self._tracker.committed({tp: o for tp, o in offsets.items() if tp not in failed})
        self.commits += 1
        self.last_commit_at = time.time()
        if failed:
            self._limited(logging.WARNING, ("commit", "partial"), "commit failed for %s",
                          ", ".join(f"{t}[{p}]" for t, p in sorted(failed)))  # fmt: skip
        if reason:
            log.info("committed %s (%s)", _tps(tps), reason)
        else:
            log.debug("committed %s", _tps(tps))
        return not failed

    def _commit_all(self, reason: str, only: Iterable[tuple[str, int]] | None = None) -> None:
        if self._strategy == "auto":
            self._store_prefix(only)
            self._commit_auto(reason)
        else:
            self._commit_prefix(only, reason=reason)

    # -- waiting for events in flight -------------------------------------------------------------------------

    def _wait_for(self, tps: set[tuple[str, int]] | None, deadline: float) -> None:
        """Handle completions until no event of `tps` (None: of any partition) is in flight, or the deadline."""
        running = self._running

        def busy() -> bool:
            return bool(running) if tps is None else any(tp in running for tp in tps)

        while busy():
            # Retries of these partitions are not started again: their events stay unfinished.
            for _due, _seq, work in list(self._timers):
                if work.state is _RETRY_WAIT and (tps is None or work.tp in tps):
                    self._give_up(work)
            if not busy():
                break
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self._producer is not None:
                self._producer.poll(0)
            self._drain(min(left, 0.05))

    def _finish_in_flight(self) -> None:
        """Stopping: drop what has not started, let what runs finish (bounded), leave the rest uncommitted."""
        self._drained = True
        dropped = self._scheduler.drain()
        if self._running:
            log.info("stopping: waiting for %d events in flight (%d queued dropped)",
                     self._scheduler.in_flight, len(dropped))  # fmt: skip
        self._wait_for(None, time.monotonic() + SHUTDOWN_SETTLE_TIMEOUT)
        if self._running:
            log.warning("stopping: %d events still in flight left uncommitted", sum(self._running.values()))

    # -- rebalance ----------------------------------------------------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._tracker.assign((tp.topic, tp.partition) for tp in partitions)
        super()._on_assign(consumer, partitions)

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        dropped = self._scheduler.drop(keys)
        waiting = sum(self._running.get(tp, 0) for tp in keys)
        if waiting:
            log.info("revoking %s: waiting for %d events in flight (%d queued dropped)", _tps(partitions),
                     waiting, len(dropped))  # fmt: skip
        try:
            # Stopping, the events in flight were waited for already (close() revokes everything).
            self._wait_for(keys, time.monotonic() + (0.0 if self._drained else REVOKE_TIMEOUT))
        except Exception:
            log.exception("waiting for events of revoked partitions failed")
        self._forget_in_flight(keys)
        super()._on_revoke(consumer, partitions)  # commits the finished prefix, then forgets the partitions
        self._tracker.revoke(keys)

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        self._scheduler.drop(keys)
        self._forget_in_flight(keys)
        self._tracker.revoke(keys)
        super()._on_lost(consumer, partitions)

    def _forget_in_flight(self, keys: set[tuple[str, int]]) -> None:
        # Events of these partitions still running keep their slot (and their key) until they return; their
        # completion no longer counts (the tracker's epoch moved on).
        self._flow_paused = [tp for tp in self._flow_paused if (tp.topic, tp.partition) not in keys]

    def _shutdown(self) -> None:
        try:
            super()._shutdown()
        finally:
            if self._executor is not None:
                self._executor.close(1.0)

    def _housekeeping(self, now: float) -> None:
        super()._housekeeping(now)
        if self._slow:
            limit = self._handler_timeout or 0.0
            for seq, (started, work) in list(self._slow.items()):
                if now - started > limit:
                    del self._slow[seq]  # reported once per call
                    log.warning(
                        "handler for %s has run for over %g ms (on_error.timeout_ms); a sync handler cannot "
                        "be cancelled: the events of its key wait, and it is not committed until it returns",
                        work, limit * 1000,
                    )  # fmt: skip

    # -- status -------------------------------------------------------------------------------------------------

    def status(self) -> WorkerStatus:
        oldest = self._tracker.oldest_unfinished()
        return dataclasses.replace(
            super().status(),
            in_flight=self._scheduler.in_flight,
            queued=self._scheduler.queued,
            oldest_unfinished=tuple(sorted((t, p, o) for (t, p), o in oldest.items())),
        )


def worker_class(settings: ConsumerGroupSettings, handler: Any) -> type[GroupWorker]:
    """The sequential worker for `concurrency: 1` and a plain function (today's exact path and speed); the
    concurrent one otherwise. An `async def` handler needs the event loop, so it is concurrent even at 1."""
    if settings.concurrency > 1 or is_async_handler(handler):
        return ConcurrentGroupWorker
    return GroupWorker

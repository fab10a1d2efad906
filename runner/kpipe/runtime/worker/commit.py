"""Commit strategies: how processed offsets become committed. A new strategy is a new class in STRATEGIES.

Only a processed message's offset is ever committed (its handler returned, or it was dead-lettered or
skipped), and only after the events it emitted were acknowledged:

    auto         librdkafka commits the offset store every interval_ms (enable.auto.commit=true); the worker
                 stores processed offsets itself (enable.auto.offset.store=false + store_offsets): each
                 partition's highest once per batch while batches are quick, each message's while they are
                 slow; always once the events emitted before them are acknowledged, and before a commit on
                 revocation or shutdown.
    per_message  an asynchronous commit of each processed message's offset, at once; the broker's answer comes
                 back through on_commit (served by the next consume()) and is checked: a failed commit is
                 counted, logged and covered by the next one, and what was not confirmed is committed
                 synchronously when partitions are revoked and on shutdown.
    batch        a synchronous commit of the processed offsets (explicit TopicPartition(topic, p, offset + 1)
                 per partition, never "current positions") after batch_size messages or interval_ms.

Every strategy also commits when partitions are revoked and on shutdown. The consumer settings each one needs
are compiled into the group's config (kpipe.compilation.compiler.commit_settings).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Protocol

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from kpipe.compilation.compiled import CommitPolicy
from kpipe.logs import RateLimitedLog
from kpipe.runtime.client_protocols import SYSTEM_CLOCK, Clock
from kpipe.runtime.worker.control import Counters
from kpipe.runtime.worker.emits import EmitSettler
from kpipe.runtime.worker.membership import Membership, Partition, describe
from kpipe.runtime.worker.monitor import Monitor

log = logging.getLogger("kpipe.runtime.worker")


class CommitStrategy(Protocol):
    """The consume loop calls `begin_batch()` once per batch and the hook it returns once per processed
    message (the hot path: the hook is a bound method or a closure over locals); `end_batch()` after the
    batch, `tick(now)` between batches, `commit_all()` when partitions are revoked and on shutdown, and
    `forget(keys)` for partitions revoked or lost."""

    name: ClassVar[str]
    # True when librdkafka commits in the background: the worker counts those commits from on_commit.
    commits_in_background: ClassVar[bool]
    # True when each processed message commits at once: a loop that finishes many messages in one turn hands
    # over only the last one per partition (the concurrent loop), one commit each.
    coalesce: ClassVar[bool]

    def begin_batch(self) -> Callable[[Any], None]: ...

    def end_batch(self) -> None: ...

    def tick(self, now: float) -> None: ...

    def commit_all(self, reason: str, only: Iterable[Partition] | None = None) -> None: ...

    def forget(self, keys: Iterable[Partition]) -> None: ...


def commit_list(processed: Mapping[Partition, int], only: Iterable[Partition] | None = None) -> list:
    """TopicPartitions to commit for processed offsets: the next offset to read, last processed + 1."""
    keys = processed.keys() if only is None else [k for k in only if k in processed]
    return [TopicPartition(t, p, processed[(t, p)] + 1) for t, p in keys]


class OffsetNotes:
    """Each partition's highest processed offset, noted per message on the hot path (auto's and batch's hooks)
    and taken once per batch or commit. A group of one topic, the usual case, notes by partition number alone:
    the (topic, partition) tuple that a key needs is then built once per partition when the notes are taken,
    rather than built, hashed, compared and freed for every message: 15-19 % of the sequential loop's own
    instructions per event (callgrind over a stub consumer, benchmarks/README.md)."""

    def __init__(self, topics: Sequence[str]):
        # The group's one topic, when it has one: every message it reads comes from it.
        self.topic: str | None = topics[0] if len(topics) == 1 else None
        self.by_partition: dict[int, int] = {}  # the one topic's partition -> highest processed offset
        self.by_key: dict[Partition, int] = {}  # (topic, partition) -> highest processed offset

    def __bool__(self) -> bool:
        return bool(self.by_partition or self.by_key)

    def hook(self) -> Callable[[Any], None]:
        """The per-message note, as cheap as the group's topics allow."""
        if self.topic is not None:
            by_partition = self.by_partition

            def note_partition(msg: Any) -> None:
                by_partition[msg.partition()] = msg.offset()

            return note_partition
        by_key = self.by_key

        def note(msg: Any) -> None:
            by_key[(msg.topic(), msg.partition())] = msg.offset()

        return note

    def forget(self, keys: Iterable[Partition]) -> None:
        """Drop what was noted for these partitions (revoked or lost: not theirs to store any more)."""
        for topic, partition in keys:
            self.by_key.pop((topic, partition), None)
            if topic == self.topic:
                self.by_partition.pop(partition, None)

    def take(self) -> dict[Partition, int]:
        """What was noted since the last take, keyed (topic, partition); the notes are empty afterwards. The
        dicts are cleared in place: a hook made earlier keeps noting into them."""
        taken = self.by_key.copy()
        self.by_key.clear()
        if self.by_partition:
            topic = self.topic
            for partition, offset in self.by_partition.items():
                taken[(topic, partition)] = offset  # type: ignore[index]
            self.by_partition.clear()
        return taken


# per_message: asynchronous commits unanswered at once, at most. Commits and heartbeats share the connection to
# the group coordinator, in order: an unbounded stream of commits delays heartbeats past the session timeout.
MAX_COMMITS_IN_FLIGHT = 16


class CommitConfirmations:
    """librdkafka's answers to the commits that return before the broker answers (auto commit's background
    commits, per_message's asynchronous ones): `on_commit` is the consumer's on_commit callback, served inside
    consume() on the loop's thread. It counts them and keeps the highest offset confirmed per partition."""

    def __init__(self, counters: Counters, limited: RateLimitedLog):
        self._counters = counters
        self._limited = limited
        self.confirmed: dict[Partition, int] = {}  # the next offset to read, as committed and confirmed
        self.failed = False  # a commit failed since the strategy last looked (PerMessageCommit.tick)
        self.in_flight = 0  # asynchronous commits sent by the strategy and not yet answered

    def on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if self.in_flight:
            self.in_flight -= 1
        if err is not None:
            if err.code() != KafkaError._NO_OFFSET:  # nothing was stored since the last commit: not a failure
                self._failed(err)
            return
        confirmed = self.confirmed
        refused = None
        for tp in partitions or ():
            if tp.error is not None:
                refused = tp.error
                continue
            key = (tp.topic, tp.partition)
            if tp.offset > confirmed.get(key, -1):
                confirmed[key] = tp.offset
        if refused is not None:
            self._failed(refused, partial=describe(tp for tp in partitions if tp.error is not None))
        else:
            self._counters.committed()

    def forget(self, keys: Iterable[Partition]) -> None:
        for key in keys:
            self.confirmed.pop(key, None)

    def _failed(self, err: KafkaError, partial: str = "") -> None:
        self.failed = True
        self._counters.commit_failed(error=err.str())
        where = f" for {partial}" if partial else ""
        self._limited(logging.WARNING, ("commit", err.code()), "commit failed%s: %s", where, err.str())


class _Strategy:
    """What every strategy is built with."""

    name: ClassVar[str]
    commits_in_background: ClassVar[bool] = False
    coalesce: ClassVar[bool] = False

    def __init__(
        self,
        policy: CommitPolicy,
        consumer: Any,
        settler: EmitSettler,
        membership: Membership,
        monitor: Monitor,
        counters: Counters,
        limited: RateLimitedLog,
        clock: Clock = SYSTEM_CLOCK,
        confirmations: CommitConfirmations | None = None,
        topics: Sequence[str] = (),
    ):
        """confirmations: what the consumer's on_commit reports (core.GroupWorker passes the one it gave the
        consumer); None: commits are not confirmed by callback (a strategy that needs it builds its own).
        topics: the group's topics (one topic lets the hot path note offsets by partition alone)."""
        self._topics = tuple(topics)
        self._policy = policy
        self._confirmations = (
            confirmations if confirmations is not None else CommitConfirmations(counters, limited)
        )
        self._clock = clock
        self._consumer = consumer
        self._settler = settler
        self._membership = membership
        self._monitor = monitor
        self._counters = counters
        self._limited = limited

    def end_batch(self) -> None:
        pass

    def tick(self, now: float) -> None:
        pass

    def forget(self, keys: Iterable[Partition]) -> None:
        pass


# auto: a batch that takes this share of interval_ms or longer is slow, and the next one stores each offset as it
# is processed, so the background commit takes in the progress of slow handlers within an interval.
SLOW_BATCH_SHARE = 0.1


class AutoCommit(_Strategy):
    """librdkafka commits the offset store every interval; the worker stores processed offsets, in one of two
    ways chosen per batch by how long the last one took:

    quick batches  the hot path notes each partition's highest processed offset (OffsetNotes) and the batch's
                   end stores them: one store_offsets() call for the batch rather than one per message (a C call
                   that builds a partition list and takes librdkafka's locks each time: most of a raw loop's own
                   cost per event against a broker, benchmarks/README.md). The events the batch's handlers
                   emitted are acknowledged first (EmitSettler.settle; nothing to wait for when none were); a
                   lost one halts the worker and nothing of the batch is stored, so it is delivered again.
    slow batches   (and the first one, and the concurrent loop, which asks for its hook once) each processed
                   message's offset is stored at once, or after the events emitted before it are acknowledged,
                   so progress is committed within an interval while a batch of slow handlers goes on.

    A background commit in the middle of a batch commits only offsets stored, never one not processed;
    revocation and shutdown store what is noted or deferred (after the same settling) before they commit."""

    name = "auto"
    commits_in_background = True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Quick batches: each partition's highest offset processed and not yet stored.
        self._noted = OffsetNotes(self._topics)
        self._note = self._noted.hook()  # its dicts are cleared in place: one hook serves every batch
        # Taken from the notes, waiting for the emits to settle before they are stored (_store_noted).
        self._waiting: dict[Partition, int] = {}
        # Slow batches: processed messages whose store waits for the events emitted before them.
        self._deferred: list[Any] = []
        self._store_each = self._each_hook()
        self._slow = self._policy.interval_ms / 1000.0 * SLOW_BATCH_SHARE
        self._quick = False  # how the last batch went; the first one stores each offset
        self._began = 0.0

    def _each_hook(self) -> Callable[[Any], None]:
        emitter = self._settler.emitter
        store = self._consumer.store_offsets
        deferred = self._deferred

        def store_each(msg: Any) -> None:
            if deferred or emitter.unsettled:
                deferred.append(msg)
            else:
                store(msg)

        return store_each

    def begin_batch(self) -> Callable[[Any], None]:
        self._began = self._clock.monotonic()
        return self._note if self._quick else self._store_each

    def end_batch(self) -> None:
        self._quick = self._clock.monotonic() - self._began < self._slow
        if self._noted:
            self._store_noted()
        if self._deferred:
            self._store_deferred()

    def forget(self, keys: Iterable[Partition]) -> None:
        self._noted.forget(keys)

    def commit_all(self, reason: str, only: Iterable[Partition] | None = None) -> None:
        """Commit the offset store now (revocation, shutdown) rather than at the next interval."""
        if self._noted or self._waiting:
            self._store_noted()
        if self._deferred:
            self._store_deferred()
        started = time.perf_counter()
        try:
            with self._monitor.blocking("commit"):
                results = self._consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                self._counters.commit_failed(time.perf_counter() - started, error=exc.args[0].str())
                log.warning("commit on %s failed: %s", reason, exc.args[0].str())
            return
        self._counters.committed(time.perf_counter() - started)
        log.info("committed %s (%s)", describe(results or ()), reason)

    def _store_noted(self) -> None:
        # The events emitted before these offsets were processed are acknowledged first; a lost one halts the
        # worker (settle() says why) and none of these offsets is stored. The notes are taken before the wait,
        # so it covers every event their handlers emitted (the monitor thread stores while a hung handler may
        # still return and be noted: Shutdown.leave). The wait polls to keep the membership: a commit on
        # revocation from that poll stores the offsets waiting here too (_waiting), or they would be lost.
        waiting = self._waiting
        noted = self._noted.take()
        if waiting:  # called from that poll: store them with these
            noted = {**waiting, **noted}
        self._waiting = noted
        try:
            if not self._settler.settle():
                return
        finally:
            self._waiting = waiting
        assigned = self._membership.assigned
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in noted.items() if (t, p) in assigned]
        if offsets:
            try:
                self._consumer.store_offsets(offsets=offsets)
            except KafkaException as exc:  # a partition lost meanwhile: its new owner reads it again
                log.debug("could not store %s: %s", describe(offsets), exc.args[0].str())

    def _store_deferred(self) -> None:
        if self._settler.settle():
            store = self._consumer.store_offsets
            assigned = self._membership.assigned
            for msg in self._deferred:
                if (msg.topic(), msg.partition()) in assigned:
                    store(msg)
        self._deferred.clear()


class _ExplicitCommit(_Strategy):
    """Synchronous commits of the processed offsets this strategy keeps per partition."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.processed: dict[Partition, int] = {}  # last processed, not yet committed offset
        self._interval = self._policy.interval_ms / 1000.0
        self.deadline = self._clock.monotonic() + self._interval

    def commit_all(self, reason: str, only: Iterable[Partition] | None = None) -> None:
        self.commit_processed(only, reason=reason)

    def forget(self, keys: Iterable[Partition]) -> None:
        self._take_notes()
        for key in keys:
            self.processed.pop(key, None)

    def _take_notes(self) -> None:
        """Bring what the hot path noted elsewhere into `processed` (BatchCommit)."""

    def commit_processed(self, only: Iterable[Partition] | None = None, *, reason: str = "") -> bool:
        """Commit processed offsets (all, or those of `only`); keep them on failure, for the next commit."""
        self._take_notes()
        self.deadline = self._clock.monotonic() + self._interval
        if not self._settler.settle():
            return False
        offsets = commit_list(self.processed, only)
        if not offsets:
            return True
        started = time.perf_counter()
        try:
            with self._monitor.blocking("commit"):
                results = self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            err = exc.args[0]
            self._counters.commit_failed(time.perf_counter() - started, error=err.str())
            self._limited(logging.WARNING, ("commit", err.code()), "commit of %s failed: %s",
                          describe(offsets), err.str())  # fmt: skip
            return False
        failed = {(tp.topic, tp.partition): tp for tp in results or () if tp.error is not None}
        for tp in offsets:
            key = (tp.topic, tp.partition)
            if self.processed.get(key) == tp.offset - 1 and key not in failed:
                del self.processed[key]
        seconds = time.perf_counter() - started
        if failed:
            first = next(iter(failed.values()))
            self._limited(logging.WARNING, ("commit", "partial"), "commit failed for %s: %s",
                          describe(failed.values()), first.error.str())  # fmt: skip
            self._counters.commit_failed(seconds, error=first.error.str())
        else:
            self._counters.committed(seconds)
        if reason:
            log.info("committed %s (%s)", describe(offsets), reason)
        else:
            log.debug("committed %s", describe(offsets))
        return not failed


class PerMessageCommit(_ExplicitCommit):
    """Each processed message's offset is committed at once, asynchronously, as a hand-written loop with
    `commit(asynchronous=True)` and an on_commit callback does: the loop goes on to the next message while the
    broker answers. Commits reach the group coordinator in order, so a later confirmed commit covers an earlier
    one that failed; what is not confirmed when partitions are revoked or the worker stops is committed
    synchronously then (commit_all)."""

    name = "per_message"
    coalesce = True
    commits_in_background = True  # confirmed through on_commit (CommitConfirmations)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._sent: dict[Partition, int] = {}  # the last offset sent per partition (next to read)

    def begin_batch(self) -> Callable[[Any], None]:
        processed = self.processed
        sent = self._sent
        settle = self._settler.settle
        commit = self._consumer.commit
        failed = self._commit_failed
        confirmations = self._confirmations

        def processed_one(msg: Any) -> None:
            key = (topic, partition) = (msg.topic(), msg.partition())
            offset = processed[key] = msg.offset()
            if confirmations.in_flight >= MAX_COMMITS_IN_FLIGHT:
                return  # the next commit sent (tick, after the answers) covers it
            if not settle():  # the events it emitted are acknowledged first; a lost one halts the worker
                return
            try:
                commit(offsets=[TopicPartition(topic, partition, offset + 1)], asynchronous=True)
            except KafkaException as exc:  # refused before it was sent (no coordinator yet, closing)
                failed(exc.args[0])
                return
            sent[key] = offset + 1
            confirmations.in_flight += 1

        return processed_one

    def tick(self, now: float) -> None:
        """Between batches (after consume() served the answers): send what was held back while
        MAX_COMMITS_IN_FLIGHT commits were unanswered; after a failed commit, commit again what is processed
        and not confirmed (a quiet partition has no next message whose commit would cover it)."""
        confirmations = self._confirmations
        if confirmations.in_flight < MAX_COMMITS_IN_FLIGHT and self.processed:
            sent = self._sent
            held = [k for k, o in self.processed.items() if sent.get(k, -1) <= o]
            if held and self._settler.settle():
                offsets = commit_list(self.processed, held)
                try:
                    self._consumer.commit(offsets=offsets, asynchronous=True)
                except KafkaException as exc:
                    self._commit_failed(exc.args[0])
                else:
                    confirmations.in_flight += 1
                    for tp in offsets:
                        sent[(tp.topic, tp.partition)] = tp.offset
        if confirmations.failed and now >= self.deadline:
            confirmations.failed = False
            self.deadline = now + self._interval
            self._drop_confirmed()
            # It covers messages held back before their emits were waited for: those are acknowledged first.
            offsets = commit_list(self.processed) if self.processed and self._settler.settle() else []
            if offsets:
                try:
                    self._consumer.commit(offsets=offsets, asynchronous=True)
                except KafkaException as exc:
                    self._commit_failed(exc.args[0])
                else:
                    confirmations.in_flight += 1

    def commit_all(self, reason: str, only: Iterable[Partition] | None = None) -> None:
        """Revocation and shutdown: commit synchronously what was processed and not yet confirmed."""
        self._drop_confirmed()
        self.commit_processed(only, reason=reason)

    def forget(self, keys: Iterable[Partition]) -> None:
        keys = list(keys)
        super().forget(keys)
        self._confirmations.forget(keys)
        for key in keys:
            self._sent.pop(key, None)

    def _drop_confirmed(self) -> None:
        confirmed = self._confirmations.confirmed
        for key, offset in list(self.processed.items()):
            if confirmed.get(key, -1) > offset:
                del self.processed[key]

    def _commit_failed(self, err: KafkaError) -> None:
        self._confirmations.failed = True
        self._counters.commit_failed(error=err.str())
        self._limited(logging.WARNING, ("commit", err.code()), "commit failed: %s", err.str())


class BatchCommit(_ExplicitCommit):
    """A synchronous commit after batch_size processed messages or interval_ms. The hot path notes offsets in
    OffsetNotes (by partition alone for a group of one topic); a commit, the batch's end and a revocation take
    them into `processed` first."""

    name = "batch"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._notes = OffsetNotes(self._topics)
        # Messages processed since the last commit, counted across batches: a batch_size larger than a batch
        # still commits every batch_size messages. The hook counts in a closure cell (the hot path); the batch's
        # end reads the count back, and every commit, wherever it comes from, restarts it.
        self._since = 0
        self._count: Callable[[], int] = lambda: 0
        self._restart: Callable[[], None] = lambda: None

    def begin_batch(self) -> Callable[[Any], None]:
        notes = self._notes
        commit = self.commit_processed
        batch_size = self._policy.batch_size
        monotonic = self._clock.monotonic
        since_commit = self._since
        deadline = self.deadline

        def count() -> int:
            return since_commit

        def restart() -> None:
            nonlocal since_commit, deadline
            since_commit = 0
            deadline = self.deadline

        self._count, self._restart = count, restart

        if notes.topic is not None:
            by_partition = notes.by_partition

            def processed_in_topic(msg: Any) -> None:
                nonlocal since_commit
                by_partition[msg.partition()] = msg.offset()
                since_commit += 1
                if since_commit >= batch_size or monotonic() >= deadline:
                    commit()  # restarts the count and the deadline

            return processed_in_topic
        by_key = notes.by_key

        def processed_one(msg: Any) -> None:
            nonlocal since_commit
            by_key[(msg.topic(), msg.partition())] = msg.offset()
            since_commit += 1
            if since_commit >= batch_size or monotonic() >= deadline:
                commit()  # restarts the count and the deadline

        return processed_one

    def end_batch(self) -> None:
        self._since = self._count()
        if self._notes:
            self._take_notes()

    def commit_processed(self, only: Iterable[Partition] | None = None, *, reason: str = "") -> bool:
        try:
            return super().commit_processed(only, reason=reason)
        finally:
            self._since = 0
            self._restart()

    def tick(self, now: float) -> None:
        """Between batches: commit what was processed once the interval has passed."""
        if (self.processed or self._notes) and now >= self.deadline:
            self.commit_processed()

    def _take_notes(self) -> None:
        if self._notes:
            self.processed.update(self._notes.take())


STRATEGIES: dict[str, type[_Strategy]] = {s.name: s for s in (AutoCommit, PerMessageCommit, BatchCommit)}

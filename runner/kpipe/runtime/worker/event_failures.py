"""What the concurrent loop (concurrent.py) does with an event that failed: retry it after its backoff, dead-
letter it without waiting, or hand it to the sequential worker's Failures for skip and stop; and, for sync
handlers with on_error.timeout_ms, abandon calls running over it (they cannot be cancelled): the event fails
as a `timeout`, and too many abandoned threads restart the worker.

A failed event keeps its key blocked and its slot held until it is done. Only the consumer thread calls this.
"""

from __future__ import annotations

import heapq
import logging
import queue
from collections.abc import Callable
from typing import Any

from kpipe.compilation.compiled import ErrorPolicy
from kpipe.runtime.client_protocols import SYSTEM_CLOCK, Clock
from kpipe.runtime.concurrent.scheduler import Work
from kpipe.runtime.dead_letters import TOO_LARGE, DeadLetter
from kpipe.runtime.protocol import WORKER_EXIT_DEAD_LETTER, WORKER_EXIT_HUNG
from kpipe.runtime.worker.control import Control, Counters
from kpipe.runtime.worker.failures import (
    WHAT_FAILED,
    Failures,
    Outcome,
    backoff_delays,
    dead_letter_of,
    retryable,
    send_dead_letter,
)

log = logging.getLogger("kpipe.runtime.worker")

DLQ = 2  # completion kind: a dead letter was acknowledged (or not)

# Work.state values (the loop's; these are the ones failures move an event through).
RUNNING, HANDLED, RETRY_WAIT, DLQ_WAIT, DONE = 1, 2, 3, 4, 5


class EventFailures:
    def __init__(
        self,
        *,
        group: str,
        policy: ErrorPolicy,
        failures: Failures,
        producer: Any,
        completions: queue.SimpleQueue,
        control: Control,
        counters: Counters,
        rng: Callable[[], float],
        finish: Callable[[Work], None],
        give_up: Callable[[Work], None],
        is_current: Callable[[Any, int], bool],
        submit: Callable[[list[Work]], None],
        watch_slow: bool,
        timeout: float | None,
        abandon: Callable[[], None] = lambda: None,
        abandon_limit: int = 0,
        clock: Clock = SYSTEM_CLOCK,
    ):
        """abandon(): the executor replaces a thread left running past the timeout; abandon_limit: how many
        may be left running before the worker restarts."""
        self._group = group
        self._policy = policy
        self._failures = failures
        self._producer = producer
        self._completions = completions
        self._control = control
        self._counters = counters
        self._rng = rng
        self._finish = finish
        self._give_up = give_up
        self._is_current = is_current
        self._submit = submit
        self._timeout = timeout
        self._clock = clock
        self._abandon = abandon
        self._abandon_limit = abandon_limit
        self.abandoned = 0
        # Dead letters waiting for their acknowledgement, by Work.seq.
        self._dead_letters: dict[int, DeadLetter] = {}
        # (due, seq, work) of failed events waiting for their retry.
        self.timers: list[tuple[float, int, Work]] = []
        # Sync handlers cannot be cancelled: with a timeout, calls running over it are reported (seq -> start).
        self.watch_slow = watch_slow
        self.slow: dict[int, tuple[float, Work]] = {}

    def handler_failed(self, work: Work, exc: BaseException) -> None:
        work.attempts += 1
        if self._control.requested or not self._is_current(work.tp, work.epoch):
            self._give_up(work)  # revoked or stopping: its next owner (or run) handles it again
            return
        if work.attempts <= self._policy.retries and retryable(exc):
            delay = backoff_delays(self._policy, self._rng)[work.attempts - 1]
            log.debug("handler failed for %s (%s: %s); retry %d/%d in %.2f s",
                      work, type(exc).__name__, exc, work.attempts, self._policy.retries, delay)  # fmt: skip
            work.state = RETRY_WAIT
            heapq.heappush(self.timers, (self._clock.monotonic() + delay, work.seq, work))
            return
        attempts = f" after {work.attempts} attempts" if work.attempts > 1 else ""
        self.dispose(work, "handler", f"{type(exc).__name__}: {exc}", attempts)

    def retry_due(self) -> None:
        now = self._clock.monotonic()
        timers = self.timers
        again = []
        while timers and timers[0][0] <= now:
            work = heapq.heappop(timers)[2]
            if work.state is not RETRY_WAIT:
                continue
            if not self._is_current(work.tp, work.epoch):
                self._give_up(work)
                continue
            work.state = RUNNING
            again.append(work)
            self._counters.retried += 1
            if self.watch_slow:
                self.slow[work.seq] = (now, work)
        if again:
            self._submit(again)

    def give_up_waiting(self, tps: set | None) -> None:
        """Events of these partitions (None: of all) waiting for a retry are not started again."""
        for _due, _seq, work in self.timers:
            if work.state is RETRY_WAIT and (tps is None or work.tp in tps):
                self._give_up(work)

    def dispose(self, work: Work, error_type: str, text: str, attempts: str = "") -> None:
        """The on_error action for an event that cannot be processed; its key stays blocked until it is done.
        Skip and stop are the sequential worker's (Failures); a dead letter is written without waiting here:
        its acknowledgement comes back as a completion (dead_letter_done)."""
        msg = work.payload
        dlq = self._policy.dead_letter_topic
        action = "dead_letter" if error_type == "schema" and dlq else self._policy.action
        if action == "dead_letter" and dlq:
            self._counters.failed += 1  # (skip and stop are counted by Failures)
            work.state = DLQ_WAIT
            letter = self._dead_letters[work.seq] = dead_letter_of(msg, error_type, text, self._group)
            what = WHAT_FAILED.get(error_type, "handler failed")
            log.warning("%s %s%s: %s; dead-lettering to '%s'", what, where(msg), attempts, text[:300], dlq)
            self._send(work, letter)
            return
        outcome = self._failures.dispose(msg, error_type, text, attempts)
        if outcome is Outcome.SKIPPED:
            self._finish(work)
        else:
            self._give_up(work)

    def _send(self, work: Work, letter: DeadLetter) -> None:
        """Hand (a version of) the dead letter to the producer; its ack comes back as a completion."""
        completions = self._completions

        def on_delivery(err: Any, _msg: Any, work: Work = work) -> None:
            completions.put((DLQ, work, err))

        error = send_dead_letter(self._producer, self._policy.dead_letter_topic, letter, on_delivery)
        if error is not None:
            completions.put((DLQ, work, error))

    def forget_dead_letter(self, work: Work) -> None:
        self._dead_letters.pop(work.seq, None)

    def dead_letter_done(self, work: Work, error: Any) -> bool:
        """A dead letter's acknowledgement; one refused as too large is sent again smaller (as the sequential
        loop does, dead_letters.DeadLetter). False when it was not written (the worker halts)."""
        letter = self._dead_letters[work.seq]
        if error is None:
            del self._dead_letters[work.seq]
            self._counters.dead_lettered += 1
            if letter.fit:
                log.warning("dead letter for %s written with its payload %s (too large for '%s')",
                            where(work.payload), letter.fit, self._policy.dead_letter_topic)  # fmt: skip
            self._finish(work)
            return True
        if letter.shrink(error.name()):
            self._send(work, letter)
            return True
        del self._dead_letters[work.seq]
        refused = "refused even without its payload: " if error.name() in TOO_LARGE else ""
        reason = (
            f"writing {work} to dead-letter topic '{self._policy.dead_letter_topic}' failed: "
            f"{refused}{error.name()}: {error.str()}"
        )
        log.error("%s; stopping without committing it", reason)
        self._give_up(work)
        self._control.halt(WORKER_EXIT_DEAD_LETTER, reason)
        return False

    def check_slow(self, now: float) -> None:
        """Sync calls running past on_error.timeout_ms: each is abandoned (its thread keeps running, counted;
        the pool replaces it) and its event goes through on_error as a `timeout` failure, so the later events
        of its key proceed. Past `abandon_limit` abandoned threads the worker stops for a restart (exit code
        HUNG), committing what finished."""
        limit = self._timeout or 0.0
        for seq, (started, work) in list(self.slow.items()):
            if now - started <= limit:
                continue
            del self.slow[seq]  # once per call
            if work.state is not RUNNING:
                continue
            self._abandon()
            self.abandoned += 1
            text = (
                f"the handler ran for over {limit * 1000:g} ms (on_error.timeout_ms); its thread is abandoned "
                f"({self.abandoned} so far, a restart after {self._abandon_limit})"
            )
            if self.abandoned > self._abandon_limit:
                reason = f"handler hung on {where(work.payload)}: {text}"
                log.error("%s; stopping for a restart, committing what finished", reason)
                self._give_up(work)
                self._control.halt(WORKER_EXIT_HUNG, reason)
                return
            self.dispose(work, "timeout", text)


def where(msg: Any) -> str:
    return f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"

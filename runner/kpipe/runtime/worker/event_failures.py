"""The concurrent loop's side of the failure policy (concurrent.py): FailurePolicy's decisions (failures.py)
carried out without blocking. RETRY puts the event on a timer; DEAD_LETTER sends the letter without waiting, and
its acknowledgement comes back as a completion, which the policy decides on again (written, sent smaller, or
halt). For sync handlers with on_error.timeout_ms, calls running over it are abandoned (they cannot be
cancelled) and the policy decides what becomes of the event: a `timeout` failure, or a restart once too many
threads are abandoned.

A failed event keeps its key blocked and its slot held until it is done. Only the consumer thread calls this.
"""

from __future__ import annotations

import heapq
import queue
from collections.abc import Callable
from typing import Any

from kpipe.runtime.client_protocols import SYSTEM_CLOCK, Clock
from kpipe.runtime.concurrent.scheduler import Work
from kpipe.runtime.dead_letters import DeadLetter
from kpipe.runtime.worker.control import Control, Counters
from kpipe.runtime.worker.failures import FailurePolicy, Outcome, send_dead_letter

DLQ = 2  # completion kind: a dead letter was acknowledged (or not)

# Work.state values (the loop's; these are the ones failures move an event through).
RUNNING, HANDLED, RETRY_WAIT, DLQ_WAIT, DONE = 1, 2, 3, 4, 5


class EventFailures:
    def __init__(
        self,
        *,
        policy: FailurePolicy,
        producer: Any,
        completions: queue.SimpleQueue,
        control: Control,
        counters: Counters,
        finish: Callable[[Work], None],
        give_up: Callable[[Work], None],
        is_current: Callable[[Any, int], bool],
        submit: Callable[[list[Work]], None],
        watch_slow: bool,
        abandon: Callable[[], None] = lambda: None,
        abandon_limit: int = 0,
        clock: Clock = SYSTEM_CLOCK,
    ):
        """abandon(): the executor replaces a thread left running past the timeout; abandon_limit: how many
        may be left running before the worker restarts."""
        self._policy = policy
        self._producer = producer
        self._completions = completions
        self._control = control
        self._counters = counters
        self._finish = finish
        self._give_up = give_up
        self._is_current = is_current
        self._submit = submit
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
        self.carry_out(work, self._policy.handler_failed(work.payload, exc, work.attempts))

    def invalid(self, work: Work, text: str) -> None:
        self.carry_out(work, self._policy.invalid(work.payload, text))

    def carry_out(self, work: Work, outcome: Outcome) -> None:
        """Start what the policy decided for a failed event: a timer, a dead letter, or its end."""
        if outcome is Outcome.RETRY:
            work.state = RETRY_WAIT
            due = self._clock.monotonic() + self._policy.delay(work.attempts)
            heapq.heappush(self.timers, (due, work.seq, work))
        elif outcome is Outcome.DEAD_LETTER:
            work.state = DLQ_WAIT
            letter = self._dead_letters[work.seq] = self._policy.letter
            self._send(work, letter)
        elif outcome.processed:
            self._finish(work)
        else:
            self._give_up(work)

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

    def _send(self, work: Work, letter: DeadLetter) -> None:
        """Hand (a version of) the dead letter to the producer; its ack comes back as a completion."""
        completions = self._completions

        def on_delivery(err: Any, _msg: Any, work: Work = work) -> None:
            completions.put((DLQ, work, err))

        error = send_dead_letter(self._producer, self._policy.dead_letter_topic, letter, on_delivery)
        if error is not None:
            completions.put((DLQ, work, error))

    def dead_letter_done(self, work: Work, error: Any) -> None:
        """A dead letter's answer (completion DLQ): the policy decides what follows."""
        if work.state is not DLQ_WAIT:
            self._dead_letters.pop(work.seq, None)  # given up meanwhile (revoked, stopping)
            return
        letter = self._dead_letters[work.seq]
        outcome = self._policy.dead_letter_sent(work.payload, letter, error)
        if outcome is Outcome.DEAD_LETTER:
            self._send(work, letter)  # smaller
            return
        del self._dead_letters[work.seq]
        self.carry_out(work, outcome)

    def check_slow(self, now: float) -> None:
        """Sync calls running past on_error.timeout_ms: each is abandoned (its thread keeps running, counted;
        the pool replaces it) and the policy decides what becomes of its event, so the later events of its key
        proceed (or the worker stops for a restart, committing what finished)."""
        limit = self._policy.timeout or 0.0
        for seq, (started, work) in list(self.slow.items()):
            if now - started <= limit:
                continue
            del self.slow[seq]  # once per call
            if work.state is not RUNNING:
                continue
            self._abandon()
            self.abandoned += 1
            outcome = self._policy.abandoned(work.payload, self.abandoned, self._abandon_limit)
            self.carry_out(work, outcome)
            if outcome is Outcome.HALTED:
                return

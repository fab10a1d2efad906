"""The sequential loop's side of the failure policy: FailurePolicy's decisions (failures.py) carried out inline,
on the consumer thread, until each failed event has its final Outcome.

    RETRY        wait the policy's delay in short slices (stop() stays prompt, the group membership is kept:
                 membership.py), then call the handler again; DROPPED when stopping or the partition was
                 revoked meanwhile
    DEAD_LETTER  send the policy's letter and wait for the broker's answer, which the policy decides on again
                 (written, sent smaller, or halt); DROPPED when revoked or shutdown gave up waiting
"""

from __future__ import annotations

from typing import Any

from kpipe.runtime.client_protocols import SYSTEM_CLOCK, Clock
from kpipe.runtime.dead_letters import DeadLetter
from kpipe.runtime.handler import Handler, HandlerContext
from kpipe.runtime.worker.control import Control, Counters
from kpipe.runtime.worker.emits import WAIT_SLICE
from kpipe.runtime.worker.failures import FailurePolicy, Outcome, send_dead_letter
from kpipe.runtime.worker.hangs import Retry
from kpipe.runtime.worker.membership import Membership, Partition

_RETRY, _DEAD_LETTER = Outcome.RETRY, Outcome.DEAD_LETTER


class InlineFailures:
    """Carries out the policy's decisions for one failed message at a time; every method returns a final
    Outcome (HANDLED, DEAD_LETTERED, SKIPPED, DROPPED or HALTED)."""

    def __init__(
        self,
        policy: FailurePolicy,
        handler: Handler,
        ctx: HandlerContext,
        producer: Any,
        membership: Membership,
        control: Control,
        counters: Counters,
        watch: Any,
        clock: Clock = SYSTEM_CLOCK,
    ):
        """watch: marks the message whose handler runs (hangs.HangWatch), retries included."""
        self._policy = policy
        self._handler = handler
        self._ctx = ctx
        self._producer = producer
        self._membership = membership
        self._control = control
        self._counters = counters
        self._watch = watch
        self._clock = clock

    def invalid(self, msg: Any, text: str) -> Outcome:
        return self._final(msg, self._policy.invalid(msg, text))

    def hung_too_often(self, msg: Any, hangs: int) -> Outcome:
        return self._final(msg, self._policy.hung_too_often(msg, hangs))

    def handler_failed(self, msg: Any, event: Any, exc: Exception) -> Outcome:
        """The handler raised: call it again while the policy says RETRY, after each delay."""
        policy = self._policy
        attempt = 1
        outcome = policy.handler_failed(msg, exc, attempt)
        tp = (msg.topic(), msg.partition())
        while outcome is _RETRY:
            if not self._wait(policy.delay(attempt), tp):
                return Outcome.DROPPED
            self._ctx._msg = msg
            self._watch.current = Retry(msg)  # a new call: its time starts now
            self._counters.retried += 1
            try:
                self._handler(event, self._ctx)
            except Exception as again:
                attempt += 1
                outcome = policy.handler_failed(msg, again, attempt)
            else:
                self._counters.handled += 1
                return Outcome.HANDLED
            finally:
                self._watch.current = None
        return self._final(msg, outcome)

    def _final(self, msg: Any, outcome: Outcome) -> Outcome:
        """A dead letter is sent (again, smaller, while the policy says so) and waited for; any other Outcome is
        final already."""
        if outcome is not _DEAD_LETTER:
            return outcome
        letter = self._policy.letter
        tp = (msg.topic(), msg.partition())
        while outcome is _DEAD_LETTER:
            answer = self._send(letter, tp)
            if answer is False:
                return Outcome.DROPPED
            outcome = self._policy.dead_letter_sent(msg, letter, answer)
        return outcome

    def _send(self, letter: DeadLetter, tp: Partition) -> Any:
        """Send one version of the dead letter and wait for the answer: None acknowledged, the KafkaError that
        refused it, or False when `tp` was revoked or shutdown gave up waiting (the event stays uncommitted)."""
        producer = self._producer
        result: list[Any] = []
        topic = self._policy.dead_letter_topic
        error = send_dead_letter(producer, topic, letter, lambda err, _msg: result.append(err))
        if error is not None:
            return error
        membership = self._membership
        while not result:
            producer.poll(WAIT_SLICE)
            membership.keep_alive()
            if tp in membership.revoked_in_batch or self._control.gave_up():
                return False
        return result[0]

    def _wait(self, seconds: float, tp: Partition) -> bool:
        """Sleep for a retry backoff in short slices; False when stopping or `tp` was revoked meanwhile."""
        clock = self._clock
        deadline = clock.monotonic() + seconds
        event = self._control.event
        while True:
            remaining = deadline - clock.monotonic()
            if remaining <= 0:
                return True
            if clock.wait(event, min(WAIT_SLICE, remaining)):
                return False
            self._membership.keep_alive()
            if tp in self._membership.revoked_in_batch:
                return False

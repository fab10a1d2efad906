"""The failure policy: what becomes of an event that could not be processed, decided once for both loops.

FailurePolicy decides, for one failed event and attempt, what happens next, and says it as an Outcome: RETRY
(after `delay(attempt)`), DEAD_LETTER (send its `letter`, then report the broker's answer to
`dead_letter_sent`, which decides again: written, sent smaller, or halt), or a final one (SKIPPED, HALTED,
DEAD_LETTERED). The loops only carry the decisions out: the sequential one inline (sequential_failures.py), the
concurrent one on timers and completions (event_failures.py).

An event that fails schema validation cannot succeed on retry, so it goes straight to the dead-letter topic
(or, with no dead-letter topic, to the on_error action). A handler exception is retried `retries` times with
exponential backoff (backoff_ms doubling up to max_backoff_ms, ±20 % jitter), unless it can never succeed
(NOT_RETRYABLE: an emit to an undeclared topic); then the group's on_error action:

    dead_letter  write the original message to the dead-letter topic with kpipe.* headers and wait for the
                 broker's ack before the offset counts as processed; one refused as too large is sent again
                 smaller (payload truncated, then omitted: dead_letters.py); a write that still fails halts
                 the worker without committing it, exit code DEAD_LETTER
    skip         log and count it
    stop         halt the worker without committing it (exit code HALT)

A sync handler call of the concurrent loop running past on_error.timeout_ms is abandoned and fails as a
`timeout` the same way; past the group's limit of abandoned calls the worker halts for a restart (HUNG).
"""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from kpipe.compilation.compiled import ErrorPolicy
from kpipe.errors import UndeclaredEmit
from kpipe.redaction import redact
from kpipe.runtime.backpressure import produce_when_room
from kpipe.runtime.dead_letters import TOO_LARGE, DeadLetter
from kpipe.runtime.protocol import WORKER_EXIT_DEAD_LETTER, WORKER_EXIT_HALT, WORKER_EXIT_HUNG
from kpipe.runtime.serde import truncate
from kpipe.runtime.worker.control import Control, Counters

log = logging.getLogger("kpipe.runtime.worker")

# Dead-letter headers (values are UTF-8 text).
H_SOURCE_TOPIC = "kpipe.source.topic"
H_SOURCE_PARTITION = "kpipe.source.partition"
H_SOURCE_OFFSET = "kpipe.source.offset"
H_ERROR_TYPE = "kpipe.error.type"
H_ERROR_MESSAGE = "kpipe.error.message"
H_GROUP = "kpipe.group"
H_ATTEMPTS = "kpipe.attempts"

# How a log line names what failed, by error type (the kpipe.error.type header of a dead letter).
WHAT_FAILED = {"schema": "schema-invalid event", "timeout": "handler hung"}

# Handler errors that fail the same way every time.
NOT_RETRYABLE: tuple[type[BaseException], ...] = (UndeclaredEmit,)


class Outcome(enum.Enum):
    """What became of a message that failed."""

    HANDLED = "handled"  # a retry succeeded
    RETRY = "retry"  # call the handler again after the policy's delay
    DEAD_LETTER = "dead-letter"  # send the dead letter; the broker's answer decides what follows
    DEAD_LETTERED = "dead-lettered"
    SKIPPED = "skipped"
    DROPPED = (
        "dropped"  # not processed, not committed: its partition was revoked, or shutdown gave up waiting
    )
    HALTED = "halted"  # the worker stops; neither this message nor any after it is committed

    @property
    def processed(self) -> bool:
        """Whether the message's offset may now be committed."""
        return self in (Outcome.HANDLED, Outcome.DEAD_LETTERED, Outcome.SKIPPED)


def backoff_delay(policy: ErrorPolicy, attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry `attempt` (1 first): backoff_ms doubling, capped at max_backoff_ms, ±20 %."""
    base = min(policy.max_backoff_ms, policy.backoff_ms * (2 ** (attempt - 1)))
    return min(policy.max_backoff_ms, base * (0.8 + 0.4 * rng())) / 1000.0


def backoff_delays(policy: ErrorPolicy, rng: Callable[[], float] = random.random) -> list[float]:
    """Seconds to wait before each retry."""
    return [backoff_delay(policy, attempt, rng) for attempt in range(1, policy.retries + 1)]


def retryable(exc: BaseException) -> bool:
    """Whether another attempt can succeed: not for an error that says the handler itself is wrong (an emit to
    a topic its group does not declare), which goes straight to the on_error action."""
    return not isinstance(exc, NOT_RETRYABLE)


def dead_letter_headers(
    topic: str,
    partition: int,
    offset: int,
    error_type: str,
    error_message: str,
    group: str,
    original: Iterable[tuple[str, Any]] | None = None,
    *,
    attempts: int,
) -> list[tuple[str, bytes]]:
    """The source message's own headers, then where it came from, why it failed and after how many handler
    calls (`attempts`: 0 for an event that failed its schema)."""
    headers = [(k, v) for k, v in (original or ()) if not k.startswith("kpipe.")]
    headers += [
        (H_SOURCE_TOPIC, topic.encode()),
        (H_SOURCE_PARTITION, str(partition).encode()),
        (H_SOURCE_OFFSET, str(offset).encode()),
        (H_ERROR_TYPE, error_type.encode()),
        (H_ERROR_MESSAGE, truncate(redact(error_message)).encode()),  # no secret leaves in a header
        (H_GROUP, group.encode()),
        (H_ATTEMPTS, str(attempts).encode()),
    ]
    return headers


def _after(attempts: int) -> str:
    return f" after {attempts} attempts" if attempts > 1 else ""


def where(msg: Any) -> str:
    return f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"


def send_dead_letter(producer: Any, topic: str, letter: DeadLetter, on_delivery: Any) -> KafkaError | None:
    """Hand one version of a dead letter to the producer (waiting for room when its queue is full); the error
    when the client refuses it at once (too large, unknown topic), else None: the ack comes to on_delivery."""
    try:
        try:
            producer.produce(topic, letter.value, letter.key, headers=letter.headers, on_delivery=on_delivery)
        except BufferError:
            produce_when_room(
                producer, topic, letter.value, letter.key, headers=letter.headers, on_delivery=on_delivery
            )
    except KafkaException as exc:
        return exc.args[0]
    return None


class FailurePolicy:
    """A group's ErrorPolicy as decisions, one failed event and attempt at a time; the same object for both
    loops. Counts the failures and the final outcomes, logs them, and halts the worker where the policy says so;
    the loop that asked carries the Outcome out (and counts the retries it makes). Consumer thread only."""

    def __init__(
        self,
        group: str,
        policy: ErrorPolicy,
        control: Control,
        counters: Counters,
        rng: Callable[[], float] = random.random,
    ):
        self.group = group
        self.dead_letter_topic = policy.dead_letter_topic
        self.timeout = policy.timeout_ms / 1000.0 if policy.timeout_ms else None
        self._policy = policy
        self._control = control
        self._counters = counters
        self._rng = rng
        # After a DEAD_LETTER decision: the dead letter to send (the loop takes it at once).
        self.letter = DeadLetter(None, None, [])

    # -- what failed ----------------------------------------------------------------------------------------

    def handler_failed(self, msg: Any, exc: BaseException, attempt: int) -> Outcome:
        """The handler raised on its `attempt`-th call (1 first): RETRY while retries are left and another call
        can succeed, then the on_error action."""
        retries = self._policy.retries
        if attempt <= retries and retryable(exc):
            log.debug("handler failed for %s (%s: %s); retry %d/%d",
                      where(msg), type(exc).__name__, exc, attempt, retries)  # fmt: skip
            return Outcome.RETRY
        return self.give_up(msg, "handler", f"{type(exc).__name__}: {exc}", attempt)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before the retry that follows the `attempt`-th failed call."""
        return backoff_delay(self._policy, attempt, self._rng)

    def invalid(self, msg: Any, text: str) -> Outcome:
        """The event failed schema validation: it cannot succeed on retry."""
        return self.give_up(msg, "schema", text, attempts=0)

    def hung_too_often(self, msg: Any, hangs: int) -> Outcome:
        """The handler hung on this event `hangs` times (hangs.py): fail it without calling the handler again."""
        text = f"the handler hung {hangs} times on it (on_error.timeout_ms: {self._policy.timeout_ms})"
        return self.give_up(msg, "timeout", text, hangs)

    def abandoned(self, msg: Any, count: int, limit: int) -> Outcome:
        """A sync call on `msg` ran past on_error.timeout_ms and was abandoned, the `count`-th so far: a
        `timeout` failure, or past `limit` abandoned calls a halt for a restart (committing what finished)."""
        text = (
            f"the handler ran for over {self._policy.timeout_ms:g} ms (on_error.timeout_ms); its thread is "
            f"abandoned ({count} so far, a restart after {limit})"
        )
        if count <= limit:
            return self.give_up(msg, "timeout", text, 1)
        reason = f"handler hung on {where(msg)}: {text}"
        log.error("%s; stopping for a restart, committing what finished", reason)
        self._control.halt(WORKER_EXIT_HUNG, reason)
        return Outcome.HALTED

    # -- the on_error action --------------------------------------------------------------------------------

    def give_up(self, msg: Any, error_type: str, text: str, attempts: int) -> Outcome:
        """The on_error action for an event that failed for good after `attempts` handler calls: DEAD_LETTER
        (a schema-invalid event too, when there is a dead-letter topic), SKIPPED, or HALTED (stop)."""
        self._counters.failed += 1
        action = self._policy.action
        if self.dead_letter_topic and (action == "dead_letter" or error_type == "schema"):
            self.letter = self._letter(msg, error_type, text, attempts)
            return Outcome.DEAD_LETTER
        what = (
            f"{WHAT_FAILED.get(error_type, 'handler failed')} {where(msg)}{_after(attempts)}: "
            f"{truncate(text, 300)}"
        )
        if action == "skip":
            self._counters.skipped += 1
            log.warning("%s; skipped (on_error: skip)", what)
            return Outcome.SKIPPED
        log.error("%s; stopping (on_error: %s), offset %d not committed", what, action, msg.offset())
        self._control.halt(WORKER_EXIT_HALT, what)
        return Outcome.HALTED

    def _letter(self, msg: Any, error_type: str, text: str, attempts: int) -> DeadLetter:
        """The dead letter of an event the policy dead-letters: its value and key as read, with
        dead_letter_headers, and what failed for the log line."""
        headers = dead_letter_headers(
            msg.topic(), msg.partition(), msg.offset(), error_type, text, self.group, msg.headers(),
            attempts=attempts,
        )  # fmt: skip
        about = f"{WHAT_FAILED.get(error_type, 'handler failed')} {where(msg)}"
        return DeadLetter(
            msg.value(), msg.key(), headers, about, f"{_after(attempts)}: {truncate(text, 300)}"
        )

    def dead_letter_sent(self, msg: Any, letter: DeadLetter, error: KafkaError | None) -> Outcome:
        """The broker's (or client's) answer to a dead letter: DEAD_LETTERED; DEAD_LETTER again when it was
        refused as too large and a smaller version is left (send `letter` again, dead_letters.DeadLetter); or
        HALTED: the worker stops without committing the event (exit code DEAD_LETTER)."""
        topic = self.dead_letter_topic
        if error is None:
            self._counters.dead_lettered += 1
            fit = f" (payload {letter.fit}: too large for it)" if letter.fit else ""
            log.warning("%s%s; dead-lettered to '%s'%s", letter.about, letter.why, topic, fit)
            return Outcome.DEAD_LETTERED
        code, described = error.name(), f"{error.name()}: {error.str()}"
        first = not letter.fit
        if letter.shrink(code):
            if first:
                log.warning("dead letter for %s (%d bytes) refused as too large by '%s' (%s); sending it smaller",
                            where(msg), len(msg.value() or b""), topic, described)  # fmt: skip
            return Outcome.DEAD_LETTER
        refused = "refused even without its payload: " if code in TOO_LARGE else ""
        reason = f"{letter.about}; writing it to dead-letter topic '{topic}' failed"
        log.error("%s: %s%s; stopping without committing it", reason, refused, described)
        self._control.halt(WORKER_EXIT_DEAD_LETTER, f"{reason}: {refused}{described}")
        return Outcome.HALTED

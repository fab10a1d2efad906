"""Failure handling: what becomes of a message that could not be processed, as an Outcome.

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

Waits are sliced so stop() is prompt, and keep the group membership (see membership.py).
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
from kpipe.runtime.client_protocols import SYSTEM_CLOCK, Clock
from kpipe.runtime.dead_letters import TOO_LARGE, DeadLetter
from kpipe.runtime.handler import Handler, HandlerContext
from kpipe.runtime.protocol import WORKER_EXIT_DEAD_LETTER, WORKER_EXIT_HALT
from kpipe.runtime.serde import truncate
from kpipe.runtime.worker.control import Control, Counters
from kpipe.runtime.worker.emits import WAIT_SLICE
from kpipe.runtime.worker.membership import Membership, Partition

log = logging.getLogger("kpipe.runtime.worker")

# Dead-letter headers (values are UTF-8 text).
H_SOURCE_TOPIC = "kpipe.source.topic"
H_SOURCE_PARTITION = "kpipe.source.partition"
H_SOURCE_OFFSET = "kpipe.source.offset"
H_ERROR_TYPE = "kpipe.error.type"
H_ERROR_MESSAGE = "kpipe.error.message"
H_GROUP = "kpipe.group"

# How a log line names what failed, by error type (the kpipe.error.type header of a dead letter).
WHAT_FAILED = {"schema": "schema-invalid event", "timeout": "handler hung"}

# Handler errors that fail the same way every time.
NOT_RETRYABLE: tuple[type[BaseException], ...] = (UndeclaredEmit,)


class Outcome(enum.Enum):
    """What became of a message that failed."""

    HANDLED = "handled"  # a retry succeeded
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


def backoff_delays(policy: ErrorPolicy, rng: Callable[[], float] = random.random) -> list[float]:
    """Seconds to wait before each retry: backoff_ms doubling, capped at max_backoff_ms, with ±20 % jitter."""
    delays = []
    for attempt in range(policy.retries):
        base = min(policy.max_backoff_ms, policy.backoff_ms * (2**attempt))
        jittered = min(policy.max_backoff_ms, base * (0.8 + 0.4 * rng()))
        delays.append(jittered / 1000.0)
    return delays


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
) -> list[tuple[str, bytes]]:
    """The source message's own headers, then where it came from and why it failed."""
    headers = [(k, v) for k, v in (original or ()) if not k.startswith("kpipe.")]
    headers += [
        (H_SOURCE_TOPIC, topic.encode()),
        (H_SOURCE_PARTITION, str(partition).encode()),
        (H_SOURCE_OFFSET, str(offset).encode()),
        (H_ERROR_TYPE, error_type.encode()),
        (H_ERROR_MESSAGE, truncate(redact(error_message)).encode()),  # no secret leaves in a header
        (H_GROUP, group.encode()),
    ]
    return headers


def dead_letter_of(msg: Any, error_type: str, text: str, group: str) -> DeadLetter:
    """The dead letter of a message that failed: its value and key as read, with dead_letter_headers."""
    headers = dead_letter_headers(
        msg.topic(), msg.partition(), msg.offset(), error_type, text, group, msg.headers()
    )
    return DeadLetter(msg.value(), msg.key(), headers)


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


class _Unwatched:
    current: Any = None


class Failures:
    """Applies a group's ErrorPolicy to the messages whose validation or handler failed."""

    def __init__(
        self,
        group: str,
        policy: ErrorPolicy,
        handler: Handler,
        ctx: HandlerContext,
        producer: Any,
        membership: Membership,
        control: Control,
        counters: Counters,
        rng: Callable[[], float] = random.random,
        watch: Any = None,
        clock: Clock = SYSTEM_CLOCK,
    ):
        """watch: marks the message whose handler runs (hangs.HangWatch), retries included."""
        self._group = group
        self._policy = policy
        self._handler = handler
        self._ctx = ctx
        self._producer = producer
        self._membership = membership
        self._control = control
        self._counters = counters
        self._rng = rng
        self._dlq_error = ""
        self._dlq_error_code = ""
        self._dlq_fit = ""  # "truncated" | "omitted" when the dead letter had to be made smaller
        self._watch = watch if watch is not None else _Unwatched()
        self._clock = clock

    def hung_too_often(self, msg: Any, hangs: int) -> Outcome:
        """The handler hung on this event `hangs` times (hangs.py): fail it without calling the handler again."""
        timeout = self._policy.timeout_ms
        return self._apply(
            msg, "timeout", f"the handler hung {hangs} times on it (on_error.timeout_ms: {timeout})"
        )

    def invalid(self, msg: Any, text: str) -> Outcome:
        """The event failed schema validation: no retry."""
        return self._apply(msg, "schema", text)

    def handler_failed(self, msg: Any, event: Any, exc: Exception) -> Outcome:
        """The handler raised: retry with backoff, then apply the on_error action."""
        delays = backoff_delays(self._policy, self._rng) if retryable(exc) else []
        tp = (msg.topic(), msg.partition())
        for attempt, delay in enumerate(delays, start=1):
            log.debug(
                "handler failed for %s[%d]@%d (%s: %s); retry %d/%d in %.2f s",
                tp[0], tp[1], msg.offset(), type(exc).__name__, exc, attempt, len(delays), delay,
            )  # fmt: skip
            if not self._wait(delay, tp):
                return Outcome.DROPPED
            self._ctx._msg = msg
            self._watch.current = msg
            self._counters.retried += 1
            try:
                self._handler(event, self._ctx)
            except Exception as again:
                exc = again
            else:
                self._counters.handled += 1
                return Outcome.HANDLED
            finally:
                self._watch.current = None
        attempts = f" after {len(delays) + 1} attempts" if delays else ""
        return self._apply(msg, "handler", f"{type(exc).__name__}: {exc}", attempts)

    def dispose(self, msg: Any, error_type: str, text: str, attempts: str = "") -> Outcome:
        """The on_error action for a message that failed for good, without retries (the concurrent loop retries
        on its own timers and writes dead letters without waiting: it calls this for skip and stop)."""
        return self._apply(msg, error_type, text, attempts)

    def _apply(self, msg: Any, error_type: str, text: str, attempts: str = "") -> Outcome:
        self._counters.failed += 1
        where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
        what = WHAT_FAILED.get(error_type, "handler failed")
        dlq = self._policy.dead_letter_topic
        action = "dead_letter" if error_type == "schema" and dlq else self._policy.action
        if action == "dead_letter" and dlq:
            delivered = self._dead_letter(msg, error_type, text)
            if delivered is None:
                return Outcome.DROPPED
            if delivered:
                self._counters.dead_lettered += 1
                fit = f" (payload {self._dlq_fit}: too large for it)" if self._dlq_fit else ""
                log.warning(
                    "%s %s%s: %s; dead-lettered to '%s'%s",
                    what,
                    where,
                    attempts,
                    truncate(text, 300),
                    dlq,
                    fit,
                )
                return Outcome.DEAD_LETTERED
            reason = f"{what} {where}; writing it to dead-letter topic '{dlq}' failed"
            log.error("%s: %s; stopping without committing it", reason, self._dlq_error)
            self._control.halt(WORKER_EXIT_DEAD_LETTER, f"{reason}: {self._dlq_error}")
            return Outcome.HALTED
        if action == "skip":
            self._counters.skipped += 1
            log.warning("%s %s%s: %s; skipped (on_error: skip)", what, where, attempts, truncate(text, 300))
            return Outcome.SKIPPED
        reason = f"{what} {where}{attempts}: {truncate(text, 300)}"
        log.error("%s; stopping (on_error: %s), offset %d not committed", reason, action, msg.offset())
        self._control.halt(WORKER_EXIT_HALT, reason)
        return Outcome.HALTED

    def _dead_letter(self, msg: Any, error_type: str, text: str) -> bool | None:
        """Write the message to the dead-letter topic and wait for the ack: True delivered, False failed,
        None when the partition was revoked or shutdown gave up waiting (the message stays uncommitted).

        A dead letter refused as too large is sent again smaller (dead_letters.DeadLetter): payload truncated,
        then omitted, with the original's size, hash and coordinates in headers. `self._dlq_fit` says which."""
        topic = self._policy.dead_letter_topic
        assert topic is not None and self._producer is not None
        letter = dead_letter_of(msg, error_type, text, self._group)
        tp = (msg.topic(), msg.partition())
        self._dlq_fit = ""
        shrunk = False
        while True:
            sent = self._send_dead_letter(topic, letter, tp)
            if sent is not False:
                self._dlq_fit = letter.fit
                return sent
            if not letter.shrink(self._dlq_error_code):
                if self._dlq_error_code in TOO_LARGE:
                    self._dlq_error = f"refused even without its payload: {self._dlq_error}"
                return False
            if not shrunk:
                shrunk = True
                log.warning(
                    "dead letter for %s[%d]@%d (%d bytes) refused as too large by '%s' (%s); sending it smaller",
                    tp[0], tp[1], msg.offset(), len(msg.value() or b""), topic, self._dlq_error,
                )  # fmt: skip

    def _send_dead_letter(self, topic: str, letter: DeadLetter, tp: Partition) -> bool | None:
        """One attempt: True acknowledged, False refused (self._dlq_error and _code say why), None dropped."""
        producer = self._producer
        result: list[KafkaError | None] = []

        def on_delivery(err: KafkaError | None, _msg: Any) -> None:
            result.append(err)

        error = send_dead_letter(producer, topic, letter, on_delivery)
        if error is not None:
            self._dlq_error, self._dlq_error_code = f"{error.name()}: {error.str()}", error.name()
            return False
        while not result:
            producer.poll(WAIT_SLICE)
            self._membership.keep_alive()
            if tp in self._membership.revoked_in_batch:
                return None
            if self._control.gave_up():
                self._dlq_error = "no acknowledgement before shutdown"
                return None
        if result[0] is not None:
            self._dlq_error, self._dlq_error_code = f"{result[0].name()}: {result[0].str()}", result[0].name()
            return False
        return True

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

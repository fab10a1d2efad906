"""The one failure policy (FailurePolicy): for one failed event and attempt, the Outcome that follows. Both loops
ask it and only carry its decisions out (tests/unit/test_worker_processing.py and test_concurrent_loop.py show
them doing so through GroupWorker)."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, Message

from kpipe.compilation.compiled import ErrorAction, ErrorPolicy
from kpipe.errors import UndeclaredEmit
from kpipe.runtime.protocol import WORKER_EXIT_DEAD_LETTER, WORKER_EXIT_HALT, WORKER_EXIT_HUNG
from kpipe.runtime.worker import Outcome
from kpipe.runtime.worker.control import Control, Counters
from kpipe.runtime.worker.failures import FailurePolicy

MSG = Message(topic="t", partition=1, offset=7, key=b"k", value=b"x" * 40_000, headers=[("trace", b"1")])


def policy_of(action: ErrorAction, **options: Any) -> tuple[FailurePolicy, Control, Counters]:
    control, counters = Control(), Counters()
    return (
        FailurePolicy("g", ErrorPolicy(action, **options), control, counters, lambda: 0.5),
        control,
        counters,
    )


def test_a_handler_error_is_retried_with_growing_delays_then_skipped() -> None:
    policy, control, counters = policy_of("skip", retries=2, backoff_ms=100, max_backoff_ms=150)
    error = ValueError("boom")
    assert [policy.handler_failed(MSG, error, attempt) for attempt in (1, 2, 3)] == [
        Outcome.RETRY,
        Outcome.RETRY,
        Outcome.SKIPPED,
    ]
    assert [policy.delay(1), policy.delay(2)] == [0.1, 0.15]  # doubled, capped at max_backoff_ms
    assert (counters.failed, counters.skipped, control.exit_code) == (1, 1, None)


def test_an_emit_to_an_undeclared_topic_is_not_retried() -> None:
    policy, control, _ = policy_of("stop", retries=5)
    assert policy.handler_failed(MSG, UndeclaredEmit("no"), 1) is Outcome.HALTED
    assert control.exit_code == WORKER_EXIT_HALT and "t[1]@7" in (control.error or "")


def test_a_schema_invalid_event_goes_to_the_dead_letter_topic_even_under_skip() -> None:
    policy, _, counters = policy_of("skip", retries=3, dead_letter_topic="t.dlq")
    assert policy.invalid(MSG, "id: field required") is Outcome.DEAD_LETTER
    headers = dict(policy.letter.headers)
    assert headers["kpipe.error.type"] == b"schema" and headers["trace"] == b"1"
    assert policy.dead_letter_sent(MSG, policy.letter, None) is Outcome.DEAD_LETTERED
    assert (counters.failed, counters.dead_lettered, counters.skipped) == (1, 1, 0)


def test_a_dead_letter_refused_as_too_large_is_sent_smaller_until_none_is_left_then_halts() -> None:
    policy, control, counters = policy_of("dead_letter", dead_letter_topic="t.dlq")
    assert policy.handler_failed(MSG, ValueError("x"), 1) is Outcome.DEAD_LETTER
    letter, too_large = policy.letter, KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    assert policy.dead_letter_sent(MSG, letter, too_large) is Outcome.DEAD_LETTER
    assert letter.fit == "truncated"
    assert policy.dead_letter_sent(MSG, letter, too_large) is Outcome.DEAD_LETTER
    assert letter.fit == "omitted" and letter.value is None
    assert policy.dead_letter_sent(MSG, letter, too_large) is Outcome.HALTED
    assert control.exit_code == WORKER_EXIT_DEAD_LETTER
    assert "refused even without its payload: MSG_SIZE_TOO_LARGE" in (control.error or "")
    assert counters.dead_lettered == 0


def test_a_dead_letter_refused_for_another_reason_halts_at_once() -> None:
    policy, control, _ = policy_of("dead_letter", dead_letter_topic="t.dlq")
    policy.handler_failed(MSG, ValueError("x"), 1)
    outcome = policy.dead_letter_sent(MSG, policy.letter, KafkaError(KafkaError._MSG_TIMED_OUT))
    assert outcome is Outcome.HALTED and policy.letter.fit == ""
    assert "writing it to dead-letter topic 't.dlq' failed: _MSG_TIMED_OUT" in (control.error or "")


def test_an_abandoned_call_is_a_timeout_failure_until_too_many_then_a_restart() -> None:
    policy, control, counters = policy_of("skip", timeout_ms=500)
    assert policy.abandoned(MSG, 2, 2) is Outcome.SKIPPED
    assert control.exit_code is None and counters.skipped == 1
    assert policy.abandoned(MSG, 3, 2) is Outcome.HALTED
    assert control.exit_code == WORKER_EXIT_HUNG
    assert "its thread is abandoned (3 so far, a restart after 2)" in (control.error or "")

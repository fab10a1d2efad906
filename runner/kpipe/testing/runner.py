"""Running checked test cases in memory, and comparing what happened with what each case expects."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kpipe.compilation.project import CompiledProject
from kpipe.diagnostics import Position
from kpipe.errors import EventInvalid
from kpipe.testing.cases import Case, DeadLetterMatch
from kpipe.testing.engine import DrainTimeout
from kpipe.testing.harness import DEFAULT_DRAIN_TIMEOUT, PipelineRun, start_run

MISSING = object()  # an item expected but absent, or present but not expected


@dataclass(frozen=True)
class Mismatch:
    """One expectation not met: where it is written, what it said, what happened."""

    what: str  # e.g. "handled.fraud-check", "topics.payments.flagged[1]"
    expected: Any
    actual: Any
    position: Position


@dataclass
class CaseResult:
    case: Case
    mismatches: list[Mismatch] = field(default_factory=list)
    error: str | None = (
        None  # the case could not run to the end (an invalid given event, a handler that hung)
    )
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.mismatches and self.error is None


def run_cases(
    cases: Iterable[Case], project: CompiledProject, *, timeout: float = DEFAULT_DRAIN_TIMEOUT
) -> Iterable[CaseResult]:
    """Run each case on a fresh in-memory cluster, yielding its result as soon as it is known."""
    for case in cases:
        started = time.perf_counter()
        result = run_case(case, project, timeout=timeout)
        result.seconds = time.perf_counter() - started
        yield result


def run_case(case: Case, project: CompiledProject, *, timeout: float = DEFAULT_DRAIN_TIMEOUT) -> CaseResult:
    result = CaseResult(case)
    run = start_run(project, case.spec.groups)
    try:
        for i, given in enumerate(case.spec.given):
            try:
                if "event" in given.model_fields_set:
                    run.send(given.topic, given.event, key=given.key, headers=given.headers)
                else:
                    run.send_raw(
                        given.topic, (given.raw or "").encode(), key=given.key, headers=given.headers
                    )
            except EventInvalid as exc:
                result.error = (
                    f"{case.at('given', i, 'event')}: given[{i}]: {exc} (use 'raw:' to send it as is)"
                )
                return result
        run.drain(timeout)
    except DrainTimeout as exc:
        result.error = str(exc)
        return result
    finally:
        run.close()  # every group commits and stops: the outcome is final
    result.mismatches = compare(case, run)
    return result


def compare(case: Case, run: PipelineRun) -> list[Mismatch]:
    expect = case.spec.expect
    out: list[Mismatch] = []
    base = ("cases", case.index, "expect")
    for group, count in (expect.handled or {}).items():
        actual = len(run.handled(group))
        if actual != count:
            out.append(
                Mismatch(f"handled.{group}", count, actual, case.positions.locate((*base, "handled", group)))
            )
    for group, count in (expect.skipped or {}).items():
        actual = run.skipped(group)
        if actual != count:
            out.append(
                Mismatch(f"skipped.{group}", count, actual, case.positions.locate((*base, "skipped", group)))
            )
    if expect.stopped is not None and sorted(expect.stopped) != run.stopped:
        out.append(
            Mismatch(
                "stopped", sorted(expect.stopped), run.stopped, case.positions.locate((*base, "stopped"))
            )
        )
    for topic, items in (expect.topics or {}).items():
        values = [_readable(r.value) for r in run.topic(topic, as_written=True)]
        out += _compare_list(f"topics.{topic}", items, values, case, (*base, "topics", topic), matches)
    for topic, wanted in (expect.dead_letters or {}).items():
        letters = [
            {
                "error_type": d.error_type,
                "error_message": d.error_message,
                "key": d.key,
                "value": _readable(d.value),
            }
            for d in run.dead_letters(topic, as_written=True)
        ]
        out += _compare_list(f"dead_letters.{topic}", wanted, letters, case, (*base, "dead_letters", topic),
                             _letter_matches)  # fmt: skip
    return out


def _compare_list(what: str, expected: list[Any], actual: list[Any], case: Case, path: tuple[Any, ...],
                  match: Any) -> list[Mismatch]:  # fmt: skip
    out = []
    for i in range(max(len(expected), len(actual))):
        want = expected[i] if i < len(expected) else MISSING
        got = actual[i] if i < len(actual) else MISSING
        if want is MISSING or got is MISSING or not match(want, got):
            where = case.positions.locate((*path, i)) if i < len(expected) else case.positions.locate(path)
            shown = want.model_dump(exclude_unset=True) if isinstance(want, DeadLetterMatch) else want
            out.append(Mismatch(f"{what}[{i}]", shown, got, where))
    return out


def matches(expected: Any, actual: Any) -> bool:
    """Whether `actual` holds `expected`: a mapping's keys are a subset (recursively), lists match item by item,
    anything else is equal (text is compared with bytes that are not JSON)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and matches(v, actual[k]) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    return bool(expected == actual)


def _letter_matches(want: DeadLetterMatch, got: dict[str, Any]) -> bool:
    given = want.model_fields_set
    if "error_type" in given and want.error_type != got["error_type"]:
        return False
    if "error_message" in given and (want.error_message or "") not in got["error_message"]:
        return False
    if "key" in given and want.key != got["key"]:
        return False
    return not ("value" in given and not matches(want.value, got["value"]))


def _readable(value: Any) -> Any:
    """A value that is not JSON, as text (how a case file writes it)."""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value

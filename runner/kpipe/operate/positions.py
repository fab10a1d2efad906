"""Positions in a partition as operators write them: `earliest`, `latest`, an OFFSET, a DATETIME, `-N` (the last N
events) or a shift of N from the committed offset. Each kind is a small class whose `offset(bounds)` says where it
lands in one partition, clamped to what the log holds. Pure: a DATETIME's offset is looked up on the cluster first
and handed in through `Bounds.at_time`.

    parse_position("2026-12-07T03:00Z", "--to", allowed=RESET_POSITIONS) -> AtTime(...)
    parse_time("2026-12-07 03:00", "--since") -> epoch milliseconds (a time without a zone is UTC)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Protocol

from kpipe.errors import UsageError


@dataclass(frozen=True)
class Bounds:
    """What is known of one partition when a position is resolved in it."""

    low: int  # the log start
    high: int  # the log end (the next offset to be written)
    # Where the group stands: its committed offset, or where it would start without one.
    current: int | None = None
    # The first offset whose timestamp is at or after the position's time (AtTime only); None: no record is that
    # late, so the log end.
    at_time: int | None = None

    def clamp(self, offset: int) -> int:
        return min(max(offset, self.low), self.high)


class Position(Protocol):
    def offset(self, bounds: Bounds) -> int: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class Earliest:
    def offset(self, bounds: Bounds) -> int:
        return bounds.low

    def describe(self) -> str:
        return "earliest"


@dataclass(frozen=True)
class Latest:
    def offset(self, bounds: Bounds) -> int:
        return bounds.high

    def describe(self) -> str:
        return "latest"


@dataclass(frozen=True)
class AtOffset:
    value: int

    def offset(self, bounds: Bounds) -> int:
        return bounds.clamp(self.value)

    def describe(self) -> str:
        return f"offset {self.value}"


@dataclass(frozen=True)
class LastN:
    """The last `count` events of each partition."""

    count: int

    def offset(self, bounds: Bounds) -> int:
        return bounds.clamp(bounds.high - self.count)

    def describe(self) -> str:
        return f"the last {self.count} per partition"


@dataclass(frozen=True)
class AtTime:
    """The first event whose timestamp is at or after `timestamp_ms`."""

    timestamp_ms: int

    def offset(self, bounds: Bounds) -> int:
        return bounds.high if bounds.at_time is None else bounds.clamp(bounds.at_time)

    def describe(self) -> str:
        return format_time(self.timestamp_ms)


@dataclass(frozen=True)
class Shift:
    """`delta` events from where the group stands: negative goes back (re-reads), positive skips ahead."""

    delta: int

    def offset(self, bounds: Bounds) -> int:
        base = bounds.low if bounds.current is None else bounds.current
        return bounds.clamp(base + self.delta)

    def describe(self) -> str:
        return f"shift {self.delta:+d}"


TAIL_POSITIONS = "earliest|latest|OFFSET|DATETIME|-N"
RESET_POSITIONS = "earliest|latest|DATETIME|OFFSET"

_NAMED: dict[str, Position] = {
    "earliest": Earliest(),
    "beginning": Earliest(),
    "latest": Latest(),
    "end": Latest(),
}


def parse_position(text: str, option: str, *, allowed: str = TAIL_POSITIONS) -> Position:
    """One position as written after `option`; UsageError naming the forms `allowed` (TAIL_POSITIONS takes -N)."""
    value = text.strip()
    named = _NAMED.get(value.lower())
    if named is not None:
        return named
    if re.fullmatch(r"\d+", value):
        return AtOffset(int(value))
    if re.fullmatch(r"-\d+", value):
        if "-N" not in allowed:
            raise UsageError(
                f"{option}: {value!r} is not a position (expected {allowed}; use --shift to move back)"
            )
        count = int(value[1:])
        if count == 0:
            raise UsageError(f"{option}: -0 selects nothing (expected -N with N >= 1, e.g. -10)")
        return LastN(count)
    try:
        return AtTime(_time_ms(value))
    except ValueError:
        raise UsageError(f"{option}: {value!r} is not a position (expected {allowed})") from None


def parse_time(text: str, option: str) -> int:
    """A DATETIME as epoch milliseconds (ISO 8601; `Z` or an offset, else UTC; a date alone is its midnight)."""
    try:
        return _time_ms(text.strip())
    except ValueError:
        raise UsageError(
            f"{option}: {text!r} is not a date and time (expected ISO 8601, e.g. 2026-12-07T03:00:00Z)"
        ) from None


def _time_ms(value: str) -> int:
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        day = date.fromisoformat(value)
        moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
    else:
        if not re.match(r"\d{4}-\d{2}-\d{2}[T ]\d", value):
            raise ValueError(value)
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def format_time(timestamp_ms: int | None) -> str:
    """Epoch milliseconds as UTC ISO 8601 with milliseconds (`2026-12-07T03:00:00.123Z`); '-' for none."""
    if timestamp_ms is None:
        return "-"
    moment = datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{timestamp_ms % 1000:03d}Z"

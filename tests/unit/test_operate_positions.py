"""--from / --to / --since values: parsed into positions, and where each lands in a partition."""

from __future__ import annotations

import pytest

from kpipe.errors import UsageError
from kpipe.operate.positions import (
    RESET_POSITIONS,
    AtOffset,
    AtTime,
    Bounds,
    Earliest,
    LastN,
    Latest,
    Shift,
    format_time,
    parse_position,
    parse_time,
)

T = 1_796_612_400_000  # 2026-12-07T03:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("earliest", Earliest()),
        ("EARLIEST", Earliest()),
        ("beginning", Earliest()),
        ("latest", Latest()),
        ("end", Latest()),
        ("0", AtOffset(0)),
        ("1234", AtOffset(1234)),
        ("-10", LastN(10)),
        ("2026-12-07T03:00:00Z", AtTime(T)),
        ("2026-12-07T03:00Z", AtTime(T)),
        ("2026-12-07 03:00", AtTime(T)),  # no zone: UTC
        ("2026-12-07T04:00:00+01:00", AtTime(T)),
        ("2026-12-07T03:00:00.250Z", AtTime(T + 250)),
        ("2026-12-07", AtTime(T - 3 * 3600 * 1000)),  # a date: its midnight, UTC
    ],
)
def test_positions_parse(text: str, expected: object) -> None:
    assert parse_position(text, "--from") == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("yesterday", "--from: 'yesterday' is not a position (expected earliest|latest|OFFSET|DATETIME|-N)"),
        ("-0", "--from: -0 selects nothing (expected -N with N >= 1, e.g. -10)"),
        (
            "2026-13-07",
            "--from: '2026-13-07' is not a position (expected earliest|latest|OFFSET|DATETIME|-N)",
        ),
        ("12abc", "--from: '12abc' is not a position (expected earliest|latest|OFFSET|DATETIME|-N)"),
    ],
)
def test_bad_positions_say_what_was_meant(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_position(text, "--from")
    assert str(caught.value) == message


def test_a_reset_takes_no_last_n_and_says_to_use_shift() -> None:
    with pytest.raises(
        UsageError,
        match=r"--to: '-5' is not a position \(expected earliest\|latest\|DATETIME\|OFFSET; use --shift",
    ):
        parse_position("-5", "--to", allowed=RESET_POSITIONS)


def test_parse_time() -> None:
    assert parse_time(" 2026-12-07T03:00:00Z ", "--since") == T
    with pytest.raises(UsageError, match=r"^--until: 'soon' is not a date and time \(expected ISO 8601"):
        parse_time("soon", "--until")


def test_format_time_is_utc_with_milliseconds_and_round_trips() -> None:
    assert format_time(T + 7) == "2026-12-07T03:00:00.007Z"
    assert parse_time(format_time(T + 7), "--since") == T + 7
    assert format_time(None) == "-"


BOUNDS = Bounds(low=10, high=100, current=40, at_time=55)


@pytest.mark.parametrize(
    ("position", "offset"),
    [
        (Earliest(), 10),
        (Latest(), 100),
        (AtOffset(50), 50),
        (AtOffset(5), 10),  # below the log start (deleted by retention): the start
        (AtOffset(500), 100),  # beyond the end: the end
        (LastN(3), 97),
        (LastN(1000), 10),
        (AtTime(T), 55),
        (Shift(-15), 25),
        (Shift(+15), 55),
        (Shift(-1000), 10),
        (Shift(+1000), 100),
    ],
)
def test_where_each_position_lands(position: object, offset: int) -> None:
    assert position.offset(BOUNDS) == offset  # type: ignore[attr-defined]


def test_a_time_after_every_event_is_the_log_end() -> None:
    assert AtTime(T).offset(Bounds(low=0, high=42, at_time=None)) == 42


def test_a_shift_without_a_current_position_counts_from_the_log_start() -> None:
    assert Shift(5).offset(Bounds(low=3, high=42)) == 8

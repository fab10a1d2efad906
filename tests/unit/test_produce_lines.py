"""How `kpipe produce` reads its input (kpipe.service.produce.numbered_lines): line by line, each at most the
producer's message.max.bytes; a longer line is skipped to its end without being held, and numbering goes on."""

from __future__ import annotations

import io

from kpipe.service.produce import SKIP_CHUNK, numbered_lines, parse_line


def lines(data: bytes, cap: int) -> list[tuple[int, bytes | None]]:
    return list(numbered_lines(io.BytesIO(data), cap))


def test_lines_are_numbered_and_keep_their_newline() -> None:
    assert lines(b'{"a": 1}\n\n{"b": 2}', 100) == [(1, b'{"a": 1}\n'), (2, b"\n"), (3, b'{"b": 2}')]


def test_a_line_of_exactly_the_cap_is_read() -> None:
    assert lines(b"x" * 10 + b"\ny\n", 10) == [(1, b"x" * 10 + b"\n"), (2, b"y\n")]
    assert lines(b"x" * 10, 10) == [(1, b"x" * 10)]  # the last line, without its newline
    assert lines(b"x" * 11, 10) == [(1, None)]


def test_a_longer_line_is_skipped_and_the_next_lines_are_read() -> None:
    data = b"a\n" + b"x" * (3 * SKIP_CHUNK + 5) + b"\nb\n" + b"y" * 11
    assert lines(data, 10) == [(1, b"a\n"), (2, None), (3, b"b\n"), (4, None)]


def test_a_long_line_is_never_held() -> None:
    class Counting(io.BytesIO):
        largest = 0

        def readline(self, size: int | None = -1) -> bytes:  # type: ignore[override]
            line = super().readline(size)
            Counting.largest = max(Counting.largest, len(line))
            return line

    stream = Counting(b"z" * (50 * SKIP_CHUNK) + b"\n{}\n")
    assert list(numbered_lines(stream, 1000)) == [(1, None), (2, b"{}\n")]
    assert Counting.largest <= max(1001, SKIP_CHUNK)


def test_parse_line_says_what_is_wrong_and_where() -> None:
    assert parse_line(b'{"a": 1}\r\n') == {"a": 1}
    assert parse_line(b"[1]\n").text == "expected a JSON object, got an array"  # type: ignore[union-attr]
    problem = parse_line(b'{"a": "\xff"}\n')
    assert problem == ("not valid UTF-8: byte 0xff", 8)


def test_a_line_nested_too_deeply_is_an_invalid_line_not_a_crash() -> None:
    problem = parse_line(b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n")
    assert isinstance(problem, tuple) and "nested" in problem.text  # type: ignore[union-attr]

"""kpipe.cli.output_guard: while a command runs, no line it prints can start a GitHub Actions workflow command."""

from __future__ import annotations

import io
import json
import sys

import pytest

from kpipe.cli.output_guard import annotation_lines, guarded_output


def printed(*writes: str) -> str:
    target = io.StringIO()
    saved = sys.stdout
    sys.stdout = target
    try:
        with guarded_output():
            for text in writes:
                sys.stdout.write(text)
    finally:
        sys.stdout = saved
    return target.getvalue()


@pytest.mark.parametrize(
    ("writes", "expected"),
    [
        (("::error file=a::x\n",), "\\x3a:error file=a::x\n"),
        (("ok\n  ::warning::x\n",), "ok\n  \\x3a:warning::x\n"),
        (("##[error]x\n",), "\\x23#[error]x\n"),
        ((":", ":stop-commands::x\n"), "\\x3a:stop-commands::x\n"),  # split across writes
        (("a line ", "::not at a start\n"), "a line ::not at a start\n"),
        (("x\r::error::y\n",), "x\r\\x3a:error::y\n"),
        ((":) fine\n",), ":) fine\n"),
    ],
)
def test_a_command_at_a_line_start_is_escaped(writes: tuple[str, ...], expected: str) -> None:
    assert printed(*writes) == expected


@pytest.mark.parametrize(
    ("writes", "expected"),
    [
        # GitHub's runner trims every Unicode blank (.NET TrimStart) before it looks for `::`.
        (("\u00a0::error::x\n",), "\u00a0\\x3a:error::x\n"),
        (("  \u3000\u2003::warning::x\n",), "  \u3000\u2003\\x3a:warning::x\n"),
        (("\u00a0", ":", ":error::x\n"), "\u00a0\\x3a:error::x\n"),  # split across writes
        # Its legacy parser runs `##[command]` found anywhere in a line.
        (("topic 'x ##[error]y'\n",), "topic 'x \\u0023#[error]y'\n"),
        (("a #", "#", "[set-output name=v]w\n"), "a \\u0023#[set-output name=v]w\n"),
        (("###[x]\n",), "#\\u0023#[x]\n"),
        (("a # b #\n",), "a # b #\n"),
    ],
)
def test_what_github_runs_as_a_command_is_escaped(writes: tuple[str, ...], expected: str) -> None:
    assert printed(*writes) == expected


def test_json_stays_the_same_json_when_a_legacy_command_is_escaped() -> None:
    data = {"message": "unknown topic 'a ##[stop-commands]t' \\##[x]"}
    out = printed(json.dumps(data, indent=2) + "\n")
    assert "##[" not in out
    assert json.loads(out) == data


def test_kpipe_s_own_annotations_pass() -> None:
    target = io.StringIO()
    saved = sys.stdout
    sys.stdout = target
    try:
        with guarded_output():
            sys.stdout.write(annotation_lines("::error file=a.yaml::bad\n::warning::w") + "\n")
            sys.stdout.write("::error::forged\n")
    finally:
        sys.stdout = saved
    assert target.getvalue() == "::error file=a.yaml::bad\n::warning::w\n\\x3a:error::forged\n"
    assert annotation_lines("::error::x") == "::error::x"  # no guard in place: nothing added

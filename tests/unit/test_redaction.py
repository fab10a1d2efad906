"""kpipe.redaction: env() values are opaque tokens, revealed only where consumed; one escaping rule per line."""

from __future__ import annotations

import io
import json
import logging

import pytest

from kpipe.diagnostics import Position, error, render_github, render_json, render_text
from kpipe.logs import configure_logging
from kpipe.redaction import (
    REDACTED,
    env_token,
    escape_controls,
    escape_line,
    redact,
    remember,
    reveal,
    shown,
    typed_value,
)


def test_a_token_holds_nothing_of_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN", "ghp_abcdef123")
    token = env_token("TOKEN")
    assert "ghp" not in token and "abcdef" not in token
    assert token == env_token("TOKEN") and token != env_token("OTHER")
    assert shown(f"got '{token}'") == "got 'env('TOKEN')'"
    assert reveal(f"x{token}y") == "xghp_abcdef123y"
    # Transformed, a token is only other hex digits: nothing of the value, and never revealed.
    for transformed in (token[::-1], token.upper(), token[1:], token[::2]):
        assert reveal(transformed) == transformed and "ghp" not in shown(transformed)


def test_a_token_from_another_key_is_not_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file cannot forge a token: it is an HMAC of the name under this run's key."""
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_abcdef123")
    forged = "\u27e6env-" + "0" * 32 + "\u27e7"
    assert reveal(forged) == forged


def test_typed_value_reads_the_whole_value_as_yaml_scalar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("N", "6")
    monkeypatch.setenv("B", "true")
    monkeypatch.setenv("S", "abc")
    assert typed_value(env_token("N")) == 6
    assert typed_value(env_token("B")) is True
    assert typed_value(env_token("S")) == "abc"
    assert typed_value(env_token("N") + "0") == env_token("N") + "0"  # not the whole value: unchanged


def test_values_echoed_by_a_library_are_shown_as_their_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKERS", "kafka.internal:9093")
    reveal(env_token("BROKERS"))  # handed to librdkafka, which may echo it in an error
    assert redact("Failed to resolve 'kafka.internal:9093'") == "Failed to resolve 'env('BROKERS')'"


def test_secret_settings_written_in_files_are_stars() -> None:
    remember("hunter2-hunter2")
    assert redact("got hunter2-hunter2") == f"got {REDACTED}"


def test_every_diagnostic_format_is_escaped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN", 'ghp_"quoted\\secret')
    token = env_token("TOKEN")
    found = [
        error(
            f"got '{token}' in \x1b[2Jtopic\n::error file=README.md::FORGED",
            Position("p.yaml", 1, 2),
            hint="\u2028x",
        )
    ]
    for text in (render_text(found), render_github(found)):
        assert "quoted" not in text and "\x1b" not in text and "\u2028" not in text
        assert "env('TOKEN')" in text and "\\x1b[2J" in text
        assert not any(line.lstrip().startswith("::error file=README") for line in text.splitlines())
    assert len(render_text(found).splitlines()) == 2  # the message and the hint: the newline is escaped
    document = json.loads(render_json(found))
    assert document["diagnostics"][0]["message"].startswith("got 'env('TOKEN')' in \x1b[2Jtopic\n")


def test_log_lines_show_tokens_by_name_and_escape_controls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW", 'p"ss\\word-123')
    token = env_token("PW")
    for fmt in ("json", "text"):
        stream = io.StringIO()
        configure_logging(fmt, "info", stream=stream)
        logging.getLogger("kpipe.test").info("password %s then \x1b[31mred\n::warning::x", token)
        line = stream.getvalue()
        assert "word-123" not in line and "\x1b" not in line
        assert "env('PW')" in line
        assert len(line.strip().splitlines()) == 1
    root = logging.getLogger()
    for handler in [h for h in root.handlers if type(h).__name__ == "_KpipeHandler"]:
        root.removeHandler(handler)


def test_escape_line_escapes_every_control_and_workflow_commands() -> None:
    assert escape_line("a\tb\nc\rd\x85e\u2029") == "a\\tb\\nc\\rd\\x85e\\u2029"
    assert escape_line("::error::x") == "\\x3a:error::x"
    assert escape_line("  ##[error]x") == "  \\x23#[error]x"


def test_escape_line_escapes_what_github_runs_as_a_command_not_only_at_a_line_start() -> None:
    # The runner trims every Unicode blank before `::`, and runs a legacy `##[command]` anywhere in a line.
    assert escape_line("\u00a0::error::x") == "\u00a0\\x3a:error::x"
    assert escape_line("\u2003\u3000::error::x") == "\u2003\u3000\\x3a:error::x"
    assert escape_line("unknown topic 'a ##[error]forged'") == "unknown topic 'a \\x23#[error]forged'"
    assert escape_controls("ok\n\u00a0::error::x\nb ##[add-mask]y\n") == (
        "ok\n\u00a0\\x3a:error::x\nb \\x23#[add-mask]y\n"
    )


def test_escape_controls_keeps_newlines_and_tabs_but_no_command_line() -> None:
    assert escape_controls("a\tb\nc\rd\x85e\u2029") == "a\tb\nc\\rd\\x85e\\u2029"
    assert escape_controls("ok\n::stop-commands::x\n") == "ok\n\\x3a:stop-commands::x\n"

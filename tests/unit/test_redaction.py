"""kpipe.redaction: the one place that masks secrets and escapes control characters in output."""

from __future__ import annotations

import io
import json
import logging

from kpipe.diagnostics import Position, error, render_github, render_json, render_text
from kpipe.logs import configure_logging
from kpipe.redaction import REDACTED, escape_controls, redact, remember, remember_env


def test_env_values_become_their_name_and_secret_settings_stars() -> None:
    remember_env("TOKEN", "ghp_abcdef123")
    remember("hunter2-hunter2")
    assert redact("got 'ghp_abcdef123' and hunter2-hunter2") == f"got 'env('TOKEN')' and {REDACTED}"
    # A secret setting's value stays fully masked even when it also came from env().
    remember_env("PW", "hunter2-hunter2")
    assert redact("hunter2-hunter2") == REDACTED


def test_longest_secret_first_and_short_values_kept() -> None:
    remember_env("HOST", "kafka.internal")
    remember_env("HOSTPORT", "kafka.internal:9093")
    remember_env("PARTITIONS", "3")  # too short to be a secret, and masking every "3" garbles everything
    assert redact("kafka.internal:9093 / kafka.internal / 3") == "env('HOSTPORT') / env('HOST') / 3"


def test_every_diagnostic_format_is_redacted_and_escaped() -> None:
    remember_env("TOKEN", 'ghp_"quoted\\secret')
    found = [error("got 'ghp_\"quoted\\secret' in \x1b[2Jtopic", Position("p.yaml", 1, 2), hint="\u2028x")]
    for text in (render_text(found), render_github(found)):
        assert "quoted" not in text and "\x1b" not in text and "\u2028" not in text
        assert "env('TOKEN')" in text and "\\x1b[2J" in text
    document = json.loads(render_json(found))
    assert document["diagnostics"][0]["message"] == "got 'env('TOKEN')' in \x1b[2Jtopic"  # JSON escapes it


def test_log_lines_are_redacted_before_json_escaping() -> None:
    remember_env("PW", 'p"ss\\word-123')
    for fmt in ("json", "text"):
        stream = io.StringIO()
        configure_logging(fmt, "info", stream=stream)
        logging.getLogger("kpipe.test").info("password %s then \x1b[31mred", 'p"ss\\word-123')
        line = stream.getvalue()
        assert "ss\\" not in line and "word-123" not in line and "\x1b" not in line
        assert "env('PW')" in line
    root = logging.getLogger()
    for handler in [h for h in root.handlers if type(h).__name__ == "_KpipeHandler"]:
        root.removeHandler(handler)


def test_escape_controls_keeps_newlines_and_tabs() -> None:
    assert escape_controls("a\tb\nc\rd\x85e\u2029") == "a\tb\nc\\rd\\x85e\\u2029"

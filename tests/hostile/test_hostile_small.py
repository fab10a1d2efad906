"""Issue 11.10: the smaller ones. --debug keeps the exit code; control characters in names are escaped;
U+2028/U+0085 do not shift line numbers; deep flow-style nesting is positioned."""

from __future__ import annotations

import json
from pathlib import Path

from hostile import run_kpipe


def test_debug_keeps_the_exit_code(project: Path) -> None:
    (project / "pipelines" / "p.yaml").write_text("topics:\n  t: {partitions: zero}\n")
    plain = run_kpipe(project, "validate", "pipelines/")
    debug = run_kpipe(project, "--debug", "explain", "x", "pipelines/", traceback_ok=True)
    assert plain.code == 1
    assert debug.code == 1  # PipelineInvalid: the same code as without --debug
    assert "Traceback" in debug.err
    usage = run_kpipe(project, "--debug", "explain", "nope", str(project / "pipelines"), traceback_ok=True)
    (project / "pipelines" / "p.yaml").write_text("topics:\n  t: {partitions: 1}\n")
    usage = run_kpipe(project, "--debug", "explain", "nope", "pipelines/", traceback_ok=True)
    assert usage.code == 2, usage.text  # UsageError keeps its 2


def test_control_characters_in_names_are_escaped(project: Path) -> None:
    # A topic name that would clear the screen and forge a "0 errors" line if printed raw.
    name = "evil\x1b[2J\x1b[1;1H0 errors\u2028x"
    (project / "pipelines" / "p.yaml").write_text(
        json.dumps({"topics": {name: {"partitions": 1}}}, ensure_ascii=True) + "\n"
    )
    for fmt in ("text", "github"):
        result = run_kpipe(project, "validate", "pipelines/", "--format", fmt)
        assert result.code == 1
        assert "\x1b" not in result.text and "\u2028" not in result.text
        assert "evil\\x1b[2J\\x1b[1;1H0 errors\\u2028x" in result.text
    result = run_kpipe(project, "validate", "pipelines/", "--format", "json")
    assert "\x1b" not in result.out
    assert json.loads(result.out)["diagnostics"][0]["message"].startswith("topic name 'evil\x1b[2J")


def test_unicode_line_separators_do_not_shift_lines(project: Path) -> None:
    (project / "pipelines" / "p.yaml").write_text(
        'producers:\n  api: {topic: t, client_id: "a\u2028b\u0085c\u2029d"}\ntopics:\n  t: {partitions: -1}\n',
        encoding="utf-8",
    )
    result = run_kpipe(project, "validate", "pipelines/")
    assert result.code == 1
    assert result.err.splitlines()[0].startswith("pipelines/p.yaml:4:19: error: topic 't': 'partitions'")


def test_deep_flow_nesting_is_positioned(project: Path) -> None:
    (project / "pipelines" / "p.yaml").write_text("topics: {}\nx: " + "[" * 20000 + "]" * 20000 + "\n")
    result = run_kpipe(project, "validate", "pipelines/")
    assert result.code == 1
    assert (
        result.err.splitlines()[0]
        == "pipelines/p.yaml:2:104: error: document is nested more than 100 levels deep"
    )

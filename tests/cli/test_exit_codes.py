"""One place turns exceptions into exit codes (kpipe.cli.common.exit_code_for); commands return codes."""

from __future__ import annotations

import ast
from pathlib import Path

import click
import pytest

from kpipe.cli.common import exit_code_for
from kpipe.diagnostics import Position, error
from kpipe.errors import (
    EXIT_CLUSTER,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_UNSAFE,
    EXIT_USAGE,
    BrokerUnreachable,
    EventInvalid,
    KpipeError,
    LocalBrokerError,
    PipelineInvalid,
    UnsafePlanRefused,
    UsageError,
)

CLI = Path(__file__).resolve().parents[2] / "runner" / "kpipe" / "cli"


@pytest.mark.parametrize(
    ("exc", "code", "stderr"),
    [
        (UsageError("no producer named 'x'"), EXIT_USAGE, "error: no producer named 'x'\n"),
        (BrokerUnreachable("no broker answered"), EXIT_CLUSTER, "error: no broker answered\n"),
        (LocalBrokerError("port taken"), EXIT_CLUSTER, "error: port taken\n"),
        (UnsafePlanRefused("refused"), EXIT_UNSAFE, "error: refused\n"),
        (EventInvalid("bad event"), EXIT_INVALID, "error: bad event\n"),
        (KpipeError("workers did not stop"), EXIT_INVALID, "error: workers did not stop\n"),
        (
            click.BadParameter("expected KEY=VALUE", param_hint="--var"),
            EXIT_USAGE,
            "Error: Invalid value for --var: expected KEY=VALUE\n",
        ),
        (click.exceptions.Abort(), EXIT_INTERRUPTED, "aborted\n"),
        (KeyboardInterrupt(), EXIT_INTERRUPTED, "interrupted\n"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_each_error_kind_has_its_exit_code(
    exc: BaseException, code: int, stderr: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_code_for(exc) == code
    assert capsys.readouterr() == ("", stderr)


def test_invalid_files_print_every_diagnostic(capsys: pytest.CaptureFixture[str]) -> None:
    problems = [error("first", Position("a.yaml", 1, 1)), error("second", Position("b.yaml", 2, 3))]
    assert exit_code_for(PipelineInvalid(problems)) == EXIT_INVALID
    assert capsys.readouterr().err.splitlines() == [
        "a.yaml:1:1: error: first",
        "b.yaml:2:3: error: second",
        "2 errors, 0 warnings",
    ]


def test_a_bug_keeps_its_traceback_and_debug_shows_kpipe_errors_too(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(ZeroDivisionError):
        exit_code_for(ZeroDivisionError("division by zero"))
    # --debug adds the traceback and keeps the exit code (issue 11.10).
    try:
        raise UsageError("wrong")
    except UsageError as exc:
        assert exit_code_for(exc, debug=True) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert err.splitlines()[-2:] == ["kpipe.errors.UsageError: wrong", "error: wrong"]


def test_commands_return_exit_codes_instead_of_exiting() -> None:
    """Only the entry point (`main`) ends the process; a command returns its code or raises a KpipeError."""
    exits = []
    for path in sorted(CLI.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                called = ast.unparse(node.func)
                if called in {"sys.exit", "exit", "ctx.exit", "click.exceptions.Exit", "SystemExit"}:
                    exits.append(f"{path.name}: {called}")
    assert exits == ["__init__.py: sys.exit"]  # in main()


def test_project_options_hand_a_command_one_options_object(monkeypatch: pytest.MonkeyPatch) -> None:
    from kpipe.cli.common import ProjectOptions, project_options, run_cli

    monkeypatch.delenv("KPIPE_BOOTSTRAP_SERVERS", raising=False)
    seen: list[ProjectOptions] = []

    @click.command()
    @project_options(bootstrap=True)
    @click.option("--flag", is_flag=True)
    def probe(options: ProjectOptions, flag: bool) -> int:
        seen.append(options)
        return 7 if flag else 0

    group = click.Group(commands={"probe": probe})
    assert run_cli(group, ["probe"]) == 0
    assert (
        run_cli(group, ["probe", "a.yaml", "b/", "--var", "x=1", "--values", "v.yaml", "-b", "h:1", "--flag"])
        == 7
    )
    assert seen == [
        ProjectOptions(paths=(Path("pipelines"),)),
        ProjectOptions(
            paths=(Path("a.yaml"), Path("b")),
            variables={"x": "1"},
            values_files=(Path("v.yaml"),),
            bootstrap_servers="h:1",
        ),
    ]
    assert run_cli(group, ["probe", "--var", "novalue"]) == EXIT_USAGE

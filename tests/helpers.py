"""Test helpers shared by every test module: run the CLI, wait on conditions (never sleep)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple, TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition not met",
) -> T:
    """Poll `predicate` until it returns something truthy and return that value.

    Raise AssertionError with `message` (a string, or a callable evaluated at failure time so it can show the
    last observed state) once `timeout` seconds have passed.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout:g} s: {text}")
        time.sleep(interval)


def returns_within(timeout: float, call: Callable[[], T], what: str) -> T:
    """`call()`'s result (or its exception), failing the test if it is still running after `timeout` seconds.

    A liveness bound, not a measure of speed: choose `timeout` far above the normal duration on a loaded machine
    and far below the duration of the failure it guards against (waiting out a much longer timeout, or forever).
    """
    outcome: list[tuple[bool, object]] = []

    def target() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome.append((False, exc))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise AssertionError(f"{what}: still running after {timeout:g} s")
    [(ok, value)] = outcome
    if not ok:
        raise value  # type: ignore[misc]
    return value  # type: ignore[return-value]


def process_exists(pid: int) -> bool:
    """Whether `pid` names a process at all: running, or exited and not yet reaped by its parent (a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def process_alive(pid: int) -> bool:
    """Whether process `pid` still runs; a zombie (exited, not yet reaped by its parent) counts as gone."""
    if not process_exists(pid):
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


ROOT = Path(__file__).resolve().parents[1]


class CliResult(NamedTuple):
    code: int
    out: str
    err: str


def environment(overrides: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """This process's environment with `overrides` applied (None removes a variable): for child processes."""
    env = dict(os.environ)
    for name, value in (overrides or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def kpipe(
    *args: str,
    stdin: str | None = None,
    env: Mapping[str, str | None] | None = None,
    cwd: Path | str | None = None,
    process: bool = False,
    timeout: float = 60,
) -> CliResult:
    """`kpipe ARGS` as a user runs it: its exit code, stdout and stderr.

    In-process by default, through run_cli, the same exception → exit-code mapping the `kpipe` entry point
    uses. `process=True` runs `python -m kpipe` as a child instead: for commands that install signal handlers or
    spawn workers, and to see exactly what a shell sees. `env` overrides variables (None removes one).
    """
    if process:
        done = subprocess.run(
            [sys.executable, "-m", "kpipe", *args],
            input=stdin,
            env=environment(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return CliResult(done.returncode, done.stdout, done.stderr)
    from click.testing import CliRunner

    from kpipe.cli import cli
    from kpipe.cli.common import run_cli

    with (
        contextlib.chdir(cwd or os.getcwd()),
        CliRunner(env=dict(env or {})).isolation(input=stdin) as (out, err, _),
    ):
        code = run_cli(cli, list(args))
    return CliResult(code, out.getvalue().decode(), err.getvalue().decode())

"""The hostile corpus: pipeline projects written by an attacker, run through the real CLI in a subprocess.

Every case checks the same four things: the documented exit code, no traceback, no side effect (a marker file
that project code would write stays absent), and bounded time and memory (the subprocess runs under
RLIMIT_AS / RLIMIT_CPU and a wall-clock timeout), so a regression shows up as a failure, not as a hung CI.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# Enough for the interpreter with pydantic and confluent_kafka loaded; far below what a runaway would take.
MEMORY_LIMIT = 1536 * 1024 * 1024
CPU_SECONDS = 60
WALL_SECONDS = 90


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))


def run_kpipe(cwd: Path, *args: str, env: dict[str, str] | None = None, traceback_ok: bool = False) -> Result:
    """`kpipe ARGS` in `cwd` under resource limits; fails the test on a traceback (unless expected)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KPIPE_")}
    environment.update(env or {})
    done = subprocess.run(
        [sys.executable, "-m", "kpipe", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=WALL_SECONDS,
        env=environment,
        preexec_fn=_limits,  # noqa: PLW1509 (no threads are running in the test process's child)
    )
    result = Result(done.returncode, done.stdout, done.stderr)
    if not traceback_ok:
        assert "Traceback" not in result.text, result.text
        assert "MemoryError" not in result.text, result.text
    assert result.code >= 0, f"killed by signal {-result.code}: {result.text}"
    return result


def make_project(tmp_path: Path) -> Path:
    """An empty project: a directory with a pyproject.toml (so it is the root) and a pipelines/ directory."""
    root = tmp_path / "proj"
    (root / "pipelines").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'victim'\n")
    return root


def marker_module(path: Path, marker: Path, body: str = "") -> Path:
    """A Python module that proves it ran by creating `marker`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"open({str(marker)!r}, 'w').write('ran')\n{body}")
    return path

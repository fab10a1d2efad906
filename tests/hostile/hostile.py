"""The hostile corpus: pipeline projects written by an attacker, run through the real CLI in a subprocess.

Every case checks the same things: the documented exit code, no traceback, no side effect (a marker file that
project code would write stays absent), no secret of the environment in the output (whole or transformed),
and bounded time and memory.

The bounds are kpipe's own, not the test's: the subprocess runs WITHOUT an address-space limit (RLIMIT_AS), and
the test measures its peak resident memory (ru_maxrss from wait4) and its wall time and asserts both. A
watchdog kills a child whose resident memory passes KILL_MB (so a regression fails the test instead of
taking the machine down); being killed is a failure. KPIPE_HOSTILE_RLIMIT=1 adds the old RLIMIT_AS on top.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# The interpreter with pydantic and confluent_kafka loaded takes ~100 MB; templates may build 256 MB of values.
PEAK_MB = 512
KILL_MB = 1024
MEMORY_LIMIT = 1536 * 1024 * 1024  # only with KPIPE_HOSTILE_RLIMIT=1
CPU_SECONDS = 60
WALL_SECONDS = 90

# Variables every case runs with, which no project mentions except to steal them. Their values must never
# appear in an output, whole or in any piece of 6 characters or more, forwards, backwards or case-changed.
CANARIES = {
    "GITHUB_TOKEN": "ghp_Q7xZ9kWm4TqLs2VbN8cRf3Hj",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI7K7MDENGbPxRfiCYzQ9Jk",
}


@dataclass
class Result:
    code: int
    out: str
    err: str
    peak_mb: float
    seconds: float

    @property
    def text(self) -> str:
        return self.out + self.err


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))
    if os.environ.get("KPIPE_HOSTILE_RLIMIT") == "1":
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def pieces(secret: str, size: int = 6) -> set[str]:
    """Every piece of `secret` an output could show after a transformation: each run of `size` characters of
    the value, reversed, upper- and lower-cased, and of every other character."""
    forms = {secret, secret[::-1], secret.upper(), secret.lower(), secret[::2], secret[1::2], secret.title()}
    return {form[i : i + size] for form in forms for i in range(len(form) - size + 1)}


def assert_no_secret(text: str, secrets: dict[str, str]) -> None:
    for name, value in secrets.items():
        for piece in pieces(value):
            assert piece not in text, f"a piece of ${name} ({piece!r}) reached the output:\n{text[:4000]}"


def run_kpipe(
    cwd: Path,
    *args: str,
    env: dict[str, str] | None = None,
    traceback_ok: bool = False,
    peak_mb: float = PEAK_MB,
    seconds: float = WALL_SECONDS,
    stdin: str | None = None,
) -> Result:
    """`kpipe ARGS` in `cwd`; fails the test on a traceback (unless expected), on a piece of a canary secret
    in the output, past `peak_mb` of resident memory or past `seconds`."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KPIPE_")}
    environment.update(CANARIES)
    environment.update(env or {})
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as inp:
        if stdin is not None:
            inp.write(stdin.encode())
            inp.seek(0)
        started = time.monotonic()
        child = subprocess.Popen(
            [sys.executable, "-m", "kpipe", *args],
            cwd=cwd,
            stdin=inp if stdin is not None else subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=environment,
            preexec_fn=_limits,  # noqa: PLW1509 (no threads are running in the test process's child)
        )
        killed: list[str] = []
        done = threading.Event()

        def watch() -> None:
            while not done.wait(0.05):
                if time.monotonic() - started > WALL_SECONDS:
                    killed.append(f"still running after {WALL_SECONDS} s")
                elif _rss_mb(child.pid) > KILL_MB:
                    killed.append(f"resident memory past {KILL_MB} MB")
                else:
                    continue
                child.kill()
                return

        watchdog = threading.Thread(target=watch, daemon=True)
        watchdog.start()
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.monotonic() - started
        done.set()
        watchdog.join()
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        out.seek(0)
        err.seek(0)
        result = Result(
            child.returncode,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
            usage.ru_maxrss / 1024,
            elapsed,
        )
    assert not killed, f"killed: {killed[0]}: {result.text[:4000]}"
    if not traceback_ok:
        assert "Traceback" not in result.text, result.text
        assert "MemoryError" not in result.text, result.text
    assert result.code >= 0, f"killed by signal {-result.code}: {result.text}"
    assert result.peak_mb < peak_mb, f"peak resident memory {result.peak_mb:.0f} MB: {result.text[:2000]}"
    assert result.seconds < seconds, f"took {result.seconds:.1f} s: {result.text[:2000]}"
    assert_no_secret(result.text, CANARIES)
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

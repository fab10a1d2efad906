"""The offline suite proves it is offline: a test that starts a broker in a `not integration` run fails the run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

STARTS_A_BROKER = """
import pytest

from kpipe.errors import LocalBrokerError
from kpipe.local.broker import start_local_broker


def test_quiet() -> None:
    pass


def test_sneaks_a_broker_in() -> None:
    with pytest.raises(LocalBrokerError, match="exited with code 97"):
        start_local_broker(ready_timeout=5).stop()


@pytest.mark.integration
def test_declared_integration() -> None:
    start_local_broker(ready_timeout=5).stop()
"""


def _pytest(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "offline_guard", "-p", "no:cacheprovider", "-q", *args],
        cwd=directory,
        env={"PYTHONPATH": str(TESTS), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_broker_started_in_an_offline_run_fails_the_run(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    integration: needs a broker\n")
    (tmp_path / "test_sneaky.py").write_text(STARTS_A_BROKER)
    offline = _pytest(tmp_path, "-m", "not integration")
    assert offline.returncode == 1, offline.stdout + offline.stderr
    assert "2 passed, 1 deselected" in offline.stdout
    assert (
        "an offline run (no integration test selected) tried to start a broker in: "
        "test_sneaky.py::test_sneaks_a_broker_in"
    ) in offline.stdout

    quiet = _pytest(tmp_path, "-m", "not integration", "-k", "quiet")
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr

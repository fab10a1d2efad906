"""The local broker's state file is per user: private, owned, never shared through a common HOME."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kpipe.errors import LocalBrokerError
from kpipe.local import state


@pytest.fixture
def shared_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No KPIPE_STATE_DIR, no XDG_RUNTIME_DIR, and a HOME that several accounts could share."""
    monkeypatch.delenv("KPIPE_STATE_DIR", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_two_users_of_one_home_get_two_state_files(
    shared_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = state.state_file()
    real_uid = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: real_uid + 4242)
    theirs = state.state_file()
    assert mine != theirs
    assert mine.parent.parent == theirs.parent.parent == shared_home / ".cache"


def test_the_state_directory_is_private(shared_home: Path) -> None:
    state.record("127.0.0.1:1", os.getpid())
    directory = state.state_file().parent
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(state.state_file().stat().st_mode) & 0o077 == 0
    assert state.recorded() == state.Recorded("127.0.0.1:1", os.getpid(), os.getpid())


def test_an_existing_directory_of_mine_is_tightened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KPIPE_STATE_DIR", str(tmp_path))
    (tmp_path / "kpipe").mkdir(mode=0o755)
    state.record("127.0.0.1:1", os.getpid())
    assert stat.S_IMODE((tmp_path / "kpipe").stat().st_mode) == 0o700


def test_another_users_state_is_neither_read_nor_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state directory this uid does not own (a shared or carried-over path) is refused, not trusted."""
    monkeypatch.setenv("KPIPE_STATE_DIR", str(tmp_path))
    state.record("127.0.0.1:1", os.getpid())  # written by the directory's owner
    real_uid = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: real_uid + 4242)  # now someone else asks
    assert state.recorded() is None
    assert state.running_bootstrap() is None
    assert state.stop_recorded() is None
    with pytest.raises(LocalBrokerError, match="not a directory of this user's"):
        state.record("127.0.0.1:2", os.getpid())


def test_a_carried_over_xdg_runtime_dir_of_another_user_is_not_used(
    shared_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "run-user-1000"
    runtime.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert state.state_dir() == runtime / "kpipe"  # mine: used
    real_uid = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: real_uid + 4242)
    assert state.state_dir() == shared_home / ".cache" / f"kpipe-{real_uid + 4242}"

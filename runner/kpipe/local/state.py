"""`bootstrap_servers: local`: finding (or starting) kpipe's embedded broker.

`kpipe broker` and `kpipe dev` record the broker they run in a small state file; every other command that
meets `local` reads it, checks the broker still answers, and connects there. Nothing is started implicitly
by plan/apply/run/produce: a broker that vanishes with its data would surprise more than an error.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from kpipe.errors import LocalBrokerError

if TYPE_CHECKING:
    from kpipe.compilation.project import CompiledProject

    P = TypeVar("P", bound=CompiledProject)

DEFAULT_PORT = 19092


def state_dir() -> Path:
    """This user's directory for kpipe's local state; see `state_file`. Not created here."""
    explicit = os.environ.get("KPIPE_STATE_DIR")
    if explicit:
        return Path(explicit) / "kpipe"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    # XDG_RUNTIME_DIR is per user by definition, but `su`/`sudo -u` may carry another user's value along.
    if runtime and _owned_by_me(Path(runtime)):
        return Path(runtime) / "kpipe"
    # A cache directory may be shared (one HOME for several accounts): name the directory after the uid.
    return Path.home() / ".cache" / f"kpipe-{os.getuid()}"


def state_file() -> Path:
    """The file naming the running local broker: `$KPIPE_STATE_DIR/kpipe/`, else `$XDG_RUNTIME_DIR/kpipe/`,
    else `~/.cache/kpipe-<uid>/`, then `local-broker.json`. The directory is the user's own, mode 0700; one
    that another user owns is refused, so `-b local` and `kpipe broker --stop` never reach someone else's
    broker through a shared HOME."""
    return state_dir() / "local-broker.json"


def _owned_by_me(path: Path) -> bool:
    try:
        return path.lstat().st_uid == os.getuid()
    except OSError:
        return False


def _private_dir(create: bool) -> Path | None:
    """The state directory, checked to be a real directory of this user's that no one else can enter (an
    existing one of this user's is tightened to 0700). None when it does not exist and `create` is False."""
    directory = state_dir()
    if create:
        directory.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
    try:
        info = directory.lstat()
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise LocalBrokerError(
            f"the kpipe state directory {directory} is not a directory of this user's (uid {os.getuid()}); "
            "set KPIPE_STATE_DIR to a directory of your own"
        )
    if info.st_mode & 0o077:
        directory.chmod(0o700)
    return directory


def _read_state() -> dict | None:
    """The state file's content when it is this user's own regular file; None when absent or unreadable."""
    try:
        directory = _private_dir(create=False)
    except LocalBrokerError:
        return None
    if directory is None:
        return None
    path = directory / "local-broker.json"
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            return None
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def record(bootstrap: str, pid: int, owner: int | None = None) -> None:
    """Record the running broker: its address, its pid, and the kpipe process that stops it (`owner`)."""
    directory = _private_dir(create=True)
    assert directory is not None
    state = {"bootstrap": bootstrap, "pid": pid, "owner": os.getpid() if owner is None else owner}
    # Written beside and renamed into place, 0600, so a reader never sees half a file.
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".local-broker.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(json.dumps(state))
        os.replace(temporary, directory / "local-broker.json")
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


@dataclass(frozen=True)
class Recorded:
    bootstrap: str
    pid: int
    owner: int | None


def recorded() -> Recorded | None:
    """The broker the state file names, if its process is alive (whether or not it answers)."""
    state = _read_state()
    try:
        found = Recorded(str(state["bootstrap"]), int(state["pid"]), state.get("owner"))  # type: ignore[index]
    except (ValueError, KeyError, TypeError):
        return None
    return found if _alive(found.pid) else None


def stop_recorded(timeout: float = 15.0) -> Recorded | None:
    """Stop the recorded local broker: SIGTERM to the kpipe process that owns it (which stops it and forgets
    it), or to the broker itself when that process is gone; SIGKILL after `timeout`. None: nothing running."""
    found = recorded()
    if found is None:
        return None
    target = found.owner if found.owner and _alive(found.owner) else found.pid
    if not _is_ours(target):
        raise LocalBrokerError(
            f"the state file {state_file()} names pid {target}, which is not a kpipe broker of this user's; "
            "remove the file if no local broker runs"
        )
    os.kill(target, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(found.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(found.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(found.pid, signal.SIGKILL)
    forget(found.pid)
    return found


def _is_ours(pid: int) -> bool:
    """Whether `pid` is this user's and still runs kpipe or Tansu (a recorded pid may have been reused by
    anything since)."""
    try:
        if Path(f"/proc/{pid}").stat().st_uid != os.getuid():
            return False
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return True  # no /proc (not Linux): trust the state file
    return b"kpipe" in command or b"tansu" in command or b" broker " in command


def forget(pid: int) -> None:
    state = _read_state()
    if state is not None and state.get("pid") == pid:
        with contextlib.suppress(OSError):
            state_file().unlink()


def _alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (exited, its parent gone or not reaping) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: the signal check is all there is
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def running_bootstrap() -> str | None:
    """The bootstrap address of a running local broker started by kpipe, or None."""
    from kpipe.local.broker import api_versions_ok

    state = _read_state()
    try:
        host, _, port = str(state["bootstrap"]).rpartition(":")  # type: ignore[index]
        pid = int(state["pid"])  # type: ignore[index]
    except (ValueError, KeyError, TypeError):
        return None
    if not _alive(pid):
        return None
    return state["bootstrap"] if api_versions_ok(host, int(port)) else None


def resolve_local() -> str:
    bootstrap = running_bootstrap()
    if bootstrap is None:
        raise LocalBrokerError(
            "the project uses the local broker (bootstrap_servers: local), but none is running; "
            "start one with `kpipe broker` (or run everything with `kpipe dev`), "
            "or point at a cluster with --bootstrap-servers / KPIPE_BOOTSTRAP_SERVERS"
        )
    return bootstrap


def resolve(project: P) -> P:
    """The project connected to the running local broker when its bootstrap servers say `local`; else itself.
    The one place `local` becomes an address (kpipe.load and the commands that connect call it)."""
    if not project.uses_local_broker:
        return project
    return project.with_bootstrap(resolve_local(), embedded_broker=True)

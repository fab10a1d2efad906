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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from kpipe.errors import LocalBrokerError

if TYPE_CHECKING:
    from kpipe.compilation.project import CompiledProject

    P = TypeVar("P", bound=CompiledProject)

DEFAULT_PORT = 19092


def state_file() -> Path:
    base = (
        os.environ.get("KPIPE_STATE_DIR") or os.environ.get("XDG_RUNTIME_DIR") or str(Path.home() / ".cache")
    )
    return Path(base) / "kpipe" / "local-broker.json"


def record(bootstrap: str, pid: int, owner: int | None = None) -> None:
    """Record the running broker: its address, its pid, and the kpipe process that stops it (`owner`)."""
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"bootstrap": bootstrap, "pid": pid, "owner": os.getpid() if owner is None else owner}
    path.write_text(json.dumps(state), encoding="utf-8")


@dataclass(frozen=True)
class Recorded:
    bootstrap: str
    pid: int
    owner: int | None


def recorded() -> Recorded | None:
    """The broker the state file names, if its process is alive (whether or not it answers)."""
    try:
        state = json.loads(state_file().read_text(encoding="utf-8"))
        found = Recorded(str(state["bootstrap"]), int(state["pid"]), state.get("owner"))
    except (OSError, ValueError, KeyError, TypeError):
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
            f"the state file {state_file()} names pid {target}, which is not a kpipe broker; "
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
    """Whether `pid` still runs kpipe or Tansu (a recorded pid may have been reused by anything since)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return True  # no /proc (not Linux): trust the state file
    return b"kpipe" in command or b"tansu" in command or b" broker " in command


def forget(pid: int) -> None:
    path = state_file()
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == pid:
            path.unlink()


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

    try:
        state = json.loads(state_file().read_text(encoding="utf-8"))
        host, _, port = str(state["bootstrap"]).rpartition(":")
        pid = int(state["pid"])
    except (OSError, ValueError, KeyError):
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

"""`bootstrap_servers: local`: finding (or starting) kpipe's embedded broker.

`kpipe broker` and `kpipe dev` record the broker they run in a small state file; every other command that
meets `local` reads it, checks the broker still answers, and connects there. Nothing is started implicitly
by plan/apply/run/produce: a broker that vanishes with its data would surprise more than an error.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from kpipe.errors import LocalBrokerError

if TYPE_CHECKING:
    from kpipe.compilation.project import Project

    P = TypeVar("P", bound=Project)

LOCAL = "local"
DEFAULT_PORT = 19092


def state_file() -> Path:
    base = (
        os.environ.get("KPIPE_STATE_DIR") or os.environ.get("XDG_RUNTIME_DIR") or str(Path.home() / ".cache")
    )
    return Path(base) / "kpipe" / "local-broker.json"


def record(bootstrap: str, pid: int) -> None:
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"bootstrap": bootstrap, "pid": pid}), encoding="utf-8")


def forget(pid: int) -> None:
    path = state_file()
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == pid:
            path.unlink()


def running_bootstrap() -> str | None:
    """The bootstrap address of a running local broker started by kpipe, or None."""
    from kpipe.local.broker import api_versions_ok

    try:
        state = json.loads(state_file().read_text(encoding="utf-8"))
        host, _, port = str(state["bootstrap"]).rpartition(":")
        pid = int(state["pid"])
    except (OSError, ValueError, KeyError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return state["bootstrap"] if api_versions_ok(host, int(port)) else None


def resolve_local() -> str:
    bootstrap = running_bootstrap()
    if bootstrap is None:
        raise LocalBrokerError(
            "the project uses the local broker (bootstrap_servers: local), but none is running; "
            "start one with `kpipe broker` (or run everything with `kpipe dev`), "
            "or point at a cluster with --bootstrap-servers / KAFKA_BOOTSTRAP_SERVERS"
        )
    return bootstrap


def resolve(project: P) -> P:
    """The project connected to the running local broker when its bootstrap servers say `local`; else itself.
    The one place `local` becomes an address (kpipe.load and the commands that connect call it)."""
    return project.with_bootstrap(resolve_local()) if project.uses_local_broker else project

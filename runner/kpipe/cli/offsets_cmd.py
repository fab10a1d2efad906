"""`kpipe offsets`: reset a consumer group's committed offsets, shown as a plan first."""

from __future__ import annotations

import click

from kpipe.cli.common import ProjectOptions, cluster_timeout_option, project_options
from kpipe.cli.reading import clients, format_option, load
from kpipe.errors import EXIT_CHANGES_PENDING, EXIT_OK, UsageError


@click.command()
@click.argument("group")
@project_options(bootstrap=True)
@click.option("--to", "to", metavar="earliest|latest|DATETIME|OFFSET", help="Where the group should stand.")
@click.option(
    "--shift",
    type=int,
    metavar="N",
    help="Move N events from the committed offset: negative reads N again, positive skips N.",
)
@click.option(
    "--topic",
    "topics",
    multiple=True,
    metavar="T[:P]",
    help="Only this topic of the group, or one partition of it (repeatable; default: every topic it reads).",
)
@click.option("--yes", "-y", is_flag=True, help="Reset the offsets (without it, the plan is only shown).")
@format_option
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when nothing would change, 2 when a reset is pending (1 invalid files, 3 cluster error, "
    "4 group active).",
)
@cluster_timeout_option
def offsets(
    group: str,
    options: ProjectOptions,
    to: str | None,
    shift: int | None,
    topics: tuple[str, ...],
    yes: bool,
    output_format: str,
    detailed_exitcode: bool,
    timeout: float,
) -> int:
    """Reset the committed offsets of consumer group GROUP, as a plan.

    Shows, for each partition, the committed offset → the new one and how many events that puts back in front
    of the group (to read again) or skips. Changes nothing unless --yes. A DATETIME (ISO 8601, UTC unless it
    says otherwise) means the first event at or after it. While the group is active (members, or a state other
    than empty or dead) it refuses, exit 4: stop its `kpipe run` first.

    \b
    Examples:
      kpipe offsets billing pipelines/ --to 2026-12-07T03:00:00Z
      kpipe offsets billing pipelines/ --to 2026-12-07T03:00:00Z --yes
      kpipe offsets billing pipelines/ --shift -100 --topic orders:2 --format json
    """
    from kpipe.operate.offsets import execute_reset, parse_topic_selection, read_reset_plan
    from kpipe.operate.positions import RESET_POSITIONS, Shift, parse_position

    if (to is None) == (shift is None):
        raise UsageError(f"give one of --to {RESET_POSITIONS} or --shift N")
    target = Shift(shift) if shift is not None else parse_position(to or "", "--to", allowed=RESET_POSITIONS)
    project = load(options)
    settings = project.consumer_group(group)  # an unknown name: a usage error with a did-you-mean
    selection = parse_topic_selection(topics, settings)
    with clients(project, timeout) as c:
        plan = read_reset_plan(c.cluster, c.reader, settings, group, target, selection)
        click.echo(plan.render_json() if output_format == "json" else plan.render_text())
        plan.raise_if_unsafe()
        if not plan.has_changes:
            return EXIT_OK
        if not yes:
            click.echo("Nothing changed: run again with --yes to reset these offsets.", err=True)
            return EXIT_CHANGES_PENDING if detailed_exitcode else EXIT_OK
        done = execute_reset(plan, c.cluster, c.admin)
    click.echo(f"Reset {len(done)} partition(s) of consumer group '{group}'.", err=True)
    return EXIT_OK

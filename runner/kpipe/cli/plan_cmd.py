"""`kpipe plan` and `kpipe apply`: compare declared topics with the cluster, then make it match."""

from __future__ import annotations

import sys

import click

from kpipe.cli.common import ProjectOptions, cluster_timeout_option, collector_paused, project_options
from kpipe.errors import EXIT_CHANGES_PENDING, EXIT_INVALID, EXIT_OK, UsageError


def cluster_options(func):  # type: ignore[no-untyped-def]
    func = cluster_timeout_option(func)
    func = click.option(
        "--force", is_flag=True, help="With --prune: also delete topics that consumer groups have offsets on."
    )(func)
    func = click.option(
        "--prune", is_flag=True, help="Also list (plan) or delete (apply) topics that no file declares."
    )(func)
    return func


@click.command()
@project_options(bootstrap=True)
@cluster_options
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for people, json for tools.",
)
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when there is nothing to change, 2 when changes are pending (1 invalid files, 3 cluster error).",
)
@collector_paused()
def plan(
    options: ProjectOptions,
    prune: bool,
    force: bool,
    timeout: float,
    output_format: str,
    detailed_exitcode: bool,
) -> int:
    """Compare the topics the files declare with the cluster and print the changes apply would make.

    Only the config keys a topic declares are compared, so broker defaults never show as drift. Changes kpipe
    refuses (fewer partitions, another replication factor, deleting topics in use without --force) are listed
    and make the command exit 4.

    \b
    Examples:
      kpipe plan pipelines/
      kpipe plan pipelines/ --format json --detailed-exitcode
      kpipe plan pipelines/ --prune -b broker:9092
    """
    from kpipe.topics.apply import read_plan

    project, cluster = options.connect(timeout)
    try:
        the_plan = read_plan(cluster, project.topic_settings(), prune=prune, force=force)
    finally:
        cluster.close()
    click.echo(the_plan.render_json() if output_format == "json" else the_plan.render_text())
    the_plan.raise_if_unsafe()
    return EXIT_CHANGES_PENDING if detailed_exitcode and the_plan.has_changes else EXIT_OK


@click.command()
@project_options(bootstrap=True)
@cluster_options
@click.option("--yes", "-y", is_flag=True, help="Apply without asking (needed when not on a terminal).")
@collector_paused()
def apply(options: ProjectOptions, prune: bool, force: bool, timeout: float, yes: bool) -> int:
    """Create and update topics so the cluster matches the files.

    Shows the plan, asks for confirmation (unless --yes), then creates all missing topics in one request,
    updates configs incrementally and adds partitions. Deletes undeclared topics only with --prune, and topics
    that consumer groups have committed offsets on only with --force as well. Exits 3 if any change failed,
    naming each one.

    \b
    Examples:
      kpipe apply pipelines/
      kpipe apply pipelines/ --yes --values pipelines/values/prod.yaml
    """
    from kpipe.topics.apply import apply_plan, read_plan
    from kpipe.topics.plan import DeleteTopic

    project, cluster = options.connect(timeout)
    try:
        desired = project.topic_settings()
        the_plan = read_plan(cluster, desired, prune=prune, force=force)
        click.echo(the_plan.render_text())
        the_plan.raise_if_unsafe()
        if not the_plan.has_changes:
            return EXIT_OK
        if not yes:
            deletions = the_plan.of_kind(DeleteTopic)
            names = ", ".join(d.topic for d in deletions)
            if not _confirm("Apply these changes?") or (
                deletions and not _confirm(f"Delete {len(deletions)} topic(s) and all their data ({names})?")
            ):
                click.echo("Apply cancelled; nothing changed.", err=True)
                return EXIT_INVALID
        report = apply_plan(the_plan, cluster, desired, force=force)
    finally:
        cluster.close()
    click.echo(report.render_text())
    report.raise_if_failed()
    return EXIT_OK


def _interactive() -> bool:
    return sys.stdin.isatty()


def _confirm(question: str) -> bool:
    if not _interactive():
        raise UsageError(
            "not on a terminal and no --yes: refusing to change the cluster without confirmation"
        )
    return click.confirm(question, default=False)

"""`kpipe dlq` (what the dead-letter topics hold) and `kpipe dlq replay` (send dead letters back, once)."""

from __future__ import annotations

import os
import sys

import click

from kpipe.cli.common import ProjectOptions, cluster_timeout_option, project_options
from kpipe.cli.reading import clients, format_option, load
from kpipe.errors import EXIT_INVALID, EXIT_OK, UsageError


class _SummaryUnlessReplay(click.Group):
    """`kpipe dlq [PATHS]...` summarises; `kpipe dlq replay DLQ [PATHS]...` replays. Anything but a subcommand's
    name (or --help) is the summary's arguments."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["summary", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_SummaryUnlessReplay)
def dlq() -> None:
    """Dead-letter topics: `kpipe dlq [PATHS]...` summarises them, `kpipe dlq replay DLQ [PATHS]...` sends
    their events back to the topics they came from.

    \b
    Examples:
      kpipe dlq pipelines/
      kpipe dlq pipelines/ --topic orders.dlq --format json
      kpipe dlq replay orders.dlq pipelines/ --error-type handler --dry-run
      kpipe dlq replay orders.dlq pipelines/ --since 2026-12-07T02:00Z --yes
    """


@dlq.command(hidden=True)
@project_options(bootstrap=True)
@click.option(
    "--topic", "topics", multiple=True, metavar="DLQ", help="Only this dead-letter topic (repeatable)."
)
@format_option
@cluster_timeout_option
def summary(options: ProjectOptions, topics: tuple[str, ...], output_format: str, timeout: float) -> int:
    """Summarise each declared or derived dead-letter topic: counts by error type and by source partition, the
    first and last times, how many are not replayed yet, and one sample per error type."""
    from kpipe.operate.dlq import dead_letter_topics, render_all_json, summarize

    project = load(options)
    writers = dead_letter_topics(project.consumer_groups())
    wanted = list(dict.fromkeys(topics)) or list(writers)
    if not wanted:
        raise UsageError(
            "no consumer group writes dead letters (on_error.action: dead_letter); name a topic with --topic"
        )
    with clients(project, timeout) as c:
        tallies = [summarize(c.cluster, c.reader, c.admin, t, writers.get(t, [])) for t in wanted]
    if output_format == "json":
        click.echo(render_all_json(tallies))
    else:
        click.echo("\n".join(t.render_text() for t in tallies))
    return EXIT_OK


@dlq.command()
@click.argument("dead_letter_topic", metavar="DLQ")
@project_options(bootstrap=True)
@click.option(
    "--error-type", metavar="T", help="Only dead letters of this error type (handler, schema, timeout, …)."
)
@click.option(
    "--since", metavar="DATETIME", help="Only dead letters written at or after this time (ISO 8601)."
)
@click.option(
    "--until", metavar="DATETIME", help="Only dead letters written at or before this time (ISO 8601)."
)
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Send at most N events.")
@click.option("--dry-run", is_flag=True, help="Show what would be sent; send nothing.")
@click.option("--yes", "-y", is_flag=True, help="Replay without asking (needed when not on a terminal).")
@format_option
@cluster_timeout_option
def replay(
    dead_letter_topic: str,
    options: ProjectOptions,
    error_type: str | None,
    since: str | None,
    until: str | None,
    limit: int | None,
    dry_run: bool,
    yes: bool,
    output_format: str,
    timeout: float,
) -> int:
    """Send the dead letters of DLQ back to the topics they were first read from.

    Each goes back with its original payload, key and headers (a trace context included), to its original
    partition, with a `kpipe-replay` header (the replay count and where the event and its dead letter were). Its
    payload is checked against the source topic's schema first: one that fails now is reported, not sent.
    Progress is kept as the committed offsets of the consumer group kpipe-replay.<DLQ>, so a dead letter is
    replayed once: a second replay of the same range sends nothing. Shows what it will send and asks first
    (unless --yes). Imports project code (pydantic-model schemas), as `produce` does.

    \b
    Examples:
      kpipe dlq replay orders.dlq pipelines/ --dry-run
      kpipe dlq replay orders.dlq pipelines/ --error-type handler --until 2026-12-07T03:00Z --yes
    """
    from kpipe.operate.positions import parse_time
    from kpipe.operate.replay import Replay, Selection, Source
    from kpipe.runtime import tracing
    from kpipe.runtime.records import RecordWriter

    selection = Selection(
        error_type=error_type,
        since_ms=parse_time(since, "--since") if since else None,
        until_ms=parse_time(until, "--until") if until else None,
        limit=limit,
    )
    project = load(options, import_code=True)
    models = {
        t.name: project.topic_model(t.name) for t in project.topic_settings() if t.name != dead_letter_topic
    }
    # Traced as `produce` is (the replay's writes are send spans in the trace their events carry on).
    with (
        tracing.session(project.declarations.cluster_spec.tracing, os.environ),
        clients(project, timeout) as c,
    ):
        live = c.cluster.describe().topics
        sources = {
            name: Source(name, model, live[name].partitions) for name, model in models.items() if name in live
        }
        run = Replay(c.cluster, c.reader, c.admin, dead_letter_topic, selection, sources)
        preview = run.preview()
        if dry_run or not preview.to_send:
            preview.dry_run = dry_run  # nothing to send: the report of a replay that sent nothing
            click.echo(preview.render_json() if output_format == "json" else preview.render_text())
            return EXIT_OK
        if not yes:
            click.echo(preview.render_text())
            if not _confirm(f"Send {preview.to_send} event(s) back to their source topics?"):
                click.echo("Replay cancelled; nothing sent.", err=True)
                return EXIT_INVALID
        report = run.execute(RecordWriter(c.client_config, timeout=max(timeout, 30.0)))
    click.echo(report.render_json() if output_format == "json" else report.render_text())
    return EXIT_OK


def _interactive() -> bool:
    return sys.stdin.isatty()


def _confirm(question: str) -> bool:
    if not _interactive():
        raise UsageError("not on a terminal and no --yes: refusing to send events without confirmation")
    return click.confirm(question, default=False)

"""`kpipe tail`: print a topic's events, decoded and checked against its schema."""

from __future__ import annotations

import os
import sys

import click

from kpipe.cli.common import ProjectOptions, cluster_timeout_option, import_code_option, project_options
from kpipe.cli.reading import clients, format_option, load, topic_model
from kpipe.errors import EXIT_OK


@click.command()
@click.argument("topic")
@project_options(bootstrap=True)
@click.option(
    "--from",
    "start",
    default="earliest",
    show_default=True,
    metavar="earliest|latest|OFFSET|DATETIME|-N",
    help="Where to start in each partition; -N: the last N events of each partition; DATETIME: ISO 8601 "
    "(UTC unless it says otherwise), the first event at or after it.",
)
@click.option("-n", "count", type=click.IntRange(min=0), metavar="COUNT", help="Stop after COUNT events.")
@click.option("--follow", "-f", is_flag=True, help="Keep waiting for new events (Ctrl-C to stop).")
@click.option("--partition", type=click.IntRange(min=0), metavar="P", help="Only this partition.")
@click.option("--key", metavar="K", help="Only events with this key.")
@format_option
@import_code_option
@cluster_timeout_option
def tail(
    topic: str,
    options: ProjectOptions,
    start: str,
    count: int | None,
    follow: bool,
    partition: int | None,
    key: str | None,
    output_format: str,
    import_code: bool,
    timeout: float,
) -> int:
    """Print the events of TOPIC: partition, offset, timestamp, key, headers and value.

    Each event is checked against the topic's schema; one that fails it is shown and flagged (INVALID, or
    "valid": false), never hidden. kpipe's dead-letter headers are shown as one line (error type, group, where
    the event was first read). Stops at the end of every partition as it was when the tail started, unless
    --follow. --format json prints one object per line:
    {"topic","partition","offset","timestamp","key","headers","value","valid"} (plus "error" and "dead_letter"
    when they apply).

    \b
    Examples:
      kpipe tail orders pipelines/ --from -5
      kpipe tail orders.dlq pipelines/ --format json | jq .dead_letter
      kpipe tail orders pipelines/ --from 2026-12-07T03:00Z --key c-42 -n 20
      kpipe tail orders pipelines/ --from latest --follow
    """
    from kpipe.operate.positions import parse_position
    from kpipe.operate.tail import TailRequest
    from kpipe.operate.tail import tail as tail_events

    position = parse_position(start, "--from")
    request = TailRequest(topic, position, count, follow, partition, key)
    shown = invalid = 0
    project = load(options, import_code=import_code)
    model = topic_model(project, topic)
    with clients(project, timeout) as c:
        try:
            for event in tail_events(c.reader, c.cluster, request, model):
                click.echo(event.render_json() if output_format == "json" else event.render_text())
                shown += 1
                invalid += event.valid is False
        except KeyboardInterrupt:
            if not follow:
                raise
            # Ctrl-C is how a --follow ends: not an error.
        except BrokenPipeError:
            # The reader went away (`kpipe tail … | head`): stop quietly, and let nothing flush into the closed pipe.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_OK
    flagged = f", {invalid} invalid" if invalid else ""
    hint = " (add --follow to wait for new ones)" if not shown and not follow else ""
    click.echo(f"{shown} event(s) from {topic}{flagged}{hint}", err=True)
    return EXIT_OK

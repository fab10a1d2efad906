"""`kpipe run` (consumer groups as supervised worker processes) and `kpipe produce` (JSON lines → a producer)."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from kpipe.cli.common import (
    ProjectOptions,
    consumer_config_option,
    parse_vars,
    project_options,
    shutdown_timeout_option,
)
from kpipe.errors import EXIT_INTERRUPTED, UsageError

log = logging.getLogger("kpipe.run")
# How often `kpipe run` logs one line per group (handled, rate, dead-lettered).
SUMMARY_EVERY_S = 30.0

create_topics_option = click.option(
    "--create-topics/--no-create-topics",
    default=None,
    help="Create the missing declared topics it uses before starting (default: cluster.create_missing_topics, "
    "true); with --no-create-topics a missing topic is exit 3.",
)

# -- run ---------------------------------------------------------------------------------------------------------


@click.command()
@project_options(bootstrap=True)
@click.option(
    "--group", "groups", multiple=True, metavar="NAME", help="Run only this consumer group (repeatable)."
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log line format.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
    envvar="KPIPE_LOG_LEVEL",
)
@consumer_config_option
@create_topics_option
@shutdown_timeout_option
@click.option(
    "--instances",
    type=click.IntRange(min=1),
    metavar="N",
    help="Run N workers per group instead of the files' instances (a Kubernetes pod runs 1; its "
    "Deployment's replicas make the group's size).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    metavar="PORT",
    help="Serve Prometheus /metrics, /healthz and /readyz on this port (default: the files' metrics.port; "
    "none: no server).",
)
@click.option(
    "--metrics-host",
    metavar="HOST",
    help="Address the metrics server listens on (default: the files' metrics.host, else 127.0.0.1).",
)
def run(
    options: ProjectOptions,
    groups: tuple[str, ...],
    log_format: str,
    log_level: str,
    consumer_config: tuple[str, ...],
    create_topics: bool | None,
    shutdown_timeout: float,
    instances: int | None,
    metrics_port: int | None,
    metrics_host: str | None,
) -> None:
    """Run consumer groups: one worker process per instance, restarted if it dies, stopped by SIGTERM/Ctrl-C.

    Before the workers start, the declared topics the groups read, dead-letter to and emit to are created if
    missing (never altered). Every 30 s, and on stop, one line per group says what it handled. The first
    SIGTERM or Ctrl-C lets every worker commit and exit (up to --shutdown-timeout); a second one kills them at
    once. Exits 0 when SIGTERM stopped every worker cleanly, 130 when Ctrl-C (SIGINT) did, 1 when some halted
    or crash-looped, 3 when the cluster cannot be reached (within 10 s), a topic is missing
    (--no-create-topics) or the broker refused to create it.
    """
    from kpipe.logs import LOG_LEVEL_ENV, configure_logging
    from kpipe.runtime.protocol import worker_starts
    from kpipe.runtime.start_method import warm_up
    from kpipe.runtime.supervisor import Supervisor
    from kpipe.service.run import prepare, supervise

    warm_up()  # the workers' fork server imports while the project is loaded and the topics created
    project = options.load(consumer_overrides=parse_vars(consumer_config, "--consumer-config"))
    metrics = project.metrics_settings(metrics_port, metrics_host)
    # Tracing asked for without OpenTelemetry installed: one error here, not one per worker; the files' block
    # reaches the workers as OTEL_* variables.
    from kpipe.runtime import tracing

    tracing.for_workers(project.declarations.cluster_spec.tracing, os.environ)
    os.environ[LOG_LEVEL_ENV] = log_level  # the workers inherit it and configure their logging with it
    configure_logging(log_format, log_level)
    # Groups and handlers checked, the cluster reached (exit 3 when it cannot be), the topics there.
    selected = prepare(project, groups, create_topics=create_topics)
    workers = sum(instances or g.instances for g in selected)
    log.info(
        "running %s: %s",
        "1 worker" if workers == 1 else f"{workers} workers",
        ", ".join(f"{s.group_id} ×{instances or s.instances}" for s in selected),
    )
    # Compiled here, once (with metrics on, librdkafka statistics for consumer lag): the workers run exactly
    # these settings (`kpipe explain` shows them), connecting where this process found the brokers.
    starts = worker_starts(
        project, ((g.group_id, instances or g.instances) for g in selected), log_format=log_format,
        metrics=metrics.port is not None,
    )  # fmt: skip
    supervisor = Supervisor(starts, shutdown_timeout=shutdown_timeout, summary_every=SUMMARY_EVERY_S)
    interrupted = supervise(supervisor, project, selected, metrics)
    return EXIT_INTERRUPTED if interrupted else None


# -- produce -----------------------------------------------------------------------------------------------------


@click.command()
@click.argument("producer_name", metavar="PRODUCER")
@project_options(bootstrap=True)
@click.option(
    "-f",
    "--file",
    "events_file",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=str),
    default="-",
    show_default="stdin",
    help="JSON lines to send, one event per line ('-' for stdin).",
)
@click.option(
    "--key-field", metavar="FIELD", help="Take each event's key from this field (default: the topic's key)."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="How long to wait for deliveries at the end (default: the producer's message.timeout.ms + 5 s).",
)
@create_topics_option
def produce(
    producer_name: str,
    options: ProjectOptions,
    events_file: str,
    key_field: str | None,
    timeout: float | None,
    create_topics: bool | None,
) -> int | None:
    """Send JSON-lines events through PRODUCER: each line is checked against the producer's schema.

    A line that is not UTF-8, not JSON or not a valid event is reported as FILE:LINE[:COL] and not sent; a
    line longer than the producer's message.max.bytes is reported as FILE:LINE, skipped without being held in
    memory, and counted as failed. Either way the lines after it are still sent. However
    it ends (Ctrl-C and SIGTERM included), the events already queued are flushed and
    `delivered N, failed M, invalid K` is printed; exits 0 only if every line was delivered (1: invalid lines,
    3: failed deliveries, 130: interrupted).
    """
    from kpipe.runtime import tracing

    _refuse_swapped_arguments(producer_name, options)
    project = options.load()
    # On before the producer is built; its spans exported before the command ends.
    with tracing.session(project.declarations.cluster_spec.tracing, os.environ):
        return _produce(project, producer_name, events_file, key_field, timeout, create_topics)


def _produce(
    project: Any,
    producer_name: str,
    events_file: str,
    key_field: str | None,
    timeout: float | None,
    create_topics: bool | None,
) -> int | None:
    from kpipe.service.produce import ProduceSession

    display = "<stdin>" if events_file == "-" else events_file
    try:
        stream = click.open_file(events_file, "rb")
    except OSError as exc:
        raise UsageError(f"cannot read {display}: {exc.strerror or exc}") from None
    with stream:
        session = ProduceSession.open(
            project,
            producer_name,
            key_field=key_field,
            create_topics=create_topics,
            timeout=timeout,
            say=_stderr,
        )
        if events_file == "-" and sys.stdin.isatty():
            _stderr(
                f"reading events for producer '{producer_name}' from stdin, one JSON object per line "
                "(end with Ctrl-D; --file FILE reads a file)"
            )
        outcome = session.send_lines(stream, display)
    click.echo(outcome.summary())
    if outcome.interrupted:
        return EXIT_INTERRUPTED  # the session said so
    outcome.check()
    return None


def _refuse_swapped_arguments(producer_name: str, options: ProjectOptions) -> None:
    """`kpipe produce pipelines/ order-api`: the first argument is a path and a later one is not: a usage
    error that shows the order, rather than "no such file or directory" for the producer's name."""
    if not _looks_like_a_path(producer_name):
        return
    missing = [p for p in options.paths if not p.exists()]
    if not missing:
        return
    raise UsageError(
        f"'{producer_name}' is a path, not a producer name, and {missing[0]} is no file or directory: the "
        f"producer comes first; did you mean `kpipe produce {missing[0]} {producer_name}`?"
    )


def _looks_like_a_path(text: str) -> bool:
    return text.endswith(("/", ".yaml", ".yml")) or os.sep in text or os.path.exists(text)


def _stderr(text: str) -> None:
    click.echo(text, err=True)

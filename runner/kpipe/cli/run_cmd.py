"""`kpipe run` (consumer groups as supervised worker processes) and `kpipe produce` (JSON lines → a producer)."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Iterable
from typing import Any, NamedTuple

import click

from kpipe.cli.common import (
    ProjectOptions,
    consumer_config_option,
    parse_vars,
    project_options,
    shutdown_timeout_option,
)
from kpipe.errors import (
    EXIT_INTERRUPTED,
    BrokerUnreachable,
    ClusterError,
    EventInvalid,
    KpipeError,
    PipelineInvalid,
    UsageError,
)

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
    once. Exits 0 when every worker stopped cleanly, 1 when some halted or crash-looped, 3 when a topic is
    missing (--no-create-topics) or the broker refused to create it.
    """
    from kpipe.logs import LOG_LEVEL_ENV, configure_logging
    from kpipe.runtime.protocol import worker_specs
    from kpipe.runtime.supervisor import Supervisor

    project = options.load()
    extra_config = tuple(parse_vars(consumer_config, "--consumer-config").items())
    selected = _select_groups(project, groups)
    metrics = project.metrics_settings(metrics_port, metrics_host)
    if metrics.port is not None and "statistics.interval.ms" not in dict(extra_config):
        # Consumer lag comes from librdkafka's statistics; compiled in like -X, so the worker runs exactly it.
        from kpipe.runtime.meter import STATISTICS_INTERVAL_MS

        extra_config += (("statistics.interval.ms", str(STATISTICS_INTERVAL_MS)),)
    _check_handlers(project, selected)  # before anything is created for workers that could not start
    # Tracing asked for without OpenTelemetry installed: one error here, not one per worker; the files' block
    # reaches the workers as OTEL_* variables.
    from kpipe.runtime import tracing

    tracing.for_workers(project.declarations.cluster_spec.tracing, os.environ)
    os.environ[LOG_LEVEL_ENV] = log_level  # the workers inherit it and configure their logging with it
    configure_logging(log_format, log_level)
    try:
        ensure_topics(project, create_topics, groups=[g.group_id for g in selected])
    except BrokerUnreachable as exc:
        # The workers wait for the cluster and say so; the topics are checked only at start.
        log.warning(
            "%s; starting the workers anyway: missing topics are not created (see `kpipe apply`)", exc
        )
    workers = sum(instances or g.instances for g in selected)
    log.info(
        "running %s: %s",
        "1 worker" if workers == 1 else f"{workers} workers",
        ", ".join(f"{s.group_id} ×{instances or s.instances}" for s in selected),
    )
    specs = worker_specs(
        ((g.group_id, instances or g.instances) for g in selected),
        project_paths=(str(p) for p in options.paths),
        variables=options.variables,
        values_files=(str(v) for v in options.values_files),
        # Resolved here, once: the workers connect where this process found the brokers (`local` included),
        # and are told when that is the embedded broker (its consumer defaults).
        bootstrap_override=project.bootstrap_override,
        log_format=log_format,
        extra_consumer_config=extra_config,
        project_root=str(project.declarations.root) if project.declarations.root else None,
        metrics=metrics.port is not None,
        embedded_broker=project.embedded_broker,
    )
    supervisor = Supervisor(specs, shutdown_timeout=shutdown_timeout, summary_every=SUMMARY_EVERY_S)
    server = _metrics_server(project, supervisor, selected, metrics)
    try:
        code = supervisor.run()
    finally:
        if server is not None:
            server.close()
    if code != 0:
        unclean = [
            f"{group}[{instance}] {view.state}"
            for (group, instance), view in sorted(supervisor.snapshot().items())
            if view.state != "stopped"
        ]
        raise KpipeError("workers did not all stop cleanly: " + ", ".join(unclean))


def _check_handlers(project: Any, groups: list[Any]) -> None:
    """Handlers whose module or function is certainly not there, found without importing them (the supervisor
    runs no project code; each worker imports its handler): PipelineInvalid before topics are created. A
    module found nowhere passes (it may be installed in a way the check cannot see); its workers halt."""
    from kpipe.compilation.project import check_handlers_statically

    found = check_handlers_statically(project.declarations, [g.group_id for g in groups])
    problems = [d for d in found if d.is_error]
    if problems:
        raise PipelineInvalid(problems)


def _metrics_server(project: Any, supervisor: Any, groups: list[Any], settings: Any) -> Any:
    """The /metrics, /healthz and /readyz server, when a port is given (flag or the files' metrics.port)."""
    if settings.port is None:
        return None
    from kpipe.observe.health import MetricsServer, partitions_by_group

    server = MetricsServer(
        supervisor, settings.host, settings.port, partitions_by_group(groups, project.topic_settings())
    )
    log.info("serving metrics on %s/metrics (health: /healthz, /readyz)", server.url)
    return server


def ensure_topics(
    project: Any,
    create: bool | None,
    *,
    groups: Iterable[str] = (),
    producers: Iterable[str] = (),
    echo: bool = False,
    timeout: float = 10.0,
) -> None:
    """Create the missing topics these groups/producers use (or exit 3 naming them when creation is off)."""
    from kpipe.topics.provision import ensure_project_topics

    lines = {"info": _stderr, "warn": lambda text: _stderr(f"warning: {text}")} if echo else {}
    ensure_project_topics(
        project, groups=groups, producers=producers, create=create, timeout=timeout, **lines
    )


def _stderr(text: str) -> None:
    click.echo(text, err=True)


def _select_groups(project: Any, names: Iterable[str]) -> list[Any]:
    """The groups to run: those named (an unknown name is a usage error with a did-you-mean), else all."""
    wanted = list(dict.fromkeys(names))
    if wanted:
        return [project.consumer_group(name) for name in wanted]
    groups = project.consumer_groups()
    if not groups:
        files = ", ".join(str(f) for f in project.files) or "the project"
        raise UsageError(f"nothing to run: {files} declares no consumer groups")
    return groups


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

    A line that is not UTF-8, not JSON or not a valid event is reported as FILE:LINE[:COL] and not sent. However
    it ends (Ctrl-C and SIGTERM included), the events already queued are flushed and
    `delivered N, failed M, invalid K` is printed; exits 0 only if every line was delivered (1: invalid lines,
    3: failed deliveries, 130: interrupted).
    """
    from kpipe.runtime import tracing

    project = options.load()
    traced = tracing.start(project.declarations.cluster_spec.tracing, os.environ)  # before the producer
    try:
        return _produce(project, producer_name, events_file, key_field, timeout, create_topics)
    finally:
        traced.shutdown()


def _produce(
    project: Any,
    producer_name: str,
    events_file: str,
    key_field: str | None,
    timeout: float | None,
    create_topics: bool | None,
) -> int | None:
    producer = project.producer(producer_name)  # an unknown name: a usage error with a did-you-mean
    # The topic is checked (and created if missing) before the first valid event is sent, so a file whose lines
    # are all invalid is reported without a broker.
    model = project.topic_model(producer.topic)
    topic_ready = _Once(
        lambda: ensure_topics(
            project,
            create_topics,
            producers=[producer_name],
            echo=True,
            timeout=min(timeout, 10.0) if timeout else 10.0,
        )
    )
    display = "<stdin>" if events_file == "-" else events_file
    invalid = refused = 0
    number = 0
    stopped: BaseException | None = None
    delivery_error: ClusterError | None = None
    # Whatever ends the reading (the end of the input, Ctrl-C or SIGTERM, a read error, a broker error, a bug),
    # everything already queued is flushed and counted before the summary and the exit code.
    with _Interrupts() as interrupts:
        try:
            with click.open_file(events_file, "rb") as stream:
                for number, raw in enumerate(stream, start=1):
                    if not raw.strip():
                        continue
                    try:
                        problem = _send_line(producer, raw, key_field, topic_ready, model)
                    except ClusterError as exc:
                        if exc.code not in _REFUSED_EVENT_CODES:
                            raise
                        refused += 1  # this event only (e.g. larger than message.max.bytes): go on
                        click.echo(f"{display}:{number}: error: not sent: {exc}", err=True)
                        continue
                    if problem is not None:
                        invalid += 1
                        column = f":{problem.column}" if problem.column else ""
                        click.echo(f"{display}:{number}{column}: error: {problem.text}", err=True)
        except BaseException as exc:
            stopped = exc
        interrupts.raising = False  # from here on an interrupt only cuts the wait for deliveries short
        seen = interrupts.count
        if seen:
            click.echo(
                f"{display}: interrupted at line {number}: waiting for queued events "
                "(interrupt again to drop them)",
                err=True,
            )
        try:
            producer.close(timeout, abandon=lambda: interrupts.count > seen)
        except ClusterError as exc:
            delivery_error = exc
        failed = producer.failed + refused
        click.echo(f"delivered {producer.delivered}, failed {failed}, invalid {invalid}")
    if isinstance(stopped, OSError):
        raise UsageError(f"cannot read {display}: {stopped.strerror or stopped}") from None
    if interrupts.count:
        return EXIT_INTERRUPTED  # already said so above
    if stopped is not None:
        raise stopped
    if delivery_error is not None:
        raise delivery_error
    if refused:
        raise ClusterError(
            f"{refused} event{'s' if refused != 1 else ''} refused by producer '{producer_name}'"
        )
    if invalid:
        raise KpipeError(f"{invalid} invalid line{'s' if invalid != 1 else ''} not sent")


# librdkafka refuses these per event, at once: the event is reported and the rest of the input still sent.
_REFUSED_EVENT_CODES = frozenset({"MSG_SIZE_TOO_LARGE"})


class _Interrupts:
    """SIGINT and SIGTERM while `produce` runs. While `raising`, the first one raises KeyboardInterrupt (to stop
    reading); every one is counted, so the flush that follows can stop waiting when the user insists."""

    def __init__(self) -> None:
        self.count = 0
        self.raising = True
        self._previous: dict[int, Any] = {}

    def __call__(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.raising:
            self.raising = False  # never a second KeyboardInterrupt, which could land in the cleanup
            raise KeyboardInterrupt

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


class _Once:
    def __init__(self, action: Any):
        self.action, self.done = action, False

    def __call__(self) -> None:
        if not self.done:
            self.action()
            self.done = True


class _Invalid(NamedTuple):
    """Why a line was not sent, and the column it went wrong at when one can be named (FILE:LINE:COL)."""

    text: str
    column: int | None = None


def _send_line(
    producer: Any, raw: bytes, key_field: str | None, before_send: _Once, model: Any = None
) -> _Invalid | None:
    """Send one JSON line; return why it is invalid, or None once it is queued."""
    from pydantic import ValidationError

    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        column = len(raw[: exc.start].decode("utf-8", "replace")) + 1
        return _Invalid(f"not valid UTF-8: byte 0x{raw[exc.start]:02x}", column)
    text = line.rstrip("\r\n")  # the newline is not part of the event: a column past it would be line 2's
    try:
        event = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()):
            return _Invalid(
                f"invalid JSON: {exc.msg} (the line ends before the JSON does; truncated?)", exc.colno
            )
        return _Invalid(f"invalid JSON: {exc.msg}", exc.colno)
    if not isinstance(event, dict):
        return _Invalid(f"expected a JSON object, got {_json_type(event)}")
    key = None
    if key_field is not None:
        key = event.get(key_field)
        if key is None:
            return _Invalid(f"event has no value for key field '{key_field}'")
    if not before_send.done:
        try:
            if model is not None:
                model.model_validate(event)
            before_send()
        except ValidationError:
            pass  # send() reports it, without touching the broker
    try:
        producer.send(event, key=key)
    except EventInvalid as exc:
        return _Invalid(str(exc))
    return None


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)

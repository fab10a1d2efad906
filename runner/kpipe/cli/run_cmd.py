"""`kpipe run` (consumer groups as supervised worker processes) and `kpipe produce` (JSON lines → a producer)."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click

from kpipe.cli.common import (
    bootstrap_option,
    consumer_config_option,
    default_paths,
    parse_vars,
    project_options,
)
from kpipe.errors import ClusterError, KpipeError, UsageError

log = logging.getLogger("kpipe.run")


def _load(
    paths: tuple[Path, ...],
    variables: tuple[str, ...],
    values_files: tuple[Path, ...],
    bootstrap_servers: str | None,
) -> Any:
    """The project, with `local` resolved to the running local broker (kpipe.load)."""
    import kpipe

    return kpipe.load(
        *default_paths(paths),
        variables=parse_vars(variables),
        values_files=list(values_files),
        bootstrap_override=bootstrap_servers or None,
    )


# -- run ---------------------------------------------------------------------------------------------------------


@click.command()
@project_options
@click.option(
    "--group", "groups", multiple=True, metavar="NAME", help="Run only this consumer group (repeatable)."
)
@bootstrap_option
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
@click.option(
    "--shutdown-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How long workers get to commit and exit after SIGTERM before they are killed.",
)
def run(
    paths: tuple[Path, ...],
    variables: tuple[str, ...],
    values_files: tuple[Path, ...],
    groups: tuple[str, ...],
    bootstrap_servers: str | None,
    log_format: str,
    log_level: str,
    consumer_config: tuple[str, ...],
    shutdown_timeout: float,
) -> None:
    """Run consumer groups: one worker process per instance, restarted if it dies, stopped by SIGTERM/Ctrl-C.

    The first SIGTERM or Ctrl-C lets every worker commit and exit (up to --shutdown-timeout); a second one
    kills them at once.
    """
    from kpipe.logs import LOG_LEVEL_ENV, configure_logging
    from kpipe.runtime.protocol import worker_specs
    from kpipe.runtime.supervisor import Supervisor

    project = _load(paths, variables, values_files, bootstrap_servers)
    extra_config = tuple(parse_vars(consumer_config, "--consumer-config").items())
    selected = _select_groups(project, groups)
    specs = worker_specs(
        ((g.group_id, g.instances) for g in selected),
        project_paths=(str(p) for p in default_paths(paths)),
        variables=parse_vars(variables),
        values_files=(str(v) for v in values_files),
        # Resolved here, once: the workers connect where this process found the brokers (`local` included).
        bootstrap_override=project.bootstrap_override,
        log_format=log_format,
        extra_consumer_config=extra_config,
    )
    os.environ[LOG_LEVEL_ENV] = log_level  # the workers inherit it and configure their logging with it
    configure_logging(log_format, log_level)
    log.info(
        "running %s: %s",
        "1 worker" if len(specs) == 1 else f"{len(specs)} workers",
        ", ".join(f"{s.group_id} ×{s.instances}" for s in selected),
    )
    supervisor = Supervisor(specs, shutdown_timeout=shutdown_timeout)
    if supervisor.run() != 0:
        unclean = [
            f"{group}[{instance}] {view.state}"
            for (group, instance), view in sorted(supervisor.snapshot().items())
            if view.state != "stopped"
        ]
        raise KpipeError("workers did not all stop cleanly: " + ", ".join(unclean))


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
@project_options
@click.option(
    "-f",
    "--file",
    "events_file",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=str),
    default="-",
    show_default="stdin",
    help="JSON lines to send, one event per line ('-' for stdin).",
)
@bootstrap_option
@click.option(
    "--key-field", metavar="FIELD", help="Take each event's key from this field (default: the topic's key)."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="How long to wait for deliveries at the end (default: the producer's message.timeout.ms + 5 s).",
)
def produce(
    producer_name: str,
    paths: tuple[Path, ...],
    variables: tuple[str, ...],
    values_files: tuple[Path, ...],
    events_file: str,
    bootstrap_servers: str | None,
    key_field: str | None,
    timeout: float | None,
) -> None:
    """Send JSON-lines events through PRODUCER: each line is checked against the producer's schema.

    A line that is not UTF-8, not JSON or not a valid event is reported as FILE:LINE and not sent. However
    it ends (Ctrl-C and SIGTERM included), the events already queued are flushed and
    `delivered N, failed M, invalid K` is printed; exits 0 only if every line was delivered (1: invalid lines,
    3: failed deliveries, 130: interrupted).
    """
    project = _load(paths, variables, values_files, bootstrap_servers)
    producer = project.producer(producer_name)  # an unknown name: a usage error with a did-you-mean
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
                        problem = _send_line(producer, raw, key_field)
                    except ClusterError as exc:
                        if exc.code not in _REFUSED_EVENT_CODES:
                            raise
                        refused += 1  # this event only (e.g. larger than message.max.bytes): go on
                        click.echo(f"{display}:{number}: error: not sent: {exc}", err=True)
                        continue
                    if problem is not None:
                        invalid += 1
                        click.echo(f"{display}:{number}: error: {problem}", err=True)
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
        raise click.exceptions.Exit(EXIT_INTERRUPTED)  # already said so above; click would add "Aborted"
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


EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it

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


def _send_line(producer: Any, raw: bytes, key_field: str | None) -> str | None:
    """Send one JSON line; return why it is invalid, or None once it is queued."""
    from kpipe.runtime.serde import EventInvalid

    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        column = len(raw[: exc.start].decode("utf-8", "replace")) + 1
        return f"not valid UTF-8: byte 0x{raw[exc.start]:02x} (column {column})"
    try:
        event = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"invalid JSON: {exc.msg} (column {exc.colno})"
    if not isinstance(event, dict):
        return f"expected a JSON object, got {_json_type(event)}"
    key = None
    if key_field is not None:
        key = event.get(key_field)
        if key is None:
            return f"event has no value for key field '{key_field}'"
    try:
        producer.send(event, key=key)
    except EventInvalid as exc:
        return str(exc)
    return None


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)

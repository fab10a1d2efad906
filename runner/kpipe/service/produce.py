"""A produce session: JSON lines from a byte stream, each checked and sent through one declared producer.

    session = ProduceSession.open(project, "order-api", say=print_to_stderr)
    outcome = session.send_lines(stream, "events.jsonl")   # then outcome.summary(), outcome.check()

The input is streamed: a line is read up to the producer's `message.max.bytes` and never held beyond it, so a
line of any size costs at most that much memory. An oversized line is reported as FILE:LINE, skipped to its
end, counted as failed (the producer would refuse it), and the lines after it are still sent. A line that is
not UTF-8, not JSON or not a valid event is reported as FILE:LINE[:COL] and counted as invalid.

However reading ends (the end of the input, Ctrl-C or SIGTERM, a read error, a broker error, a bug), what is
already queued is flushed and counted before the outcome is returned.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, NamedTuple

from kpipe.errors import ClusterError, EventInvalid, KpipeError, UsageError
from kpipe.runtime.producer import Producer
from kpipe.runtime.serde import EventNotJson, parse_json_event
from kpipe.service.load import Project, ensure_topics
from kpipe.topics.cluster import DEFAULT_CONNECT_TIMEOUT_S

# librdkafka's own default for message.max.bytes, the cap when the producer's settings do not name one.
DEFAULT_MESSAGE_MAX_BYTES = 1_000_000
# How much of an oversized line is read at once while skipping to its end.
SKIP_CHUNK = 1 << 16

# librdkafka refuses these per event, at once: the event is reported and the rest of the input still sent.
_REFUSED_EVENT_CODES = frozenset({"MSG_SIZE_TOO_LARGE"})


class Problem(NamedTuple):
    """Why a line was not sent, and the column it went wrong at when one can be named (FILE:LINE:COL)."""

    text: str
    column: int | None = None


@dataclass
class ProduceOutcome:
    """What a session did: the counts of its summary line, and why it stopped early, if it did."""

    producer: str
    delivered: int = 0
    failed: int = 0
    invalid: int = 0
    # Events the producer refused (too large), included in `failed`.
    refused: int = 0
    interrupted: bool = False
    # What stopped the reading or the flush (a read error, a broker error, a bug), re-raised by `check`.
    error: BaseException | None = None

    def summary(self) -> str:
        return f"delivered {self.delivered}, failed {self.failed}, invalid {self.invalid}"

    def check(self) -> None:
        """Raise what the outcome means for the exit code (nothing when every line was delivered, or when
        interrupted: the caller says so)."""
        if self.interrupted:
            return
        if self.error is not None:
            raise self.error
        if self.refused:
            s = "s" if self.refused != 1 else ""
            raise ClusterError(f"{self.refused} event{s} refused by producer '{self.producer}'")
        if self.invalid:
            s = "s" if self.invalid != 1 else ""
            raise KpipeError(f"{self.invalid} invalid line{s} not sent")


class ProduceSession:
    """Send JSON lines through `producer`; `say` gets one line per problem (FILE:LINE[:COL]: error: ...)."""

    def __init__(
        self,
        producer: Producer,
        *,
        model: Any = None,
        ensure_topic: Callable[[], None] = lambda: None,
        key_field: str | None = None,
        say: Callable[[str], None] = lambda text: None,
        close_timeout: float | None = None,
    ):
        """`ensure_topic` runs once, before the first event that will be sent (so a file whose lines are all
        invalid needs no broker); `model` (the topic's pydantic model) tells which event that is."""
        self.producer = producer
        self._model = model
        self._ensure_topic = _Once(ensure_topic)
        self._key_field = key_field
        self._say = say
        self._close_timeout = close_timeout
        self.max_line = message_max_bytes(producer)

    @classmethod
    def open(
        cls,
        project: Project,
        producer_name: str,
        *,
        key_field: str | None = None,
        create_topics: bool | None = None,
        timeout: float | None = None,
        say: Callable[[str], None] = lambda text: None,
    ) -> ProduceSession:
        """A session on the project's declared producer `producer_name` (an unknown name: UsageError with a
        did-you-mean). Its topic is checked, and created if missing (unless `create_topics` is False), before
        the first valid event is sent; the "created topic" and drift lines go to `say`. `timeout`: how long to
        wait for deliveries at the end (default: the producer's message.timeout.ms + 5 s)."""
        producer = project.producer(producer_name)
        connect_timeout = min(timeout, DEFAULT_CONNECT_TIMEOUT_S) if timeout else DEFAULT_CONNECT_TIMEOUT_S

        def ensure_topic() -> None:
            ensure_topics(
                project,
                producers=[producer_name],
                create=create_topics,
                timeout=connect_timeout,
                info=say,
                warn=lambda text: say(f"warning: {text}"),
            )

        return cls(
            producer,
            model=project.topic_model(producer.topic),
            ensure_topic=ensure_topic,
            key_field=key_field,
            say=say,
            close_timeout=timeout,
        )

    def send_lines(self, stream: IO[bytes], display: str) -> ProduceOutcome:
        """Read `stream` to its end (or an interrupt), send every valid line, flush, and count."""
        outcome = ProduceOutcome(self.producer.settings.name)
        number = 0
        with _Interrupts() as interrupts:
            try:
                for number, raw in numbered_lines(stream, self.max_line):
                    self._send(raw, f"{display}:{number}", outcome)
            except OSError as exc:
                outcome.error = UsageError(f"cannot read {display}: {exc.strerror or exc}")
            except BaseException as exc:
                outcome.error = exc
            interrupts.raising = False  # from here on an interrupt only cuts the wait for deliveries short
            seen = interrupts.count
            if seen:
                self._say(
                    f"{display}: interrupted at line {number}: waiting for queued events "
                    "(interrupt again to drop them)"
                )
            try:
                self.producer.close(self._close_timeout, abandon=lambda: interrupts.count > seen)
            except ClusterError as exc:
                if outcome.error is None:
                    outcome.error = exc
        outcome.interrupted = interrupts.count > 0
        outcome.delivered = self.producer.delivered
        outcome.failed = self.producer.failed + outcome.refused
        return outcome

    def _send(self, raw: bytes | None, where: str, outcome: ProduceOutcome) -> None:
        if raw is None:
            outcome.refused += 1
            self._say(
                f"{where}: error: not sent: producer '{self.producer.settings.name}': cannot send to "
                f"{self.producer.topic}: line too large (over the producer's message.max.bytes, "
                f"{self.max_line} bytes)"
            )
            return
        if not raw.strip():
            return
        try:
            problem = self._send_line(raw)
        except ClusterError as exc:
            if exc.code not in _REFUSED_EVENT_CODES:
                raise
            outcome.refused += 1  # this event only (e.g. larger than message.max.bytes): go on
            self._say(f"{where}: error: not sent: {exc}")
            return
        if problem is not None:
            outcome.invalid += 1
            column = f":{problem.column}" if problem.column else ""
            self._say(f"{where}{column}: error: {problem.text}")

    def _send_line(self, raw: bytes) -> Problem | None:
        """Send one JSON line; return why it is invalid, or None once it is queued."""
        event = parse_line(raw)
        if isinstance(event, Problem):
            return event
        key = None
        if self._key_field is not None:
            key = event.get(self._key_field)
            if key is None:
                return Problem(f"event has no value for key field '{self._key_field}'")
        if not self._ensure_topic.done and self._valid(event):
            self._ensure_topic()
        try:
            self.producer.send(event, key=key)
        except EventInvalid as exc:
            return Problem(str(exc))
        return None

    def _valid(self, event: dict[str, Any]) -> bool:
        from pydantic import ValidationError

        if self._model is None:
            return True
        try:
            self._model.model_validate(event)
        except ValidationError:
            return False  # send() reports it, without touching the broker
        return True


def message_max_bytes(producer: Producer) -> int:
    raw = producer.settings.client.get("message.max.bytes")
    try:
        return int(raw) if raw else DEFAULT_MESSAGE_MAX_BYTES
    except ValueError:
        return DEFAULT_MESSAGE_MAX_BYTES


def numbered_lines(stream: IO[bytes], max_line: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, the line's bytes) for every line of `stream`; None for a line longer than `max_line`
    bytes (its newline not counted), which is read to its end in chunks and never held."""
    number = 0
    while True:
        raw = stream.readline(max_line + 1)  # a line of max_line bytes and its newline
        if not raw:
            return
        number += 1
        if raw.endswith(b"\n") or len(raw) <= max_line:
            yield number, raw
            continue
        while raw and not raw.endswith(b"\n"):  # longer than max_line: skip to its end
            raw = stream.readline(SKIP_CHUNK)
        yield number, None


def parse_line(raw: bytes) -> dict[str, Any] | Problem:
    """The JSON object on one line, or why it is not one."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        column = len(raw[: exc.start].decode("utf-8", "replace")) + 1
        return Problem(f"not valid UTF-8: byte 0x{raw[exc.start]:02x}", column)
    text = line.rstrip("\r\n")  # the newline is not part of the event: a column past it would be line 2's
    try:
        event = parse_json_event(text)  # NaN, Infinity and numbers past what peers read are refused
    except EventNotJson as exc:
        return Problem(str(exc), exc.column)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()):
            return Problem(
                f"invalid JSON: {exc.msg} (the line ends before the JSON does; truncated?)", exc.colno
            )
        return Problem(f"invalid JSON: {exc.msg}", exc.colno)
    if not isinstance(event, dict):
        return Problem(f"expected a JSON object, got {_json_type(event)}")
    return event


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


class _Interrupts:
    """SIGINT and SIGTERM while a session runs. While `raising`, the first one raises KeyboardInterrupt (to stop
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
    def __init__(self, action: Callable[[], None]):
        self.action, self.done = action, False

    def __call__(self) -> None:
        if not self.done:
            self.action()
            self.done = True

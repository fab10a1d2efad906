"""A record as people and tools see it: key and value decoded, checked against its topic's schema, kpipe's
dead-letter headers read into a `DeadLetter`, and one way each to print it as text and as JSON.

Every record is hostile: bytes that are not UTF-8 or not JSON are shown (escaped), never dropped; an event that
fails its schema is shown and flagged (`valid: false` with the reason), never hidden; every text line goes through
`safe_text` (secrets masked, control characters escaped), so an event cannot rewrite the terminal.

The dead-letter header names are the worker's (kpipe.runtime.worker.failures, kpipe.runtime.dead_letters); they
are only read here. A replay adds one header of its own, REPLAY_HEADER, whose name does not start with `kpipe.`
so that it survives when a replayed event fails again (the worker keeps a source's own headers and drops its
`kpipe.*` ones), and the next replay can count on from it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from kpipe.operate.positions import format_time
from kpipe.redaction import redact, safe_text
from kpipe.runtime.dead_letters import H_PAYLOAD
from kpipe.runtime.records import Record
from kpipe.runtime.serde import describe_validation_error
from kpipe.runtime.worker.failures import (
    H_ATTEMPTS,
    H_ERROR_MESSAGE,
    H_ERROR_TYPE,
    H_GROUP,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_SOURCE_TOPIC,
)

# {"count": N, "source": "topic[p]@offset", "dead_letter": "dlq[p]@offset"}: the Nth replay of the event first
# read at `source`, sent from that dead letter.
REPLAY_HEADER = "kpipe-replay"


# Characters json.dumps leaves raw (ensure_ascii=False) that a terminal acts on, and lone surrogates (which no
# UTF-8 output can be given): written as \uXXXX escapes.
_RAW_IN_JSON = re.compile(r"[\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def json_text(data: Any, *, indent: int | None = None) -> str:
    """The one way the operate commands write JSON: valid JSON with no raw control character and every known
    secret masked (escape_controls' backslash-x escapes would not be valid JSON: these are backslash-u ones)."""
    separators = (",", ":") if indent is None else (",", ": ")
    text = json.dumps(data, ensure_ascii=False, indent=indent, separators=separators)
    return redact(_RAW_IN_JSON.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text))


def header_text(value: bytes | None) -> str:
    return "" if value is None else value.decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class DeadLetter:
    """What kpipe's dead-letter headers say of a record: where it was first read and why it failed."""

    error_type: str
    error_message: str
    group: str | None
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    # "truncated" | "omitted" when the dead letter had to be made smaller than the event (dead_letters.py)
    payload_cut: str | None = None
    # How many times this event was replayed before it failed again (from REPLAY_HEADER); 0: never.
    replays: int = 0
    # How many handler calls failed on it (kpipe.attempts; 0: it failed its schema); None: not said (older kpipe).
    attempts: int | None = None

    @property
    def source(self) -> str:
        if self.source_topic is None:
            return "unknown"
        return f"{self.source_topic}[{self.source_partition}]@{self.source_offset}"

    def to_json(self) -> dict[str, Any]:
        return {
            "error_type": self.error_type,
            "error": self.error_message,
            "group": self.group,
            "source": {
                "topic": self.source_topic,
                "partition": self.source_partition,
                "offset": self.source_offset,
            },
            "payload": self.payload_cut or "complete",
            "replays": self.replays,
            "attempts": self.attempts,
        }

    def describe(self) -> str:
        group = f" in group '{self.group}'" if self.group else ""
        cut = f"; payload {self.payload_cut}" if self.payload_cut else ""
        again = f"; replayed {self.replays} time(s) before" if self.replays else ""
        tries = f" after {self.attempts} attempts" if self.attempts and self.attempts > 1 else ""
        return f"{self.error_type} error{group}, from {self.source}{tries}: {self.error_message}{cut}{again}"


def dead_letter_of(headers: Sequence[tuple[str, bytes]]) -> DeadLetter | None:
    """The dead-letter facts in `headers`; None when the record is not one of kpipe's dead letters."""
    found = {name: header_text(value) for name, value in headers if name.startswith("kpipe")}
    if H_ERROR_TYPE not in found and H_SOURCE_TOPIC not in found:
        return None
    return DeadLetter(
        error_type=found.get(H_ERROR_TYPE) or "unknown",
        error_message=found.get(H_ERROR_MESSAGE, ""),
        group=found.get(H_GROUP),
        source_topic=found.get(H_SOURCE_TOPIC) or None,
        source_partition=_int(found.get(H_SOURCE_PARTITION)),
        source_offset=_int(found.get(H_SOURCE_OFFSET)),
        payload_cut=found.get(H_PAYLOAD),
        replays=replay_count(headers),
        attempts=_int(found.get(H_ATTEMPTS)),
    )


def replay_count(headers: Sequence[tuple[str, bytes]]) -> int:
    for name, value in headers:
        if name == REPLAY_HEADER:
            try:
                count = json.loads(header_text(value)).get("count")
            except (ValueError, AttributeError, RecursionError):  # hostile: nested past the parser's depth
                return 0
            return count if isinstance(count, int) and count >= 0 else 0
    return 0


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class ShownEvent:
    """One record, decoded. `valid` is None when its topic has no schema (nothing to check it against)."""

    record: Record
    value: Any  # the JSON value, else the text, else None (no value: a tombstone)
    valid: bool | None
    error: str | None = None
    dead_letter: DeadLetter | None = None

    @property
    def key(self) -> str | None:
        return None if self.record.key is None else header_text(self.record.key)

    def to_json(self) -> dict[str, Any]:
        r = self.record
        out: dict[str, Any] = {
            "topic": r.topic,
            "partition": r.partition,
            "offset": r.offset,
            "timestamp": format_time(r.timestamp_ms) if r.timestamp_ms is not None else None,
            "key": self.key,
            "headers": [[name, header_text(value)] for name, value in r.headers],
            "value": self.value,
            "valid": self.valid,
        }
        if self.error is not None:
            out["error"] = self.error
        if self.dead_letter is not None:
            out["dead_letter"] = self.dead_letter.to_json()
        return out

    def render_json(self) -> str:
        return json_text(self.to_json())

    def render_text(self) -> str:
        r = self.record
        flag = {True: "", False: "  INVALID", None: ""}[self.valid]
        key = "-" if self.key is None else self.key
        lines = [f"{r.topic}[{r.partition}]@{r.offset}  {format_time(r.timestamp_ms)}  key={key}{flag}"]
        user = [(n, v) for n, v in r.headers if not n.startswith("kpipe.")]
        if user:
            lines.append("  headers: " + ", ".join(f"{n}={header_text(v)}" for n, v in user))
        if self.dead_letter is not None:
            lines.append(f"  dead letter: {self.dead_letter.describe()}")
        if self.error is not None:
            lines.append(f"  invalid: {self.error}")
        lines.append("  " + value_text(self.value))
        return "\n".join(safe_text(line) for line in lines)


def value_text(value: Any) -> str:
    if value is None:
        return "(no value)"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def decode(record: Record, model: type[BaseModel] | None) -> ShownEvent:
    """The record decoded and, when its topic has a schema, checked against it."""
    dead_letter = dead_letter_of(record.headers)
    raw = record.value
    if raw is None:
        valid = None if model is None else False
        error = None if model is None else "no value (a tombstone)"
        return ShownEvent(record, None, valid, error, dead_letter)
    try:
        value: Any = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth: shown as text
        value = raw.decode("utf-8", "backslashreplace")
    if model is None:
        return ShownEvent(record, value, None, None, dead_letter)
    error = schema_error(model, raw)
    return ShownEvent(record, value, error is None, error, dead_letter)


def schema_error(model: type[BaseModel], raw: bytes) -> str | None:
    """Why `raw` does not match `model` (one line), or None when it does."""
    try:
        model.model_validate_json(raw)
    except ValidationError as exc:
        return describe_validation_error(exc)
    return None

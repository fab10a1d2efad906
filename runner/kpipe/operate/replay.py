"""`kpipe dlq replay`: dead letters sent back to the topic they were first read from, once.

    decide(record, selection, cursors, sources)   pure: what becomes of one dead letter (a `Decision`)
    replay_headers(record, dead_letter)           pure: what the replayed event carries
    Replay(...).walk()                            every dead letter of the range with its decision, streamed
    Replay(...).execute(writer)                   send what the walk selects, then move the cursor

What is sent: the dead letter's payload and key exactly as they were read, its source's own headers (a
`traceparent`/`tracestate` among them, so the trace goes on), and REPLAY_HEADER with the replay count and both
coordinates (the original event's and the dead letter's), to the source partition it came from (so a key stays on
its partition whatever partitioner first placed it). The payload is checked against the source topic's schema
first: one that fails it now is reported and not sent. A dead letter whose payload was cut to fit (kpipe.payload:
truncated | omitted) or that names no source cannot be replayed, and says why.

Progress is a cursor: the committed offsets of the consumer group `kpipe-replay.<dlq>` on the dead-letter topic
(`kpipe-replay.<dlq>:<error type>` for a replay narrowed with --error-type). A dead letter below the cursor that
covers it is done and is never sent again; a replay moves its own cursor past the dead letters it examined
(sent, invalid, not replayable, or before --since), but never past one after --until or past --limit; nothing
after such a one in its partition is sent (dead letters may be out of time order), as the cursor could not show it
was. The cursor is moved only after every event was acknowledged, so an interrupted replay sends again (at least
once), never loses.
The walk reads partition after partition, so a preview and the replay that follows it see the same dead letters.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from kpipe.operate.events import REPLAY_HEADER, DeadLetter, dead_letter_of, json_text, schema_error
from kpipe.operate.positions import format_time
from kpipe.operate.tail import partitions_of
from kpipe.redaction import safe_text
from kpipe.runtime.records import Record, RecordReader, RecordWriter
from kpipe.topics.cluster import Partition

CURSOR_PREFIX = "kpipe-replay."
# How many not-sent dead letters a report names one by one (the rest are counted).
LISTED = 20


def cursor_group(dead_letter_topic: str, error_type: str | None = None) -> str:
    """The consumer group whose committed offsets on the dead-letter topic are the replay's progress. `:` cannot
    appear in a topic name, so the error type's cursor never collides with another topic's. (Not `/`: the
    embedded broker lists a group `a/b` as `a`, and `~` as `%7E`; measured.)"""
    base = CURSOR_PREFIX + dead_letter_topic
    return base if error_type is None else f"{base}:{error_type}"


class Verdict(enum.Enum):
    SEND = "send"
    DONE = "already replayed"
    LEFT_OUT = "left out by the filters"
    LATER = "after --until"
    INVALID = "fails the schema"
    NOT_REPLAYABLE = "cannot be replayed"

    @property
    def passes_cursor(self) -> bool:
        """Whether the cursor may move past a dead letter with this verdict."""
        return self is not Verdict.LATER


@dataclass(frozen=True)
class Selection:
    error_type: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    limit: int | None = None

    def describe(self) -> str:
        parts = []
        if self.error_type:
            parts.append(f"error type {self.error_type}")
        if self.since_ms is not None:
            parts.append(f"since {format_time(self.since_ms)}")
        if self.until_ms is not None:
            parts.append(f"until {format_time(self.until_ms)}")
        if self.limit is not None:
            parts.append(f"at most {self.limit}")
        return ", ".join(parts) or "all"


@dataclass(frozen=True)
class Cursors:
    """The replay cursors of one dead-letter topic: the all-types cursor and one per error type."""

    all_types: Mapping[Partition, int] = field(default_factory=dict)
    by_type: Mapping[str, Mapping[Partition, int]] = field(default_factory=dict)

    def done(self, record: Record, error_type: str) -> bool:
        tp = (record.topic, record.partition)
        return record.offset < self.all_types.get(tp, 0) or record.offset < self.by_type.get(
            error_type, {}
        ).get(tp, 0)

    def start(self, tp: Partition, error_type: str | None) -> int:
        """Where a replay (narrowed to `error_type` or not) resumes in one partition."""
        own = self.by_type.get(error_type, {}) if error_type is not None else self.all_types
        return own.get(tp, 0)


@dataclass(frozen=True)
class Source:
    """A topic dead letters may go back to, as the files declare it."""

    topic: str
    model: type[BaseModel] | None
    partitions: int


@dataclass(frozen=True)
class Decision:
    record: Record
    verdict: Verdict
    dead_letter: DeadLetter | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dead_letter": self.record.coordinates, "verdict": self.verdict.value}
        if self.dead_letter is not None:
            out["source"] = self.dead_letter.source
            out["error_type"] = self.dead_letter.error_type
        if self.reason:
            out["reason"] = self.reason
        return out

    def render_text(self) -> str:
        source = f" (from {self.dead_letter.source})" if self.dead_letter else ""
        return safe_text(f"  {self.record.coordinates}{source}: {self.reason or self.verdict.value}")


def decide(record: Record, selection: Selection, cursors: Cursors, sources: Mapping[str, Source]) -> Decision:
    """What becomes of one dead letter (--limit is counted by the caller)."""
    dead_letter = dead_letter_of(record.headers)
    if dead_letter is None:
        return Decision(record, Verdict.NOT_REPLAYABLE, None, "not a kpipe dead letter (no kpipe.* headers)")
    if selection.until_ms is not None and (record.timestamp_ms or 0) > selection.until_ms:
        return Decision(record, Verdict.LATER, dead_letter)
    if cursors.done(record, dead_letter.error_type):
        return Decision(record, Verdict.DONE, dead_letter)
    if selection.error_type is not None and dead_letter.error_type != selection.error_type:
        return Decision(record, Verdict.LEFT_OUT, dead_letter)
    if selection.since_ms is not None and (record.timestamp_ms or 0) < selection.since_ms:
        return Decision(record, Verdict.LEFT_OUT, dead_letter)
    if dead_letter.payload_cut is not None:
        reason = (
            f"its payload was {dead_letter.payload_cut} to fit the dead-letter topic; "
            f"re-read the original at {dead_letter.source} while its retention lasts"
        )
        return Decision(record, Verdict.NOT_REPLAYABLE, dead_letter, reason)
    source = sources.get(dead_letter.source_topic or "")
    if source is None:
        reason = (
            "it names no source topic"
            if dead_letter.source_topic is None
            else f"its source topic '{dead_letter.source_topic}' is not declared in these files"
        )
        return Decision(record, Verdict.NOT_REPLAYABLE, dead_letter, reason)
    if source.model is not None:
        error = "no value (a tombstone)" if record.value is None else schema_error(source.model, record.value)
        if error is not None:
            return Decision(
                record, Verdict.INVALID, dead_letter, f"fails the schema of '{source.topic}': {error}"
            )
    return Decision(record, Verdict.SEND, dead_letter)


def replay_headers(record: Record, dead_letter: DeadLetter) -> list[tuple[str, bytes]]:
    """The source's own headers as the dead letter kept them, then a fresh REPLAY_HEADER."""
    own = [(k, v) for k, v in record.headers if not k.startswith("kpipe.") and k != REPLAY_HEADER]
    replay = {
        "count": dead_letter.replays + 1,
        "source": dead_letter.source,
        "dead_letter": record.coordinates,
    }
    return [*own, (REPLAY_HEADER, json.dumps(replay, separators=(",", ":")).encode())]


def read_cursors(cluster: Any, admin: Any, dead_letter_topic: str, partitions: list[Partition]) -> Cursors:
    """The committed offsets of every replay cursor of `dead_letter_topic`: the groups are found by id through
    `admin` (GroupOffsetsAdmin.group_ids), their offsets read through the cluster boundary."""
    base = cursor_group(dead_letter_topic)
    groups = [g for g in admin.group_ids(base) if g == base or g.startswith(base + ":")]
    if not groups:
        return Cursors()
    committed = cluster.committed_offsets({g: partitions for g in groups})
    as_ints = {g: {tp: o for tp, o in offsets.items() if o is not None} for g, offsets in committed.items()}
    return Cursors(
        all_types=as_ints.get(base, {}),
        by_type={g[len(base) + 1 :]: offsets for g, offsets in as_ints.items() if g != base},
    )


@dataclass
class ReplayReport:
    """What a replay did (or, previewed, would do). Only counts and the first LISTED problems are kept."""

    dead_letter_topic: str
    cursor: str
    selection: Selection
    dry_run: bool
    counts: dict[Verdict, int] = field(default_factory=lambda: dict.fromkeys(Verdict, 0))
    by_source: dict[str, int] = field(default_factory=dict)
    problems: list[Decision] = field(default_factory=list)
    # Where the cursor moves (partitions that advance only).
    cursor_to: dict[Partition, int] = field(default_factory=dict)

    def add(self, decision: Decision) -> None:
        self.counts[decision.verdict] += 1
        if decision.verdict is Verdict.SEND and decision.dead_letter is not None:
            topic = decision.dead_letter.source_topic or "?"
            self.by_source[topic] = self.by_source.get(topic, 0) + 1
        if decision.verdict in (Verdict.INVALID, Verdict.NOT_REPLAYABLE) and len(self.problems) < LISTED:
            self.problems.append(decision)

    @property
    def to_send(self) -> int:
        return self.counts[Verdict.SEND]

    @property
    def unsent(self) -> int:
        return self.counts[Verdict.INVALID] + self.counts[Verdict.NOT_REPLAYABLE]

    def to_json(self) -> dict[str, Any]:
        return {
            "dead_letter_topic": self.dead_letter_topic,
            "cursor_group": self.cursor,
            "selection": self.selection.describe(),
            "dry_run": self.dry_run,
            "sent": 0 if self.dry_run else self.to_send,
            "would_send": self.to_send,
            "by_source": dict(sorted(self.by_source.items())),
            "invalid": self.counts[Verdict.INVALID],
            "not_replayable": self.counts[Verdict.NOT_REPLAYABLE],
            "already_replayed": self.counts[Verdict.DONE],
            "left_out": self.counts[Verdict.LEFT_OUT] + self.counts[Verdict.LATER],
            "problems": [d.to_json() for d in self.problems],
        }

    def render_json(self) -> str:
        return json_text(self.to_json(), indent=2)

    def render_text(self) -> str:
        verb = "would send" if self.dry_run else "sent"
        where = ", ".join(f"{n} to {t}" for t, n in sorted(self.by_source.items()))
        lines = [
            f"Replay of {self.dead_letter_topic} ({self.selection.describe()}; progress in consumer group "
            f"{self.cursor}):",
            f"  {verb} {self.to_send}" + (f" ({where})" if where else ""),
            f"  not sent: {self.counts[Verdict.INVALID]} failing the schema, "
            f"{self.counts[Verdict.NOT_REPLAYABLE]} that cannot be replayed",
            f"  already replayed: {self.counts[Verdict.DONE]}; left out by the filters: "
            f"{self.counts[Verdict.LEFT_OUT] + self.counts[Verdict.LATER]}",
        ]
        lines = [safe_text(line) for line in lines]
        if self.problems:
            lines.append("Not sent:")
            lines += [d.render_text() for d in self.problems]
            more = self.unsent - len(self.problems)
            if more > 0:
                lines.append(f"  … and {more} more (see `kpipe tail {self.dead_letter_topic}`)")
        return "\n".join(lines)


class Replay:
    """One replay of a dead-letter topic: the range is fixed when it is built (each cursor up to each partition's
    log end then), so `walk` gives the same dead letters every time it is called."""

    def __init__(
        self,
        cluster: Any,
        reader: RecordReader,
        admin: Any,
        dead_letter_topic: str,
        selection: Selection,
        sources: Mapping[str, Source],
    ):
        """admin: finds the cursors and moves them (GroupOffsetsAdmin: group_ids, alter)."""
        self.dead_letter_topic = dead_letter_topic
        self.selection = selection
        self.cursor = cursor_group(dead_letter_topic, selection.error_type)
        self._reader = reader
        self._admin = admin
        self._sources = sources
        partitions = partitions_of(cluster, dead_letter_topic)
        self._cursors = read_cursors(cluster, admin, dead_letter_topic, partitions)
        marks = cluster.watermarks(partitions)
        self._ranges = {
            tp: (max(self._cursors.start(tp, selection.error_type), marks[tp].low), marks[tp].high)
            for tp in partitions
        }

    def walk(self, report: ReplayReport | None = None) -> Iterator[Decision]:
        """Every dead letter of the range with its decision, in partition order, up to --limit sends. Fills in
        `report` (counts, problems and where the cursor moves) on the way."""
        sent = 0
        for tp, (start, end) in sorted(self._ranges.items()):
            frozen = False  # past a dead letter after --until: the cursor stays before it
            for record in self._reader.read({tp: start}, {tp: end}):
                decision = decide(record, self.selection, self._cursors, self._sources)
                if frozen and decision.verdict is Verdict.SEND:
                    # The cursor stays before it, so the next replay could not tell it was sent: it waits.
                    decision = Decision(record, Verdict.LATER, decision.dead_letter)
                if decision.verdict is Verdict.SEND:
                    if self.selection.limit is not None and sent >= self.selection.limit:
                        return
                    sent += 1
                frozen = frozen or not decision.verdict.passes_cursor
                if report is not None:
                    report.add(decision)
                    if not frozen:
                        report.cursor_to[tp] = record.offset + 1
                yield decision

    def preview(self) -> ReplayReport:
        report = ReplayReport(self.dead_letter_topic, self.cursor, self.selection, dry_run=True)
        for _ in self.walk(report):
            pass
        return report

    def execute(self, writer: RecordWriter) -> ReplayReport:
        """Send what the walk selects, wait for every acknowledgement, then move the cursor."""
        report = ReplayReport(self.dead_letter_topic, self.cursor, self.selection, dry_run=False)
        for decision in self.walk(report):
            if decision.verdict is not Verdict.SEND or decision.dead_letter is None:
                continue
            dead_letter = decision.dead_letter
            source = self._sources[dead_letter.source_topic or ""]
            partition = dead_letter.source_partition
            if partition is None or not 0 <= partition < source.partitions:
                partition = None  # the topic has fewer partitions now: placed by key
            record = decision.record
            writer.send(
                source.topic, record.value, record.key, replay_headers(record, dead_letter), partition
            )
        writer.flush()
        self._admin.alter(self.cursor, report.cursor_to)
        return report

"""`kpipe dlq`: what a dead-letter topic holds, read once from its start to its log end.

    dead_letter_topics(groups)            the dead-letter topics the files declare or derive, with their groups
    DlqTally.add(record)                  pure: counts by error type and by source partition, first and last
                                          times, one sample per error type, how many are already replayed
    summarize(cluster, reader, admin, topic, groups)
                                          the tally of one topic (memory bounded: counts, never the records)

The JSON shape (fields are only ever added):

    {"topic": str, "groups": [str], "missing": bool, "total": int, "replayed": int, "pending": int,
     "not_dead_letters": int, "first": str | null, "last": str | null,
     "by_error_type": {type: int}, "by_source": [{"topic": str, "partition": int, "count": int}],
     "samples": {type: {"dead_letter": str, "source": str, "group": str | null, "error": str,
                        "timestamp": str, "key": str | null, "value": str}}}
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from kpipe.compilation.compiled import ConsumerGroupSettings
from kpipe.operate.events import dead_letter_of, header_text, json_text
from kpipe.operate.positions import format_time
from kpipe.operate.replay import Cursors, read_cursors
from kpipe.operate.tail import partitions_of
from kpipe.redaction import safe_text
from kpipe.runtime.records import Record, RecordReader

# A sample shows this much of the payload.
SAMPLE_CHARS = 300
# ... and keeps this much of it (a character is at most 4 bytes, plus one more byte for the "…" test).
SAMPLE_BYTES = 4 * SAMPLE_CHARS + 4


def dead_letter_topics(groups: Iterable[ConsumerGroupSettings]) -> dict[str, list[str]]:
    """dead-letter topic -> the consumer groups that write to it (declared, or derived as `<topic>.dlq`)."""
    out: dict[str, list[str]] = {}
    for group in groups:
        topic = group.on_error.dead_letter_topic
        if group.on_error.action == "dead_letter" and topic:
            out.setdefault(topic, []).append(group.group_id)
    return {t: sorted(gs) for t, gs in sorted(out.items())}


@dataclass(frozen=True)
class Sample:
    record: Record
    source: str
    group: str | None
    error: str

    def to_json(self) -> dict[str, Any]:
        value = "" if self.record.value is None else header_text(self.record.value)
        return {
            "dead_letter": self.record.coordinates,
            "source": self.source,
            "group": self.group,
            "error": self.error,
            "timestamp": format_time(self.record.timestamp_ms),
            "key": None if self.record.key is None else header_text(self.record.key),
            "value": value[:SAMPLE_CHARS] + ("…" if len(value) > SAMPLE_CHARS else ""),
        }


@dataclass
class DlqTally:
    topic: str
    groups: list[str]
    cursors: Cursors = field(default_factory=Cursors)
    # Not on the cluster: nothing was ever dead-lettered to it (run and apply create it).
    missing: bool = False
    total: int = 0
    replayed: int = 0
    not_dead_letters: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    by_error_type: dict[str, int] = field(default_factory=dict)
    by_source: dict[tuple[str, int], int] = field(default_factory=dict)
    samples: dict[str, Sample] = field(default_factory=dict)

    def add(self, record: Record) -> None:
        self.total += 1
        stamp = record.timestamp_ms
        if stamp is not None:
            self.first_ms = stamp if self.first_ms is None else min(self.first_ms, stamp)
            self.last_ms = stamp if self.last_ms is None else max(self.last_ms, stamp)
        dead_letter = dead_letter_of(record.headers)
        if dead_letter is None:
            self.not_dead_letters += 1
            return
        kind = dead_letter.error_type
        self.by_error_type[kind] = self.by_error_type.get(kind, 0) + 1
        if dead_letter.source_topic is not None and dead_letter.source_partition is not None:
            where = (dead_letter.source_topic, dead_letter.source_partition)
            self.by_source[where] = self.by_source.get(where, 0) + 1
        if self.cursors.done(record, kind):
            self.replayed += 1
        if kind not in self.samples:
            # Only what the sample shows is kept: one per error type, and a payload can be megabytes.
            shown = replace(record, value=None if record.value is None else record.value[:SAMPLE_BYTES])
            self.samples[kind] = Sample(
                shown, dead_letter.source, dead_letter.group, dead_letter.error_message
            )

    @property
    def pending(self) -> int:
        return self.total - self.replayed - self.not_dead_letters

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "groups": self.groups,
            "missing": self.missing,
            "total": self.total,
            "replayed": self.replayed,
            "pending": self.pending,
            "not_dead_letters": self.not_dead_letters,
            "first": None if self.first_ms is None else format_time(self.first_ms),
            "last": None if self.last_ms is None else format_time(self.last_ms),
            "by_error_type": dict(sorted(self.by_error_type.items())),
            "by_source": [
                {"topic": t, "partition": p, "count": n} for (t, p), n in sorted(self.by_source.items())
            ],
            "samples": {k: s.to_json() for k, s in sorted(self.samples.items())},
        }

    def render_text(self) -> str:
        writers = ", ".join(self.groups) or "no declared group"
        head = f"{self.topic} (dead letters of {writers}): "
        if self.missing:
            return safe_text(head + "not on the cluster (no dead letter was ever written to it)")
        if not self.total:
            return safe_text(head + "empty")
        lines = [
            head + f"{self.total} dead letter(s), {self.pending} not replayed yet, "
            f"from {format_time(self.first_ms)} to {format_time(self.last_ms)}"
        ]
        if self.not_dead_letters:
            lines.append(f"  {self.not_dead_letters} record(s) without kpipe's dead-letter headers")
        lines.append(
            "  by error type: " + ", ".join(f"{k} {n}" for k, n in sorted(self.by_error_type.items()))
        )
        lines.append(
            "  by source: " + ", ".join(f"{t}[{p}] {n}" for (t, p), n in sorted(self.by_source.items()))
        )
        for kind, sample in sorted(self.samples.items()):
            shown = sample.to_json()
            lines.append(f"  sample {kind}: {shown['dead_letter']} from {sample.source}: {sample.error}")
            lines.append(f"    key={shown['key'] or '-'} {shown['value']}")
        return "\n".join(safe_text(line) for line in lines)


def summarize(cluster: Any, reader: RecordReader, admin: Any, topic: str, groups: list[str]) -> DlqTally:
    """admin: finds the topic's replay cursors (GroupOffsetsAdmin.group_ids)."""
    if topic not in cluster.describe().topics:
        return DlqTally(topic, groups, missing=True)
    partitions = partitions_of(cluster, topic)
    marks = cluster.watermarks(partitions)
    tally = DlqTally(topic, groups, read_cursors(cluster, admin, topic, partitions))
    starts = {tp: marks[tp].low for tp in partitions}
    ends = {tp: marks[tp].high for tp in partitions}
    for record in reader.read(starts, ends):
        tally.add(record)
    return tally


def render_all_json(tallies: list[DlqTally]) -> str:
    return json_text({"dead_letter_topics": [t.to_json() for t in tallies]}, indent=2)

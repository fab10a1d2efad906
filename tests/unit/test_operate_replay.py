"""Dead letters read, and the replay's choices: what is sent, with which headers, and where its cursor moves."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from fake_cluster import FakeGroups
from kpipe.operate.events import REPLAY_HEADER, dead_letter_of, decode
from kpipe.operate.replay import (
    Cursors,
    Replay,
    Selection,
    Source,
    Verdict,
    cursor_group,
    decide,
    replay_headers,
)
from kpipe.runtime.records import Record

DLQ = "orders.dlq"


class Event(BaseModel):
    key: str
    n: int


def dead_letter(
    offset: int,
    *,
    n: object = 1,
    error_type: str = "handler",
    stamp: int = 1000,
    partition: int = 0,
    extra: list[tuple[str, bytes]] | None = None,
    source_partition: int = 1,
) -> Record:
    headers = [
        ("traceparent", b"00-trace-span-01"),
        *(extra or []),
        ("kpipe.source.topic", b"orders"),
        ("kpipe.source.partition", str(source_partition).encode()),
        ("kpipe.source.offset", str(40 + offset).encode()),
        ("kpipe.error.type", error_type.encode()),
        ("kpipe.error.message", b"RuntimeError: boom"),
        ("kpipe.group", b"billing"),
    ]
    value = json.dumps({"key": "k", "n": n}).encode()
    return Record(DLQ, partition, offset, stamp, b"k", value, tuple(headers))


SOURCES = {"orders": Source("orders", Event, 3)}


def test_dead_letter_headers_are_read() -> None:
    found = dead_letter_of(dead_letter(5).headers)
    assert found is not None
    assert (found.error_type, found.group, found.source, found.payload_cut, found.replays) == (
        "handler", "billing", "orders[1]@45", None, 0,
    )  # fmt: skip
    assert found.describe() == "handler error in group 'billing', from orders[1]@45: RuntimeError: boom"
    assert dead_letter_of([("traceparent", b"x")]) is None
    assert found.attempts is None and found.to_json()["attempts"] is None  # written before kpipe.attempts


def test_a_dead_letter_says_after_how_many_handler_calls_it_failed() -> None:
    found = dead_letter_of(dead_letter(5, extra=[("kpipe.attempts", b"3")]).headers)
    assert found is not None and found.attempts == 3 and found.to_json()["attempts"] == 3
    assert found.describe() == (
        "handler error in group 'billing', from orders[1]@45 after 3 attempts: RuntimeError: boom"
    )
    schema = dead_letter_of(dead_letter(6, error_type="schema", extra=[("kpipe.attempts", b"0")]).headers)
    assert schema is not None and schema.attempts == 0
    hostile = dead_letter_of(dead_letter(7, extra=[("kpipe.attempts", b"many")]).headers)
    assert hostile is not None and hostile.attempts is None  # a header that is not a number says nothing


@pytest.mark.parametrize(
    ("record", "selection", "cursors", "verdict", "reason"),
    [
        (dead_letter(5), Selection(), Cursors(), Verdict.SEND, None),
        (dead_letter(5), Selection(), Cursors(all_types={(DLQ, 0): 6}), Verdict.DONE, None),
        # replayed by a --error-type handler replay: done for an unnarrowed one too
        (dead_letter(5), Selection(), Cursors(by_type={"handler": {(DLQ, 0): 6}}), Verdict.DONE, None),
        (dead_letter(5), Selection(), Cursors(by_type={"schema": {(DLQ, 0): 6}}), Verdict.SEND, None),
        (dead_letter(5), Selection(error_type="schema"), Cursors(), Verdict.LEFT_OUT, None),
        (dead_letter(5, stamp=500), Selection(since_ms=1000), Cursors(), Verdict.LEFT_OUT, None),
        (dead_letter(5, stamp=1500), Selection(until_ms=1000), Cursors(), Verdict.LATER, None),
        (
            dead_letter(5, n="x"),
            Selection(),
            Cursors(),
            Verdict.INVALID,
            "fails the schema of 'orders': field 'n'",
        ),
        (
            dead_letter(5, extra=[("kpipe.payload", b"truncated")]),
            Selection(),
            Cursors(),
            Verdict.NOT_REPLAYABLE,
            "its payload was truncated to fit the dead-letter topic; re-read the original at orders[1]@45",
        ),
        (
            Record(DLQ, 0, 5, 1000, None, b"{}", ()),
            Selection(),
            Cursors(),
            Verdict.NOT_REPLAYABLE,
            "not a kpipe dead letter",
        ),
    ],
)
def test_what_becomes_of_a_dead_letter(
    record: Record, selection: Selection, cursors: Cursors, verdict: Verdict, reason: str | None
) -> None:
    decision = decide(record, selection, cursors, SOURCES)
    assert decision.verdict is verdict
    if reason is not None:
        assert decision.reason is not None and decision.reason.startswith(reason)


def test_a_dead_letter_from_an_undeclared_topic_is_not_replayed() -> None:
    decision = decide(dead_letter(1), Selection(), Cursors(), {})
    assert (decision.verdict, decision.reason) == (
        Verdict.NOT_REPLAYABLE,
        "its source topic 'orders' is not declared in these files",
    )


def test_replay_headers_keep_the_sources_own_and_count_the_replays() -> None:
    record = dead_letter(
        5, extra=[(REPLAY_HEADER, b'{"count":2,"source":"orders[1]@45"}'), ("tracestate", b"k=v")]
    )
    found = dead_letter_of(record.headers)
    assert found is not None and found.replays == 2
    headers = replay_headers(record, found)
    assert [k for k, _ in headers] == ["traceparent", "tracestate", REPLAY_HEADER]
    assert dict(headers)["traceparent"] == b"00-trace-span-01"
    assert json.loads(dict(headers)[REPLAY_HEADER]) == {
        "count": 3, "source": "orders[1]@45", "dead_letter": "orders.dlq[0]@5",
    }  # fmt: skip


def test_cursor_groups_cannot_collide_across_topics() -> None:
    assert cursor_group("orders.dlq") == "kpipe-replay.orders.dlq"
    assert cursor_group("orders.dlq", "handler") == "kpipe-replay.orders.dlq:handler"


class FakeReader:
    """Serves records from a list, as RecordReader.read does (range per partition)."""

    def __init__(self, records: list[Record]):
        self.records = records

    def read(self, starts, ends=None, *, follow=False):  # type: ignore[no-untyped-def]
        for r in self.records:
            tp = (r.topic, r.partition)
            if tp in starts and starts[tp] <= r.offset < ends[tp]:
                yield r


class FakeWriter:
    def __init__(self) -> None:
        self.sent: list[tuple] = []
        self.flushed = False

    def send(self, topic, value, key, headers, partition=None):  # type: ignore[no-untyped-def]
        self.sent.append((topic, value, key, partition, dict(headers)))

    def flush(self) -> None:
        self.flushed = True


def replay_of(records: list[Record], selection: Selection, fake: FakeGroups) -> Replay:
    return Replay(fake, FakeReader(records), fake, DLQ, selection, SOURCES)  # type: ignore[arg-type]


def groups(committed: dict | None = None) -> FakeGroups:
    return FakeGroups({DLQ: 1, "orders": 3}, {(DLQ, 0): (0, 6)}, committed)


def test_a_replay_sends_then_moves_its_cursor_and_a_second_sends_nothing() -> None:
    records = [dead_letter(i, n="x" if i == 2 else i) for i in range(6)]
    fake = groups()
    writer = FakeWriter()
    report = replay_of(records, Selection(), fake).execute(writer)  # type: ignore[arg-type]
    assert (report.to_send, report.counts[Verdict.INVALID]) == (5, 1)
    assert writer.flushed and [s[3] for s in writer.sent] == [1] * 5  # back to the source partition
    assert fake.altered == [("kpipe-replay.orders.dlq", {(DLQ, 0): 6})]  # past the invalid one too

    again = replay_of(records, Selection(), fake).preview()
    assert again.to_send == 0


def test_limit_and_until_stop_the_cursor_where_the_replay_stopped() -> None:
    records = [dead_letter(i, n=i, stamp=1000 + i) for i in range(6)]
    fake = groups()
    report = replay_of(records, Selection(limit=2), fake).execute(FakeWriter())  # type: ignore[arg-type]
    assert report.to_send == 2 and fake.altered[-1] == ("kpipe-replay.orders.dlq", {(DLQ, 0): 2})

    report = replay_of(records, Selection(until_ms=1003), fake).execute(FakeWriter())  # type: ignore[arg-type]
    assert report.to_send == 2  # offsets 2 and 3
    assert fake.altered[-1] == ("kpipe-replay.orders.dlq", {(DLQ, 0): 4})  # never past one after --until


def test_a_narrowed_replay_keeps_a_cursor_of_its_own() -> None:
    records = [dead_letter(i, n=i, error_type="handler" if i % 2 else "timeout") for i in range(6)]
    fake = groups()
    writer = FakeWriter()
    replay_of(records, Selection(error_type="timeout"), fake).execute(writer)  # type: ignore[arg-type]
    assert len(writer.sent) == 3
    assert fake.altered[-1] == ("kpipe-replay.orders.dlq:timeout", {(DLQ, 0): 6})
    # An unnarrowed replay then sends only the others.
    writer = FakeWriter()
    replay_of(records, Selection(), fake).execute(writer)  # type: ignore[arg-type]
    assert sorted(json.loads(s[1])["n"] for s in writer.sent) == [1, 3, 5]


def test_a_preview_reports_problems_by_dead_letter() -> None:
    records = [dead_letter(0, n="x")]
    report = replay_of(records, Selection(), groups()).preview()
    assert report.render_text().splitlines() == [
        "Replay of orders.dlq (all; progress in consumer group kpipe-replay.orders.dlq):",
        "  would send 0",
        "  not sent: 1 failing the schema, 0 that cannot be replayed",
        "  already replayed: 0; left out by the filters: 0",
        "Not sent:",
        "  orders.dlq[0]@0 (from orders[1]@40): fails the schema of 'orders': field 'n': Input should be a valid "
        "integer, unable to parse string as an integer",
    ]


def test_decoded_events_are_flagged_and_escaped() -> None:
    record = Record("orders", 0, 7, 1000, b"k\x1b[2J", b'{"key":"k","n":"x"}', (("h", b"\x1b]0;x\x07"),))
    shown = decode(record, Event)
    assert shown.valid is False and shown.error is not None and "field 'n'" in shown.error
    text = shown.render_text()
    assert "\x1b" not in text and "INVALID" in text.splitlines()[0]
    raw = decode(Record("orders", 0, 8, None, None, b"\xff\xfe", ()), None)
    assert raw.valid is None and raw.value == "\\xff\\xfe"
    assert json.loads(raw.render_json())["timestamp"] is None


def test_json_output_stays_valid_json_with_no_raw_control_character_and_no_secret() -> None:
    from kpipe.redaction import REDACTED, remember

    remember("hunter2-secret")
    record = Record("orders", 0, 1, 1000, b"k", '{"note":"a\x7fb\u2028c hunter2-secret"}'.encode(), ())
    line = decode(record, None).render_json()
    assert json.loads(line)["value"] == {"note": f"a\x7fb\u2028c {REDACTED}"}
    assert "\x7f" not in line and "\u2028" not in line and "hunter2" not in line
    assert "hunter2" not in decode(record, None).render_text()


def test_a_dead_letter_after_one_past_until_is_not_sent_so_the_next_replay_cannot_send_it_again() -> None:
    # Dead letters written by several workers can land out of time order: @1 is after --until, @2 before it.
    records = [
        dead_letter(0, n=0, stamp=1000),
        dead_letter(1, n=1, stamp=1005),
        dead_letter(2, n=2, stamp=1001),
    ]
    fake = groups()
    first, second = FakeWriter(), FakeWriter()
    replay_of(records, Selection(until_ms=1003), fake).execute(first)  # type: ignore[arg-type]
    assert fake.altered[-1] == ("kpipe-replay.orders.dlq", {(DLQ, 0): 1})  # never past one after --until
    replay_of(records, Selection(), fake).execute(second)  # type: ignore[arg-type]
    sent = [json.loads(s[1])["n"] for s in first.sent + second.sent]
    assert sorted(sent) == [0, 1, 2]  # each once: none lost, none sent twice


def test_an_event_with_a_lone_surrogate_escape_prints_as_text_and_as_json() -> None:
    # `"\ud800"` is valid JSON that decodes to a string no UTF-8 terminal or pipe can be given.
    record = Record("orders", 0, 3, 1000, b"k", b'{"key":"\\ud800","n":"\\udfff"}', ())
    for model in (None, Event):
        shown = decode(record, model)
        text, line = shown.render_text(), shown.render_json()
        text.encode("utf-8")
        line.encode("utf-8")
        assert "\\ud800" in text and json.loads(line)["value"] == {"key": "\ud800", "n": "\udfff"}


def test_an_event_nested_too_deeply_for_the_json_parser_is_shown_as_text() -> None:
    # A few kilobytes of `[` make json.loads raise RecursionError: one hostile event must not stop a tail.
    deep = b"[" * 100_000
    shown = decode(Record("orders", 0, 9, 1000, b"k", deep, ((REPLAY_HEADER, deep),)), None)
    assert shown.value == deep.decode() and shown.valid is None
    assert json.loads(shown.render_json())["value"] == deep.decode()
    assert shown.render_text().splitlines()[-1] == "  " + deep.decode()
    # The same in a replay header: not a count, so never replayed before (0).
    assert dead_letter_of([("kpipe.error.type", b"handler"), (REPLAY_HEADER, deep)]).replays == 0  # type: ignore[union-attr]

"""`kpipe dlq`'s tally of a dead-letter topic: counts, times, samples and what is replayed already."""

from __future__ import annotations

import json

from kpipe.compilation.compiled import ClientConfig, CommitPolicy, ConsumerGroupSettings, ErrorPolicy
from kpipe.operate.dlq import DlqTally, dead_letter_topics
from kpipe.operate.replay import Cursors
from kpipe.runtime.records import Record


def record(offset: int, error_type: str | None, source_partition: int = 0, stamp: int = 1_000) -> Record:
    headers: tuple[tuple[str, bytes], ...] = ()
    if error_type is not None:
        headers = (
            ("kpipe.source.topic", b"orders"),
            ("kpipe.source.partition", str(source_partition).encode()),
            ("kpipe.source.offset", str(offset * 10).encode()),
            ("kpipe.error.type", error_type.encode()),
            ("kpipe.error.message", f"{error_type} failed".encode()),
            ("kpipe.group", b"billing"),
        )
    return Record("orders.dlq", 0, offset, stamp, b"k", b'{"n":1}', headers)


def test_a_tally_counts_by_type_and_source_and_keeps_one_sample_per_type() -> None:
    tally = DlqTally("orders.dlq", ["billing"], Cursors(all_types={("orders.dlq", 0): 2}))
    for r in [
        record(0, "handler", 1, stamp=5_000),
        record(1, "schema", 0, stamp=3_000),
        record(2, "handler", 1, stamp=9_000),
        record(3, None, stamp=4_000),
    ]:
        tally.add(r)
    data = tally.to_json()
    assert (data["total"], data["replayed"], data["pending"], data["not_dead_letters"]) == (4, 2, 1, 1)
    assert data["by_error_type"] == {"handler": 2, "schema": 1}
    assert data["by_source"] == [
        {"topic": "orders", "partition": 0, "count": 1},
        {"topic": "orders", "partition": 1, "count": 2},
    ]
    assert (data["first"], data["last"]) == ("1970-01-01T00:00:03.000Z", "1970-01-01T00:00:09.000Z")
    assert data["samples"]["handler"]["dead_letter"] == "orders.dlq[0]@0"  # the first one seen
    assert data["samples"]["handler"]["source"] == "orders[1]@0"
    text = tally.render_text().splitlines()
    assert text[0] == (
        "orders.dlq (dead letters of billing): 4 dead letter(s), 1 not replayed yet, "
        "from 1970-01-01T00:00:03.000Z to 1970-01-01T00:00:09.000Z"
    )
    assert "  by error type: handler 2, schema 1" in text
    json.dumps(data)  # plain data


def test_an_empty_or_missing_topic_says_so() -> None:
    assert DlqTally("a.dlq", ["a"]).render_text() == "a.dlq (dead letters of a): empty"
    missing = DlqTally("a.dlq", ["a"], missing=True)
    assert (
        missing.render_text()
        == "a.dlq (dead letters of a): not on the cluster (no dead letter was ever written to it)"
    )
    assert missing.to_json()["missing"] is True


def test_dead_letter_topics_are_the_groups_own() -> None:
    def group(name: str, action: str, topic: str | None) -> ConsumerGroupSettings:
        return ConsumerGroupSettings(
            name, ("orders",), "app:h", 1, CommitPolicy("auto"), ErrorPolicy(action, dead_letter_topic=topic),  # type: ignore[arg-type]
            ClientConfig(()),
        )  # fmt: skip

    groups = [
        group("b", "dead_letter", "orders.dlq"),
        group("a", "dead_letter", "orders.dlq"),
        group("c", "skip", None),
    ]
    assert dead_letter_topics(groups) == {"orders.dlq": ["a", "b"]}


def test_samples_keep_what_they_show_not_the_whole_payload() -> None:
    # Every distinct error type keeps a sample; hostile headers can make every dead letter a type of its own, so a
    # sample must not hold its (up to megabytes) payload, only what it shows.
    import tracemalloc

    tally = DlqTally("orders.dlq", ["billing"])
    tracemalloc.start()
    try:
        for i in range(50):
            big = record(i, f"type-{i}")
            tally.add(
                Record(
                    big.topic, 0, i, big.timestamp_ms, big.key, b'{"n":"' + b"\xc3\xa9" * 500_000, big.headers
                )
            )
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(tally.samples) == 50 and held < 10_000_000  # 50 MB of payloads were read
    assert tally.to_json()["samples"]["type-7"]["value"] == '{"n":"' + "é" * 294 + "…"

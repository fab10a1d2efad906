"""`kpipe tail`, `kpipe dlq`, `kpipe dlq replay` and `kpipe offsets` on the session broker, checked against what
was produced and what `kpipe run` then handles."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from run_helpers import KpipeRun

from helpers import kpipe, wait_for
from kpipe.errors import EXIT_UNSAFE, EXIT_USAGE, UnsafePlanRefused
from kpipe.operate.positions import format_time

pytestmark = pytest.mark.integration

SCHEMA = """\
type: object
required: [key, n]
properties:
  key: {type: string}
  n: {type: integer}
"""

# Records every event it handles (n, partition, offset, headers) to $KPIPE_TEST_OUT/<pid>.jsonl. While the file
# $KPIPE_TEST_BROKEN exists, it fails on every odd n: the handler bug that is fixed by removing the file.
HANDLER = """\
import json, os

def handle(event, ctx):
    n = event.n if hasattr(event, "n") else json.loads(event)["n"]
    if n % 2 and os.path.exists(os.environ.get("KPIPE_TEST_BROKEN", "/nonexistent")):
        raise RuntimeError(f"handler bug on {n}")
    line = {"n": n, "partition": ctx.partition, "offset": ctx.offset,
            "headers": {k: v.decode() for k, v in ctx.headers}}
    with open(os.path.join(os.environ["KPIPE_TEST_OUT"], f"{os.getpid()}.jsonl"), "a") as f:
        f.write(json.dumps(line) + "\\n")
"""


def applied_project(root: Path, bootstrap: str, topic: str, group: str, *, schema: bool = True) -> str:
    """A project under `root` (its root: it holds a pyproject.toml), applied (`kpipe apply --yes`: its topics
    exist); returns its pipelines directory."""
    directory = root / "pipelines"
    directory.mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    (root / "schemas").mkdir()
    (root / "schemas" / "event.schema.yaml").write_text(SCHEMA)
    (directory / "handlers.py").write_text(HANDLER)
    schemas = "schemas:\n  Event: ../schemas/event.schema.yaml\n" if schema else ""
    typed = "    schema: Event\n    key: key\n" if schema else ""
    (directory / "project.yaml").write_text(
        f"""\
cluster:
  bootstrap_servers: "{bootstrap}"
{schemas}topics:
  {topic}:
    partitions: 2
    replication_factor: 1
{typed}  {topic}.dlq:
    partitions: 2
    replication_factor: 1
consumers:
  {group}:
    topics: [{topic}]
    handler: handlers:handle
    commit: {{strategy: per_message}}
    on_error: {{retries: 0, dead_letter_topic: {topic}.dlq}}
"""
    )
    applied = kpipe("apply", str(directory), "--yes")
    assert applied.code == 0, applied.err
    return str(directory)


def produce(
    bootstrap: str, topic: str, events: list[tuple[int, bytes, bytes | None, list, int | None]]
) -> list[tuple[int, int]]:
    """Send (partition, value, key, headers, timestamp) records; return each one's (partition, offset)."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    placed: list[Any] = [None] * len(events)

    def delivered(i: int) -> Callable[[Any, Any], None]:
        def report(err: Any, msg: Any) -> None:
            assert err is None, err
            placed[i] = (msg.partition(), msg.offset())

        return report

    for i, (partition, value, key, headers, stamp) in enumerate(events):
        extra = {"timestamp": stamp} if stamp is not None else {}
        producer.produce(
            topic, value, key, partition=partition, headers=headers, on_delivery=delivered(i), **extra
        )
    assert producer.flush(10) == 0
    return placed


def committed(bootstrap: str, group: str, topic: str, partitions: int = 2) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        return [
            tp.offset for tp in consumer.committed([TopicPartition(topic, p) for p in range(partitions)], 10)
        ]
    finally:
        consumer.close()


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_tail_prints_what_was_produced_and_flags_what_fails_the_schema(
    tmp_path: Path, kafka_bootstrap: str, prefix: str, unique_name: Callable[..., str]
) -> None:
    topic = f"{prefix}.orders"
    project = applied_project(tmp_path / "p", kafka_bootstrap, topic, unique_name("g"))
    events = [
        (0, b'{"key":"a","n":1}', b"a", [("traceparent", b"00-abc-def-01")], 1_700_000_000_000),
        (1, b'{"key":"b","n":2}', b"b", [], 1_700_000_001_000),
        (0, b'{"key":"a","n":"three"}', b"a", [], 1_700_000_002_000),  # fails the schema
        (
            1,
            b"\xff\x1b[2Jnot json",
            None,
            [],
            1_700_000_003_000,
        ),  # neither UTF-8 nor JSON, with an ANSI escape
        (0, b'{"key":"c","n":5}', b"c", [], 1_700_000_004_000),
    ]
    placed = produce(kafka_bootstrap, topic, events)

    code, out, err = kpipe("tail", topic, project, "--format", "json")
    assert code == 0, err
    shown = json_lines(out)
    by_place = {(e["partition"], e["offset"]): e for e in shown}
    assert sorted(by_place) == sorted(placed)  # each event once, nothing else
    for (partition, _, key, headers, stamp), where in zip(events, placed, strict=True):
        e = by_place[where]
        assert e["topic"] == topic and e["partition"] == partition
        assert e["timestamp"] == format_time(stamp)
        assert e["key"] == (key.decode() if key else None)
        assert e["headers"] == [[k, v.decode()] for k, v in headers]
    assert [by_place[p]["valid"] for p in placed] == [True, True, False, False, True]
    assert by_place[placed[0]]["value"] == {"key": "a", "n": 1}
    assert "field 'n'" in by_place[placed[2]]["error"]
    assert "\x1b" not in out  # the escape is shown escaped, never sent to the terminal
    assert err.strip() == f"5 event(s) from {topic}, 2 invalid"

    # -1: the last event of each partition; --key and -n narrow it further.
    code, out, _ = kpipe("tail", topic, project, "--from", "-1", "--format", "json")
    assert sorted((e["partition"], e["offset"]) for e in json_lines(out)) == sorted([placed[4], placed[3]])
    code, out, _ = kpipe("tail", topic, project, "--key", "a", "--format", "json")
    assert [(e["partition"], e["offset"]) for e in json_lines(out)] == [placed[0], placed[2]]
    code, out, _ = kpipe("tail", topic, project, "--partition", "1", "-n", "1")
    assert code == 0
    assert out.splitlines()[0].startswith(f"{topic}[1]@{placed[1][1]}  {format_time(events[1][4])}  key=b")
    # A DATETIME start: the first event at or after it (all five are in one record batch per partition).
    code, out, _ = kpipe("tail", topic, project, "--from", format_time(1_700_000_002_000), "--format", "json")
    assert sorted((e["partition"], e["offset"]) for e in json_lines(out)) == sorted(placed[2:])
    code, out, err = kpipe("tail", topic, project, "--partition", "7")
    assert code == EXIT_USAGE and "has partitions 0 to 1" in err


def test_tail_prints_hostile_events_escaped_and_finds_a_key_that_is_not_utf8(
    tmp_path: Path, kafka_bootstrap: str, prefix: str, unique_name: Callable[..., str]
) -> None:
    # Valid JSON holding a lone surrogate, JSON nested past the parser's depth, and a key that is not UTF-8 (the
    # shell hands `--key $'\xff'` to Python as the surrogate-escaped "\udcff"), as a user's terminal sees them.
    topic = f"{prefix}.orders"
    project = applied_project(tmp_path / "p", kafka_bootstrap, topic, unique_name("g"), schema=False)
    deep = b"[" * 5000
    events = [
        (0, b'{"key":"\\ud800\\u001b[2J"}', b"a", [("kpipe-replay", deep)], None),
        (0, deep, b"\xff", [], None),
    ]
    placed = produce(kafka_bootstrap, topic, events)
    for output in ("text", "json"):
        done = kpipe("tail", topic, project, "--format", output, process=True)
        assert done.code == 0 and "Traceback" not in done.err, done.err
        assert done.err.strip() == f"2 event(s) from {topic}"
        assert "\x1b" not in done.out and "\\ud800" in done.out
    shown = json_lines(kpipe("tail", topic, project, "--format", "json", process=True).out)
    assert [e["value"] for e in shown] == [{"key": "\ud800\x1b[2J"}, deep.decode()]
    done = kpipe("tail", topic, project, "--key", "\udcff", "--format", "json", process=True)
    assert done.code == 0, done.err
    assert [(e["partition"], e["offset"]) for e in json_lines(done.out)] == [placed[1]]


def test_tail_follow_keeps_printing_events_written_after_it_started(
    tmp_path: Path, kafka_bootstrap: str, prefix: str, unique_name: Callable[..., str]
) -> None:
    topic = f"{prefix}.orders"
    project = applied_project(tmp_path / "p", kafka_bootstrap, topic, unique_name("g"))
    produce(kafka_bootstrap, topic, [(0, b'{"key":"a","n":0}', b"a", [], None)])
    tail = subprocess.Popen(
        [sys.executable, "-m", "kpipe", "tail", topic, project, "--follow", "-n", "3", "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert tail.stdout is not None
        first = json.loads(tail.stdout.readline())  # the tail has read to the end it found
        assert first["value"]["n"] == 0
        produce(kafka_bootstrap, topic, [(1, b'{"key":"b","n":1}', b"b", [], None)])
        produce(kafka_bootstrap, topic, [(0, b'{"key":"c","n":2}', b"c", [], None)])
        out, err = tail.communicate(timeout=60)
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()
    assert tail.returncode == 0, err
    assert sorted(e["value"]["n"] for e in json_lines(out)) == [1, 2]


def test_tail_into_a_reader_that_stops_early_ends_quietly(
    tmp_path: Path, kafka_bootstrap: str, prefix: str, unique_name: Callable[..., str]
) -> None:
    """`kpipe tail … | head -1`: the closed pipe ends the tail with exit 0, no traceback."""
    topic = f"{prefix}.orders"
    project = applied_project(tmp_path / "p", kafka_bootstrap, topic, unique_name("g"))
    produce(
        kafka_bootstrap,
        topic,
        [(0, json.dumps({"key": "a", "n": n}).encode(), b"a", [], None) for n in range(2000)],
    )
    tail = subprocess.Popen(
        [sys.executable, "-m", "kpipe", "tail", topic, project],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert tail.stdout is not None and tail.stderr is not None
    assert tail.stdout.readline().startswith(f"{topic}[0]@0 ".encode())
    tail.stdout.close()
    try:
        assert tail.wait(60) == 0
    finally:
        if tail.poll() is None:
            tail.kill()
    assert tail.stderr.read() == b""


def test_offsets_reset_to_a_datetime_then_run_handles_exactly_the_events_from_then(
    tmp_path: Path,
    kafka_bootstrap: str,
    prefix: str,
    unique_name: Callable[..., str],
    kpipe_run: Callable[..., KpipeRun],
) -> None:
    topic, group = f"{prefix}.orders", unique_name("billing")
    project = applied_project(tmp_path / "p", kafka_bootstrap, topic, group, schema=False)
    base = 1_700_000_000_000
    # 12 events a second apart, in one flush: each partition's events share a record batch, so a broker that
    # answers offsets-for-times per batch would start too early; the reset must still be exact.
    events = [
        (n % 2, json.dumps({"key": f"k{n}", "n": n}).encode(), f"k{n}".encode(), [], base + n * 1000)
        for n in range(12)
    ]
    produce(kafka_bootstrap, topic, events)
    reset_at = base + 7 * 1000 - 500  # between n=6 and n=7

    code, out, err = kpipe("offsets", group, project, "--to", format_time(reset_at), "--format", "json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["state"] in ("empty", "dead") and plan["active"] is False  # never seen: dead on Apache Kafka
    assert {(p["partition"], p["current"], p["new"], p["skipped"]) for p in plan["partitions"]} == {
        (0, None, 4, 4),  # n = 0 2 4 6 | 8 10
        (1, None, 3, 3),  # n = 1 3 5 | 7 9 11
    }
    assert "run again with --yes" in err
    assert committed(kafka_bootstrap, group, topic) == [-1001, -1001]  # a plan changes nothing

    code, out, err = kpipe("offsets", group, project, "--to", format_time(reset_at), "--yes")
    assert code == 0, err
    assert committed(kafka_bootstrap, group, topic) == [4, 3]

    run = kpipe_run(project)
    run.wait_handled(5)
    wait_for(lambda: committed(kafka_bootstrap, group, topic) == [6, 6], timeout=30, message=run.log)
    assert run.stop() == 0, run.log()
    assert sorted(h["n"] for h in run.handled()) == [7, 8, 9, 10, 11]


def test_offsets_refuses_an_active_group(
    tmp_path: Path,
    kafka_bootstrap: str,
    prefix: str,
    unique_name: Callable[..., str],
    kpipe_run: Callable[..., KpipeRun],
) -> None:
    topic, group = f"{prefix}.orders", unique_name("active")
    project = applied_project(tmp_path / "p", kafka_bootstrap, topic, group, schema=False)
    produce(
        kafka_bootstrap,
        topic,
        [(p, json.dumps({"key": "k", "n": p}).encode(), b"k", [], None) for p in (0, 1)],
    )
    run = kpipe_run(project)
    wait_for(lambda: len(run.handled()) == 2, timeout=60, message=run.log)
    wait_for(lambda: committed(kafka_bootstrap, group, topic) == [1, 1], timeout=30, message=run.log)

    code, out, err = kpipe("offsets", group, project, "--to", "earliest", "--yes")
    assert code == EXIT_UNSAFE, err
    assert err.startswith(f"error: consumer group '{group}' (id {group}) is active (state "), err
    assert len(err.strip().splitlines()) == 1
    assert "→ 0" in out  # the plan is still shown
    assert committed(kafka_bootstrap, group, topic) == [1, 1]  # untouched

    assert run.stop() == 0, run.log()
    # Stopped, the group is empty and the same reset goes through.
    code, _, err = kpipe("offsets", group, project, "--to", "earliest", "--yes")
    assert code == 0, err
    assert committed(kafka_bootstrap, group, topic) == [0, 0]


@pytest.mark.apache_kafka
def test_apache_kafka_refuses_to_alter_the_offsets_of_a_group_with_members(
    kafka_bootstrap: str, make_topics: Callable[..., None], unique_name: Callable[..., str]
) -> None:
    """The second guard, behind the state check: Apache Kafka itself refuses (the embedded broker accepts)."""
    from kpipe.topics.group_offsets import GroupOffsetsAdmin

    topic, group = unique_name("alter"), unique_name("members")
    make_topics(topic)
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group, "session.timeout.ms": 6000})
    consumer.subscribe([topic])
    try:
        wait_for(lambda: consumer.poll(0.2) is None and consumer.assignment(), timeout=60)
        with pytest.raises(UnsafePlanRefused, match=f"consumer group '{group}' is active"):
            GroupOffsetsAdmin({"bootstrap.servers": kafka_bootstrap}).alter(group, {(topic, 0): 0})
    finally:
        consumer.close()


def test_fixed_handler_then_replay_handles_every_dead_letter_once_and_a_second_replay_sends_nothing(
    tmp_path: Path,
    kafka_bootstrap: str,
    prefix: str,
    unique_name: Callable[..., str],
    kpipe_run: Callable[..., KpipeRun],
) -> None:
    topic, group = f"{prefix}.orders", unique_name("billing")
    dlq = f"{topic}.dlq"
    project = applied_project(tmp_path / "p", kafka_bootstrap, topic, group)
    broken = tmp_path / "broken"
    broken.touch()
    run = kpipe_run(project, env={"KPIPE_TEST_BROKEN": str(broken)})

    trace = [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]
    good = [
        (n % 2, json.dumps({"key": f"k{n}", "n": n}).encode(), f"k{n}".encode(), trace, None)
        for n in range(8)
    ]
    invalid = [(0, b'{"key":"k9","n":"nine"}', b"k9", [], None)]  # fails the schema: dead-lettered at once
    produce(kafka_bootstrap, topic, good + invalid)
    wait_for(lambda: len(run.handled()) == 4, timeout=60, message=run.log)  # the even ones

    def summary() -> dict:
        code, out, err = kpipe("dlq", project, "--format", "json")
        assert code == 0, err
        (only,) = json.loads(out)["dead_letter_topics"]
        return only

    tally = wait_for(lambda: (s := summary())["total"] == 5 and s, timeout=30)
    assert tally["topic"] == dlq and tally["groups"] == [group]
    assert tally["by_error_type"] == {"handler": 4, "schema": 1}
    assert sorted((s["partition"], s["count"]) for s in tally["by_source"]) == [(0, 1), (1, 4)]
    assert tally["pending"] == 5 and tally["replayed"] == 0
    assert "handler bug on" in tally["samples"]["handler"]["error"]
    code, out, err = kpipe("tail", dlq, project, "--key", "k1")
    assert code == 0, err
    assert (
        f"  dead letter: handler error in group '{group}', from {topic}[1]@0: RuntimeError: handler bug on 1"
        in out
    )

    broken.unlink()  # the handler is fixed
    code, out, err = kpipe("dlq", "replay", dlq, project)  # not on a terminal, no --yes
    assert code == EXIT_USAGE and "no --yes" in err
    code, out, err = kpipe("dlq", "replay", dlq, project, "--dry-run", "--format", "json")
    assert code == 0, err
    preview = json.loads(out)
    assert (preview["would_send"], preview["sent"], preview["invalid"]) == (4, 0, 1)
    assert preview["problems"][0]["source"] == f"{topic}[0]@4"

    code, out, err = kpipe("dlq", "replay", dlq, project, "--yes", "--format", "json")
    assert code == 0, err
    done = json.loads(out)
    assert (done["sent"], done["by_source"], done["invalid"]) == (4, {topic: 4}, 1)
    wait_for(lambda: len(run.handled()) == 8, timeout=60, message=run.log)

    code, out, err = kpipe("dlq", "replay", dlq, project, "--yes", "--format", "json")
    assert code == 0, err
    again = json.loads(out)
    assert (again["sent"], again["would_send"], again["invalid"]) == (0, 0, 0)  # all behind the cursor
    assert summary()["pending"] == 0

    assert run.stop() == 0, run.log()
    handled = run.handled()
    assert sorted(h["n"] for h in handled) == list(range(8))  # every event once: no loss, no duplicate
    replayed = [h for h in handled if h["n"] % 2]
    for h in replayed:
        assert h["headers"]["traceparent"] == trace[0][1].decode()  # the trace goes on
        header = json.loads(h["headers"]["kpipe-replay"])
        assert header["count"] == 1 and header["source"].startswith(f"{topic}[1]@")
        assert header["dead_letter"].startswith(f"{dlq}[")
        assert h["partition"] == 1  # back on the partition it came from


def test_narrowed_replays_keep_cursors_of_their_own_and_never_send_a_dead_letter_twice(
    tmp_path: Path, kafka_bootstrap: str, prefix: str, unique_name: Callable[..., str]
) -> None:
    topic, group = f"{prefix}.orders", unique_name("billing")
    dlq = f"{topic}.dlq"
    project = applied_project(tmp_path / "p", kafka_bootstrap, topic, group)

    def dead_letter(n: int, error_type: str) -> tuple[int, bytes, bytes, list, None]:
        headers = [
            ("kpipe.source.topic", topic.encode()),
            ("kpipe.source.partition", b"0"),
            ("kpipe.source.offset", str(n).encode()),
            ("kpipe.error.type", error_type.encode()),
            ("kpipe.error.message", b"boom"),
            ("kpipe.group", group.encode()),
        ]
        return (0, json.dumps({"key": f"k{n}", "n": n}).encode(), f"k{n}".encode(), headers, None)

    # As the worker writes them: 3 timeouts and 3 handler errors, interleaved, on one partition.
    produce(kafka_bootstrap, dlq, [dead_letter(n, "timeout" if n % 2 else "handler") for n in range(6)])

    def replay(*args: str) -> dict:
        code, out, err = kpipe("dlq", "replay", dlq, project, "--yes", "--format", "json", *args)
        assert code == 0, err
        return json.loads(out)

    assert replay("--error-type", "timeout", "--limit", "2")["sent"] == 2  # n = 1, 3
    assert replay("--error-type", "timeout")["sent"] == 1  # n = 5
    assert replay()["sent"] == 3  # the handler errors: n = 0, 2, 4
    assert replay()["sent"] == 0
    assert replay("--error-type", "timeout")["sent"] == 0

    code, out, err = kpipe("tail", topic, project, "--format", "json")
    assert code == 0, err
    sent = [e["value"]["n"] for e in json_lines(out)]
    assert sorted(sent) == [0, 1, 2, 3, 4, 5]  # each once
    counts = [json.loads(dict(e["headers"])["kpipe-replay"])["count"] for e in json_lines(out)]
    assert counts == [1] * 6

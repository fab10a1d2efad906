"""`kpipe produce` and `kpipe run` by their output and exit codes.

Lines are checked exactly. Tests that need a broker take `kafka_bootstrap` (and are marked integration);
the rest point the project at a port where nothing listens.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from helpers import kpipe, wait_for

NOWHERE = "127.0.0.1:1"  # nothing listens on port 1

SCHEMA = """\
type: object
required: [id, amount]
properties:
  id: {type: string}
  amount: {type: integer, minimum: 0}
"""


def write_project(
    directory: Path, topic: str, bootstrap: str, consumers: str = "", *, linger_ms: int = 1
) -> Path:
    """The project file (passed as a file: a directory would also load the schema as a pipeline file)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "payment.schema.yaml").write_text(SCHEMA)
    project = directory / "project.yaml"
    project.write_text(
        f"""\
cluster:
  bootstrap_servers: "{bootstrap}"
schemas:
  Payment: payment.schema.yaml
topics:
  {topic}:
    partitions: 2
    replication_factor: 1
    key: id
    schema: Payment
producers:
  payments-api:
    topic: {topic}
    linger_ms: {linger_ms}
{consumers}"""
    )
    return project


def create_topic(bootstrap: str, topic: str, partitions: int = 2) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=10)


ProjectOnBroker = Callable[..., tuple[str, Path]]


@pytest.fixture
def on_broker(
    tmp_path: Path, kafka_bootstrap: str, unique_name: Callable[..., str], make_topics: Callable[..., None]
) -> ProjectOnBroker:
    """`on_broker(consumers="", linger_ms=1)`: (topic, project file) for a project on the session broker with a
    payments topic of its own (two partitions, created); `consumers` subscribe to it as `[payments]`."""

    def make(consumers: str = "", *, linger_ms: int = 1) -> tuple[str, Path]:
        topic = unique_name("payments")
        make_topics(topic, partitions=2)
        consumers = consumers.replace("[payments]", f"[{topic}]")
        return topic, write_project(tmp_path / "p", topic, kafka_bootstrap, consumers, linger_ms=linger_ms)

    return make


def start_produce(project: Path) -> subprocess.Popen[str]:
    """`kpipe produce payments-api PROJECT` as a process reading events from a pipe, for tests that signal it."""
    return subprocess.Popen(
        [sys.executable, "-c", "from kpipe.cli import main; main()", "produce", "payments-api", str(project)],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def read_placed(bootstrap: str, topic: str, partitions: int, expected: int) -> list[tuple[int, str, dict]]:
    """(partition, key, event) for every event on the topic, in partition order, read by assignment (no group
    join, which is slow on Tansu)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "kpipe-test-reader", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    events: list[tuple[int, str, dict]] = []
    deadline = time.monotonic() + 20
    try:
        while len(events) < expected and time.monotonic() < deadline:
            events += [
                (m.partition(), (m.key() or b"").decode(), json.loads(m.value()))
                for m in consumer.consume(100, 0.2)
                if m.error() is None
            ]
    finally:
        consumer.close()
    return events


def read_all(bootstrap: str, topic: str, partitions: int, expected: int) -> list[dict]:
    return [event for _, _, event in read_placed(bootstrap, topic, partitions, expected)]


# -- produce ------------------------------------------------------------------------------------------------


def test_produce_reports_invalid_lines_and_sends_the_rest(
    tmp_path: Path, kafka_bootstrap: str, on_broker: ProjectOnBroker
) -> None:
    topic, project = on_broker()
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"id": "a", "amount": 1}\n'
        "not json\n"
        "\n"
        '{"id": "b", "amount": -5}\n'
        '["a", "list"]\n'
        '{"id": "c", "amount": 3}\n'
    )
    code, out, err = kpipe("produce", "payments-api", str(project), "--file", str(events))
    assert code == 1
    assert out == "delivered 2, failed 0, invalid 3\n"
    lines = err.splitlines()
    assert lines[0] == f"{events}:2:1: error: invalid JSON: Expecting value"
    assert lines[1].startswith(
        f"{events}:4: error: invalid event for producer 'payments-api' (topic '{topic}'): "
    )
    assert "amount" in lines[1]
    assert lines[2] == f"{events}:5: error: expected a JSON object, got an array"
    assert lines[3] == "error: 3 invalid lines not sent"
    assert len(lines) == 4
    received = read_all(kafka_bootstrap, topic, 2, expected=2)
    assert sorted(e["id"] for e in received) == ["a", "c"]


def test_produce_from_stdin_exits_zero_when_everything_is_delivered(
    kafka_bootstrap: str, on_broker: ProjectOnBroker
) -> None:
    topic, project = on_broker()
    stdin = "".join(json.dumps({"id": f"k{i % 10}", "amount": i}) + "\n" for i in range(50))
    code, out, err = kpipe("produce", "payments-api", str(project), stdin=stdin)
    assert (code, out, err) == (0, "delivered 50, failed 0, invalid 0\n", "")
    # Keyed by the topic's key field: each id on one partition, its events in the order of the lines.
    partitions: dict[str, set[int]] = {}
    amounts: dict[str, list[int]] = {}
    received = read_placed(kafka_bootstrap, topic, 2, expected=50)
    for partition, key, event in received:
        assert key == event["id"]
        partitions.setdefault(event["id"], set()).add(partition)
        amounts.setdefault(event["id"], []).append(event["amount"])
    assert len(received) == 50
    assert all(len(p) == 1 for p in partitions.values()), partitions
    assert amounts == {f"k{k}": list(range(k, 50, 10)) for k in range(10)}


def test_produce_invalid_line_on_stdin_names_stdin(tmp_path: Path) -> None:
    # Nothing valid is sent, so no broker is needed.
    project = write_project(tmp_path / "p", "payments", NOWHERE)
    code, out, err = kpipe("produce", "payments-api", str(project), "--timeout", "1", stdin='{"id": "a"}\n')
    assert code == 1
    assert out == "delivered 0, failed 0, invalid 1\n"
    assert err.startswith("<stdin>:1: error: invalid event for producer 'payments-api' (topic 'payments'): ")
    assert err.endswith("error: 1 invalid line not sent\n")


def test_produce_key_field_must_be_present(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", "payments", NOWHERE)
    code, out, err = kpipe(
        "produce",
        "payments-api",
        str(project),
        "--key-field",
        "ref",
        "--timeout",
        "1",
        stdin='{"id": "a", "amount": 1}\n',
    )
    assert code == 1
    assert err.splitlines()[0] == "<stdin>:1: error: event has no value for key field 'ref'"


def test_produce_unreachable_broker_exits_3_before_sending(tmp_path: Path) -> None:
    # The topic is checked before the first valid event: no broker is a cluster error, nothing queued.
    project = write_project(tmp_path / "p", "payments", NOWHERE)
    stdin = '{"id": "a", "amount": 1}\n{"id": "b", "amount": 2}\n'
    code, out, err = kpipe("produce", "payments-api", str(project), "--timeout", "1", stdin=stdin)
    assert code == 3
    assert out == "delivered 0, failed 0, invalid 0\n"
    assert err.startswith(f"error: cannot reach Kafka at {NOWHERE} within 1 s")
    assert len(err.splitlines()) == 1


def test_produce_unknown_producer_suggests_the_closest(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", "payments", NOWHERE)
    code, out, err = kpipe("produce", "payment-api", str(project), stdin="")
    assert (code, out) == (2, "")
    assert err == "error: no producer named 'payment-api'; did you mean 'payments-api'?\n"


def test_produce_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", "payments", NOWHERE)
    code, out, err = kpipe("produce", "payments-api", str(project), "--file", str(tmp_path / "nope.jsonl"))
    assert code == 2
    assert err == f"error: cannot read {tmp_path / 'nope.jsonl'}: No such file or directory\n"


def test_produce_reports_a_line_that_is_not_utf8_and_sends_the_rest(
    tmp_path: Path, kafka_bootstrap: str, on_broker: ProjectOnBroker
) -> None:
    topic, project = on_broker()
    events = tmp_path / "events.jsonl"
    valid = [json.dumps({"id": f"k{i}", "amount": i}).encode() + b"\n" for i in range(200)]
    events.write_bytes(
        b"".join(valid[:100]) + b'{"id": "\xc3\xa9\xff", "amount": 1}\n' + b"".join(valid[100:])
    )
    code, out, err = kpipe("produce", "payments-api", str(project), "--file", str(events))
    assert (code, out) == (1, "delivered 200, failed 0, invalid 1\n")
    assert err.splitlines() == [
        f"{events}:101:10: error: not valid UTF-8: byte 0xff",
        "error: 1 invalid line not sent",
    ]
    assert len(read_all(kafka_bootstrap, topic, 2, expected=200)) == 200


def test_produce_reports_a_line_with_a_lone_surrogate_escape_and_sends_the_rest(
    tmp_path: Path, kafka_bootstrap: str, on_broker: ProjectOnBroker
) -> None:
    # Valid JSON whose string no UTF-8 encoder takes: an invalid line like any other, not the end of the input.
    topic, project = on_broker()
    events = tmp_path / "events.jsonl"
    valid = [json.dumps({"id": f"k{i}", "amount": i}) + "\n" for i in range(4)]
    events.write_text("".join(valid[:2]) + '{"id": "\\ud800", "amount": 1}\n' + "".join(valid[2:]))
    code, out, err = kpipe("produce", "payments-api", str(project), "--file", str(events))
    assert (code, out) == (1, "delivered 4, failed 0, invalid 1\n")
    lines = err.splitlines()
    assert lines[0].startswith(f"{events}:3: error: ") and "cannot be serialised to JSON" in lines[0]
    assert lines[1:] == ["error: 1 invalid line not sent"]
    received = read_all(kafka_bootstrap, topic, 2, expected=4)
    assert sorted(e["id"] for e in received) == ["k0", "k1", "k2", "k3"]


def test_produce_not_utf8_on_stdin_needs_no_broker(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", "payments", NOWHERE)
    code, out, err = kpipe("produce", "payments-api", str(project), "--timeout", "1", stdin=b"\x80{}\n")  # type: ignore[arg-type]
    assert (code, out) == (1, "delivered 0, failed 0, invalid 1\n")
    assert err.splitlines()[0] == "<stdin>:1:1: error: not valid UTF-8: byte 0x80"


def test_produce_event_too_large_is_reported_by_line_and_the_rest_sent(
    kafka_bootstrap: str, on_broker: ProjectOnBroker
) -> None:
    topic, project = on_broker()
    huge = json.dumps({"id": "x" * 1_500_000, "amount": 1})  # above librdkafka's message.max.bytes (1 MB)
    stdin = '{"id": "a", "amount": 1}\n' + huge + '\n{"id": "b", "amount": 2}\n'
    code, out, err = kpipe("produce", "payments-api", str(project), stdin=stdin)
    assert (code, out) == (3, "delivered 2, failed 1, invalid 0\n")
    lines = err.splitlines()
    assert lines[0].startswith("<stdin>:2: error: not sent: producer 'payments-api': cannot send to ")
    assert "too large" in lines[0].lower()
    assert lines[1] == "error: 1 event refused by producer 'payments-api'"
    assert sorted(e["id"] for e in read_all(kafka_bootstrap, topic, 2, expected=2)) == ["a", "b"]


def test_produce_flushes_queued_events_when_something_breaks_mid_file(
    kafka_bootstrap: str, on_broker: ProjectOnBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Any failure while reading (here a bug on line 51) still flushes the 50 events queued before it and
    # prints the summary; the failure itself is not swallowed.
    from kpipe.service.produce import ProduceSession

    topic, project = on_broker(linger_ms=60000)
    send_line = ProduceSession._send_line

    def breaking(session: ProduceSession, raw: bytes) -> object:
        if b'"boom"' in raw:
            raise RuntimeError("boom")
        return send_line(session, raw)

    monkeypatch.setattr(ProduceSession, "_send_line", breaking)
    stdin = "".join(json.dumps({"id": f"k{i}", "amount": i}) + "\n" for i in range(50)) + '{"id": "boom"}\n'
    from click.testing import CliRunner

    from kpipe.cli import cli
    from kpipe.cli.common import run_cli

    with CliRunner().isolation(input=stdin) as (out, err, _), pytest.raises(RuntimeError, match="boom"):
        run_cli(cli, ["produce", "payments-api", str(project), "--timeout", "20"])
    assert out.getvalue().decode() == "delivered 50, failed 0, invalid 0\n"
    assert len(read_all(kafka_bootstrap, topic, 2, expected=50)) == 50


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_produce_interrupted_flushes_what_it_queued_and_prints_the_summary(
    kafka_bootstrap: str, on_broker: ProjectOnBroker, signum: int
) -> None:
    # A long linger keeps the events queued in the client: only the flush on the way out delivers them.
    topic, project = on_broker(linger_ms=60000)
    process = start_produce(project)
    try:
        assert process.stdin is not None and process.stderr is not None
        process.stdin.write("".join(json.dumps({"id": f"k{i}", "amount": i}) + "\n" for i in range(30)))
        process.stdin.write("not json\n")  # its error line says that every line before it was queued
        process.stdin.flush()
        first = process.stderr.readline()
        assert first == "<stdin>:31:1: error: invalid JSON: Expecting value\n"
        process.send_signal(signum)  # stdin stays open: produce is still reading when the signal comes
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    assert out == "delivered 30, failed 0, invalid 1\n"
    assert (
        err == "<stdin>: interrupted at line 31: waiting for queued events (interrupt again to drop them)\n"
    )
    assert len(read_all(kafka_bootstrap, topic, 2, expected=30)) == 30


def test_produce_interrupted_twice_drops_the_undelivered_and_counts_them_as_failed(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    # The broker dies with the events still queued (a long linger), so the flush after the first Ctrl-C would
    # wait for message.timeout.ms (5 minutes); the second one drops what is queued, and the summary still
    # accounts for every line. A broker of its own, to kill (kafka_bootstrap only marks this an integration test).
    from kpipe.local.broker import start_local_broker

    broker = start_local_broker()
    try:
        create_topic(broker.bootstrap, "payments")
        project = write_project(tmp_path / "p", "payments", broker.bootstrap, linger_ms=60000)
        process = start_produce(project)
        assert process.stdin is not None and process.stderr is not None
        process.stdin.write("".join(json.dumps({"id": f"k{i}", "amount": i}) + "\n" for i in range(20)))
        process.stdin.write("[]\n")
        process.stdin.flush()
        assert process.stderr.readline() == "<stdin>:21: error: expected a JSON object, got an array\n"
    finally:
        broker.stop()
    try:
        process.send_signal(signal.SIGINT)
        assert process.stderr.readline().startswith(
            "<stdin>: interrupted at line 21: waiting for queued events"
        )
        process.send_signal(signal.SIGINT)
        # Without the drop, the flush would wait for message.timeout.ms (5 minutes): this bound tells them apart.
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    assert out == "delivered 0, failed 20, invalid 1\n", err


# -- run ----------------------------------------------------------------------------------------------------

CONSUMERS = """\
consumers:
  billing:
    topics: [payments]
    handler: no_such_module:handle
    instances: 2
  audit:
    topics: [payments]
    handler: no_such_module:handle
"""


def test_run_refuses_a_handler_that_is_certainly_missing_before_touching_the_cluster(tmp_path: Path) -> None:
    project = write_project(
        tmp_path / "p", "payments", NOWHERE,
        "consumers:\n  billing:\n    topics: [payments]\n    handler: handlers:handel\n",
    )  # fmt: skip
    (tmp_path / "p" / "handlers.py").write_text("def handle(event, ctx):\n    pass\n")
    code, out, err = kpipe("run", str(project))
    assert (code, out) == (1, "")
    assert re.search(
        r"project\.yaml:\d+:\d+: error: consumer group 'billing': handler 'handlers:handel': module 'handlers' "
        r"\(.*handlers\.py\) defines no top-level 'handel'",
        err,
    ), err
    assert "did you mean 'handle'" in err
    # Nothing was started or created: not even the broker was asked about the topics.
    assert "running" not in err and "127.0.0.1:1" not in err


def test_run_unreachable_cluster_exits_3_before_starting_workers(tmp_path: Path) -> None:
    # Like produce and plan: a cluster that does not answer within the connect timeout is exit 3, one line,
    # and no worker is started to wait for it.
    project = write_project(tmp_path / "p", "payments", NOWHERE, CONSUMERS)
    result = kpipe("run", str(project), "--group", "audit", process=True)
    assert (result.code, result.out) == (3, ""), result.err
    assert result.err.splitlines()[-1].startswith(f"error: cannot reach Kafka at {NOWHERE} within 10 s")
    assert "running" not in result.err


def test_run_unknown_group_suggests_the_closest(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", "payments", NOWHERE, CONSUMERS)
    code, out, err = kpipe("run", str(project), "--group", "biling")
    assert (code, out) == (2, "")
    assert err == "error: no consumer group named 'biling'; did you mean 'billing'?\n"


def test_run_without_consumer_groups_is_a_usage_error(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", "payments", NOWHERE)
    code, _, err = kpipe("run", str(project))
    assert code == 2
    assert err == f"error: nothing to run: {project} declares no consumer groups\n"


def test_run_invalid_project_prints_diagnostics(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", "payments", NOWHERE, CONSUMERS.replace("[payments]", "[paymnts]"))
    code, _, err = kpipe("run", str(project))
    assert code == 1
    assert err.startswith(f"{project}:")
    assert "unknown topic 'paymnts'" in err
    assert "did you mean 'payments'?" in err
    assert err.endswith("2 errors, 0 warnings\n")


def test_run_halting_workers_are_not_restarted_and_exit_1(
    on_broker: ProjectOnBroker,
) -> None:
    # The handler cannot be imported: each worker halts (exit 78) before touching the cluster.
    _, project = on_broker(CONSUMERS)
    result = kpipe("run", str(project), "--group", "billing", "--log-format", "json", process=True)
    assert result.code == 1, result.err
    records = [json.loads(line) for line in result.err.splitlines() if line.startswith("{")]
    supervisor = [r for r in records if r["logger"] == "kpipe.runtime.supervisor"]
    halted = [r for r in supervisor if r.get("exitcode") == 78]
    assert sorted(r["instance"] for r in halted) == [0, 1]
    # The supervisor repeats what the worker said was wrong.
    assert all(
        re.search(r"exited with code 78 \(halted\): .*no_such_module.*; not restarting$", r["msg"])
        for r in halted
    ), [r["msg"] for r in halted]
    assert not any(r["msg"].startswith("restarting") for r in supervisor)
    assert any(r["msg"] == "consumer group 'billing' failed: all 2 workers halted" for r in supervisor)
    assert (
        result.err.splitlines()[-1]
        == "error: workers did not all stop cleanly: billing[0] halted, billing[1] halted"
    )
    worker_errors = [
        r for r in records if r.get("group") == "billing" and r["logger"] != "kpipe.runtime.supervisor"
    ]
    assert worker_errors and all(r["level"] == "error" for r in worker_errors if "cannot start" in r["msg"])


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_run_log_format(fmt: str, on_broker: ProjectOnBroker) -> None:
    _, project = on_broker(CONSUMERS)
    result = kpipe("run", str(project), "--group", "audit", "--log-format", fmt, process=True)
    # The first line about the workers comes after the topics were seen to.
    first = next(line for line in result.err.splitlines() if "running" in line)
    if fmt == "json":
        record = json.loads(first)
        assert record["level"] == "info" and record["logger"] == "kpipe.run"
        assert record["msg"] == "running 1 worker: audit ×1"
    else:
        assert first.endswith("kpipe.run: running 1 worker: audit ×1")
        assert " INFO " in first


def test_produce_truncated_json_names_the_column_where_the_line_ends(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", "payments", NOWHERE)
    stdin = '{"id": "a", "amount": 1\n{"id": "a",, "amount": 1}\n'
    code, out, err = kpipe("produce", "payments-api", str(project), "--timeout", "1", stdin=stdin)
    assert (code, out) == (1, "delivered 0, failed 0, invalid 2\n")
    assert err.splitlines()[:2] == [
        "<stdin>:1:24: error: invalid JSON: Expecting ',' delimiter "
        "(the line ends before the JSON does; truncated?)",
        "<stdin>:2:12: error: invalid JSON: Expecting property name enclosed in double quotes",
    ]


# -- Ctrl-C, swapped arguments, a terminal, a huge line ------------------------------------------------------


def test_run_stopped_by_ctrl_c_exits_130(
    tmp_path: Path, kafka_bootstrap: str, unique_name: Callable[..., str], make_topics: Callable[..., None]
) -> None:
    # As the README's exit codes say for every command: Ctrl-C (SIGINT to the terminal's process group, so to
    # the workers too) stops the workers cleanly, and `kpipe run` exits 130. SIGTERM stays 0 (test_run.py).
    topic, group = unique_name("ctrl-c"), unique_name("ctrl-c-group")
    make_topics(topic, partitions=1)
    project = tmp_path / "p"
    project.mkdir()
    (project / "quiet.py").write_text("def handle(event, ctx):\n    pass\n")
    (project / "project.yaml").write_text(
        f'cluster:\n  bootstrap_servers: "{kafka_bootstrap}"\n'
        f"topics:\n  {topic}: {{partitions: 1, replication_factor: 1}}\n"
        f"consumers:\n  {group}:\n    topics: [{topic}]\n    handler: quiet:handle\n"
    )
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "kpipe", "run", str(project), "--log-format", "json"]
            + ["-Xsession.timeout.ms=2000", "-Xheartbeat.interval.ms=500", "-Xfetch.wait.max.ms=50"],
            stderr=log_file,
            start_new_session=True,  # its own process group, like a job in a terminal
        )
    try:
        # Stopped only once assigned: a member that leaves while its join is held wedges Tansu's group.
        wait_for(lambda: "assigned " in log_path.read_text(), timeout=60, message=log_path.read_text)
        os.killpg(process.pid, signal.SIGINT)
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = log_path.read_text()
    assert code == 130, log
    assert "all workers stopped" in log
    assert "Traceback" not in log


def test_produce_with_swapped_arguments_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_project(tmp_path / "pipelines", "payments", NOWHERE)
    monkeypatch.chdir(tmp_path)
    code, out, err = kpipe("produce", "pipelines/", "payments-api", stdin="")
    assert (code, out) == (2, "")
    assert err == (
        "error: 'pipelines/' is a path, not a producer name, and payments-api is no file or directory: the "
        "producer comes first; did you mean `kpipe produce payments-api pipelines/`?\n"
    )


def test_produce_on_a_terminal_says_it_reads_stdin(tmp_path: Path) -> None:
    # Without --file on a terminal it would otherwise wait silently for lines nobody knows to type.
    import pty

    project = write_project(tmp_path / "p", "payments", NOWHERE)
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "kpipe", "produce", "payments-api", str(project), "--timeout", "1"],
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(terminal)
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        os.write(controller, b"\x04")  # Ctrl-D: the end of the input
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)
    assert first == (
        "reading events for producer 'payments-api' from stdin, one JSON object per line "
        "(end with Ctrl-D; --file FILE reads a file)\n"
    )
    assert (process.returncode, out, err) == (0, "delivered 0, failed 0, invalid 0\n", "")


def test_produce_streams_a_1gb_line_in_bounded_memory_and_sends_the_lines_after_it(
    tmp_path: Path, kafka_bootstrap: str, on_broker: ProjectOnBroker
) -> None:
    # A line of 1 GiB (a sparse file: zeros on no disk) between two valid events. It is reported as FILE:LINE,
    # counted as failed, never held in memory, and the event after it is still sent.
    topic, project = on_broker()
    events = tmp_path / "events.jsonl"
    size = 1 << 30
    with events.open("wb") as f:
        f.write(b'{"id": "a", "amount": 1}\n')
        f.seek(size, os.SEEK_CUR)
        f.write(b'\n{"id": "b", "amount": 2}\n')
    # The peak RSS of `kpipe produce` as a child of a small wrapper process, which reports its
    # RUSAGE_CHILDREN: only that one child, whatever else this test session ran.
    wrapper = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run([sys.executable, '-m', 'kpipe', *sys.argv[1:]])\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(done.returncode)\n"
    )

    def produce(path: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", wrapper, "produce", "payments-api", str(project), "--file", path],
            capture_output=True,
            text=True,
            timeout=600,  # generous: reading 1 GiB in 64 KiB chunks takes seconds
        )

    baseline = produce(os.devnull)
    done = produce(str(events))
    peak_kib = int(done.stderr.splitlines()[-1])
    baseline_kib = int(baseline.stderr.splitlines()[-1])
    assert (done.returncode, done.stdout) == (3, "delivered 2, failed 1, invalid 0\n"), done.stderr
    assert done.stderr.splitlines()[:2] == [
        f"{events}:2: error: not sent: producer 'payments-api': cannot send to {topic}: line too large (over "
        "the producer's message.max.bytes, 1000000 bytes)",
        "error: 1 event refused by producer 'payments-api'",
    ]
    assert "Traceback" not in done.stderr
    assert peak_kib - baseline_kib < 100 * 1024, (peak_kib, baseline_kib)
    assert sorted(e["id"] for e in read_all(kafka_bootstrap, topic, 2, expected=2)) == ["a", "b"]

"""A group's own producer, through `kpipe run` on the broker: a group that can never send through one (on_error
skip, no emits) runs without it (no librdkafka producer in its worker process) and commits what it handled; a
handler of such a group can still send through an application's kpipe Producer, whose events are delivered
before the offsets of the events that sent them are committed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from broker_helpers import committed, read_all
from confluent_kafka.admin import AdminClient, NewTopic
from run_helpers import KpipeRun, produce, write_group_project

from helpers import wait_for

# A worker process's librdkafka clients: each one has a thread of this name (besides its broker threads).
CLIENT_THREAD = "rdk:main"

AUDITING = """\
import json, os
from pathlib import Path

import kpipe

_audit = None


def handle(event, ctx):
    global _audit
    if _audit is None:  # the application's producer, made in the worker process
        _audit = kpipe.load(Path(__file__).with_name("project.yaml")).producer("audit")
    ctx.emit(_audit, {"seen": event.decode(), "offset": ctx.offset})
    with open(os.path.join(os.environ["KPIPE_TEST_OUT"], f"{os.getpid()}.jsonl"), "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "value": event.decode()}) + "\\n")
"""


def librdkafka_clients(pid: int) -> int:
    """How many librdkafka clients (consumers and producers) process `pid` holds."""
    return sum(path.read_text().strip() == CLIENT_THREAD for path in Path(f"/proc/{pid}/task").glob("*/comm"))


def test_a_group_that_cannot_send_runs_and_commits_without_a_producer(
    tmp_path: Path,
    kafka_bootstrap: str,
    prefix: str,
    kpipe_run: Callable[..., KpipeRun],
    unique_name: Callable[..., str],
) -> None:
    topic, group = f"{prefix}-in", unique_name("quiet")
    project = write_group_project(
        tmp_path / "p", kafka_bootstrap, topic, group,
        on_error="{action: skip}", commit="{strategy: batch, batch_size: 5, interval_ms: 200}",
    )  # fmt: skip
    run = kpipe_run(project / "project.yaml")
    try:
        produce(kafka_bootstrap, topic, 7, 1)
        [pid] = {r["pid"] for r in run.wait_handled(7)}
        wait_for(lambda: committed(kafka_bootstrap, group, topic) == [7], 30,
                 message=lambda: f"committed {committed(kafka_bootstrap, group, topic)}\n{run.log()}")  # fmt: skip
        assert librdkafka_clients(pid) == 1  # its consumer alone: no producer, none of its threads
    finally:
        assert run.stop() == 0, run.log()


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_group_without_a_producer_emits_through_a_kpipe_producer_before_it_commits(
    tmp_path: Path,
    kafka_bootstrap: str,
    prefix: str,
    kpipe_run: Callable[..., KpipeRun],
    unique_name: Callable[..., str],
    concurrency: int,
) -> None:
    # concurrency 1: the sequential loop; 4: the concurrent one, whose handler threads emit.
    source, audit, group = f"{prefix}-in", f"{prefix}-audit", unique_name("auditors")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in (source, audit)]).values():
        future.result(10)
    directory = tmp_path / "p"
    directory.mkdir()
    (directory / "auditing.py").write_text(AUDITING)
    (directory / "project.yaml").write_text(
        f'cluster:\n  bootstrap_servers: "{kafka_bootstrap}"\n'
        f"topics:\n  {source}: {{partitions: 1}}\n  {audit}: {{partitions: 1}}\n"
        f"producers:\n  audit:\n    topic: {audit}\n"
        f"consumers:\n  {group}:\n    topics: [{source}]\n    handler: auditing:handle\n"
        "    commit: {strategy: auto, interval_ms: 200}\n    on_error: {action: stop}\n"
        f"    concurrency: {concurrency}\n"
    )
    run = kpipe_run(directory / "project.yaml")
    try:
        values = produce(kafka_bootstrap, source, 5, 1)
        [pid] = {r["pid"] for r in run.wait_handled(5)}
        sent = [json.loads(m.value()) for m in read_all(kafka_bootstrap, audit, 5, timeout=60)]
        # In offset order: the concurrent loop may run events without a key at once.
        sent.sort(key=lambda event: event["offset"])
        assert sent == [{"seen": value, "offset": offset} for offset, value in enumerate(values)]
        wait_for(lambda: committed(kafka_bootstrap, group, source) == [5], 30,
                 message=lambda: f"committed {committed(kafka_bootstrap, group, source)}\n{run.log()}")  # fmt: skip
        assert librdkafka_clients(pid) == 2  # its consumer and the application's producer: none of its own
    finally:
        assert run.stop() == 0, run.log()

"""Health from progress, for real: `kpipe run --metrics-port` on the embedded broker with a worker frozen by
SIGSTOP, a concurrent handler that hangs without a timeout, and one that hangs past on_error.timeout_ms.

The projects, the handlers and the `kpipe run` process come from run_helpers.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from run_helpers import KpipeRun, produce, write_gated_project, write_group_project, write_project

from helpers import wait_for

pytestmark = pytest.mark.integration


def test_a_worker_frozen_with_sigstop_is_stale_then_killed_and_restarted(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[..., str],
    kpipe_run: Callable[..., KpipeRun],
    make_topics: Callable[..., None],
) -> None:
    topic, group = unique_name("frozen"), unique_name("frozen")
    make_topics(topic, partitions=1)
    project = write_project(tmp_path / "project", kafka_bootstrap, topic, 1, {group: 1})
    run = kpipe_run(project, metrics=True)
    frozen = None
    try:
        run.wait_ready()
        produce(kafka_bootstrap, topic, 5, 1)
        run.wait_handled(5, timeout=30)
        frozen = run.handled()[0]["pid"]
        os.kill(frozen, signal.SIGSTOP)
        wait_for(
            lambda: any(
                r.startswith(f"{group}[0] is stale: no status report for") for r in run.not_ready_reasons()
            ),
            timeout=40,
            message=lambda: f"{run.get('/readyz')}\n{run.log()}",
        )
        assert run.get("/healthz")[0] == 200  # the supervisor itself is fine
        # After the longer limit the supervisor kills it and starts another process, which becomes ready.
        wait_for(
            lambda: "sent no status for" in run.log() and "frozen; killing it for a restart" in run.log(),
            timeout=120,
            message=run.log,
        )
        run.wait_ready(timeout=90)
        produce(kafka_bootstrap, topic, 5, 1)
        wait_for(lambda: any(h["pid"] != frozen for h in run.handled()), timeout=60, message=run.log)
        assert run.stop() == 0, run.log()
    finally:
        if frozen is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(frozen, signal.SIGCONT)


def test_a_concurrent_group_whose_handlers_hang_is_not_ready_until_they_finish(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[..., str],
    kpipe_run: Callable[..., KpipeRun],
    make_topics: Callable[..., None],
) -> None:
    topic, group = unique_name("hung"), unique_name("hung")
    make_topics(topic, partitions=1)
    project = write_gated_project(tmp_path / "project", kafka_bootstrap, topic, group, concurrency=2)
    run = kpipe_run(project, metrics=True)
    run.wait_ready()
    produce(kafka_bootstrap, topic, 4, 1, keys=4)  # 2 run and hang (no timeout_ms), 2 wait
    # No timeout: after the hang limit (30 s) the instance says it is stuck, and /readyz names it.
    wait_for(
        lambda: (
            f"{group}[0] is stuck: 2 events unfinished, none finished for"
            in " ".join(run.not_ready_reasons())
        ),
        timeout=90,
        message=lambda: f"{run.get('/readyz')}\n{run.log()}",
    )
    (tmp_path / "open").touch()
    run.wait_ready(timeout=30)
    assert run.stop() == 0, run.log()


HANGS_ON_ONE = """\
import json, os, time

def handle(event, ctx):
    if event == b"event-0":
        time.sleep(3600)  # hangs; with on_error.timeout_ms the worker abandons this call
    with open(os.path.join(os.environ["KPIPE_TEST_OUT"], f"{os.getpid()}.jsonl"), "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "partition": ctx.partition, "value": event.decode()}) + "\\n")
"""


def test_a_call_past_its_timeout_is_abandoned_and_nothing_else_waits_for_it(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[..., str],
    kpipe_run: Callable[..., KpipeRun],
    make_topics: Callable[..., None],
) -> None:
    topic, group = unique_name("abandon"), unique_name("abandon")
    make_topics(topic, partitions=2)
    project = write_group_project(
        tmp_path / "project", kafka_bootstrap, topic, group, partitions=2, handler="hangs:handle",
        source=HANGS_ON_ONE, concurrency=4, on_error="{action: skip, timeout_ms: 1000}",
    )  # fmt: skip
    run = kpipe_run(project, metrics=True)
    run.wait_ready()
    # Keyed: event-0 hangs, the events of its key (and of every other key, on both partitions) go on.
    values = produce(kafka_bootstrap, topic, 40, 2, keys=4)
    wait_for(lambda: len(run.handled()) == 39, timeout=60, message=run.log)
    assert sorted(h["value"] for h in run.handled()) == sorted(values[1:])
    wait_for(
        lambda: "handler hung" in run.log() and "its thread is abandoned" in run.log(),
        10,
        message=run.log,
    )
    run.wait_ready(timeout=30)
    assert run.stop() == 0, run.log()

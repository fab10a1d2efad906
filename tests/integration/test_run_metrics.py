"""`kpipe run --metrics-port` on the real broker: scrape /metrics while a group runs, and watch /healthz and
/readyz through a join and a SIGKILLed worker.

The project, the recording handler and the `kpipe run` process come from run_helpers.py.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

from run_helpers import KpipeRun, produce, sample, write_gated_project, write_project

from helpers import wait_for


def test_metrics_health_and_readiness_through_join_work_and_a_killed_worker(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[..., str],
    kpipe_run: Callable[..., KpipeRun],
    make_topics: Callable[..., None],
) -> None:
    topic, group = unique_name("metrics"), unique_name("measured")
    make_topics(topic, partitions=2)
    project = write_project(tmp_path / "project", kafka_bootstrap, topic, 2, {group: 1})
    run = kpipe_run(project, metrics=True)
    # During the join (~3 s on Tansu with these settings) the worker runs but holds no partitions.
    joining = {"status": "unavailable", "reasons": [f"{group}[0] has no partitions assigned yet"]}
    wait_for(lambda: run.get("/readyz") == (503, json.dumps(joining) + "\n"), timeout=30, message=run.log)
    assert run.get("/healthz") == (200, '{"status": "ok"}\n')
    run.wait_ready()
    assert json.loads(run.get("/readyz")[1]) == {"status": "ok"}

    produce(kafka_bootstrap, topic, 300, 2)
    run.wait_handled(300, timeout=30)
    labels = {"group": group, "instance": "0"}

    def handled_is(n: int) -> Callable[[], bool]:
        return lambda: sample(run.scrape(), "kpipe_events_handled_total", **labels) == n

    wait_for(handled_is(len(run.handled())), timeout=10, message=lambda: str(run.scrape()))
    samples = run.scrape()
    assert len(run.handled()) == 300
    assert sample(samples, "kpipe_assigned_partitions", **labels) == 2
    assert sample(samples, "kpipe_workers_up", group=group) == 1
    assert sample(samples, "kpipe_worker_restarts_total", **labels) == 0
    assert sample(samples, "kpipe_commits_total", **labels) >= 1
    assert sample(samples, "kpipe_rebalances_total", **labels) >= 1
    assert sample(samples, "kpipe_events_failed_total", **labels) == 0
    assert sample(samples, "kpipe_handler_duration_seconds_count", **labels) >= 1
    assert sample(samples, "kpipe_event_age_seconds_count", **labels) >= 1
    assert sample(samples, "kpipe_commit_duration_seconds_count", **labels) >= 1

    # Consumer lag from librdkafka's statistics: nothing left once everything is handled and committed.
    def lag() -> list[float | None]:
        current = run.scrape()
        return [
            sample(current, "kpipe_consumer_lag", group=group, topic=topic, partition=str(p)) for p in (0, 1)
        ]

    wait_for(lambda: lag() == [0, 0], timeout=15, message=lambda: f"lag {lag()}")

    # SIGKILL the worker: the supervisor restarts it, the restart is counted, the counts carry over.
    victim = run.handled()[0]["pid"]
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: sample(run.scrape(), "kpipe_worker_restarts_total", **labels) == 1,
        timeout=30,
        message=run.log,
    )
    assert sample(run.scrape(), "kpipe_events_handled_total", **labels) >= 300
    assert run.get("/healthz")[0] == 200  # one restart is not a crash loop
    # The new worker joins again (the killed member's session has to expire first) and becomes ready.
    run.wait_ready()
    produce(kafka_bootstrap, topic, 10, 2)
    run.wait_handled(310, timeout=30)
    wait_for(handled_is(len(run.handled())), timeout=10, message=lambda: str(run.scrape()))
    assert run.stop() == 0, run.log()
    assert run.get("/healthz")[0] == 0  # the server went with the process


def test_a_taken_port_is_one_clear_error(
    tmp_path: Path, kafka_bootstrap: str, unique_name: Callable, kpipe_run: Callable[..., KpipeRun]
) -> None:
    import socket

    topic = unique_name("metrics")
    project = write_project(tmp_path / "project", kafka_bootstrap, topic, 1, {unique_name("g"): 1})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = kpipe_run(project, "--metrics-port", str(port), consumer_config={})
        assert run.proc.wait(timeout=30) == 2
    assert f"error: cannot serve metrics on 127.0.0.1:{port}: the port is in use" in run.log()


def test_a_concurrent_group_publishes_in_flight_queued_and_oldest_unfinished(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[..., str],
    kpipe_run: Callable[..., KpipeRun],
    make_topics: Callable[..., None],
) -> None:
    topic, group = unique_name("metrics"), unique_name("concurrent")
    make_topics(topic, partitions=1)
    project = write_gated_project(tmp_path / "project", kafka_bootstrap, topic, group, concurrency=4)
    run = kpipe_run(project, metrics=True)
    labels = {"group": group, "instance": "0"}
    oldest = {**labels, "topic": topic, "partition": "0"}
    run.wait_ready()
    produce(kafka_bootstrap, topic, 20, 1, keys=20)  # 20 keys: 4 run (concurrency), 16 wait

    def gauges() -> tuple[float | None, ...]:
        s = run.scrape()
        return (
            sample(s, "kpipe_events_in_flight", **labels),
            sample(s, "kpipe_events_queued", **labels),
            sample(s, "kpipe_oldest_unfinished_offset", **oldest),
        )

    wait_for(lambda: gauges() == (4, 16, 0), timeout=30, message=lambda: f"{gauges()}\n{run.log()}")
    (tmp_path / "open").touch()
    wait_for(
        lambda: sample(run.scrape(), "kpipe_events_handled_total", **labels) == 20,
        timeout=30,
        message=run.log,
    )
    wait_for(lambda: gauges() == (0, 0, None), timeout=10, message=lambda: str(gauges()))
    samples = run.scrape()
    # Sampled: the first event started is timed (it waited for the gate), and what followed while calls
    # were slow; every timed event's age too.
    timed = sample(samples, "kpipe_handler_duration_seconds_count", **labels)
    assert timed is not None and 1 <= timed <= 20
    assert sample(samples, "kpipe_handler_duration_seconds_sum", **labels) > 0.001
    assert sample(samples, "kpipe_event_age_seconds_count", **labels) == timed
    assert run.stop() == 0, run.log()

"""`kpipe run --metrics-port` on the real broker: scrape /metrics while a group runs, and watch /healthz and
/readyz through a join and a SIGKILLed worker.

The project, the recording handler and the `kpipe run` process come from test_run.py.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from test_run import KpipeRun, produce, write_project

from helpers import wait_for
from kpipe.local.broker import free_port


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""  # not listening (yet)


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, parsed by prometheus_client: (name, sorted labels) -> value."""
    code, text = get(base + "/metrics")
    assert code == 200, text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_metrics_health_and_readiness_through_join_work_and_a_killed_worker(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[..., str],
    fast_group_config: dict[str, str | int],
    make_topics: Callable[..., None],
) -> None:
    topic, group = unique_name("metrics"), unique_name("measured")
    make_topics(topic, partitions=2)
    project = write_project(tmp_path / "project", kafka_bootstrap, topic, 2, {group: 1})
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    run = KpipeRun(tmp_path, project, fast_group_config, "--metrics-port", str(port))
    try:
        # During the join (~3 s on Tansu with these settings) the worker runs but holds no partitions.
        joining = {"status": "unavailable", "reasons": [f"{group}[0] has no partitions assigned yet"]}
        wait_for(
            lambda: get(base + "/readyz") == (503, json.dumps(joining) + "\n"), timeout=30, message=run.log
        )
        assert get(base + "/healthz") == (200, '{"status": "ok"}\n')
        wait_for(lambda: get(base + "/readyz")[0] == 200, timeout=60, message=run.log)
        assert json.loads(get(base + "/readyz")[1]) == {"status": "ok"}

        produce(kafka_bootstrap, topic, 300, 2)
        wait_for(lambda: len(run.handled()) >= 300, timeout=30, message=run.log)
        labels = {"group": group, "instance": "0"}

        def handled_is(n: int) -> Callable[[], bool]:
            return lambda: sample(scrape(base), "kpipe_events_handled_total", **labels) == n

        wait_for(handled_is(len(run.handled())), timeout=10, message=lambda: str(scrape(base)))
        samples = scrape(base)
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
            current = scrape(base)
            return [
                sample(current, "kpipe_consumer_lag", group=group, topic=topic, partition=str(p))
                for p in (0, 1)
            ]

        wait_for(lambda: lag() == [0, 0], timeout=15, message=lambda: f"lag {lag()}")

        # SIGKILL the worker: the supervisor restarts it, the restart is counted, the counts carry over.
        victim = run.handled()[0]["pid"]
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: sample(scrape(base), "kpipe_worker_restarts_total", **labels) == 1,
            timeout=30,
            message=run.log,
        )
        assert sample(scrape(base), "kpipe_events_handled_total", **labels) >= 300
        assert get(base + "/healthz")[0] == 200  # one restart is not a crash loop
        # The new worker joins again (the killed member's session has to expire first) and becomes ready.
        wait_for(lambda: get(base + "/readyz")[0] == 200, timeout=60, message=run.log)
        produce(kafka_bootstrap, topic, 10, 2)
        wait_for(lambda: len(run.handled()) >= 310, timeout=30, message=run.log)
        wait_for(handled_is(len(run.handled())), timeout=10, message=lambda: str(scrape(base)))
        assert run.stop() == 0, run.log()
    finally:
        run.kill()
    assert get(base + "/healthz")[0] == 0  # the server went with the process


def test_a_taken_port_is_one_clear_error(tmp_path: Path, kafka_bootstrap: str, unique_name: Callable) -> None:
    import socket

    topic = unique_name("metrics")
    project = write_project(tmp_path / "project", kafka_bootstrap, topic, 1, {unique_name("g"): 1})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = KpipeRun(tmp_path, project, {}, "--metrics-port", str(port))
        try:
            assert run.proc.wait(timeout=30) == 2
        finally:
            run.kill()
    assert f"error: cannot serve metrics on 127.0.0.1:{port}: the port is in use" in run.log()


GATED = """\
import os, time

def handle(event, ctx):
    gate = os.path.join(os.environ["KPIPE_TEST_OUT"], "..", "open")
    deadline = time.monotonic() + 60
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
"""


def test_a_concurrent_group_publishes_in_flight_queued_and_oldest_unfinished(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[..., str],
    fast_group_config: dict[str, str | int],
    make_topics: Callable[..., None],
) -> None:
    topic, group = unique_name("metrics"), unique_name("concurrent")
    make_topics(topic, partitions=1)
    project = tmp_path / "project"
    project.mkdir()
    (project / "gated.py").write_text(GATED)
    (project / "project.yaml").write_text(
        f'cluster: {{bootstrap_servers: "{kafka_bootstrap}"}}\n'
        f"topics: {{{topic}: {{partitions: 1, replication_factor: 1}}}}\n"
        f"consumers:\n  {group}:\n    topics: [{topic}]\n    handler: gated:handle\n    concurrency: 4\n"
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    run = KpipeRun(tmp_path, project, fast_group_config, "--metrics-port", str(port))
    labels = {"group": group, "instance": "0"}
    oldest = {**labels, "topic": topic, "partition": "0"}
    try:
        wait_for(lambda: get(base + "/readyz")[0] == 200, timeout=60, message=run.log)
        produce(kafka_bootstrap, topic, 20, 1, keys=20)  # 20 keys: 4 run (concurrency), 16 wait

        def gauges() -> tuple[float | None, ...]:
            s = scrape(base)
            return (
                sample(s, "kpipe_events_in_flight", **labels),
                sample(s, "kpipe_events_queued", **labels),
                sample(s, "kpipe_oldest_unfinished_offset", **oldest),
            )

        wait_for(lambda: gauges() == (4, 16, 0), timeout=30, message=lambda: f"{gauges()}\n{run.log()}")
        (tmp_path / "open").touch()
        wait_for(
            lambda: sample(scrape(base), "kpipe_events_handled_total", **labels) == 20,
            timeout=30,
            message=run.log,
        )
        wait_for(lambda: gauges() == (0, 0, None), timeout=10, message=lambda: str(gauges()))
        samples = scrape(base)
        # Sampled: the first event started is timed (it waited for the gate), and what followed while calls
        # were slow; every timed event's age too.
        timed = sample(samples, "kpipe_handler_duration_seconds_count", **labels)
        assert timed is not None and 1 <= timed <= 20
        assert sample(samples, "kpipe_handler_duration_seconds_sum", **labels) > 0.001
        assert sample(samples, "kpipe_event_age_seconds_count", **labels) == timed
        assert run.stop() == 0, run.log()
    finally:
        run.kill()

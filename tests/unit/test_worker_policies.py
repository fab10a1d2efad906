"""The worker's rules: the final client configs compile makes for it (per commit policy, per instance, with
runtime overrides), that `kpipe explain` shows exactly what the worker passes to Consumer(...), the retry
schedule and dead-letter headers."""

from __future__ import annotations

import json
import pickle
import textwrap
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from kpipe.cli import cli
from kpipe.cli.common import run_cli
from kpipe.compilation.compiled import ErrorPolicy
from kpipe.compilation.explain import explain_client
from kpipe.compilation.project import load_project
from kpipe.runtime.protocol import worker_starts
from kpipe.runtime.worker import Outside, backoff_delays, build_worker, commit_list, dead_letter_headers


def project(
    tmp_path: Path, strategy: str = "batch", config: str = "{}", cluster_config: str = "{}", extra: str = ""
) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    interval = "" if strategy == "per_message" else ", interval_ms: 750"
    (tmp_path / "p.yaml").write_text(
        textwrap.dedent(f"""\
            cluster:
              bootstrap_servers: b:9092
              config: {cluster_config}
            topics:
              orders: {{partitions: 1}}
            consumers:
              billing:
                topics: [orders]
                handler: policies_test_app:handle
                instances: 2
                commit: {{strategy: {strategy}{interval}}}
                on_error: {{action: dead_letter}}
                config: {config}
            """)
        + extra,
        encoding="utf-8",
    )
    (tmp_path / "policies_test_app.py").write_text("def handle(event, ctx):\n    pass\n", encoding="utf-8")
    return tmp_path


def group_config(root: Path, instance: int = 0, **load: Any) -> dict[str, str]:
    return load_project([root], **load).consumer_group("billing").client_for(instance).as_dict()


def test_auto_commit_stores_offsets_only_explicitly_whatever_the_overrides_say(tmp_path: Path) -> None:
    overrides = {"enable.auto.commit": "false", "enable.auto.offset.store": "true"}
    conf = group_config(project(tmp_path, "auto"), consumer_overrides=overrides)
    assert conf["enable.auto.commit"] == "true"
    assert conf["enable.auto.offset.store"] == "false"
    assert conf["auto.commit.interval.ms"] == "750"


@pytest.mark.parametrize("strategy", ["per_message", "batch"])
def test_manual_policies_disable_auto_commit(tmp_path: Path, strategy: str) -> None:
    conf = group_config(project(tmp_path, strategy), consumer_overrides={"enable.auto.commit": "true"})
    assert conf["enable.auto.commit"] == "false"
    assert conf["enable.auto.offset.store"] == "false"
    assert "auto.commit.interval.ms" not in conf


def test_group_id_comes_from_the_group_and_overrides_apply(tmp_path: Path) -> None:
    conf = group_config(
        project(tmp_path), consumer_overrides={"group.id": "wrong", "session.timeout.ms": "6000"}
    )
    assert conf["group.id"] == "billing"
    assert conf["session.timeout.ms"] == "6000"


def test_fetch_queue_backoff_defaults_low_but_user_value_wins(tmp_path: Path) -> None:
    assert group_config(project(tmp_path / "a"))["fetch.queue.backoff.ms"] == "10"
    assert group_config(project(tmp_path / "a"))["queued.max.messages.kbytes"] == "8192"
    tuned = project(tmp_path / "b", config="{fetch.queue.backoff.ms: 500}")
    assert group_config(tuned)["fetch.queue.backoff.ms"] == "500"


def test_each_instance_has_its_own_client_id_unless_an_override_names_one(tmp_path: Path) -> None:
    root = project(tmp_path)
    assert [group_config(root, i)["client.id"] for i in (0, 1)] == ["kpipe-billing-0", "kpipe-billing-1"]
    named = {"client.id": "ops"}
    assert [group_config(root, i, consumer_overrides=named)["client.id"] for i in (0, 1)] == ["ops", "ops"]


def test_the_group_producer_connects_like_the_consumer_without_consumer_settings(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        config="{session.timeout.ms: 6000}",
        cluster_config="{security.protocol: SASL_SSL, sasl.mechanisms: PLAIN, sasl.username: app}",
    )
    group = load_project([root], bootstrap_override="b2:9092").consumer_group("billing")
    assert group.producer_client is not None
    conf = group.producer_client.as_dict()
    assert conf["bootstrap.servers"] == "b2:9092"
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.username"] == "app"
    assert "session.timeout.ms" not in conf and "group.id" not in conf


def test_explain_shows_exactly_what_the_worker_passes_to_the_consumer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Metrics on (the files' metrics section, as `kpipe run --metrics-port` would): statistics for consumer lag.
    root = project(tmp_path, "auto", config="{fetch.wait.max.ms: 50}", extra="metrics: {port: 9464}\n")
    extra = (("session.timeout.ms", "7000"),)
    # What `kpipe run -b b9:9092 -X ... --metrics-port 9464` hands each worker process: compiled there, once.
    overrides = dict(extra)
    compiled = load_project([root], bootstrap_override="b9:9092", consumer_overrides=overrides)
    start = worker_starts(compiled, [("billing", 2)], metrics=True)[1]
    start = pickle.loads(pickle.dumps(start))  # what crosses to the spawned worker process
    given: list[dict[str, Any]] = []

    class Consumer:
        def __init__(self, config: dict[str, Any]) -> None:
            given.append(config)

        def subscribe(self, topics: list[str], **callbacks: Any) -> None:
            pass

        def consume(self, n: int, timeout: float) -> list:
            worker.stop()
            return []

        def commit(self, **kwargs: Any) -> list[TopicPartition]:
            return []

        def store_offsets(self, message: Any = None, offsets: Any = None) -> None:
            pass  # auto commit's hook is built with the worker

        def close(self) -> None:
            pass

    class Producer:
        def __init__(self, config: dict[str, Any]) -> None:
            pass

        def flush(self, timeout: float) -> int:
            return 0

    worker = build_worker(start, outside=Outside(consumer=Consumer, producer=Producer))
    assert worker.run() == 0
    [config] = given
    callbacks = {k for k in config if not isinstance(config[k], str)}
    assert callbacks == {"error_cb", "logger", "on_commit"}  # on_commit: auto's background commits, counted
    passed = {k: v for k, v in config.items() if k not in callbacks}

    args = ["explain", "billing", str(root), "-b", "b9:9092", "--instance", "1", "--format", "json"]
    args += [f"-X{k}={v}" for k, v in extra]
    assert run_cli(cli, args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {row["key"]: row["value"] for row in printed["settings"]} == passed
    sources = {row["key"]: row["source"] for row in printed["settings"]}
    assert sources["bootstrap.servers"] == "override" and sources["session.timeout.ms"] == "override"
    assert sources["client.id"] == "derived" and passed["client.id"] == "kpipe-billing-1"
    assert sources["enable.auto.offset.store"] == "derived" and sources["fetch.wait.max.ms"] == "passthrough"
    assert passed["statistics.interval.ms"] == "1000" and sources["statistics.interval.ms"] == "derived"
    # The function behind the command returns the same.
    assert json.loads(explain_client(compiled, "billing", "json", instance=1)) == printed


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = ErrorPolicy("skip", retries=5, backoff_ms=100, max_backoff_ms=500)
    assert backoff_delays(policy, rng=lambda: 0.5) == [0.1, 0.2, 0.4, 0.5, 0.5]


def test_backoff_jitter_stays_within_20_percent_and_under_the_cap() -> None:
    policy = ErrorPolicy("skip", retries=3, backoff_ms=100, max_backoff_ms=300)
    low = backoff_delays(policy, rng=lambda: 0.0)
    high = backoff_delays(policy, rng=lambda: 0.999999)
    assert [round(d, 3) for d in low] == [0.08, 0.16, 0.24]
    assert [round(d, 3) for d in high] == [0.12, 0.24, 0.3]


def test_no_retries_means_no_delays() -> None:
    assert backoff_delays(ErrorPolicy("stop", retries=0)) == []


def test_dead_letter_headers_name_source_and_error() -> None:
    headers = dead_letter_headers(
        "orders",
        2,
        41,
        "handler",
        "ValueError: " + "x" * 2000,
        "billing",
        [("trace", b"t1"), ("kpipe.group", b"old")],
        attempts=4,
    )
    as_dict = dict(headers)
    assert headers[0] == ("trace", b"t1")
    assert as_dict["kpipe.source.topic"] == b"orders"
    assert as_dict["kpipe.source.partition"] == b"2"
    assert as_dict["kpipe.source.offset"] == b"41"
    assert as_dict["kpipe.error.type"] == b"handler"
    assert as_dict["kpipe.group"] == b"billing"
    assert as_dict["kpipe.attempts"] == b"4"
    assert len(as_dict["kpipe.error.message"]) <= 510
    assert as_dict["kpipe.error.message"].startswith(b"ValueError: xxx")
    assert [k for k, _ in headers].count("kpipe.group") == 1


def test_commit_list_is_last_processed_plus_one() -> None:
    processed = {("orders", 0): 9, ("orders", 1): 41}
    got = sorted((tp.topic, tp.partition, tp.offset) for tp in commit_list(processed))
    assert got == [("orders", 0, 10), ("orders", 1, 42)]
    only = commit_list(processed, [("orders", 1), ("orders", 7)])
    assert [(tp.partition, tp.offset) for tp in only] == [(1, 42)]

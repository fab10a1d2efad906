"""The worker's pure rules: final consumer config per commit policy, retry schedule, dead-letter headers."""

from __future__ import annotations

from kpipe.compilation.compiled import ClientConfig, CommitPolicy, ConsumerGroupSettings, ErrorPolicy, Setting
from kpipe.runtime.worker import (
    backoff_delays,
    commit_list,
    consumer_config,
    dead_letter_headers,
    producer_config,
)


def settings(strategy: str = "batch", client: dict[str, str] | None = None, **kw) -> ConsumerGroupSettings:
    conf = {"bootstrap.servers": "b:9092", "group.id": "wrong", **(client or {})}
    return ConsumerGroupSettings(
        group_id="billing",
        topics=("orders",),
        handler="m:f",
        instances=1,
        commit=CommitPolicy(strategy, interval_ms=750),  # type: ignore[arg-type]
        on_error=ErrorPolicy("dead_letter", dead_letter_topic="orders.dlq"),
        client=ClientConfig(tuple(Setting(k, v, "declared") for k, v in conf.items())),
        **kw,
    )


def test_auto_commit_stores_offsets_only_explicitly() -> None:
    conf = consumer_config(
        settings("auto", {"enable.auto.commit": "false", "enable.auto.offset.store": "true"})
    )
    assert conf["enable.auto.commit"] == "true"
    assert conf["enable.auto.offset.store"] == "false"
    assert conf["auto.commit.interval.ms"] == "750"


def test_manual_policies_disable_auto_commit() -> None:
    for strategy in ("per_message", "batch"):
        conf = consumer_config(settings(strategy, {"enable.auto.commit": "true"}))
        assert conf["enable.auto.commit"] == "false"
        assert conf["enable.auto.offset.store"] == "false"


def test_group_id_comes_from_the_group_and_overrides_apply() -> None:
    conf = consumer_config(settings(), {"session.timeout.ms": 6000})
    assert conf["group.id"] == "billing"
    assert conf["session.timeout.ms"] == 6000


def test_fetch_queue_backoff_defaults_low_but_user_value_wins() -> None:
    assert consumer_config(settings())["fetch.queue.backoff.ms"] == "10"
    assert (
        consumer_config(settings(client={"fetch.queue.backoff.ms": "500"}))["fetch.queue.backoff.ms"] == "500"
    )


def test_producer_config_derived_from_consumer_connection_when_not_compiled() -> None:
    s = settings(client={"security.protocol": "SASL_SSL", "session.timeout.ms": "6000"})
    conf = producer_config(s, consumer_config(s))
    assert conf["bootstrap.servers"] == "b:9092"
    assert conf["security.protocol"] == "SASL_SSL"
    assert "session.timeout.ms" not in conf and "group.id" not in conf


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
    )
    as_dict = dict(headers)
    assert headers[0] == ("trace", b"t1")
    assert as_dict["kpipe.source.topic"] == b"orders"
    assert as_dict["kpipe.source.partition"] == b"2"
    assert as_dict["kpipe.source.offset"] == b"41"
    assert as_dict["kpipe.error.type"] == b"handler"
    assert as_dict["kpipe.group"] == b"billing"
    assert len(as_dict["kpipe.error.message"]) <= 510
    assert as_dict["kpipe.error.message"].startswith(b"ValueError: xxx")
    assert [k for k, _ in headers].count("kpipe.group") == 1


def test_commit_list_is_last_processed_plus_one() -> None:
    processed = {("orders", 0): 9, ("orders", 1): 41}
    got = sorted((tp.topic, tp.partition, tp.offset) for tp in commit_list(processed))
    assert got == [("orders", 0, 10), ("orders", 1, 42)]
    only = commit_list(processed, [("orders", 1), ("orders", 7)])
    assert [(tp.partition, tp.offset) for tp in only] == [(1, 42)]

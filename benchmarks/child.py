"""One measurement in a fresh process: `python benchmarks/child.py '<json job>'` prints one JSON result line.

run.py starts every kpipe run and every baseline run through this file, so both sides pay the same process
start, import and group-join costs (all outside the clock) and their peak RSS is measured the same way.

Jobs (the "kind" key):
  consume-kpipe / consume-raw    read `events` messages from a pre-produced topic with a fresh group
  produce-kpipe / produce-raw    send `events` events to an empty topic and wait for every acknowledgement

The clock of a consume run starts when the first message reaches the handler and stops at the `events`-th, so
group-join time is excluded on both sides. A produce run is timed from the first send to the end of flush().
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Settings both consumers use (docs/broker.md: fast join for a single member, no fetch-queue stall).
COMMON_CONSUMER = {
    "session.timeout.ms": "2000",
    "heartbeat.interval.ms": "500",
    "fetch.wait.max.ms": "50",
    "fetch.queue.backoff.ms": "10",
    "auto.offset.reset": "earliest",
    "enable.partition.eof": "false",
}
# kpipe compiles this into every consumer config (kpipe.compilation.compiler.CONSUMER_DEFAULTS); the baseline is
# given the same value, and run.py checks that both final configs match.
RAW_ONLY_CONSUMER = {"queued.max.messages.kbytes": "8192"}
POLL_TIMEOUT = 0.1  # the worker's consume() timeout; the raw loop uses the same
POLL_EVERY = 1000  # producer: serve delivery reports every this many sends, both sides


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _project(job: dict, consumer_overrides: dict[str, str] | None = None) -> Any:
    from kpipe.compilation.project import load_project

    return load_project(
        [job["project"]], bootstrap_override=job["bootstrap"], consumer_overrides=consumer_overrides
    )


class Counter:
    """The no-op handler both sides call per message: it only counts and notes the clock at 1 and N."""

    __slots__ = ("n", "target", "t0", "t1", "on_done")

    def __init__(self, target: int, on_done: Any):
        self.n = 0
        self.target = target
        self.t0 = self.t1 = 0.0
        self.on_done = on_done

    def __call__(self, event: Any, ctx: Any) -> None:
        n = self.n = self.n + 1
        if n == 1:
            self.t0 = time.perf_counter()
        if n == self.target:
            self.t1 = time.perf_counter()
            self.on_done()


def consume_kpipe(job: dict) -> dict:
    from kpipe.compilation.compiled import ClientConfig
    from kpipe.runtime.worker import GroupWorker, settle_heap

    overrides = {**COMMON_CONSUMER, **job.get("extra_config", {})}
    project = _project(job, overrides)  # as `kpipe run -X` compiles them
    settings = project.consumer_group(f"bench-{job['strategy']}")  # the real compile path
    # A fresh group per run: the group id, and the group.id compiled from it.
    client = ClientConfig(
        tuple(
            dataclasses.replace(s, value=job["group"]) if s.key == "group.id" else s
            for s in settings.client.settings
        )
    )
    settings = dataclasses.replace(settings, group_id=job["group"], client=client)
    models = {t: (project.schema_model(s) if s else None) for t, s in settings.topic_schemas.items()}
    holder: list[Any] = []
    counter = Counter(job["events"], lambda: holder[0].stop())
    worker = GroupWorker(settings, models, counter, poll_timeout=POLL_TIMEOUT)
    holder.append(worker)
    settle_heap()  # as worker_main does right before run()
    code = worker.run()
    conf = dict(worker.consumer_config)
    return {"code": code, "handled": counter.n, "seconds": counter.t1 - counter.t0, "config": conf,
            "commits": worker.commits}  # fmt: skip


def consume_raw(job: dict) -> dict:
    """What a careful hand-written loop does: consume(n), validate, call the handler, commit by policy."""
    from confluent_kafka import Consumer, TopicPartition

    strategy = job["strategy"]
    model = None
    if job["typed"]:
        # The very model kpipe compiles from the JSON Schema, so both sides validate identically.
        model = _project(job).schema_model("BenchEvent")
    validate = model.model_validate_json if model is not None else None
    max_records = job["max_poll_records"]
    conf: dict[str, Any] = {"bootstrap.servers": job["bootstrap"], "group.id": job["group"]}
    conf.update(COMMON_CONSUMER)
    conf.update(RAW_ONLY_CONSUMER)
    conf.update(job.get("extra_config", {}))
    conf["enable.auto.offset.store"] = "false"
    if strategy == "auto":
        conf["enable.auto.commit"] = "true"
        conf["auto.commit.interval.ms"] = "5000"
    else:
        conf["enable.auto.commit"] = "false"
    consumer = Consumer(conf)
    consumer.subscribe([job["topic"]])
    stop = [False]
    handler = Counter(job["events"], lambda: stop.__setitem__(0, True))
    processed: dict[tuple[str, int], int] = {}
    since = commits = 0
    store = consumer.store_offsets
    commit = consumer.commit
    try:
        while not stop[0]:
            msgs = consumer.consume(max_records, POLL_TIMEOUT)
            for msg in msgs:
                if stop[0]:
                    break
                if msg.error() is not None:
                    continue
                event = validate(msg.value()) if validate is not None else msg.value()
                handler(event, msg)
                if strategy == "auto":
                    store(msg)
                elif strategy == "batch":
                    processed[(msg.topic(), msg.partition())] = msg.offset()
                    since += 1
                    if since >= 1000:
                        commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in processed.items()],
                               asynchronous=False)  # fmt: skip
                        processed.clear()
                        since = 0
                        commits += 1
                else:
                    commit(offsets=[TopicPartition(msg.topic(), msg.partition(), msg.offset() + 1)],
                           asynchronous=False)  # fmt: skip
                    commits += 1
        if processed:
            commit(
                offsets=[TopicPartition(t, p, o + 1) for (t, p), o in processed.items()], asynchronous=False
            )
        if strategy == "auto":
            with contextlib.suppress(Exception):
                commit(asynchronous=False)
    finally:
        consumer.close()
    return {"code": 0, "handled": handler.n, "seconds": handler.t1 - handler.t0, "config": conf,
            "commits": commits}  # fmt: skip


def produce_kpipe(job: dict) -> dict:
    from projects import event

    project = _project(job)
    pool = [event(i) for i in range(1000)]
    n = job["events"]
    from kpipe.runtime.producer import open_producer

    producer = open_producer(project, "bench-api", config_overrides={"client.id": "bench-producer"})
    conf = {k: str(v) for k, v in producer.settings.client.as_dict().items()}
    conf["client.id"] = "bench-producer"
    conf["delivery.report.only.error"] = "True"  # kpipe.runtime.producer sets it when no on_delivery is given
    send = producer.send
    t0 = time.perf_counter()
    for i in range(n):
        send(pool[i % 1000])
    t_sent = time.perf_counter()
    summary = producer.close()
    t1 = time.perf_counter()
    return {"code": 0 if summary.ok else 1, "handled": summary.delivered, "seconds": t1 - t0,
            "send_seconds": t_sent - t0, "config": conf}  # fmt: skip


def produce_raw(job: dict) -> dict:
    """Raw Producer.produce doing the same work: validate with the same model, key by customer_id, JSON."""
    from confluent_kafka import Producer
    from projects import event

    project = _project(job)
    model = project.schema_model("BenchEvent")
    settings = project.producer_settings("bench-api")
    pool = [event(i) for i in range(1000)]
    n = job["events"]
    conf: dict[str, Any] = {  # the same librdkafka settings as kpipe's compiled producer
        "bootstrap.servers": job["bootstrap"],
        "client.id": "bench-producer",
        "acks": "all",
        "retries": "2147483647",
        "linger.ms": "5",
        "compression.type": "none",
        "enable.idempotence": "true",
        "delivery.report.only.error": True,
    }
    failed = [0]

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            failed[0] += 1

    producer = Producer({**conf, "on_delivery": on_delivery})
    produce, poll = producer.produce, producer.poll
    validate = model.model_validate
    to_json = model.__pydantic_serializer__.to_json
    topic = settings.topic
    since = 0
    t0 = time.perf_counter()
    for i in range(n):
        obj = validate(pool[i % 1000])
        value = to_json(obj, exclude_unset=True)
        key = obj.customer_id
        while True:
            try:
                produce(topic, value, key)
                break
            except BufferError:
                poll(0.1)
        since += 1
        if since >= POLL_EVERY:
            since = 0
            poll(0)
    t_sent = time.perf_counter()
    left = producer.flush(60)
    t1 = time.perf_counter()
    return {"code": 0 if not left and not failed[0] else 1, "handled": n - left - failed[0], "seconds": t1 - t0,
            "send_seconds": t_sent - t0, "config": conf}  # fmt: skip


JOBS = {
    "consume-kpipe": consume_kpipe,
    "consume-raw": consume_raw,
    "produce-kpipe": produce_kpipe,
    "produce-raw": produce_raw,
}


def main() -> None:
    job = json.loads(sys.argv[1])
    if job.get("profile"):
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
        result = JOBS[job["kind"]](job)
        profiler.stop()
        Path(job["profile"]).write_text(profiler.output_text(unicode=True, color=False, show_all=False))
    else:
        result = JOBS[job["kind"]](job)
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

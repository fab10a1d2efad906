"""One measurement in a fresh process: `python benchmarks/child.py '<json job>'` prints one JSON result line.

run.py starts every kpipe run and every baseline run through this file, so both sides pay the same process
start, import and group-join costs (all outside the clock) and their peak RSS is measured the same way.

Jobs (the "kind" key):
  consume-kpipe / consume-raw    read `events` messages from a pre-produced topic with a fresh group
  produce-kpipe / produce-raw    send `events` events to an empty topic and wait for every acknowledgement
  hotpath                        kpipe's own per-event work with metrics on and off: the worker over a stub
                                 consumer handing out the same pre-built messages, CPU time, alternating
                                 (with "tracing": tracing on and off instead; with "work": N, a handler that
                                 adds up N numbers instead of a no-op)
  latency-kpipe / latency-raw    consume while a sender process (latency-send-kpipe / -raw) produces at a fixed
                                 rate; report percentiles of "handler start minus producer send"

The clock of a consume run starts when the first message reaches the handler and stops at the `events`-th, so
group-join time is excluded on both sides. A produce run is timed from the first send to the end of flush().
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import resource
import signal
import subprocess
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
    """The no-op handler both sides call per message: it only counts and notes the clocks at 1 and N (wall,
    and the process's CPU time over all its threads, librdkafka's included)."""

    __slots__ = ("n", "target", "t0", "t1", "cpu0", "cpu1", "on_done")

    def __init__(self, target: int, on_done: Any):
        self.n = 0
        self.target = target
        self.t0 = self.t1 = self.cpu0 = self.cpu1 = 0.0
        self.on_done = on_done

    def __call__(self, event: Any, ctx: Any) -> None:
        n = self.n = self.n + 1
        if n == 1:
            self.t0 = time.perf_counter()
            self.cpu0 = time.process_time()
        if n == self.target:
            self.t1 = time.perf_counter()
            self.cpu1 = time.process_time()
            self.on_done()


class PerfCounter(Counter):
    """Counter that records `perf record` of this process between message 1 and N (job["perf"]: its output)."""

    __slots__ = ("perf_path", "perf")

    def __init__(self, target: int, on_done: Any, perf_path: str):
        super().__init__(target, on_done)
        self.perf_path, self.perf = perf_path, None

    def __call__(self, event: Any, ctx: Any) -> None:
        if self.n == 0:
            self.perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "4000", "-g", "-o",
                                          self.perf_path, "-p", str(os.getpid())], stderr=subprocess.DEVNULL)  # fmt: skip
            time.sleep(0.3)
        super().__call__(event, ctx)
        if self.n == self.target:
            self.perf.send_signal(signal.SIGINT)
            self.perf.wait()


def counted_consumer() -> Any:
    """A Consumer that counts its consume() calls and messages and times its commits: given to both sides when
    a job has "diagnose" (the overridden methods cost both sides the same), reported by `diagnosis()`."""
    from confluent_kafka import Consumer

    class CountedConsumer(Consumer):
        calls = empty = messages = commits = 0
        commit_seconds = consume_seconds = 0.0

        def consume(self, num_messages: int = 1, timeout: float = -1) -> list:
            started = time.perf_counter()
            msgs = super().consume(num_messages, timeout)
            cls = CountedConsumer
            if cls.messages or msgs:  # from the first messages on: the join is not counted
                cls.consume_seconds += time.perf_counter() - started
                cls.calls += 1
                cls.messages += len(msgs)
                cls.empty += not msgs
            return msgs

        def commit(self, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return super().commit(*args, **kwargs)
            finally:
                CountedConsumer.commit_seconds += time.perf_counter() - started
                CountedConsumer.commits += 1

    return CountedConsumer


def diagnosis(consumer_class: Any) -> dict:
    c = consumer_class
    return {"consume_calls": c.calls, "empty_calls": c.empty, "messages": c.messages,
            "consume_seconds": c.consume_seconds, "commit_calls": c.commits,
            "commit_seconds": c.commit_seconds}  # fmt: skip


def kpipe_worker(job: dict, handler: Any, consumer_class: Any = None) -> Any:
    """The GroupWorker of group bench-<strategy>, compiled as `kpipe run -X ...` would, on a fresh group.
    With job["metrics"]: measuring, and with statistics every second, as `kpipe run --metrics-port` runs it."""
    from kpipe.compilation.compiled import ClientConfig
    from kpipe.compilation.compiler import STATISTICS_INTERVAL_MS
    from kpipe.runtime.worker import GroupWorker, Limits, Outside

    overrides = {**COMMON_CONSUMER, **job.get("extra_config", {})}
    if job.get("metrics"):
        overrides["statistics.interval.ms"] = str(STATISTICS_INTERVAL_MS)
    project = _project(job, overrides)  # as `kpipe run -X` compiles them
    # The real compile path; the concurrency case names its group and sets its concurrency per run.
    settings = project.consumer_group(job.get("group_name") or f"bench-{job['strategy']}")
    # A fresh group per run: the group id, and the group.id compiled from it.
    client = ClientConfig(
        tuple(
            dataclasses.replace(s, value=job["group"]) if s.key == "group.id" else s
            for s in settings.client.settings
        )
    )
    settings = dataclasses.replace(settings, group_id=job["group"], client=client)
    if "concurrency" in job:
        settings = dataclasses.replace(settings, concurrency=job["concurrency"])
    models = {t: (project.schema_model(s) if s else None) for t, s in settings.topic_schemas.items()}
    outside = Outside(consumer=consumer_class) if consumer_class is not None else Outside()
    return GroupWorker(
        settings, models, handler, limits=Limits(poll=POLL_TIMEOUT), metrics=bool(job.get("metrics")),
        outside=outside,
    )  # fmt: skip


def consume_kpipe(job: dict) -> dict:
    from kpipe.runtime.worker import settle_heap

    holder: list[Any] = []
    counter = (PerfCounter(job["events"], lambda: holder[0].stop(), job["perf"]) if job.get("perf")
               else Counter(job["events"], lambda: holder[0].stop()))  # fmt: skip
    handler: Any = counter
    traced = None
    if job.get("tracing"):
        # As build_worker does when the OTEL_* environment turns tracing on.
        from kpipe.runtime import tracing

        traced = tracing.start(None, {**os.environ, **job["tracing"]})
        handler = traced.handler(counter, job["group"])
    counted = counted_consumer() if job.get("diagnose") else None
    worker = kpipe_worker(job, handler, counted)
    holder.append(worker)
    settle_heap()  # as worker_main does right before run()
    code = worker.run()
    if traced is not None:
        traced.shutdown()  # as worker_main does; after the clock stopped
    conf = dict(worker.consumer_config)
    return {"code": code, "handled": counter.n, "seconds": counter.t1 - counter.t0, "config": conf,
            "cpu_seconds": counter.cpu1 - counter.cpu0,
            "commits": worker.commits, **(diagnosis(counted) if counted else {})}  # fmt: skip


# The bench project's batch policy (projects.runtime_project): the raw loops commit on the same terms.
BATCH_SIZE = 1000
BATCH_INTERVAL = 5.0
COMMIT_FAILURES = [0]
# per_message: asynchronous commits unanswered at once, at most, as kpipe (runtime/worker/commit.py): an
# unbounded stream of commits holds heartbeats back past the session timeout on this broker.
MAX_COMMITS_IN_FLIGHT = 16
IN_FLIGHT = [0]


def _commit_answers(err: Any, partitions: Any) -> None:
    """The raw loops' on_commit: what a careful loop checks of its asynchronous commits (per_message)."""
    IN_FLIGHT[0] = max(0, IN_FLIGHT[0] - 1)
    if err is not None or any(tp.error is not None for tp in partitions or ()):
        COMMIT_FAILURES[0] += 1


def _commit_per_message(consumer: Any, held: dict[tuple[str, int], int]) -> None:
    """Send the held offsets (last processed + 1) in one asynchronous commit, unless too many are unanswered."""
    from confluent_kafka import TopicPartition

    if held and IN_FLIGHT[0] < MAX_COMMITS_IN_FLIGHT:
        consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in held.items()], asynchronous=True)
        IN_FLIGHT[0] += 1
        held.clear()


def raw_loop(consumer: Any, strategy: str, validate: Any, handler: Any, stop: list, max_records: int) -> int:
    """The raw side's consume loop (consume_raw, and the raw half of the hotpath job over a stub consumer):
    consume(n), validate, call the handler, store or commit by policy, until stop[0]. Returns commits sent."""
    from confluent_kafka import TopicPartition

    processed: dict[tuple[str, int], int] = {}
    held: dict[tuple[str, int], int] = {}  # per_message: offsets to commit once fewer commits are unanswered
    since = commits = 0
    store = consumer.store_offsets
    commit = consumer.commit
    monotonic = time.monotonic
    deadline = monotonic() + BATCH_INTERVAL
    while not stop[0]:
        msgs = consumer.consume(max_records, POLL_TIMEOUT)
        if held:
            _commit_per_message(consumer, held)
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
                # kpipe's batch policy: batch_size events or interval_ms, whichever comes first.
                if since >= BATCH_SIZE or monotonic() >= deadline:
                    commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in processed.items()],
                           asynchronous=False)  # fmt: skip
                    processed.clear()
                    since = 0
                    commits += 1
                    deadline = monotonic() + BATCH_INTERVAL
            else:  # per_message: an asynchronous commit each, answered through on_commit
                processed[(msg.topic(), msg.partition())] = msg.offset()
                held[(msg.topic(), msg.partition())] = msg.offset() + 1
                _commit_per_message(consumer, held)
                commits += 1
    if processed:  # what is left (batch), or the last offsets again, waited for (per_message)
        commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in processed.items()], asynchronous=False)
    if strategy == "auto":
        with contextlib.suppress(Exception):
            commit(asynchronous=False)
    return commits


def consume_raw(job: dict) -> dict:
    """What a careful hand-written loop does: consume(n), validate, call the handler, commit by policy."""
    from confluent_kafka import Consumer

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
    counted = counted_consumer() if job.get("diagnose") else None
    consumer = (counted or Consumer)({**conf, "on_commit": _commit_answers})
    consumer.subscribe([job["topic"]])
    stop = [False]
    done = lambda: stop.__setitem__(0, True)  # noqa: E731
    handler = (
        PerfCounter(job["events"], done, job["perf"]) if job.get("perf") else Counter(job["events"], done)
    )
    try:
        commits = raw_loop(consumer, strategy, validate, handler, stop, max_records)
    finally:
        consumer.close()
    return {"code": 0, "handled": handler.n, "seconds": handler.t1 - handler.t0, "config": conf,
            "cpu_seconds": handler.cpu1 - handler.cpu0, "commits": commits,
            **(diagnosis(counted) if counted else {})}  # fmt: skip


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
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i in range(n):
        send(pool[i % 1000])
    t_sent = time.perf_counter()
    summary = producer.close()
    t1, cpu1 = time.perf_counter(), time.process_time()
    return {"code": 0 if summary.ok else 1, "handled": summary.delivered, "seconds": t1 - t0,
            "send_seconds": t_sent - t0, "cpu_seconds": cpu1 - cpu0, "config": conf}  # fmt: skip


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
    cpu0, t0 = time.process_time(), time.perf_counter()
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
    t1, cpu1 = time.perf_counter(), time.process_time()
    return {"code": 0 if not left and not failed[0] else 1, "handled": n - left - failed[0], "seconds": t1 - t0,
            "send_seconds": t_sent - t0, "cpu_seconds": cpu1 - cpu0, "config": conf}  # fmt: skip


class WaitCounter:
    """The concurrency case's handler side: counts finished waits (from many threads), clocks 1 and N."""

    def __init__(self, target: int, on_done: Any):
        import threading

        self.n = 0
        self.target = target
        self.t0 = self.t1 = 0.0
        self.on_done = on_done
        self.lock = threading.Lock()

    def __call__(self) -> None:
        with self.lock:
            n = self.n = self.n + 1
            if n == 1:
                self.t0 = time.perf_counter()
            if n == self.target:
                self.t1 = time.perf_counter()
                self.on_done()


def wait_kpipe(job: dict) -> dict:
    """kpipe with `concurrency` and ordering key; the handler waits `wait_ms` (time.sleep or asyncio.sleep)."""
    import asyncio

    from kpipe.runtime.worker import settle_heap

    holder: list[Any] = []
    counter = WaitCounter(job["events"], lambda: holder[0].stop())
    wait = job["wait_ms"] / 1000.0

    def handle(event: Any, ctx: Any) -> None:
        time.sleep(wait)
        counter()

    async def handle_async(event: Any, ctx: Any) -> None:
        await asyncio.sleep(wait)
        counter()

    worker = kpipe_worker(
        {**job, "group_name": "bench-wait"}, handle_async if job["mode"] == "async" else handle
    )
    holder.append(worker)
    settle_heap()
    code = worker.run()
    return {"code": code, "handled": counter.n, "seconds": counter.t1 - counter.t0, "commits": worker.commits,
            "config": dict(worker.consumer_config)}  # fmt: skip


def wait_raw(job: dict) -> dict:
    """A raw confluent-kafka loop doing the same wait: one event at a time (`pool` 0), or a
    ThreadPoolExecutor(`pool`) over each consume() batch (no per-key order), committing after each batch."""
    from concurrent.futures import ThreadPoolExecutor

    from confluent_kafka import Consumer, TopicPartition

    conf: dict[str, Any] = {"bootstrap.servers": job["bootstrap"], "group.id": job["group"]}
    conf.update(COMMON_CONSUMER)
    conf.update(RAW_ONLY_CONSUMER)
    conf["enable.auto.offset.store"] = "false"
    conf["enable.auto.commit"] = "false"
    consumer = Consumer(conf)
    consumer.subscribe([job["topic"]])
    stop = [False]
    counter = WaitCounter(job["events"], lambda: stop.__setitem__(0, True))
    wait = job["wait_ms"] / 1000.0
    pool = ThreadPoolExecutor(job["pool"]) if job["pool"] else None

    def handle(msg: Any) -> None:
        time.sleep(wait)
        counter()

    processed: dict[tuple[str, int], int] = {}
    since = 0
    try:
        while not stop[0]:
            msgs = [m for m in consumer.consume(job["max_poll_records"], POLL_TIMEOUT) if m.error() is None]
            if pool is not None:
                list(pool.map(handle, msgs))
            for msg in msgs:
                if pool is None:
                    handle(msg)
                processed[(msg.topic(), msg.partition())] = msg.offset()
                since += 1
                if since >= 100 or (pool is not None and msg is msgs[-1]):
                    consumer.commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in processed.items()],
                                    asynchronous=False)  # fmt: skip
                    processed.clear()
                    since = 0
                if stop[0]:
                    break
    finally:
        consumer.close()
        if pool is not None:
            pool.shutdown()
    return {"code": 0, "handled": counter.n, "seconds": counter.t1 - counter.t0, "config": conf}


# --- hot path: the worker's own work per event, metrics on and off ------------------------------------------
def hotpath(job: dict) -> dict:
    """The GroupWorker over a stub consumer (no broker, no librdkafka), so only kpipe's per-event work is timed;
    CPU time of the whole run (process_time), alternating on/off, the minimum of `reps` runs each. "on" is
    metrics on, or tracing with job["tracing"], or, with job["raw"], the raw loop (raw_loop, the very loop of
    consume-raw) over the same stub: kpipe's per-event work against a hand-written loop's. job["sides"]:
    only these of "off" and "on", one run each (for instruction counts: callgrind)."""
    import functools
    import gc

    from confluent_kafka import Message, TopicPartition

    from kpipe.compilation.compiled import (
        ClientConfig,
        CommitPolicy,
        ConsumerGroupSettings,
        ErrorPolicy,
        Setting,
    )
    from kpipe.compilation.compiler import commit_settings
    from kpipe.runtime.worker import GroupWorker, Outside

    n, batch = job["events"], job["max_poll_records"]
    created = int(time.time() * 1000)

    def messages() -> list:
        return [Message(topic="t", partition=i % 3, offset=i, key=b"k", value=b"x" * 200, timestamp=(1, created))
                for i in range(n)]  # fmt: skip

    class StubConsumer:
        def __init__(self, pool: list, on_end: Any) -> None:
            self.position, self.pool, self.on_end, self.callbacks = 0, pool, on_end, {}

        def subscribe(self, topics: list, **callbacks: Any) -> None:
            self.callbacks = callbacks

        def consume(self, count: int, timeout: float) -> list:
            if self.position == 0 and "on_assign" in self.callbacks:
                self.callbacks["on_assign"](self, [TopicPartition("t", p) for p in range(3)])
            if self.position >= n:
                self.on_end()
                return []
            self.position += batch
            return self.pool[self.position - batch : self.position]

        def store_offsets(self, message: Any = None, offsets: Any = None) -> None:
            pass

        def commit(self, *args: Any, **kwargs: Any) -> list:
            return []

        def assignment(self) -> list:
            return []

        def list_topics(self, *args: Any, **kwargs: Any) -> None:
            pass  # the worker's cluster probe, when a run takes long enough for one (tracing at sampling 1.0)

        def close(self) -> None:
            pass

    commit = CommitPolicy(job["strategy"], batch_size=BATCH_SIZE, interval_ms=int(BATCH_INTERVAL * 1000))
    conf = {"bootstrap.servers": "stub:9092", "group.id": "g", **commit_settings(commit)}
    settings = ConsumerGroupSettings(
        group_id="g", topics=("t",), handler="m:f", instances=1, commit=commit, on_error=ErrorPolicy("skip"),
        client=ClientConfig(tuple(Setting(k, v, "declared") for k, v in conf.items())),
    )  # fmt: skip

    work = range(job.get("work", 0))  # job["work"]: a handler that does that many additions, not nothing

    def noop(event: Any, ctx: Any) -> None:
        if work:
            sum(work)

    traced = None
    if job.get("tracing"):  # "on" is tracing (with this environment) instead of metrics
        from kpipe.runtime import tracing

        os.environ.update(job["tracing"])
        traced = tracing.start(None, os.environ).handler(noop, "g")

    def kpipe_run(on: bool, pool: list) -> Any:
        holder: list = []
        handler = traced if on and traced is not None else noop
        worker = GroupWorker(settings, {}, handler, metrics=on and traced is None,
                             outside=Outside(consumer=lambda config: StubConsumer(pool, holder[0].stop)))  # fmt: skip
        holder.append(worker)

        def go() -> int:
            worker.run()
            return worker.handled

        return go

    def raw_run(pool: list) -> Any:
        stop = [False]
        counted = [0]
        stub = StubConsumer(pool, lambda: stop.__setitem__(0, True))

        def handler(event: Any, ctx: Any) -> None:  # noop's work, and the count kpipe keeps as `handled`
            counted[0] += 1

        def go() -> int:
            raw_loop(stub, job["strategy"], None, handler, stop, batch)
            return counted[0]

        return go

    def one(on: bool) -> float:
        pool = messages()
        run = raw_run(pool) if on and job.get("raw") else kpipe_run(on, pool)
        gc.collect()
        started = time.process_time()
        # Through functools.reduce, a C function called nowhere else: `valgrind --tool=callgrind
        # --toggle-collect=functools_reduce` counts the instructions of this run alone (README.md).
        handled = functools.reduce(lambda _acc, _item: run(), (None,), None)
        seconds = time.process_time() - started
        assert handled == n, handled
        return seconds / n * 1e9

    runs: dict[bool, list[float]] = {False: [], True: []}
    if job.get("sides"):
        for side in job["sides"]:
            runs[side == "on"].append(one(side == "on"))
    else:
        for r in range(job["reps"]):
            for on in (False, True) if r % 2 == 0 else (True, False):
                runs[on].append(one(on))
    return {
        "code": 0,
        "handled": n,
        "off_ns": min(runs[False], default=0),
        "on_ns": min(runs[True], default=0),
    }


# --- latency: a producer at a fixed rate in its own process, the consumer here ------------------------------
LATENCY_WARMUP_NS = 500_000_000  # events sent before the first handled one + this are not counted (the join)


def _latency_sender(job: dict) -> Any:
    """Start the process that produces for this latency run (the same kind of producer as the consumer)."""
    sender = {**job, "kind": job["kind"].replace("latency-", "latency-send-")}
    return subprocess.Popen([sys.executable, __file__, json.dumps(sender)], stdout=subprocess.DEVNULL)


def _paced(job: dict, send: Any, poll: Any) -> int:
    """Send `rate` events a second for `seconds`, each carrying its send time (ns) in `note`, then an end marker.
    Sends are spread evenly: event i goes out at start + i / rate (late ones go at once, never skipped)."""
    from projects import event

    pool = [event(i) for i in range(1000)]
    rate, total = job["rate"], int(job["rate"] * job["seconds"])
    start = time.perf_counter()
    for i in range(total):
        wait = start + i / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        ev = dict(pool[i % 1000])
        ev["note"] = str(time.time_ns())
        send(ev)
        if i % 100 == 0:
            poll(0)
    send({**pool[0], "note": "end"})
    return total


class LatencyRecorder:
    """The handler both consumers call: note the clock first, then read the event's send time."""

    def __init__(self, on_end: Any):
        self.pairs: list[tuple[int, int]] = []  # (sent, handler start), ns
        self.on_end = on_end
        self.handled = 0

    def __call__(self, event: Any, ctx: Any) -> None:
        started = time.time_ns()
        note = json.loads(event)["note"]
        if note == "end":
            self.on_end()
            return
        self.handled += 1
        self.pairs.append((int(note), started))

    def result(self) -> dict:
        first = min((h for _, h in self.pairs), default=0)
        latencies = sorted(h - s for s, h in self.pairs if s >= first + LATENCY_WARMUP_NS)
        if not latencies:
            return {"code": 1, "handled": self.handled, "counted": 0}

        def pct(q: float) -> float:
            return latencies[min(len(latencies) - 1, int(q * len(latencies)))] / 1e6  # ms

        return {"code": 0, "handled": self.handled, "counted": len(latencies), "p50_ms": pct(0.50),
                "p99_ms": pct(0.99), "p999_ms": pct(0.999), "max_ms": latencies[-1] / 1e6}  # fmt: skip


def latency_kpipe(job: dict) -> dict:
    from kpipe.runtime.worker import settle_heap

    holder: list[Any] = []
    recorder = LatencyRecorder(lambda: holder[0].stop())
    worker = kpipe_worker(job, recorder)
    holder.append(worker)
    settle_heap()
    sender = _latency_sender(job)
    try:
        worker.run()
    finally:
        sender.wait(60)
    return {**recorder.result(), "config": dict(worker.consumer_config)}


def latency_raw(job: dict) -> dict:
    from confluent_kafka import Consumer, TopicPartition

    strategy = job["strategy"]
    conf: dict[str, Any] = {"bootstrap.servers": job["bootstrap"], "group.id": job["group"]}
    conf.update(COMMON_CONSUMER)
    conf.update(RAW_ONLY_CONSUMER)
    conf.update(job.get("extra_config", {}))
    conf.update({"enable.auto.offset.store": "false", "enable.auto.commit": "false"})
    consumer = Consumer({**conf, "on_commit": _commit_answers})
    consumer.subscribe([job["topic"]])
    stop = [False]
    recorder = LatencyRecorder(lambda: stop.__setitem__(0, True))
    sender = _latency_sender(job)
    processed: dict[tuple[str, int], int] = {}
    held: dict[tuple[str, int], int] = {}
    since = 0
    last_commit = time.monotonic()
    try:
        while not stop[0]:
            msgs = consumer.consume(job["max_poll_records"], POLL_TIMEOUT)
            if held:
                _commit_per_message(consumer, held)
            for msg in msgs:
                if msg.error() is not None:
                    continue
                recorder(msg.value(), msg)
                if strategy == "per_message":  # as kpipe's per_message: asynchronous, answered via on_commit
                    held[(msg.topic(), msg.partition())] = msg.offset() + 1
                    _commit_per_message(consumer, held)
                    continue
                processed[(msg.topic(), msg.partition())] = msg.offset()
                since += 1
                # kpipe's batch policy: every batch_size events or interval_ms, whichever comes first.
                if since >= BATCH_SIZE or time.monotonic() - last_commit >= BATCH_INTERVAL:
                    consumer.commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in processed.items()],
                                    asynchronous=False)  # fmt: skip
                    processed.clear()
                    since, last_commit = 0, time.monotonic()
    finally:
        consumer.close()
        sender.wait(60)
    return {**recorder.result(), "config": conf}


def latency_send_kpipe(job: dict) -> dict:
    from kpipe.runtime.producer import open_producer

    producer = open_producer(_project(job), "bench-api", config_overrides={"client.id": "bench-producer"})
    sent = _paced(job, producer.send, lambda _timeout: None)  # kpipe's producer serves its own callbacks
    summary = producer.close()
    return {"code": 0 if summary.ok else 1, "handled": sent}


def latency_send_raw(job: dict) -> dict:
    from confluent_kafka import Producer

    producer = Producer({  # the same librdkafka settings as kpipe's compiled producer
        "bootstrap.servers": job["bootstrap"], "client.id": "bench-producer", "acks": "all",
        "retries": "2147483647", "linger.ms": "5", "compression.type": "none", "enable.idempotence": "true",
    })  # fmt: skip

    def send(ev: dict) -> None:
        producer.produce(job["topic"], json.dumps(ev, separators=(",", ":")).encode(), ev["customer_id"])

    sent = _paced(job, send, producer.poll)
    return {"code": 0 if producer.flush(60) == 0 else 1, "handled": sent}


JOBS = {
    "wait-kpipe": wait_kpipe,
    "wait-raw": wait_raw,
    "consume-kpipe": consume_kpipe,
    "consume-raw": consume_raw,
    "produce-kpipe": produce_kpipe,
    "produce-raw": produce_raw,
    "hotpath": hotpath,
    "latency-kpipe": latency_kpipe,
    "latency-raw": latency_raw,
    "latency-send-kpipe": latency_send_kpipe,
    "latency-send-raw": latency_send_raw,
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

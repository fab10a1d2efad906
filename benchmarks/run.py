"""kpipe against raw confluent-kafka / PyYAML / AdminClient, measured side by side in the same run.

    python benchmarks/run.py                      # everything, 3 runs each (several minutes), writes RESULTS.md
    python benchmarks/run.py --quick              # smoke run: small counts, 1 run, writes nothing
    python benchmarks/run.py --runs 5 --cases consumer,producer
    python benchmarks/run.py --bootstrap host:9092   # an external cluster instead of the embedded broker

Cases: consumer, producer, validate, apply, startup, memory, metrics (the consumer hot path with metrics on vs off), latency (end to end at a fixed rate; memory reads the consumer runs' peak RSS, so it
needs `consumer`), concurrency (a handler that waits 20 ms, at concurrency 1/10/50/200, sync and async), tracing (the
consumer with OpenTelemetry tracing on, sampling 1.0 and 0.01, against off; needs `kpipe[otel]`). Every figure is the median of --runs runs with [min-max]; kpipe and its baseline alternate
(ABAB...) so drift on a shared machine hits both. Consumer and producer runs each start a fresh process
(benchmarks/child.py) for kpipe and for the baseline alike, with identical librdkafka settings; a consume run
is timed from the first message handled to the N-th (group-join time excluded on both sides) with a fresh
consumer group on the same pre-produced topic. Ratios are the median of the per-pair ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import projects  # noqa: E402

PY = sys.executable
KPIPE = str(Path(sys.executable).with_name("kpipe"))
CHILD = str(HERE / "child.py")
ALL_CASES = (
    "consumer",
    "producer",
    "validate",
    "apply",
    "startup",
    "memory",
    "metrics",
    "latency",
    "concurrency",
    "tracing",
)
# Keys the harness sets differently on purpose (callbacks are not config); anything else must match.
IGNORED_CONFIG_KEYS = {"client.id", "group.id", "bootstrap.servers"}


# --- results ------------------------------------------------------------------------------------------------


@dataclass
class Row:
    case: str
    unit: str  # "ev/s", "s", "MB"
    kpipe: list[float]
    baseline: list[float] = field(default_factory=list)
    baseline_name: str = ""
    ratio: float | None = None
    ratio_text: str = ""
    target: str = ""
    passed: bool | None = None
    note: str = ""


def fmt_value(v: float, unit: str) -> str:
    if unit == "ev/s":
        return f"{v / 1000:.0f}k/s" if v >= 10_000 else f"{v:,.0f}/s"
    if unit == "s":
        return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"
    if unit == "MB":
        return f"{v:.0f} MB"
    if unit == "ns":
        return f"{v:.0f} ns"
    if unit == "ms":
        return f"{v:.1f} ms" if v < 100 else f"{v:,.0f} ms"
    return f"{v:g}"


def fmt_stats(values: list[float], unit: str) -> str:
    if not values:
        return "–"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt_value(med, unit)
    return f"{fmt_value(med, unit)} [{fmt_value(min(values), unit)}–{fmt_value(max(values), unit)}]"


def paired_ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


# --- helpers --------------------------------------------------------------------------------------------------


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def run_child(job: dict, timeout: float = 600) -> dict:
    proc = subprocess.run(
        [PY, CHILD, json.dumps(job)], capture_output=True, text=True, timeout=timeout, cwd=str(REPO)
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{job['kind']} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1])
    if result["code"] != 0 or result["handled"] < job["events"]:
        raise RuntimeError(f"{job['kind']}: exit code {result['code']}, handled {result['handled']}")
    return result


def wall(cmd: list[str], **kwargs) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(REPO), **kwargs)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return elapsed


def abab(runs: int, a: Callable[[], float], b: Callable[[], float]) -> tuple[list[float], list[float]]:
    """Alternate A and B (A B, B A, A B, ...): pairs keep their order balanced against drift."""
    xs, ys = [], []
    for r in range(runs):
        if r % 2 == 0:
            xs.append(a())
            ys.append(b())
        else:
            ys.append(b())
            xs.append(a())
    return xs, ys


def config_diff(a: dict, b: dict) -> list[str]:
    keys = (set(a) | set(b)) - IGNORED_CONFIG_KEYS
    return [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in sorted(keys) if str(a.get(k)) != str(b.get(k))]


class Admin:
    def __init__(self, bootstrap: str):
        from confluent_kafka.admin import AdminClient

        self.client = AdminClient({"bootstrap.servers": bootstrap})

    def create(self, names: list[str], partitions: int = 3) -> None:
        from confluent_kafka.admin import NewTopic

        for f in self.client.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
            f.result(60)

    def delete(self, names: list[str]) -> None:
        for i in range(0, len(names), 500):
            for f in self.client.delete_topics(names[i : i + 500], operation_timeout=60).values():
                f.exception(60)


# --- cases ------------------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, bootstrap: str, workdir: Path):
        self.args = args
        self.bootstrap = bootstrap
        self.workdir = workdir
        self.runs = args.runs
        quick = args.quick
        self.events = 20_000 if quick else 200_000
        self.per_message_events = 2_000 if quick else 20_000
        self.validate_size = (20, 200, 50) if quick else (200, 2000, 500)
        self.apply_topics = 100 if quick else 1000
        self.max_poll_records = 1000
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.consumer_rss: dict[str, list[float]] = {}
        self.admin = Admin(bootstrap)

    # -- consumer ----------------------------------------------------------------------------------------
    def preproduced(self) -> str:
        """A new 3-partition topic holding `events` benchmark events."""
        from confluent_kafka import Producer

        topic = f"bench-events-{uuid.uuid4().hex[:6]}"
        self.admin.create([topic], 3)
        log(f"pre-producing {self.events} x {projects.EVENT_BYTES}-byte events to {topic}")
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5, "acks": "all"})
        for i in range(self.events):
            ev = projects.event(i)
            while True:
                try:
                    producer.produce(topic, projects.encode(ev), ev["customer_id"])
                    break
                except BufferError:
                    producer.poll(0.1)
            if i % 1000 == 0:
                producer.poll(0)
        assert producer.flush(60) == 0
        return topic

    def consumer(self) -> None:
        topic = self.preproduced()
        dirs = {
            typed: str(projects.runtime_project(self.workdir / f"rt-{typed}", self.bootstrap, topic,
                                                typed=typed, max_poll_records=self.max_poll_records))
            for typed in (False, True)
        }  # fmt: skip
        configs_checked = False
        for strategy in ("batch", "auto", "per_message"):
            n = self.per_message_events if strategy == "per_message" else self.events
            for typed in (False, True):
                rss: list[float] = []
                configs: dict[str, dict] = {}
                per_cpu: dict[str, list[float]] = {"consume-kpipe": [], "consume-raw": []}

                def one(kind: str, strategy=strategy, typed=typed, n=n, rss=rss, configs=configs,
                        per_cpu=per_cpu) -> float:  # fmt: skip
                    job = {"kind": kind, "bootstrap": self.bootstrap, "project": dirs[typed], "topic": topic,
                           "strategy": strategy, "typed": typed, "events": n,
                           "group": f"bench-{kind}-{uuid.uuid4().hex[:8]}",
                           "max_poll_records": self.max_poll_records}  # fmt: skip
                    result = run_child(job)
                    configs[kind] = result["config"]
                    if kind == "consume-kpipe":
                        rss.append(result["peak_rss_mb"])
                    per_cpu[kind].append(n / result["cpu_seconds"])
                    return n / result["seconds"]

                label = f"consume {strategy} ({'schema' if typed else 'no schema'}), {n // 1000}k"
                log(label)
                k, b = abab(self.runs, lambda: one("consume-kpipe"), lambda: one("consume-raw"))
                diff = config_diff(configs["consume-kpipe"], configs["consume-raw"])
                if diff:
                    self.notes.append(f"{label}: librdkafka settings differ: {'; '.join(diff)}")
                elif not configs_checked:
                    configs_checked = True
                    self.notes.append(
                        "Consumer settings, identical on both sides (checked per case): "
                        + ", ".join(
                            f"`{k}={v}`"
                            for k, v in sorted(configs["consume-raw"].items())
                            if k not in IGNORED_CONFIG_KEYS
                        )  # fmt: skip
                        + f"; `consume({self.max_poll_records}, {0.1})`."
                    )
                # auto: at least the raw loop (issue 25); the others within 10 % (15 % with a schema).
                target = 1.0 if strategy == "auto" else 0.85 if typed else 0.90
                ratio = paired_ratio(k, b)
                baseline = "raw loop + same pydantic model" if typed else "raw confluent-kafka loop"
                self.rows.append(Row(label, "ev/s", k, b, baseline, ratio, f"{ratio:.2f}×", f"≥ {target:.2f}×",
                                     ratio >= target))  # fmt: skip
                # CPU time of the whole process (librdkafka's threads too) from the first event to the last:
                # what load moves least.
                kc, bc = per_cpu["consume-kpipe"], per_cpu["consume-raw"]
                cpu_ratio = paired_ratio(kc, bc)
                self.rows.append(Row("  same, events per CPU second", "ev/s", kc, bc, "raw loop", cpu_ratio,
                                     f"{cpu_ratio:.2f}×", "reference"))  # fmt: skip
                if n == self.events:
                    self.consumer_rss[label] = rss
            if strategy != "per_message":
                self._own_work(strategy)
        self.admin.delete([topic])

    def _own_work(self, strategy: str) -> None:
        """kpipe's own work per event against the raw loop's, both over the same stub consumer (child.py
        hotpath with "raw"): CPU time, no broker, no librdkafka, the minimum of 7 alternating runs each. The
        stub's store_offsets and commit do nothing, so the raw auto loop's per-message store costs it nothing
        here, unlike against a broker."""
        job = {"kind": "hotpath", "strategy": strategy, "events": self.events, "reps": 7, "raw": True,
               "max_poll_records": self.max_poll_records}  # fmt: skip
        result = run_child(job)
        kpipe_ns, raw_ns = result["off_ns"], result["on_ns"]
        ratio = kpipe_ns / raw_ns
        self.rows.append(Row(f"  of which the loop's own work per event ({strategy}, stub consumer)", "ns",
                             [kpipe_ns], [raw_ns], "the raw loop over the same stub", ratio, f"{ratio:.2f}×",
                             "reference"))  # fmt: skip

    # -- concurrency ------------------------------------------------------------------------------------------
    def concurrency(self) -> None:
        """Issue 14: a handler that waits 20 ms, 3 partitions, 600 keys. kpipe at concurrency 1/10/50/200
        (ordering key), sync (time.sleep) and async (asyncio.sleep), against raw confluent-kafka loops doing the
        same wait: one at a time, and a ThreadPoolExecutor(50) per consume() batch (no per-key order)."""
        from confluent_kafka import Producer

        quick = self.args.quick
        n = 2_000 if quick else 20_000
        n_slow = 200 if quick else 1_000  # concurrency 1 handles 50 events/s: 20,000 would take 400 s
        wait_ms = 20
        keys = projects.WAIT_KEYS
        topic = f"bench-wait-{uuid.uuid4().hex[:6]}"
        self.admin.create([topic], 3)
        log(f"pre-producing {n} x {projects.EVENT_BYTES}-byte events with {keys} keys to {topic}")
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5, "acks": "all"})
        for i in range(n):
            key, value = projects.wait_event(i)
            producer.produce(topic, value, key)
            if i % 1000 == 0:
                producer.poll(0)
        assert producer.flush(60) == 0
        del producer
        project = str(projects.concurrency_project(self.workdir / "wait", self.bootstrap, topic))
        runs = self.args.concurrency_runs

        def one(kind: str, events: int, **extra: object) -> tuple[float, float]:
            job = {"kind": kind, "bootstrap": self.bootstrap, "project": project, "topic": topic,
                   "events": events, "wait_ms": wait_ms, "max_poll_records": 500,
                   "group": f"bench-wait-{uuid.uuid4().hex[:8]}", **extra}  # fmt: skip
            result = run_child(job, timeout=900)
            return events / result["seconds"], result["peak_rss_mb"]

        def series(kind: str, events: int, **extra: object) -> tuple[list[float], list[float]]:
            rates, rss = [], []
            for _ in range(runs):
                rate, mb = one(kind, events, **extra)
                rates.append(rate)
                rss.append(mb)
            return rates, rss

        def ideal(concurrency: int) -> float:
            return min(concurrency, keys) * 1000.0 / wait_ms

        log(f"concurrency: raw loops, {n_slow} events one at a time and {n} with a thread pool of 50")
        raw_seq, _ = series("wait-raw", n_slow, pool=0)
        raw_pool, _ = series("wait-raw", n, pool=50)
        rates: dict[tuple[str, int], list[float]] = {}
        for mode in ("sync", "async"):
            for c in (1, 10, 50, 200):
                events = n_slow if c == 1 else n
                log(f"concurrency: kpipe {mode} at {c}, {events} events")
                rates[(mode, c)], rss = series("wait-kpipe", events, concurrency=c, mode=mode)
                best = ideal(c)
                measured = statistics.median(rates[(mode, c)])
                label = f"wait 20 ms, {mode}, concurrency {c}, {events // 1000 if events >= 1000 else events}"
                label += "k" if events >= 1000 else ""
                row = Row(label, "ev/s", rates[(mode, c)], [best], "ideal: min(concurrency, keys) / 20 ms",
                          measured / best, f"{measured / best:.2f}× ideal")  # fmt: skip
                if c == 1:
                    base = statistics.median(raw_seq)
                    row.note = f"raw loop one at a time: {base:,.0f}/s ({measured / base:.2f}× of it)"
                if c == 50:
                    row.target, row.passed = "≥ 0.80× ideal", measured / best >= 0.8
                    pool = statistics.median(raw_pool)
                    row.note = (f"raw ThreadPoolExecutor(50) per consume() batch, no per-key order: "
                                f"{pool:,.0f}/s (kpipe {measured / pool:.2f}× of it)")  # fmt: skip
                self.rows.append(row)
                if c == 200:
                    self.rows.append(Row(f"  worker peak RSS at concurrency 200 ({mode})", "MB", rss,
                                         ratio_text="–", target="report"))  # fmt: skip
            speedup = statistics.median(rates[(mode, 50)]) / statistics.median(rates[(mode, 1)])
            self.rows.append(Row(f"  {mode}: concurrency 50 vs 1", "ev/s", rates[(mode, 50)], rates[(mode, 1)],
                                 "concurrency 1", speedup, f"{speedup:.1f}×", "≥ 20×",
                                 speedup >= 20))  # fmt: skip
        self.rows.append(Row("raw loop, one at a time", "ev/s", raw_seq, [ideal(1)], "ideal 50/s",
                             statistics.median(raw_seq) / ideal(1), f"{statistics.median(raw_seq) / ideal(1):.2f}× ideal",
                             note=f"{n_slow} events"))  # fmt: skip
        self.rows.append(Row("raw ThreadPoolExecutor(50) per batch", "ev/s", raw_pool, [ideal(50)], "ideal 2,500/s",
                             statistics.median(raw_pool) / ideal(50),
                             f"{statistics.median(raw_pool) / ideal(50):.2f}× ideal",
                             note="no per-key order; commits after each batch"))  # fmt: skip
        self.notes.append(
            f"concurrency: {n:,} events ({n_slow:,} at concurrency 1 and for the one-at-a-time raw loop, which "
            f"handle 50/s), {keys} keys, 3 partitions, ordering key, commit batch (100); each figure is the "
            f"median of {runs} run(s), every run a fresh process and consumer group."
        )
        self.admin.delete([topic])

    # -- metrics ---------------------------------------------------------------------------------------------
    def metrics(self) -> None:
        """The consumer hot path with metrics on (a measuring worker, statistics every second) against the same
        worker with metrics off: the cost of `kpipe run --metrics-port`. Target >= 0.95x."""
        topic = self.preproduced()
        project = str(projects.runtime_project(self.workdir / "rt-metrics", self.bootstrap, topic, typed=False,
                                               max_poll_records=self.max_poll_records))  # fmt: skip
        runs = max(self.runs, 9)  # a 5 % effect under this machine's run-to-run spread needs many pairs
        for strategy in ("batch", "auto"):
            per_cpu: dict[bool, list[float]] = {True: [], False: []}

            def one(metrics: bool, strategy=strategy, per_cpu=per_cpu) -> float:
                job = {"kind": "consume-kpipe", "bootstrap": self.bootstrap, "project": project, "topic": topic,
                       "strategy": strategy, "typed": False, "events": self.events, "metrics": metrics,
                       "group": f"bench-metrics-{uuid.uuid4().hex[:8]}",
                       "max_poll_records": self.max_poll_records}  # fmt: skip
                result = run_child(job)
                per_cpu[metrics].append(self.events / result["cpu_seconds"])
                return self.events / result["seconds"]

            label = f"consume {strategy} (no schema) with metrics, {self.events // 1000}k"
            log(label)
            on, off = abab(runs, lambda: one(True), lambda: one(False))
            ratio = paired_ratio(on, off)
            self.rows.append(Row(label, "ev/s", on, off, "the same worker, metrics off", ratio, f"{ratio:.2f}×",
                                 "≥ 0.95×", ratio >= 0.95))  # fmt: skip
            # Events per CPU second of the consumer process (all threads): less shaken by other load than wall time.
            cpu_ratio = paired_ratio(per_cpu[True], per_cpu[False])
            self.rows.append(Row("  same, events per CPU second", "ev/s", per_cpu[True], per_cpu[False],
                                 "metrics off", cpu_ratio, f"{cpu_ratio:.2f}×", "reference"))  # fmt: skip
            # kpipe's own per-event work alone, without the broker's and the machine's noise.
            job = {"kind": "hotpath", "strategy": strategy, "events": self.events, "reps": 15,
                   "max_poll_records": self.max_poll_records}  # fmt: skip
            stub = run_child(job)
            share = stub["off_ns"] / stub["on_ns"]
            self.rows.append(Row(f"  of which kpipe's own work per event ({strategy}, stub consumer)", "ns",
                                 [stub["on_ns"]], [stub["off_ns"]], "metrics off", share, f"{share:.2f}×",
                                 "reference"))  # fmt: skip
        self.notes.append(
            f"metrics: {runs} pairs each; metrics on = counters and histograms sent in the status snapshots, "
            "the first event of each batch timed, librdkafka statistics (consumer lag) every second."
        )
        self.admin.delete([topic])

    # -- tracing ---------------------------------------------------------------------------------------------
    def tracing(self) -> None:
        """The consumer hot path (batch, no schema) with tracing on, exporting over OTLP/HTTP to a local receiver
        that reads and drops each request, against the same worker with tracing off: every event sampled
        (report), and parentbased_traceidratio at 0.01 (target >= 0.95x); then 0.01 again with the schema
        case's handler work (pydantic validation of each event), where a handler does more than nothing. The
        events carry no trace context, so each is the root of its own trace and the sampler decides for every
        one."""
        receiver = _DroppingReceiver()
        topic = self.preproduced()
        dirs = {
            typed: str(projects.runtime_project(self.workdir / f"rt-tracing-{typed}", self.bootstrap, topic,
                                                typed=typed, max_poll_records=self.max_poll_records))
            for typed in (False, True)
        }  # fmt: skip
        runs = max(self.runs, 5)
        exporting = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                     "OTEL_TRACES_SAMPLER": "parentbased_traceidratio"}  # fmt: skip
        try:
            for ratio_arg, typed, target in (
                ("1.0", False, None),
                ("0.01", False, 0.95),
                ("0.01", True, 0.95),
            ):
                env = {**exporting, "OTEL_TRACES_SAMPLER_ARG": ratio_arg}

                def one(on: bool, env=env, typed=typed) -> float:
                    job = {"kind": "consume-kpipe", "bootstrap": self.bootstrap, "project": dirs[typed],
                           "topic": topic, "strategy": "batch", "typed": typed, "events": self.events,
                           "tracing": env if on else None, "group": f"bench-tracing-{uuid.uuid4().hex[:8]}",
                           "max_poll_records": self.max_poll_records}  # fmt: skip
                    return self.events / run_child(job)["seconds"]

                label = (
                    f"consume batch ({'schema' if typed else 'no schema'}) with tracing, sampling {ratio_arg}, "
                    f"{self.events // 1000}k"
                )
                log(label)
                on, off = abab(runs, lambda: one(True), lambda: one(False))
                ratio = paired_ratio(on, off)
                self.rows.append(Row(label, "ev/s", on, off, "the same worker, tracing off", ratio, f"{ratio:.2f}×",
                                     f"≥ {target:.2f}×" if target else "report",
                                     ratio >= target if target else None))  # fmt: skip
                if typed:
                    continue
                # kpipe's own work per event (stub consumer, no broker), spans built but not exported.
                # At 1.0 every span is kept until the process ends: a tenth of the events (the whole run would
                # hold 1.4M spans, gigabytes, and take longer than a child may on a loaded machine).
                stub_events = self.events // 10 if ratio_arg == "1.0" else self.events
                job = {"kind": "hotpath", "strategy": "batch", "events": stub_events, "reps": 7,
                       "max_poll_records": self.max_poll_records,
                       "tracing": {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                                   "OTEL_BSP_SCHEDULE_DELAY": "600000",
                                   "OTEL_BSP_MAX_QUEUE_SIZE": str(stub_events * 16),
                                   "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": str(stub_events * 16)}}  # fmt: skip
                stub = run_child(job)
                share = stub["off_ns"] / stub["on_ns"]
                self.rows.append(Row(f"  of which kpipe's own work per event (sampling {ratio_arg}, stub consumer)",
                                     "ns", [stub["on_ns"]], [stub["off_ns"]], "tracing off", share,
                                     f"{share:.2f}×", "reference"))  # fmt: skip
        finally:
            receiver.close()
        self.notes.append(
            f"tracing: {runs} pairs each; on = a process span per event (plus the OTLP/HTTP export of the sampled "
            f"ones, {receiver.spans_bytes // 1024} KiB received in all); off = tracing not configured, the "
            "handler called as it is (no wrapper); (schema) = the consumer case's pydantic model validates each "
            "event before the handler, on both sides."
        )
        self.admin.delete([topic])

    # -- latency ---------------------------------------------------------------------------------------------
    def latency(self) -> None:
        """End to end: a producer process sends at a fixed rate, the consumer notes "handler start minus send".

        kpipe's producer + GroupWorker against a raw Producer + Consumer loop with the same librdkafka settings
        and commit policy. per_message runs at a lower rate: a synchronous commit per event cannot keep up with
        5,000 events/s on this broker (consume per_message ~3,000/s), on either side.
        """
        seconds = 5 if self.args.quick else 20
        rates = {"batch": 5000, "per_message": 1000}
        for strategy, rate in rates.items():
            figures: dict[str, dict[str, list[float]]] = {"latency-kpipe": {}, "latency-raw": {}}
            configs: dict[str, dict] = {}

            def one(kind: str, strategy=strategy, rate=rate, figures=figures, configs=configs) -> float:
                topic = f"bench-latency-{uuid.uuid4().hex[:6]}"
                self.admin.create([topic], 3)
                project = projects.runtime_project(self.workdir / topic, self.bootstrap, topic, typed=False,
                                                   max_poll_records=self.max_poll_records)  # fmt: skip
                job = {"kind": kind, "bootstrap": self.bootstrap, "project": str(project), "topic": topic,
                       "strategy": strategy, "rate": rate, "seconds": seconds, "events": 0,
                       "group": f"bench-{kind}-{uuid.uuid4().hex[:8]}",
                       "max_poll_records": self.max_poll_records}  # fmt: skip
                try:
                    result = run_child(job)
                finally:
                    self.admin.delete([topic])
                configs[kind] = result["config"]
                for q in ("p50_ms", "p99_ms", "p999_ms"):
                    figures[kind].setdefault(q, []).append(result[q])
                return result["p50_ms"]

            label = f"latency {strategy}, {rate:,}/s for {seconds} s"
            log(label)
            abab(self.runs, lambda: one("latency-kpipe"), lambda: one("latency-raw"))
            diff = config_diff(configs["latency-kpipe"], configs["latency-raw"])
            if diff:
                self.notes.append(f"{label}: librdkafka settings differ: {'; '.join(diff)}")
            for q, name in (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9")):
                k, b = figures["latency-kpipe"][q], figures["latency-raw"][q]
                ratio = paired_ratio(k, b)
                case = f"{label}: {name}" if name == "p50" else f"  {name}"
                self.rows.append(Row(case, "ms", k, b, "raw Producer + Consumer, same settings", ratio,
                                     f"{ratio:.2f}×", "report"))  # fmt: skip
        self.notes.append(
            "latency: handler start minus producer send (both clocks are the same machine's wall clock), over "
            "the events sent from 0.5 s after the first one was handled (the group join is left out); linger.ms=5 "
            "(kpipe's default) on both producers, fetch.wait.max.ms=50 on both consumers."
        )

    # -- memory ---------------------------------------------------------------------------------------------
    def memory(self) -> None:
        if not self.consumer_rss:
            self.notes.append("memory: skipped (needs the consumer case)")
            return
        values = [v for vs in self.consumer_rss.values() for v in vs]
        worst = max(self.consumer_rss.items(), key=lambda kv: max(kv[1]))
        self.rows.append(Row(f"worker peak RSS, {self.events // 1000}k run", "MB", values, target="< 100 MB",
                             ratio_text="–", passed=max(values) < 100,
                             note=f"all {len(values)} kpipe consumer runs of {self.events // 1000}k; "
                                  f"highest in '{worst[0]}'"))  # fmt: skip

    # -- producer ---------------------------------------------------------------------------------------------
    def producer(self) -> None:
        n = self.events
        send_only: dict[str, list[float]] = {"produce-kpipe": [], "produce-raw": []}
        per_cpu: dict[str, list[float]] = {"produce-kpipe": [], "produce-raw": []}
        configs: dict[str, dict] = {}

        def one(kind: str) -> float:
            topic = f"bench-produce-{uuid.uuid4().hex[:8]}"
            self.admin.create([topic], 3)
            project = projects.runtime_project(self.workdir / f"prod-{topic}", self.bootstrap, topic,
                                               typed=True, max_poll_records=self.max_poll_records)  # fmt: skip
            try:
                job = {"kind": kind, "bootstrap": self.bootstrap, "project": str(project), "events": n}
                result = run_child(job)
            finally:
                self.admin.delete([topic])
            configs[kind] = result["config"]
            send_only[kind].append(n / result["send_seconds"])
            per_cpu[kind].append(n / result["cpu_seconds"])
            return n / result["seconds"]

        log(f"produce {n // 1000}k")
        k, b = abab(self.runs, lambda: one("produce-kpipe"), lambda: one("produce-raw"))
        diff = config_diff(configs["produce-kpipe"], configs["produce-raw"])
        if diff:
            self.notes.append(f"producer: librdkafka settings differ: {'; '.join(diff)}")
        ratio = paired_ratio(k, b)
        self.rows.append(Row(f"producer send+flush, {n // 1000}k (schema, key, JSON)", "ev/s", k, b,
                             "raw produce + same validation/JSON", ratio, f"{ratio:.2f}×", "≥ 1.0×",
                             ratio >= 1.0))  # fmt: skip
        ks, bs = send_only["produce-kpipe"], send_only["produce-raw"]
        r2 = paired_ratio(ks, bs)
        self.rows.append(Row("  of which the send() loop alone", "ev/s", ks, bs, "", r2, f"{r2:.2f}×", "–"))
        # The process's CPU time (librdkafka's threads too) from the first send to the end of flush(): what load
        # moves least, where the wall-clock rate follows the broker's and the machine's load.
        kc, bc = per_cpu["produce-kpipe"], per_cpu["produce-raw"]
        r3 = paired_ratio(kc, bc)
        self.rows.append(Row("  same, events per CPU second", "ev/s", kc, bc, "raw produce", r3, f"{r3:.2f}×",
                             "reference"))  # fmt: skip

    # -- validate -----------------------------------------------------------------------------------------------
    def validate(self) -> None:
        import yaml

        from kpipe.compilation.project import inspect_project

        nfiles, ntopics, ngroups = self.validate_size
        root = self.workdir / "validate"
        files = projects.validate_project(root, nfiles, ntopics, ngroups)
        pipelines = root / "pipelines"
        first = inspect_project([pipelines])
        if not first.valid:
            raise RuntimeError(f"generated validate project is invalid: {first.diagnostics[:3]}")

        def kpipe_run() -> float:
            t0 = time.perf_counter()
            inspection = inspect_project([pipelines])
            elapsed = time.perf_counter() - t0
            assert inspection.valid
            return elapsed

        def load_all(loader: Callable[[str], object]) -> Callable[[], float]:
            def run() -> float:
                t0 = time.perf_counter()
                for path in files:
                    loader(path.read_text())
                return time.perf_counter() - t0

            return run

        safe = load_all(yaml.safe_load)
        csafe = load_all(lambda text: yaml.load(text, Loader=yaml.CSafeLoader))  # noqa: S506
        safe(), csafe()  # warm both
        log(f"validate: {len(files)} files, {ntopics} topics, {ngroups} groups")
        k, b = abab(self.runs, kpipe_run, safe)
        _, c = abab(self.runs, kpipe_run, csafe)
        size = f"{nfiles} files/{ntopics} topics/{ngroups} groups"
        r = paired_ratio(k, b)
        self.rows.append(Row(f"validate in-process ({size})", "s", k, b, "yaml.safe_load (pure Python)", r,
                             f"{r:.2f}×", "≤ 3×", r <= 3.0))  # fmt: skip
        rc = paired_ratio(k, c)
        self.rows.append(Row("validate in-process vs libyaml", "s", k, c, "yaml.load(CSafeLoader)", rc,
                             f"{rc:.2f}×", "reference"))  # fmt: skip
        # The CLI as users run it, against a fresh interpreter doing only the safe_load of the same files.
        listing = self.workdir / "validate-files.json"
        listing.write_text(json.dumps([str(p) for p in files]))
        script = ("import json,sys,yaml\nfor p in json.load(open(sys.argv[1])):\n"
                  "    yaml.safe_load(open(p).read())\n")  # fmt: skip
        cli_k, cli_b = abab(
            self.runs,
            lambda: wall([KPIPE, "validate", str(pipelines)]),
            lambda: wall([PY, "-c", script, str(listing)]),
        )
        rcli = paired_ratio(cli_k, cli_b)
        self.rows.append(Row("kpipe validate CLI (process wall time)", "s", cli_k, cli_b,
                             "python: import yaml + safe_load", rcli, f"{rcli:.2f}×", "≤ 3×",
                             rcli <= 3.0))  # fmt: skip

    # -- apply -----------------------------------------------------------------------------------------------
    def apply(self) -> None:
        from confluent_kafka.admin import NewTopic

        from kpipe.compilation.project import load_project
        from kpipe.topics.apply import apply_plan, read_plan
        from kpipe.topics.cluster import connect

        n = self.apply_topics

        def kpipe_run() -> float:
            prefix = f"bench-apply-{uuid.uuid4().hex[:6]}"
            root = projects.apply_project(self.workdir / prefix, self.bootstrap, prefix, n)
            project = load_project([root])
            desired = project.topic_settings()
            t0 = time.perf_counter()
            cluster = connect(project.cluster_client_config().as_dict())
            report = apply_plan(read_plan(cluster, desired), cluster, desired, console=_quiet_console())
            cluster.close()
            elapsed = time.perf_counter() - t0
            report.raise_if_failed()
            assert len(report.results) == n
            self.admin.delete([s.name for s in desired])
            return elapsed

        def cli_run() -> float:
            prefix = f"bench-apply-cli-{uuid.uuid4().hex[:6]}"
            root = projects.apply_project(self.workdir / prefix, self.bootstrap, prefix, n)
            elapsed = wall([KPIPE, "apply", str(root), "--yes"])
            self.admin.delete([f"{prefix}-{i}" for i in range(n)])
            return elapsed

        def raw_run() -> float:
            from confluent_kafka.admin import AdminClient

            prefix = f"bench-apply-raw-{uuid.uuid4().hex[:6]}"
            names = [f"{prefix}-{i}" for i in range(n)]
            t0 = time.perf_counter()
            admin = AdminClient({"bootstrap.servers": self.bootstrap})
            for name in names:
                for f in admin.create_topics([NewTopic(name, 1, 1)]).values():
                    f.result(60)
            elapsed = time.perf_counter() - t0
            self.admin.delete(names)
            return elapsed

        def raw_batched_run() -> float:
            from confluent_kafka.admin import AdminClient

            prefix = f"bench-apply-batch-{uuid.uuid4().hex[:6]}"
            names = [f"{prefix}-{i}" for i in range(n)]
            t0 = time.perf_counter()
            admin = AdminClient({"bootstrap.servers": self.bootstrap})
            for f in admin.create_topics([NewTopic(name, 1, 1) for name in names]).values():
                f.result(60)
            elapsed = time.perf_counter() - t0
            self.admin.delete(names)
            return elapsed

        log(f"apply {n} topics")
        k, b = abab(self.runs, kpipe_run, raw_run)
        speedup = paired_ratio(b, k)
        self.rows.append(Row(f"apply {n} new topics (plan + one CreateTopics)", "s", k, b,
                             f"{n} × create_topics([one]), each awaited", speedup, f"{speedup:.1f}× faster",
                             "≥ 5× faster", speedup >= 5))  # fmt: skip
        k2, floor = abab(self.runs, kpipe_run, raw_batched_run)
        r = paired_ratio(k2, floor)
        self.rows.append(Row("  same, against one raw batched create_topics", "s", k2, floor,
                             f"create_topics([{n} topics]) once: the broker's floor", r, f"{r:.2f}×",
                             "reference"))  # fmt: skip
        c, b2 = abab(self.runs, cli_run, raw_run)
        s2 = paired_ratio(b2, c)
        self.rows.append(Row(f"kpipe apply --yes CLI, {n} topics (process wall time)", "s", c, b2,
                             f"{n} × create_topics([one]), each awaited", s2, f"{s2:.1f}× faster",
                             "≥ 5× faster", s2 >= 5))  # fmt: skip

    # -- startup ------------------------------------------------------------------------------------------------
    def startup(self) -> None:
        runs = max(self.runs, 5)
        example = str(REPO / "pipelines")
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "localhost:9092"}
        cmds = {
            "python -c pass": [PY, "-c", "pass"],
            "kpipe --help": [KPIPE, "--help"],
            "kpipe validate pipelines/": [KPIPE, "validate", example],
        }
        for cmd in cmds.values():
            wall(cmd, env=env)  # warm the page cache
        times: dict[str, list[float]] = {k: [] for k in cmds}
        log("start-up")
        for r in range(runs):
            order = list(cmds) if r % 2 == 0 else list(reversed(cmds))
            for name in order:
                times[name].append(wall(cmds[name], env=env))
        base = times["python -c pass"]
        heavy = _heavy_imports_of_help()
        for name in ("kpipe --help", "kpipe validate pipelines/"):
            r = paired_ratio(times[name], base)
            row = Row(name, "s", times[name], base, "python -c pass", r, f"{r:.1f}×", "report")
            if name == "kpipe --help":
                row.target = "no confluent_kafka/pydantic"
                row.passed = not heavy
                row.note = "imports: " + (", ".join(heavy) if heavy else "none of confluent_kafka, pydantic")
            self.rows.append(row)


class _DroppingReceiver:
    """An OTLP/HTTP endpoint on 127.0.0.1 that reads each request and answers 200, keeping nothing."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        receiver = self
        self.spans_bytes = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.spans_bytes += len(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()


def _quiet_console():
    import io

    from rich.console import Console

    return Console(file=io.StringIO())


def _heavy_imports_of_help() -> list[str]:
    """Top-level packages `kpipe --help` imports that it must not (it should only parse options)."""
    proc = subprocess.run(
        [PY, "-X", "importtime", "-c", "from kpipe.cli import main; main(['--help'])"],
        capture_output=True, text=True, cwd=str(REPO),
    )  # fmt: skip
    heavy = {
        "confluent_kafka",
        "pydantic",
        "kpipe.model.pipeline",
        "kpipe.schemas.schema_models",
        "jinja2",
        "yaml",
    }
    found = set()
    for line in proc.stderr.splitlines():
        if "|" not in line:
            continue
        module = line.rsplit("|", 1)[1].strip()
        for h in heavy:
            if module == h or module.startswith(h + "."):
                found.add(h)
    return sorted(found)


# --- output --------------------------------------------------------------------------------------------------


def machine_info(bootstrap: str, external: bool) -> dict[str, str]:
    import confluent_kafka
    import pydantic
    import yaml

    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    lib, _ = confluent_kafka.libversion()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "CPUs": f"{os.cpu_count()} × {model}",
        "Python": platform.python_version(),
        "confluent-kafka": _version_text(confluent_kafka.version()),
        "librdkafka": lib,
        "pydantic": pydantic.VERSION,
        "PyYAML": f"{yaml.__version__} (libyaml {'available' if yaml.__with_libyaml__ else 'absent'})",
        "broker": f"external cluster at {bootstrap}" if external else "embedded Tansu (kpipe.local.broker)",
    }


def _version_text(value: object) -> str:
    return str(value[0]) if isinstance(value, tuple) else str(value)


def render(rows: list[Row], runs: int) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"kpipe benchmarks (median [min–max] of {runs} runs)"))
    for col in ("case", "kpipe", "baseline", "ratio", "target", "result"):
        table.add_column(col)
    for r in rows:
        result = "–" if r.passed is None else ("[green]pass[/]" if r.passed else "[red]MISS[/]")
        base = escape(fmt_stats(r.baseline, r.unit))
        if r.baseline_name:
            base += f"\n[dim]{escape(r.baseline_name)}[/]"
        table.add_row(
            escape(r.case), escape(fmt_stats(r.kpipe, r.unit)), base, r.ratio_text, r.target, result
        )
    Console(width=max(140, shutil.get_terminal_size().columns)).print(table)


def markdown(rows: list[Row], info: dict[str, str], notes: list[str], args: argparse.Namespace) -> str:
    out = ["# kpipe benchmark results", "",
           f"Produced by `python benchmarks/run.py{' ' + ' '.join(sys.argv[1:]) if sys.argv[1:] else ''}`. "
           f"Every figure is the median of {args.runs} runs, with [min–max]; kpipe and baseline runs alternate "
           "(ABAB) and ratios are the median of the per-pair ratios.", ""]  # fmt: skip
    out += [f"- **{k}**: {v}" for k, v in info.items()]
    out += [
        "",
        "| case | kpipe | baseline | ratio | target | result |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        result = "–" if r.passed is None else ("pass" if r.passed else "**MISS**")
        base = fmt_stats(r.baseline, r.unit) + (f" ({r.baseline_name})" if r.baseline_name else "")
        case = r.case.strip() if not r.case.startswith("  ") else "↳ " + r.case.strip()
        out.append(
            f"| {case} | {fmt_stats(r.kpipe, r.unit)} | {base} | {r.ratio_text} | {r.target} | {result} |"
        )
    row_notes = [f"- {r.case.strip()}: {r.note}" for r in rows if r.note]
    if notes or row_notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in notes] + row_notes
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts and 1 run: a smoke test")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3; 1 with --quick)")
    parser.add_argument(
        "--concurrency-runs", type=int, default=1, help="runs per figure of the concurrency case (default 1)"
    )
    parser.add_argument(
        "--cases", default=",".join(ALL_CASES), help=f"comma-separated: {','.join(ALL_CASES)}"
    )
    parser.add_argument(
        "--bootstrap", help="HOST:PORT of an external cluster (default: start the local broker)"
    )
    parser.add_argument(
        "--output", help="markdown file to write (default: benchmarks/RESULTS.md unless --quick)"
    )
    args = parser.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    if args.cases.strip() == "concurrency":
        args.runs = args.concurrency_runs  # the only figures: say their run count in the results' header
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(ALL_CASES)
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    if "memory" in cases and "consumer" not in cases:
        cases.insert(0, "consumer")
    output = args.output or (None if args.quick else str(HERE / "RESULTS.md"))

    broker = None
    bootstrap = args.bootstrap
    needs_broker = any(
        c in cases
        for c in ("consumer", "producer", "apply", "memory", "metrics", "latency", "concurrency", "tracing")
    )
    if not bootstrap and needs_broker:
        from kpipe.local.broker import start_local_broker

        broker = start_local_broker()
        bootstrap = broker.bootstrap
        log(f"local broker on {bootstrap}")
    workdir = Path(tempfile.mkdtemp(prefix="kpipe-bench-"))
    bench = Bench(args, bootstrap or "localhost:9092", workdir)
    try:
        for case in ALL_CASES:  # a fixed order: memory comes after consumer
            if case in cases:
                getattr(bench, case)()
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    render(bench.rows, args.runs)
    for note in bench.notes:
        print(f"- {note}")
    if output:
        info = machine_info(bootstrap or "", external=bool(args.bootstrap))
        Path(output).write_text(markdown(bench.rows, info, bench.notes, args))
        log(f"wrote {output}")
    return 0 if all(r.passed is not False for r in bench.rows) else 1


if __name__ == "__main__":
    sys.exit(main())

"""kpipe.testing's speed: 1,000 events through two consumer groups in memory, against calling the same handlers
by hand.

    python benchmarks/testing_speed.py                 # 5 runs; writes benchmarks/RESULTS-testing.md
    python benchmarks/testing_speed.py --runs 1 --output -    # print only

kpipe side: `run_pipeline` on a generated project (topic `in` with 3 partitions and a schema; group `first`
validates each event and emits one to `mid`; group `second` reads `mid`), timed from the first `send()` to the
end of `drain()`: validation, keys and partitions, the workers' consume loops, per-message commits, emits.
Start-up (loading the project, starting the workers) is reported apart.
Baseline, run beside it in the same process: the same 1,000 events validated with the same pydantic model, and
the same two handler functions called by hand, the second on the JSON the first produced (what a unit test
that calls handlers directly does). Target (issue 21): kpipe side under 2 s.
Also reported: the same run with `first` at `concurrency: 8` (its handler calls run one after another, in the
order the concurrent loop starts them), and one event whose handler fails twice with `backoff_ms: 30000`: its
two backoffs (30 s and 60 s, ±20 % jitter) pass on the run's virtual clock, so the wall time is what matters.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

EVENTS = 1000
TARGET_SECONDS = 2.0

SCHEMA = """\
type: object
required: [id, n]
properties:
  id: {type: string}
  n: {type: integer}
"""

HANDLERS = """\
def first(event, ctx):
    ctx.emit("mid", {"id": event.id, "n": event.n * 2})


seen = []


def second(event, ctx):
    seen.append(event.n)


calls = {}


def flaky(event, ctx):
    calls[event.id] = calls.get(event.id, 0) + 1
    if calls[event.id] <= 2:
        raise RuntimeError("not yet")
"""

PROJECT = """\
cluster: {bootstrap_servers: "localhost:9092"}
schemas: {Event: ../event.schema.yaml}
topics:
  in: {partitions: 3, key: id, schema: Event}
  mid: {partitions: 3, key: id, schema: Event}
consumers:
  first: {topics: [in], handler: bench_handlers:first, emits: [mid], commit: {strategy: per_message}%s}
  second: {topics: [mid], handler: bench_handlers:second, commit: {strategy: per_message}}
"""

RETRY_PROJECT = """\
cluster: {bootstrap_servers: "localhost:9092"}
schemas: {Event: ../event.schema.yaml}
topics:
  in: {partitions: 3, key: id, schema: Event}
consumers:
  flaky:
    topics: [in]
    handler: bench_handlers:flaky
    on_error: {action: skip, retries: 2, backoff_ms: 30000, max_backoff_ms: 120000}
"""


def write_project(root: Path) -> Path:
    (root / "event.schema.yaml").write_text(SCHEMA)
    (root / "bench_handlers.py").write_text(HANDLERS)
    for name, text in (
        ("pipelines", PROJECT % ""),
        ("concurrent", PROJECT % ", concurrency: 8"),
        ("retry", RETRY_PROJECT),
    ):
        (root / name).mkdir()
        (root / name / "project.yaml").write_text(text)
    return root / "pipelines"


def events() -> list[dict]:
    return [{"id": f"k{i % 97}", "n": i} for i in range(EVENTS)]


def run_kpipe(root: Path, pipelines: str = "pipelines") -> tuple[float, float]:
    from kpipe.testing import run_pipeline

    started = time.perf_counter()
    with run_pipeline(root / pipelines, root=root) as p:
        ready = time.perf_counter()
        for event in events():
            p.send("in", event)
        p.drain()
        done = time.perf_counter()
        handled = len(p.handled("second"))
    if handled != EVENTS:
        raise SystemExit(f"second handled {handled} of {EVENTS} events")
    return ready - started, done - ready


def run_retry(root: Path, n: int) -> tuple[float, float]:
    """(wall seconds, virtual seconds) of one event handled on its third call, after backoffs of 30 s and 60 s."""
    from kpipe.testing import run_pipeline

    with run_pipeline(root / "retry", root=root) as p:
        started = time.perf_counter()
        p.send("in", {"id": f"r{n}", "n": n})
        p.drain()
        wall = time.perf_counter() - started
        if len(p.handled("flaky")) != 1:
            raise SystemExit("the flaky handler's event was not handled")
        return wall, p.clock.elapsed


def run_baseline(root: Path) -> float:
    """The handlers called by hand on validated events: what the in-memory run is compared with."""
    import importlib

    from kpipe.compilation.project import load_project

    project = load_project([root / "pipelines"], root=root)
    model = project.topic_model("in")
    handlers = importlib.import_module("bench_handlers")

    class Ctx:
        def __init__(self) -> None:
            self.out: list[bytes] = []

        def emit(self, topic: str, event: dict) -> None:
            self.out.append(json.dumps(event).encode())

    started = time.perf_counter()
    ctx = Ctx()
    for event in events():
        handlers.first(model.model_validate_json(json.dumps(event)), ctx)
    for raw in ctx.out:
        handlers.second(model.model_validate_json(raw), ctx)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--output", default=str(Path(__file__).with_name("RESULTS-testing.md")), help="'-': none"
    )
    args = parser.parse_args(argv)
    starts, kpipe_runs, baseline_runs, concurrent_runs, retry_walls, retry_virtuals = [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_project(root)
        sys.path.insert(0, str(root))
        for n in range(args.runs):  # alternate, so drift on a shared machine hits both alike
            start, seconds = run_kpipe(root)
            starts.append(start)
            kpipe_runs.append(seconds)
            baseline_runs.append(run_baseline(root))
            concurrent_runs.append(run_kpipe(root, "concurrent")[1])
            wall, virtual = run_retry(root, n)
            retry_walls.append(wall)
            retry_virtuals.append(virtual)
    kpipe_s, base_s, start_s = (statistics.median(v) for v in (kpipe_runs, baseline_runs, starts))
    conc_s, retry_s, virtual_s = (
        statistics.median(v) for v in (concurrent_runs, retry_walls, retry_virtuals)
    )
    ok = kpipe_s < TARGET_SECONDS
    lines = [
        "# kpipe.testing: 1,000 events through two groups, in memory",
        "",
        f"Python {platform.python_version()} on {platform.machine()}, {args.runs} runs, medians [min–max]; "
        "produced by `python benchmarks/testing_speed.py`.",
        "",
        "| what | seconds | target |",
        "| --- | --- | --- |",
        f"| kpipe.testing: send 1,000 + drain through `first` → `mid` → `second` | {kpipe_s:.3f} "
        f"[{min(kpipe_runs):.3f}–{max(kpipe_runs):.3f}] | < {TARGET_SECONDS:g} s: {'met' if ok else 'MISSED'} |",
        f"| baseline: the same handlers called by hand (validation + JSON) | {base_s:.3f} "
        f"[{min(baseline_runs):.3f}–{max(baseline_runs):.3f}] | – |",
        f"| ratio kpipe / baseline | {kpipe_s / base_s:.1f}× | report |",
        f"| start-up: load the project, start both workers | {start_s:.3f} | report |",
        f"| the same 1,000 with `first` at `concurrency: 8` | {conc_s:.3f} "
        f"[{min(concurrent_runs):.3f}–{max(concurrent_runs):.3f}] | report |",
        f"| one event failing twice, `backoff_ms: 30000`: wall time (virtual time waited: {virtual_s:.0f} s) "
        f"| {retry_s:.3f} [{min(retry_walls):.3f}–{max(retry_walls):.3f}] | report |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.output != "-":
        Path(args.output).write_text(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

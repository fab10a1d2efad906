"""What a group's own producer costs an idle worker: `kpipe run` of one one-instance group (no-op handler) on the
embedded broker, a group that can send (on_error: dead_letter, the default: it has a producer for its dead
letters) beside one that cannot (on_error: skip, no emits: since the group producer is built only when it can
be used, it has none), alternating.

    python benchmarks/group_producer.py                     # 3 runs of each; writes its RESULTS.md section
    python benchmarks/group_producer.py --runs 1 --output -  # a smoke run, printed only

Per run, a few seconds after /readyz says 200: the worker process's threads (/proc/<pid>/status), its librdkafka
clients (threads named rdk:main), and its PSS, private dirty memory and RSS (/proc/<pid>/smaps_rollup), with
the 1-minute load average. Thread counts and private memory are hardly moved by load; medians of the runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from many_groups import STARTED, free_port, kpipe_command, log, machine, smaps_rollup, stop_run  # noqa: E402
from sections import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## A group's own producer: one idle worker (benchmarks/group_producer.py)"
# What each variant writes under the group: one that can send (dead letters), one that cannot.
VARIANTS = {"sends": "on_error: {action: dead_letter}", "quiet": "on_error: {action: skip}"}


@dataclass
class Sample:
    variant: str
    threads: int = 0
    clients: int = 0  # librdkafka clients in the worker
    pss: float = 0.0
    private: float = 0.0
    rss: float = 0.0
    load: float = 0.0


def write_project(root: Path, prefix: str, on_error: str) -> Path:
    root.mkdir(parents=True)
    (root / "handlers.py").write_text("def noop(event, ctx):\n    pass\n")
    (root / "pipeline.yaml").write_text(
        f"cluster:\n  bootstrap_servers: local\ntopics:\n  {prefix}-t:\n    partitions: 1\n"
        f"consumers:\n  {prefix}-g:\n    topics: [{prefix}-t]\n    handler: handlers:noop\n    {on_error}\n"
    )
    return root


def thread_names(pid: int) -> list[str]:
    names = []
    for comm in Path(f"/proc/{pid}/task").glob("*/comm"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            names.append(comm.read_text().strip())
    return names


def one_run(variant: str, workdir: Path, index: int, settle: float, timeout: float) -> Sample | None:
    prefix = f"gp{os.getpid()}x{index}{variant}"
    project = write_project(workdir / prefix, prefix, VARIANTS[variant])
    port = free_port()
    proc = subprocess.Popen(
        [*kpipe_command(), "run", str(project), "--metrics-port", str(port)],
        stderr=subprocess.PIPE, text=True, cwd=workdir,
    )  # fmt: skip
    workers: list[int] = []

    def read_log() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            found = STARTED.search(line)
            if found:
                workers.append(int(found.group(2)))
            elif " ERROR " in line or "Traceback" in line:
                log("  kpipe: " + line.rstrip())

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    start = time.monotonic()
    try:
        while time.monotonic() - start < timeout and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        else:
            log(f"  {variant}: not ready within {timeout:g} s")
            return None
        time.sleep(settle)  # the worker reaches its idle state
        [pid] = workers
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        memory = smaps_rollup(pid)
        names = thread_names(pid)
        return Sample(
            variant, threads=int(status["Threads"]), clients=names.count("rdk:main"), pss=memory["Pss"],
            private=memory["Private_Dirty"], rss=memory["Rss"], load=os.getloadavg()[0],
        )  # fmt: skip
    finally:
        stop_run(proc, reader)


def section(samples: dict[str, list[Sample]], runs: int, info: str, command: str) -> str:
    def med(variant: str, attr: str) -> float:
        return (
            statistics.median(getattr(s, attr) for s in samples[variant])
            if samples[variant]
            else float("nan")
        )

    def row(label: str, attr: str, unit: str, fmt: str) -> str:
        sends, quiet = med("sends", attr), med("quiet", attr)
        return f"| {label} | {fmt.format(sends)}{unit} | {fmt.format(quiet)}{unit} | {fmt.format(sends - quiet)}{unit} |"

    loads = "; ".join(f"{v}: " + ", ".join(f"{s.load:.1f}" for s in samples[v]) for v in samples)
    return "\n".join([
        SECTION,
        "",
        "One consumer group, one instance, a no-op handler, on the embedded broker; one idle worker measured a "
        f"few seconds after `/readyz` said 200; medians of {runs} runs of each, alternating. {info}",
        "",
        "| idle worker | can send (dead letters: a producer) | cannot send (skip, no emits: none) | difference |",
        "| --- | --- | --- | --- |",
        row("threads", "threads", "", "{:.0f}"),
        row("librdkafka clients", "clients", "", "{:.0f}"),
        row("PSS", "pss", " MB", "{:.1f}"),
        row("private dirty", "private", " MB", "{:.1f}"),
        row("RSS", "rss", " MB", "{:.1f}"),
        "",
        f"Load average (1 min) at each measurement: {loads}.",
        "",
        f"Produced by `{command}` on {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC.",
        "",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after ready before measuring")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument(
        "--output", default=str(RESULTS), help="file whose section to rewrite; '-': print only"
    )
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT / "runner"))
    from kpipe.local import state as local_state
    from kpipe.local.broker import start_local_broker

    samples: dict[str, list[Sample]] = {variant: [] for variant in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="kpipe-group-producer-") as tmp:
        workdir = Path(tmp)
        os.environ["KPIPE_STATE_DIR"] = str(workdir / "state")  # this run's broker is the `local` one
        info = machine()
        broker = start_local_broker(None)
        local_state.record(broker.bootstrap, broker.pid)
        try:
            for i in range(args.runs):
                order = list(VARIANTS) if i % 2 == 0 else list(VARIANTS)[::-1]
                for variant in order:
                    sample = one_run(variant, workdir, i, args.settle, args.timeout)
                    if sample is None:
                        continue
                    samples[variant].append(sample)
                    log(f"{variant:6s} threads {sample.threads:3d}, librdkafka clients {sample.clients}, PSS "
                        f"{sample.pss:5.1f} MB, private dirty {sample.private:5.1f} MB, RSS {sample.rss:5.1f} MB, "
                        f"load {sample.load:.1f}")  # fmt: skip
        finally:
            local_state.forget(broker.pid)
            broker.stop()
    command = " ".join(["python benchmarks/group_producer.py", *(argv if argv is not None else sys.argv[1:])])
    text = section(samples, args.runs, info, command)
    print(text)
    if args.output != "-":
        write_section(Path(args.output), SECTION, text)
    return 0 if all(samples.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

"""`kpipe apply --yes` as a process against the raw batched CreateTopics call as a process, side by side.

    python benchmarks/apply_cli.py                 # 1,000 topics, 7 pairs; writes its section of RESULTS.md
    python benchmarks/apply_cli.py --quick         # 100 topics, 1 pair, writes nothing
    python benchmarks/apply_cli.py --profile       # also: where the CLI's own time goes (cProfile, -X importtime)

kpipe side: a fresh project of N topics, `kpipe apply DIR --yes` (load, validate, read the cluster, plan, one
CreateTopics, report), timed as a process. Baseline: a fresh `python` process that imports confluent_kafka,
builds an AdminClient and awaits one `create_topics([N topics])`: the least any tool can do for the same result.
Runs alternate (A B, B A, ...) on the same broker; each run uses new topic names, deleted afterwards. kpipe's
bytecode is written before the runs, as installing a package does, so that neither side compiles Python source
while timed (confluent_kafka's is written by pip; a checkout installed in editable mode has none, and with
PYTHONDONTWRITEBYTECODE set every run would compile all of kpipe again). The
figures are medians with [min-max]; the ratio is the median of per-pair ratios of wall time (target ≤ 1.3×).
CPU time (user + system of the process) is reported beside it, since on a shared machine it varies less, and
so is the CPU time of a floor process that only imports what kpipe's CLI is built on (click, PyYAML, pydantic with
one model, confluent_kafka): kpipe's CPU minus the floor is the part kpipe's own code can still win back.
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import projects  # noqa: E402
from run import KPIPE, PY, REPO, abab, fmt_stats, log, machine_info, paired_ratio  # noqa: E402
from sections import write_section  # noqa: E402

TARGET = 1.3
SECTION = "## kpipe apply --yes as a process"

RAW = """\
import sys
from confluent_kafka.admin import AdminClient, NewTopic
prefix, n, bootstrap = sys.argv[1], int(sys.argv[2]), sys.argv[3]
admin = AdminClient({"bootstrap.servers": bootstrap})
futures = admin.create_topics([NewTopic(f"{prefix}-{i}", 1, 1) for i in range(n)])
for future in futures.values():
    future.result(60)
"""


# What kpipe's CLI is built on, imported and doing nothing: click, PyYAML, pydantic with one model, confluent_kafka.
# Its CPU time is the least any CLI validating files with pydantic can take, before doing any work of its own.
FLOOR = """\
import click, yaml
from pydantic import BaseModel
class Topic(BaseModel):
    partitions: int
Topic(partitions=1)
from confluent_kafka.admin import AdminClient, NewTopic
"""


def compile_kpipe() -> None:
    """Write the bytecode of kpipe's package next to its source (what `pip install` does for a wheel)."""
    import compileall

    package = REPO / "runner" / "kpipe"
    if not compileall.compile_dir(str(package), quiet=1):
        raise RuntimeError(f"could not compile {package}")


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one process run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(REPO), env=env)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


class Sides:
    def __init__(self, bootstrap: str, workdir: Path, topics: int):
        from confluent_kafka.admin import AdminClient

        self.bootstrap, self.workdir, self.topics = bootstrap, workdir, topics
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.cpu: dict[str, list[float]] = {"kpipe": [], "raw": [], "floor": []}

    def delete(self, prefix: str) -> None:
        names = [f"{prefix}-{i}" for i in range(self.topics)]
        for future in self.admin.delete_topics(names, operation_timeout=60).values():
            future.result(60)

    def project(self, prefix: str) -> Path:
        return projects.apply_project(self.workdir / prefix, self.bootstrap, prefix, self.topics)

    def kpipe(self) -> float:
        prefix = f"bench-cli-{uuid.uuid4().hex[:6]}"
        root = self.project(prefix)
        elapsed, cpu = timed([KPIPE, "apply", str(root), "--yes"])
        self.cpu["kpipe"].append(cpu)
        self.delete(prefix)
        return elapsed

    def raw(self) -> float:
        prefix = f"bench-raw-{uuid.uuid4().hex[:6]}"
        elapsed, cpu = timed([PY, "-c", RAW, prefix, str(self.topics), self.bootstrap])
        self.cpu["raw"].append(cpu)
        self.delete(prefix)
        return elapsed

    def raw_then_floor(self) -> float:
        """A baseline run (its wall time is returned), then a floor run, so both see the same drift."""
        elapsed = self.raw()
        self.cpu["floor"].append(timed([PY, "-c", FLOOR])[1])
        return elapsed


def profile(sides: Sides) -> str:
    """Where the CLI's time goes: the slowest imports, then the functions with most cumulative time."""
    prefix = f"bench-prof-{uuid.uuid4().hex[:6]}"
    root = sides.project(prefix)
    proc = subprocess.run(
        [PY, "-X", "importtime", KPIPE, "apply", str(root), "--yes"], capture_output=True, text=True
    )
    sides.delete(prefix)
    rows = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(3)) <= 2:
            rows.append((int(m.group(2)), m.group(4)))
    imports = "\n".join(f"    {us / 1000:7.1f} ms  {name}" for us, name in sorted(rows, reverse=True)[:12])
    prefix = f"bench-prof-{uuid.uuid4().hex[:6]}"
    root = sides.project(prefix)
    stats_file = sides.workdir / "apply.prof"
    subprocess.run(
        [PY, "-m", "cProfile", "-o", str(stats_file), KPIPE, "apply", str(root), "--yes"],
        capture_output=True,
        check=True,
    )
    sides.delete(prefix)
    out = io.StringIO()
    pstats.Stats(str(stats_file), stream=out).sort_stats("cumulative").print_stats(r"kpipe/", 20)
    table = out.getvalue()
    table = table[table.find("   ncalls") :] if "   ncalls" in table else table
    table = re.sub(r"\S*/(kpipe/)", r"\1", table)  # paths relative to the package
    return f"top-level imports (cumulative):\n{imports}\n\nfunctions by cumulative time:\n{table}"


def section(kpipe: list[float], raw: list[float], sides: Sides, runs: int, info: dict[str, str]) -> str:
    ratio = paired_ratio(kpipe, raw)
    cpu_ratio = paired_ratio(sides.cpu["kpipe"], sides.cpu["raw"])
    floor_cpu = sides.cpu["floor"]
    own = [k - f for k, f in zip(sides.cpu["kpipe"], floor_cpu, strict=True)]
    # The best kpipe could do if its own work took no CPU at all: the baseline plus the floor's extra CPU.
    best = paired_ratio([r + f - b for r, f, b in zip(raw, floor_cpu, sides.cpu["raw"], strict=True)], raw)
    verdict = "pass" if ratio <= TARGET else "**MISS**"
    n = f"{sides.topics:,}"
    return (
        f"{SECTION}\n\n"
        f"Produced by `python benchmarks/apply_cli.py` on {info['date']} ({info['CPUs']}, Python {info['Python']}, "
        f"confluent-kafka {info['confluent-kafka']}, {info['broker']}). {runs} pairs, alternating; medians with "
        "[min–max]; ratios are medians of per-pair ratios. kpipe's bytecode is compiled beforehand, as an "
        "install does.\n\n"
        "| case | kpipe | baseline | ratio | target | result |\n"
        "| --- | --- | --- | --- | --- | --- |\n"
        f"| `kpipe apply DIR --yes`, {n} new topics (process wall time) | {fmt_stats(kpipe, 's')} | "
        f"{fmt_stats(raw, 's')} (a `python` process: import confluent_kafka, one create_topics([{n} topics]), "
        f"awaited) | {ratio:.2f}× | ≤ {TARGET}× | {verdict} |\n"
        f"| ↳ CPU time of the process (user + system) | {fmt_stats(sides.cpu['kpipe'], 's')} | "
        f"{fmt_stats(sides.cpu['raw'], 's')} | {cpu_ratio:.2f}× | report | – |\n"
        f"| ↳ wall minus CPU (waiting on the broker, or for a CPU on a busy machine) | "
        f"{fmt_stats([w - c for w, c in zip(kpipe, sides.cpu['kpipe'], strict=True)], 's')} | "
        f"{fmt_stats([w - c for w, c in zip(raw, sides.cpu['raw'], strict=True)], 's')} | – | report | – |\n"
        f"| ↳ floor: a `python` process importing what kpipe's CLI is built on (click, PyYAML, pydantic with one "
        f"model, confluent_kafka) and doing nothing, CPU time | {fmt_stats(floor_cpu, 's')} | "
        f"{fmt_stats(sides.cpu['raw'], 's')} | {paired_ratio(floor_cpu, sides.cpu['raw']):.2f}× | report | – |\n"
        f"| ↳ kpipe's own CPU time (kpipe minus the floor, run by run) | {fmt_stats(own, 's')} | – | – | report | – |\n"
        f"\nWith no CPU time of its own beyond the floor, `kpipe apply` would take about {best:.2f}× of the "
        "baseline's wall time (baseline wall + floor CPU − baseline CPU, pair by pair).\n"
        f"\nMachine load while it ran (1-minute average): {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; a "
        "CPU-bound step takes longer than its CPU time when the load exceeds the CPU count.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 topics, 1 pair, writes nothing")
    parser.add_argument("--runs", type=int, help="pairs of runs (default 7; 1 with --quick)")
    parser.add_argument("--topics", type=int, help="topics per apply (default 1000; 100 with --quick)")
    parser.add_argument(
        "--bootstrap", help="HOST:PORT of an external cluster (default: start the local broker)"
    )
    parser.add_argument(
        "--output", help="markdown file whose section to write (default: benchmarks/RESULTS.md)"
    )
    parser.add_argument("--profile", action="store_true", help="also print where the CLI's time goes")
    args = parser.parse_args(argv)
    runs = args.runs or (1 if args.quick else 7)
    topics = args.topics or (100 if args.quick else 1000)
    output = args.output or (None if args.quick else str(HERE / "RESULTS.md"))

    broker = None
    bootstrap = args.bootstrap
    if not bootstrap:
        from kpipe.local.broker import start_local_broker

        broker = start_local_broker()
        bootstrap = broker.bootstrap
        log(f"local broker on {bootstrap}")
    workdir = Path(tempfile.mkdtemp(prefix="kpipe-bench-apply-"))
    compile_kpipe()
    try:
        sides = Sides(bootstrap, workdir, topics)
        sides.raw()  # warm the broker and the file cache once, for both sides alike
        sides.cpu["raw"].clear()
        log(f"kpipe apply --yes vs raw batched create_topics, {topics} topics, {runs} pairs")
        kpipe, raw = abab(runs, sides.kpipe, sides.raw_then_floor)
        report = profile(sides) if args.profile else ""
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    info = machine_info(bootstrap, external=bool(args.bootstrap))
    text = section(kpipe, raw, sides, runs, info)
    if report:
        text += (
            "\nWhere the CLI's own time goes (one more run each under `-X importtime` and cProfile, "
            "`--profile`):\n\n```text\n" + report.rstrip() + "\n```\n"
        )
    print(text)
    if output:
        write_section(Path(output), SECTION, text)
        log(f"wrote the section to {output}")
    return 0 if paired_ratio(kpipe, raw) <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())

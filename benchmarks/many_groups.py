"""Many small groups: `kpipe run` of 50 one-instance groups (no-op handler) on the embedded broker, with workers
forked from the fork server (the default) beside workers spawned as fresh interpreters (KPIPE_WORKER_START=spawn,
the design before), alternating.

    python benchmarks/many_groups.py                 # 50 groups, 3 runs of each; writes its RESULTS.md section
    python benchmarks/many_groups.py --groups 10 --runs 1 --output -     # a smoke run, printed only

Per run: seconds from starting `kpipe run` to /readyz 200, split into the time until the workers are started
(the CLI, loading the project, reaching the broker and creating the topics, then starting every worker) and
the time until every group is assigned; then, a few seconds after ready, PSS (proportional set size: shared
pages divided among the processes that share them), RSS and private dirty memory from /proc/<pid>/smaps_rollup
of every process of the run (the supervisor, the fork server, multiprocessing's resource tracker, the
workers). Also the CPU seconds every process of the run had used when it was ready: start-up work, which load
from other processes moves much less than the seconds to ready, with the load average at the start and at
ready of each run. Medians of the runs; goal: ready within 8 s and at most 600 MB PSS in total.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sections import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## Many groups: start-up and memory (benchmarks/many_groups.py)"
READY_GOAL_S = 8.0
PSS_GOAL_MB = 600.0
STARTED = re.compile(r"started (\S+) \(pid (\d+)\)")
PREPARED = re.compile(r"kpipe\.run: running \d+ workers?")
ASSIGNED = re.compile(r"kpipe\.runtime\.worker: assigned ")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def write_project(root: Path, prefix: str, groups: int) -> Path:
    """`groups` groups, each reading its own one-partition topic with a no-op handler, on `local`."""
    root.mkdir(parents=True)
    (root / "handlers.py").write_text("def noop(event, ctx):\n    pass\n")
    topics = "".join(f"  {prefix}-t{i}:\n    partitions: 1\n" for i in range(groups))
    consumers = "".join(
        f"  {prefix}-g{i}:\n    topics: [{prefix}-t{i}]\n    handler: handlers:noop\n" for i in range(groups)
    )
    (root / "pipeline.yaml").write_text(
        f"cluster:\n  bootstrap_servers: local\ntopics:\n{topics}consumers:\n{consumers}"
    )
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smaps_rollup(pid: int) -> dict[str, float]:
    """Rss, Pss and Private_Dirty of a process in MB (empty when it is gone)."""
    out: dict[str, float] = {}
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss", "Private_Dirty"):
            out[key] = int(rest.split()[0]) / 1024
    return out


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def descendants(root: int) -> list[int]:
    """The pids of every process below `root` (through /proc/*/stat), root first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


@dataclass
class Run:
    method: str
    ready_s: float | None = None
    prepared_s: float | None = None  # "running N workers": project loaded, cluster reached, topics created
    first_started_s: float | None = None  # the first "started <worker>" line
    started_s: float | None = None  # the last "started <worker>" line
    assigned_s: float | None = None  # the last worker's "assigned" line
    cpu_s: float = 0.0  # CPU seconds of every process of the run when /readyz first said 200
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average when the run started and when it was ready
    total_pss: float = 0.0
    total_rss: float = 0.0
    worker_pss: list[float] = field(default_factory=list)
    worker_private: list[float] = field(default_factory=list)
    worker_rss: list[float] = field(default_factory=list)
    others: dict[str, float] = field(default_factory=dict)  # name -> PSS of the supervisor, fork server, ...


def one_run(
    method: str, groups: int, workdir: Path, index: int, settle: float, timeout: float, logs: Path | None
) -> Run:
    prefix = f"mg{os.getpid()}x{index}{method[0]}"
    project = write_project(workdir / prefix, prefix, groups)
    port = free_port()
    env = dict(os.environ, KPIPE_WORKER_START=method)
    cmd = [*kpipe_command(), "run", str(project), "--metrics-port", str(port)]
    run = Run(method)
    workers: dict[int, str] = {}
    keep_log = None if logs is None else (logs / f"{prefix}.log").open("w")
    load_at_start = os.getloadavg()[0]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True, cwd=workdir)

    def read_log() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if keep_log is not None:
                keep_log.write(f"{time.monotonic() - start:8.3f} {line}")
            at = time.monotonic() - start
            found = STARTED.search(line)
            if found:
                workers[int(found.group(2))] = found.group(1)
                run.started_s = at
                run.first_started_s = run.first_started_s or at
            elif PREPARED.search(line):
                run.prepared_s = at
            elif ASSIGNED.search(line):
                run.assigned_s = at
            elif " ERROR " in line or "Traceback" in line:
                log("  kpipe: " + line.rstrip())

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    try:
        while time.monotonic() - start < timeout and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                    if response.status == 200:
                        run.ready_s = time.monotonic() - start
                        # Start-up work, which load from other processes does not change much (unlike the
                        # seconds to ready): the workers still running, the supervisor and the fork server.
                        run.cpu_s = sum(cpu_seconds(pid) for pid in descendants(proc.pid))
                        run.load = (load_at_start, os.getloadavg()[0])
                        break
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        if run.ready_s is None:
            log(f"  {method}: not ready within {timeout:g} s")
            return run
        time.sleep(settle)  # let the workers reach their idle state before measuring them
        for pid in descendants(proc.pid):
            memory = smaps_rollup(pid)
            if not memory:
                continue
            run.total_pss += memory["Pss"]
            run.total_rss += memory["Rss"]
            if pid in workers:
                run.worker_pss.append(memory["Pss"])
                run.worker_private.append(memory["Private_Dirty"])
                run.worker_rss.append(memory["Rss"])
            else:
                name = process_name(pid, proc.pid)
                run.others[name] = run.others.get(name, 0.0) + memory["Pss"]
    finally:
        stop_run(proc, reader)
        if keep_log is not None:
            keep_log.close()
    return run


def stop_run(proc: subprocess.Popen, reader: threading.Thread) -> None:
    """Stop a `kpipe run` as Ctrl-C's sibling SIGTERM would (killed after 60 s), and its log reader."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    reader.join(timeout=5)


def kpipe_command() -> list[str]:
    """The `kpipe` command beside this interpreter, as users run it (multiprocessing runs its script again in
    every forked worker, which `python -m kpipe` does not show); `python -m kpipe` when there is none."""
    script = Path(sys.executable).with_name("kpipe")
    return [str(script)] if script.exists() else [sys.executable, "-m", "kpipe"]


def process_name(pid: int, supervisor: int) -> str:
    if pid == supervisor:
        return "supervisor"
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "other"
    if "multiprocessing.forkserver" in cmdline:
        return "fork server"
    if "multiprocessing.resource_tracker" in cmdline:
        return "resource tracker"
    return "other"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summary(runs: list[Run]) -> dict[str, float]:
    done = [r for r in runs if r.ready_s is not None]
    return {
        "runs": len(runs),
        "ready": len(done),
        "ready_s": median([r.ready_s for r in done if r.ready_s is not None]),
        "started_s": median([r.started_s for r in done if r.started_s is not None]),
        "prepared_s": median([r.prepared_s for r in done if r.prepared_s is not None]),
        "first_started_s": median([r.first_started_s for r in done if r.first_started_s is not None]),
        "assigned_s": median([r.assigned_s for r in done if r.assigned_s is not None]),
        "cpu_s": median([r.cpu_s for r in done]),
        "total_pss": median([r.total_pss for r in done]),
        "total_rss": median([r.total_rss for r in done]),
        "worker_pss": median([median(r.worker_pss) for r in done]),
        "worker_private": median([median(r.worker_private) for r in done]),
        "worker_rss": median([median(r.worker_rss) for r in done]),
        "workers": median([len(r.worker_pss) for r in done]),
        **{
            f"pss {k}": median([r.others.get(k, 0.0) for r in done])
            for k in sorted({k for r in done for k in r.others})
        },
    }


def spread(runs: list[Run], attr: str) -> str:
    values = [getattr(r, attr) for r in runs if r.ready_s is not None and getattr(r, attr) is not None]
    return f"[{min(values):.1f}–{max(values):.1f}]" if values else ""


def loads(runs: list[Run]) -> str:
    return ", ".join(f"{a:.1f}→{b:.1f}" for a, b in (r.load for r in runs if r.ready_s is not None)) or "-"


def section(groups: int, runs: int, fork: list[Run], spawn: list[Run], info: str, command: str) -> str:
    f, s = summary(fork), summary(spawn)

    def row(label: str, key: str, unit: str, fmt: str = "{:.1f}") -> str:
        ratio = s[key] / f[key] if f[key] else float("nan")
        return f"| {label} | {fmt.format(f[key])} {unit} | {fmt.format(s[key])} {unit} | {ratio:.1f}× |"

    ready_ok = f["ready_s"] <= READY_GOAL_S
    pss_ok = f["total_pss"] <= PSS_GOAL_MB
    others = sorted({k for k in f if k.startswith("pss ")} | {k for k in s if k.startswith("pss ")})
    lines = [
        SECTION,
        "",
        f"{groups} consumer groups, one instance each, a no-op handler, each on its own one-partition topic, "
        f"on the embedded broker (`bootstrap_servers: local`, so its short session timeout applies); `kpipe "
        f"run --metrics-port`; medians of {runs} runs of each, alternating. {info}",
        "",
        "| per run | fork server (default) | spawn (before) | spawn / fork server |",
        "| --- | --- | --- | --- |",
        row("`kpipe run` → /readyz 200", "ready_s", "s"),
        row("↳ project loaded, broker reached, topics created", "prepared_s", "s"),
        row("↳ first worker started", "first_started_s", "s"),
        row("↳ last worker started", "started_s", "s"),
        row("↳ last worker assigned", "assigned_s", "s"),
        row("CPU until ready, every process of the run", "cpu_s", "s"),
        row("PSS, every process of the run", "total_pss", "MB", "{:.0f}"),
        row("RSS, summed (counts shared pages in each)", "total_rss", "MB", "{:.0f}"),
        row("worker PSS (median)", "worker_pss", "MB"),
        row("worker private dirty (median)", "worker_private", "MB"),
        row("worker RSS (median)", "worker_rss", "MB"),
    ]
    for key in others:
        lines.append(f"| PSS of the {key[4:]} | {f.get(key, 0.0):.1f} MB | {s.get(key, 0.0):.1f} MB | |")
    lines += [
        "",
        f"Ready: fork server {spread(fork, 'ready_s')} s, spawn {spread(spawn, 'ready_s')} s; "
        f"PSS: fork server {spread(fork, 'total_pss')} MB, spawn {spread(spawn, 'total_pss')} MB. "
        f"Load average (1 min) at the start and at ready of each run: fork server {loads(fork)}, spawn "
        f"{loads(spawn)}. "
        f"Goals: /readyz within {READY_GOAL_S:g} s ({'met' if ready_ok else 'missed'}), at most "
        f"{PSS_GOAL_MB:g} MB PSS ({'met' if pss_ok else 'missed'}).",
        "",
        f"Produced by `{command}` on {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC.",
        "",
    ]
    return "\n".join(lines)


def machine() -> str:
    from run import machine_info  # the one description of the machine the benchmarks write

    info = machine_info("", external=False)
    cpus, model = info["CPUs"].split(" × ", 1)
    return (
        f"Machine: {cpus} CPUs ({model}), load average {os.getloadavg()[0]:.1f} at the start, Python "
        f"{info['Python']}, confluent-kafka {info['confluent-kafka']}, librdkafka {info['librdkafka']}."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after ready before measuring")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument(
        "--output", default=str(RESULTS), help="file whose section to rewrite; '-': print only"
    )
    parser.add_argument("--json", action="store_true", help="also print every run as JSON")
    parser.add_argument(
        "--logs", type=Path, help="keep each run's log here, lines prefixed with seconds since start"
    )
    parser.add_argument("--methods", default="forkserver,spawn", help="which start methods to run")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT / "runner"))
    from kpipe.local import state as local_state
    from kpipe.local.broker import start_local_broker

    with tempfile.TemporaryDirectory(prefix="kpipe-many-") as tmp:
        workdir = Path(tmp)
        # A private state directory: this run's broker is the `local` one its `kpipe run`s find.
        os.environ["KPIPE_STATE_DIR"] = str(workdir / "state")
        info = machine()
        broker = start_local_broker(None)
        local_state.record(broker.bootstrap, broker.pid)
        results: dict[str, list[Run]] = {"forkserver": [], "spawn": []}
        try:
            for i in range(args.runs):
                order = [m for m in ("forkserver", "spawn") if m in args.methods.split(",")]
                for method in order if i % 2 == 0 else order[::-1]:
                    run = one_run(method, args.groups, workdir, i, args.settle, args.timeout, args.logs)
                    results[method].append(run)
                    log(
                        f"{method:10s} ready {run.ready_s or float('nan'):5.1f} s (started "
                        f"{run.started_s or float('nan'):5.1f} s, CPU {run.cpu_s:4.1f} s, load "
                        f"{run.load[0]:.1f}→{run.load[1]:.1f}), PSS {run.total_pss:6.0f} MB, worker PSS "
                        f"{median(run.worker_pss):5.1f} MB, private dirty {median(run.worker_private):5.1f} MB"
                    )
        finally:
            local_state.forget(broker.pid)
            broker.stop()
    command = " ".join(["python benchmarks/many_groups.py", *(argv if argv is not None else sys.argv[1:])])
    text = section(args.groups, args.runs, results["forkserver"], results["spawn"], info, command)
    print(text)
    if args.json:
        print(json.dumps({k: [vars(r) for r in v] for k, v in results.items()}, indent=1))
    if args.output != "-":
        write_section(Path(args.output), SECTION, text)
    f = summary(results["forkserver"])
    return 0 if f["ready_s"] <= READY_GOAL_S and f["total_pss"] <= PSS_GOAL_MB else 1


if __name__ == "__main__":
    sys.exit(main())

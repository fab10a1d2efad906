"""`kpipe dev`'s moving parts: the live table of groups, status lines, demo events, and running the supervisor
while showing its progress. `kpipe.local.session.run_dev` strings them together with the broker and apply.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from kpipe.compilation.project import CompiledProject
from kpipe.redaction import reveal
from kpipe.runtime.meter import STATISTICS_INTERVAL_MS
from kpipe.runtime.protocol import WorkerSpec
from kpipe.runtime.protocol import worker_specs as make_worker_specs
from kpipe.runtime.summary import GroupTotals, group_totals, rate, summary_lines
from kpipe.runtime.supervisor import Supervisor

log = logging.getLogger("kpipe.dev")

# Fast group joins on the embedded broker come from the compiler's "embedded broker default" layer: the workers
# are told they talk to it (WorkerSpec.embedded_broker) and get them, as `kpipe run` and `kpipe explain` do.
# The table's lag column: librdkafka statistics every second, which the workers' meters read.
DEV_STATISTICS = (("statistics.interval.ms", str(STATISTICS_INTERVAL_MS)),)


def render_table(
    rows: Mapping[str, GroupTotals],
    rates: Mapping[str, float],
    bootstrap: str,
    now: float,
    auto_commit: frozenset[str] = frozenset(),
) -> Any:
    """The live table; readable in an 80-column terminal (short headers, partitions as ranges: orders[0-2])."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=f"kpipe dev — {bootstrap} — Ctrl-C to stop",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        caption="inst = running/declared, lag = events not yet committed, dead = dead-lettered, "
        "ev/s = handled per second, commit = time since the last, rst = restarts",
        caption_justify="left",
    )
    # The partitions go under the group's name: a column of their own does not fit in 80 columns.
    table.add_column("group", overflow="fold", min_width=12, max_width=32)
    for name in ("inst", "handled", "ev/s", "lag", "dead", "skip", "commit", "rst"):
        table.add_column(name, justify="right", no_wrap=True, min_width=len(name))
    for row in rows.values():
        # librdkafka's auto-commit happens in the background, so the worker has no commit time to report.
        ago = (
            f"{now - row.last_commit_at:.0f}s"
            if row.last_commit_at
            else ("auto" if row.group in auto_commit else "-")
        )
        name = Text(row.group)
        name.append("\n  " + (partition_ranges(row.partitions) or "-"), style="dim")
        table.add_row(
            name,
            f"{row.running}/{row.instances}",
            str(row.handled),
            rate_cell(rates.get(row.group, 0.0)),
            "-" if row.lag is None else str(row.lag),
            str(row.dead_lettered),
            str(row.skipped),
            ago,
            str(row.restarts),
        )
    return table


def rate_cell(per_second: float) -> str:
    """The table's ev/s, four characters for most rates: a slow group shows "<0.1" or "0.4", not "0"."""
    if per_second <= 0:
        return "0"
    if per_second < 0.1:
        return "<0.1"
    return f"{per_second:.1f}" if per_second < 10 else f"{per_second:.0f}"


def partition_ranges(partitions: Iterable[tuple[str, int]]) -> str:
    """[("orders", 0), ("orders", 1), ("orders", 2), ("audit", 5)] -> "audit[5] orders[0-2]"."""
    by_topic: dict[str, list[int]] = {}
    for topic, partition in partitions:
        by_topic.setdefault(topic, []).append(partition)
    parts = []
    for topic, numbers in sorted(by_topic.items()):
        numbers = sorted(set(numbers))
        spans: list[str] = []
        start = prev = numbers[0]
        for n in numbers[1:] + [None]:  # type: ignore[list-item]
            if n is not None and n == prev + 1:
                prev = n
                continue
            spans.append(str(start) if start == prev else f"{start}-{prev}")
            if n is not None:
                start = prev = n
        parts.append(f"{topic}[{','.join(spans)}]")
    return " ".join(parts)


def status_line(rows: Mapping[str, GroupTotals]) -> str:
    """`kpipe dev --no-live`'s line, printed when it changes (no rate, so an idle project prints nothing)."""
    return "status: " + "; ".join(
        f"{r.group} handled={r.handled} dead_lettered={r.dead_lettered} skipped={r.skipped} running={r.running}/{r.instances}"
        + ("" if r.lag is None else f" lag={r.lag}")
        for r in rows.values()
    )


def send_demo_events(project: CompiledProject, demo_dir: Path, echo: Callable[[str], None]) -> int:
    """Send `<producer>.jsonl` through that producer, and `<topic>.poison.jsonl` raw (bypassing validation)."""
    from kpipe.runtime.producer import open_producer

    sent = 0
    for path in sorted(demo_dir.glob("*.jsonl")):
        name = path.name.removesuffix(".jsonl")
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if name.endswith(".poison"):
            sent += _send_raw(project, name.removesuffix(".poison"), lines)
            echo(f"demo: wrote {len(lines)} poison events straight to topic '{name.removesuffix('.poison')}'")
            continue
        if name not in project.declarations.producers:
            echo(f"demo: skipping {path.name}: no producer named '{name}'")
            continue
        with open_producer(project, name) as producer:
            for line in lines:
                producer.send(json.loads(line))
        sent += len(lines)
        echo(f"demo: sent {len(lines)} events through producer '{name}'")
    return sent


def _send_raw(project: CompiledProject, topic: str, lines: list[str]) -> int:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": reveal(project.bootstrap_servers)})  # an env() token: its value
    for line in lines:
        record = json.loads(line)
        value = record["value"]
        payload = value if isinstance(value, str) else json.dumps(value)
        producer.produce(topic, payload.encode(), key=str(record.get("key", "")).encode() or None)
    remaining = producer.flush(10)
    if remaining:
        raise RuntimeError(f"{remaining} demo events to {topic} were not delivered")
    return len(lines)


def worker_specs(
    project: CompiledProject,
    paths: list[Path],
    variables: dict[str, str],
    values_files: list[Path],
    local: bool,
) -> list[WorkerSpec]:
    return make_worker_specs(
        ((g.group_id, g.instances) for g in project.consumer_groups()),
        project_paths=(str(p) for p in paths),
        variables=variables,
        values_files=(str(v) for v in values_files),
        bootstrap_override=project.bootstrap_servers,
        project_root=str(project.declarations.root) if project.declarations.root else None,
        embedded_broker=local,
        extra_consumer_config=DEV_STATISTICS,
        metrics=True,
    )


class Echo:
    """Progress lines to stderr, or into the live display while one is showing."""

    def __init__(self, write: Callable[[str], None]):
        self._write = write
        self._target: Callable[[str], None] | None = None

    def redirect(self, target: Callable[[str], None] | None) -> None:
        self._target = target

    def __call__(self, text: str) -> None:
        # OSError: the terminal is gone (SIGHUP); progress has nowhere to go, the work goes on.
        with contextlib.suppress(OSError):
            (self._target or self._write)(text)


class StopFlag:
    """Set by the first SIGINT/SIGTERM; a second one forces the supervisor to kill its workers."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.supervisor: Supervisor | None = None
        # The signal that asked for the stop: Ctrl-C (SIGINT) ends `kpipe dev` with 130, as any interrupted command.
        self.first_signal: int | None = None

    def install(self) -> dict[int, Any]:
        # SIGHUP too: closing the terminal must stop the consumers and the broker, not orphan them.
        return {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.first_signal is None:
            self.first_signal = signum
        if self.event.is_set() and self.supervisor is not None:
            self.supervisor.stop(force=True)
        self.event.set()


def _show_live(
    table: Callable[[], Any],
    thread: threading.Thread,
    stop: StopFlag,
    echo: Callable[[str], None],
    refresh: float,
) -> None:
    """Redraw `table()` on the terminal until the supervisor's thread ends or a stop is asked for."""
    from collections import deque

    from rich.console import Console, Group
    from rich.live import Live
    from rich.text import Text

    # Messages from other threads (the demo feeder) are shown under the table instead of being written to
    # the terminal, where they would tear the live display.
    messages: deque[str] = deque(maxlen=6)
    if hasattr(echo, "redirect"):
        echo.redirect(messages.append)  # type: ignore[attr-defined]

    def view() -> Group:
        return Group(table(), Text("\n".join(messages), style="dim"))

    console = Console(stderr=True)
    with Live(
        view(), console=console, refresh_per_second=4, redirect_stdout=False, redirect_stderr=False
    ) as display:
        while thread.is_alive() and not stop.event.wait(refresh):
            display.update(view())


def supervise(
    supervisor: Supervisor,
    stop: StopFlag,
    bootstrap: str,
    *,
    live: bool,
    echo: Callable[[str], None],
    refresh: float = 1.0,
    auto_commit: frozenset[str] = frozenset(),
) -> int:
    """Run the supervisor in a thread and show its progress until a stop is asked for or it ends."""
    result: dict[str, int] = {}
    thread = threading.Thread(
        target=lambda: result.setdefault("code", supervisor.run(install_signals=False)), daemon=True
    )
    thread.start()
    started = last = time.monotonic()
    previous: dict[str, GroupTotals] = {}

    def rows_now() -> dict[str, GroupTotals]:
        return group_totals(supervisor.snapshot())

    def rates_since_last(rows: Mapping[str, GroupTotals]) -> dict[str, float]:
        nonlocal previous, last
        now = time.monotonic()
        rates = {
            name: rate(t, previous.get(name), now - last) if previous else 0.0 for name, t in rows.items()
        }
        previous, last = dict(rows), now
        return rates

    def table() -> Any:
        rows = rows_now()
        return render_table(rows, rates_since_last(rows), bootstrap, time.time(), auto_commit)

    try:
        if live:
            _show_live(table, thread, stop, echo, refresh)
        else:
            printed = ""
            while thread.is_alive() and not stop.event.wait(refresh):
                line = status_line(rows_now())
                if line != printed:
                    echo(line)
                    printed = line
    finally:
        if hasattr(echo, "redirect"):
            echo.redirect(None)  # type: ignore[attr-defined]
        # Also when the display fails (a hung-up terminal): never leave the workers running.
        if thread.is_alive():
            echo("stopping consumers (they commit what they processed)...")
            supervisor.stop()
            thread.join()
    for line in summary_lines(rows_now(), {}, time.monotonic() - started, final=True):
        echo(line)  # the lines `kpipe run` ends with
    return result.get("code", 1)

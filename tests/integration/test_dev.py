"""The quick-start path itself: `kpipe dev pipelines/ --demo` on the embedded broker, as a newcomer runs it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from helpers import environment, process_alive, wait_for

pytestmark = pytest.mark.integration  # `kpipe dev` starts its own embedded broker

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "pipelines" / "demo"


def _count(name: str) -> int:
    return sum(1 for line in (DEMO / name).read_text().splitlines() if line.strip())


def _totals(line: str) -> dict[str, dict[str, int]]:
    groups = {}
    for part in line.split(": ", 1)[1].split("; "):
        name, *fields = part.split()
        groups[name] = {k: int(v.split("/")[0]) for k, v in (f.split("=") for f in fields)}
    return groups


def test_dev_demo_handles_every_sample_event_then_stops_cleanly(tmp_path: Path) -> None:
    orders = _count("order-api.jsonl") + _count("orders.poison.jsonl")
    users = _count("user-service.jsonl")
    # the example project falls back to `local` when no bootstrap servers are set
    env = environment(
        {
            "KPIPE_STATE_DIR": str(tmp_path),
            "PYTHONUNBUFFERED": "1",
            "KPIPE_BOOTSTRAP_SERVERS": None,
            "KAFKA_BOOTSTRAP_SERVERS": None,
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "kpipe", "dev", "pipelines/", "--demo", "--no-live"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")), daemon=True)
    reader.start()
    try:

        def all_handled() -> bool:
            status = [line for line in lines if line.startswith("status: ")]
            if not status:
                return False
            groups = _totals(status[-1])
            processors, analytics, mailer = (
                groups["order-processors"],
                groups["analytics"],
                groups["welcome-mailer"],
            )
            return (
                processors["handled"] + processors["dead_lettered"] == orders
                and analytics["handled"] + analytics["skipped"] == orders
                and mailer["handled"] == users
            )

        wait_for(
            lambda: all_handled() or process.poll() is not None,
            timeout=120,
            message=lambda: "".join(lines[-20:]),
        )
        assert process.poll() is None, "".join(lines)

        def caught_up() -> bool:  # the table's lag column, from the workers' librdkafka statistics
            groups = _totals([line for line in lines if line.startswith("status: ")][-1])
            return all(g.get("lag") == 0 for g in groups.values())

        wait_for(caught_up, timeout=30, message=lambda: "".join(lines[-5:]))
        final = _totals([line for line in lines if line.startswith("status: ")][-1])
        # The poison events and the customer whose payments the example handler refuses: dead-lettered by the
        # group with a dead-letter topic, skipped by analytics (on_error: skip), none lost by either.
        assert final["order-processors"]["dead_lettered"] == 4
        assert final["analytics"]["skipped"] == 2
        assert final["welcome-mailer"]["dead_lettered"] == 0

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130, "".join(lines)  # Ctrl-C: interrupted, as the README says
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=5)
    text = "".join(lines)
    assert "local broker stopped" in text
    # It ends with `kpipe run`'s final line per group.
    final_lines = [line for line in lines if line.startswith("final: ")]
    assert [line.split("'")[1] for line in final_lines] == ["analytics", "order-processors", "welcome-mailer"]
    assert all(
        re.search(r": handled \d+ \([^)]*\), dead-lettered \d+, skipped \d+ in ", x) for x in final_lines
    )
    started = re.search(r"started the local broker on \S+ \(pid (\d+)\)", text)
    assert started, text
    pid = int(started.group(1))
    wait_for(lambda: not process_alive(pid), timeout=10, message=f"broker pid {pid} left behind")
    assert not (tmp_path / "kpipe" / "local-broker.json").exists()

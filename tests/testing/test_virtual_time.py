"""In-memory runs on virtual time, and their determinism under `concurrency`: retries and commit intervals wait
without taking wall time, and the same run gives the same topics in the same order."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kpipe.testing import run_pipeline


def _project(tmp_path: Path, module: str, handler: str, group: str, out_partitions: int = 1) -> Path:
    (tmp_path / "pipelines").mkdir(parents=True)
    (tmp_path / f"{module}.py").write_text(handler)
    (tmp_path / "pipelines" / "p.yaml").write_text(
        "cluster: {bootstrap_servers: 'localhost:9092'}\n"
        f"topics:\n  in: {{partitions: 3}}\n  out: {{partitions: {out_partitions}}}\n"
        f"consumers:\n  g:\n    topics: [in]\n    handler: {module}:handle\n{group}"
    )
    return tmp_path


# Fails the first two calls for each event, then returns.
FLAKY = (
    "calls = {}\n"
    "def handle(event, ctx):\n"
    "    calls[event] = calls.get(event, 0) + 1\n"
    "    if calls[event] <= 2:\n"
    "        raise RuntimeError('not yet')\n"
)


@pytest.mark.parametrize("concurrency", [1, 4], ids=["sequential", "concurrent"])
def test_a_30_s_backoff_takes_virtual_time_not_wall_time(tmp_path: Path, concurrency: int) -> None:
    module = f"virtual_flaky_{concurrency}"
    group = (
        "    on_error: {action: skip, retries: 2, backoff_ms: 30000, max_backoff_ms: 120000}\n"
        f"    concurrency: {concurrency}\n"
    )
    root = _project(tmp_path, module, FLAKY, group)
    started = time.monotonic()
    with run_pipeline(root / "pipelines", root=root) as p:
        p.send_raw("in", b"e1", key="k1")
        p.drain()
        waited = p.clock.elapsed
        assert p.handled("g") == [b"e1"]
        assert p.skipped("g") == 0
        [record] = p.topic("in")
        assert p.committed("g") == {("in", record.partition): 1}
    wall = time.monotonic() - started
    # Two backoffs, 30 s and 60 s, each within ±20 % jitter.
    assert waited >= 0.8 * (30 + 60)
    assert wall < 0.8 * (30 + 60)  # generous: far above an in-memory run, far below a real wait


def test_a_batch_commit_interval_passes_in_virtual_time_mid_run(tmp_path: Path) -> None:
    root = _project(
        tmp_path,
        "virtual_batch",
        "def handle(event, ctx):\n    pass\n",
        "    commit: {strategy: batch, batch_size: 1000, interval_ms: 60000}\n",
    )
    with run_pipeline(root / "pipelines", root=root) as p:
        for n in range(5):
            p.send_raw("in", f"{n}".encode(), key=f"k{n}")
        p.drain()
        expected = {}
        for record in p.topic("in"):
            expected[(record.topic, record.partition)] = record.offset + 1
        assert p.committed("g") == expected  # mid-run: the 60 s interval passed on the virtual clock
        assert p.clock.elapsed >= 60


def test_time_stands_still_while_nothing_waits(tmp_path: Path) -> None:
    root = _project(
        tmp_path,
        "virtual_still",
        "def handle(event, ctx):\n    pass\n",
        "    commit: {strategy: per_message}\n",
    )
    with run_pipeline(root / "pipelines", root=root) as p:
        for n in range(20):
            p.send_raw("in", f"{n}".encode(), key=f"k{n}")
        p.drain()
        assert len(p.handled("g")) == 20
        assert p.clock.elapsed == 0


# Emits each event to one topic, after a random real pause (a thread pool would finish them in any order); one
# key fails once, to retry on a timer among the others.
SYNC_RANDOM = (
    "import json, random, time\n"
    "failed = set()\n"
    "def handle(event, ctx):\n"
    "    n = json.loads(event)['n']\n"
    "    time.sleep(random.random() * 0.002)\n"
    "    if n % 7 == 3 and n not in failed:\n"
    "        failed.add(n)\n"
    "        raise RuntimeError('once')\n"
    "    ctx.emit('out', {'n': n}, key=ctx.key)\n"
)
ASYNC_RANDOM = (
    "import asyncio, json, random\n"
    "failed = set()\n"
    "async def handle(event, ctx):\n"
    "    n = json.loads(event)['n']\n"
    "    await asyncio.sleep(random.random() * 0.002)\n"
    "    if n % 7 == 3 and n not in failed:\n"
    "        failed.add(n)\n"
    "        raise RuntimeError('once')\n"
    "    ctx.emit('out', {'n': n}, key=ctx.key)\n"
)


@pytest.mark.parametrize("handler", [SYNC_RANDOM, ASYNC_RANDOM], ids=["sync", "async"])
def test_the_same_run_twice_gives_the_same_topics_in_the_same_order(tmp_path: Path, handler: str) -> None:
    group = "    emits: [out]\n    concurrency: 8\n    on_error: {action: skip, retries: 1, backoff_ms: 50}\n"

    def run(name: str) -> list[tuple[int, int, str | None, object]]:
        root = _project(
            tmp_path / name, f"virtual_order_{name}_{len(handler)}", handler, group, out_partitions=2
        )
        with run_pipeline(root / "pipelines", root=root) as p:
            for n in range(60):
                p.send_raw("in", f'{{"n": {n}}}'.encode(), key=f"k{n % 11}")
            p.drain()
            assert len(p.handled("g")) == 60
            return [(r.partition, r.offset, r.key, r.value) for r in p.topic("out", as_written=True)]

    first, second = run("first"), run("second")
    assert first == second
    assert len(first) == 60
    for key in {k for _, _, k, _ in first}:  # and each key's events in the order they were sent
        ns = [v["n"] for _, _, k, v in first if k == key]  # type: ignore[index]
        assert ns == sorted(ns)


def test_an_async_handler_over_its_timeout_is_cancelled_and_fails(tmp_path: Path) -> None:
    handler = (
        "import asyncio\n"
        "async def handle(event, ctx):\n"
        "    if event == b'slow':\n"
        "        await asyncio.sleep(60)\n"
    )
    group = "    concurrency: 4\n    on_error: {action: skip, retries: 0, timeout_ms: 100}\n"
    root = _project(tmp_path, "virtual_async_timeout", handler, group)
    with run_pipeline(root / "pipelines", root=root) as p:
        p.send_raw("in", b"slow", key="k1")
        p.send_raw("in", b"fast", key="k2")
        p.drain()
        assert p.handled("g") == [b"fast"]
        assert p.skipped("g") == 1

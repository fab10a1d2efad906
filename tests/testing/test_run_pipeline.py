"""kpipe.testing.run_pipeline on the example project and on small generated ones: the API a pytest user calls."""

from __future__ import annotations

from pathlib import Path

import pytest

from kpipe.errors import EventInvalid, UsageError
from kpipe.testing import DrainTimeout, run_pipeline

ROOT = Path(__file__).resolve().parents[2]
ORDER = {
    "event_type": "order.created", "order_id": "o-1", "customer_id": "cust-011", "status": "created",
    "total_amount": 9.5, "timestamp": "2026-11-27T09:00:01Z",
}  # fmt: skip


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def test_events_and_their_records() -> None:
    with run_pipeline("pipelines/", groups=["analytics"]) as p:
        p.send("orders", ORDER, headers={"trace": "t-1"})
        p.drain()
        [record] = p.topic("orders")
        [event] = p.handled("analytics")
    assert (record.key, record.value, record.headers) == ("cust-011", ORDER, {"trace": "t-1"})
    assert event.order_id == "o-1"  # the schema model instance the handler was given
    assert p.committed("analytics") == {("orders", record.partition): 1}


def test_batch_commits_are_complete_after_the_run() -> None:
    with run_pipeline("pipelines/", groups=["order-processors"]) as p:  # batch: 100 events or 5 s
        for i in range(3):
            p.send("orders", {**ORDER, "order_id": f"o-{i}", "customer_id": f"c-{i}"})
        p.drain()
    committed = p.committed("order-processors")
    assert sum(committed.values()) == 3
    assert committed == {(r.topic, r.partition): r.offset + 1 for r in p.topic("orders")}


def test_an_event_the_schema_refuses_is_not_sent() -> None:
    with run_pipeline("pipelines/", groups=[]) as p:
        with pytest.raises(EventInvalid, match="total_amount"):
            p.send("orders", {**ORDER, "total_amount": -1})
        assert p.topic("orders") == []


def test_unknown_names_say_what_was_meant() -> None:
    with (
        pytest.raises(UsageError, match="did you mean 'analytics'"),
        run_pipeline("pipelines/", groups=["analytic"]),
    ):
        pass
    with run_pipeline("pipelines/", groups=["analytics"]) as p:
        with pytest.raises(UsageError, match="unknown topic 'order'.*did you mean 'orders'"):
            p.send_raw("order", b"x")
        with pytest.raises(UsageError, match="consumer group 'welcome-mailer' is not running"):
            p.handled("welcome-mailer")


def _project(tmp_path: Path, handler: str, group: str) -> Path:
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "run_handlers.py").write_text(handler)
    (tmp_path / "pipelines" / "p.yaml").write_text(
        "cluster: {bootstrap_servers: 'localhost:9092'}\n"
        "topics:\n  in: {partitions: 2}\n  out: {partitions: 1}\n"
        f"consumers:\n  g:\n{group}"
    )
    return tmp_path


def test_an_async_handler_at_concurrency_keeps_each_keys_order(tmp_path: Path) -> None:
    handler = (
        "import asyncio, json\n"
        "async def handle(event, ctx):\n"
        "    n = json.loads(event)['n']\n"
        "    await asyncio.sleep(0.001 * (n % 4))\n"
        "    ctx.emit('out', {'n': n, 'key': ctx.key}, key=ctx.key)\n"
    )
    group = (
        "    topics: [in]\n    handler: run_handlers_async:handle\n    emits: [out]\n"
        "    concurrency: 16\n    commit: {strategy: auto}\n"
    )
    root = _project(tmp_path, handler, group)
    (root / "run_handlers.py").rename(root / "run_handlers_async.py")
    with run_pipeline(root / "pipelines", root=root) as p:
        for n in range(40):
            p.send_raw("in", f'{{"n": {n}}}'.encode(), key=f"k{n % 3}")
        p.drain()
        out = [r.value for r in p.topic("out")]
    assert len(p.handled("g")) == 40
    for key in ("k0", "k1", "k2"):
        ns = [v["n"] for v in out if v["key"] == key]
        assert ns == sorted(ns) and len(ns) in (13, 14)


def test_a_handler_that_never_returns_times_the_drain_out(tmp_path: Path) -> None:
    handler = "import threading\nrelease = threading.Event()\ndef handle(event, ctx):\n    release.wait(30)\n"
    root = _project(tmp_path, handler, "    topics: [in]\n    handler: run_handlers:handle\n")
    with run_pipeline(root / "pipelines", root=root) as p:
        p.send_raw("in", b"x")
        with pytest.raises(DrainTimeout, match="consumer group 'g' was still handling an event"):
            p.drain(timeout=0.5)
        import run_handlers  # type: ignore[import-not-found]

        run_handlers.release.set()


def test_unkeyed_events_spread_by_the_seed(tmp_path: Path) -> None:
    root = _project(
        tmp_path,
        "def handle(event, ctx):\n    pass\n",
        "    topics: [in]\n    handler: run_handlers:handle\n",
    )

    def partitions(seed: int) -> list[int]:
        with run_pipeline(root / "pipelines", root=root, groups=[], seed=seed) as p:
            for _ in range(30):
                p.send_raw("in", b"x")
            return [r.partition for r in p.topic("in", as_written=True)]

    assert partitions(1) == partitions(1)
    assert partitions(1) != partitions(2)
    assert set(partitions(1)) == {0, 1}

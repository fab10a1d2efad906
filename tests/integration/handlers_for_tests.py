"""Handlers and helpers for the worker tests, importable by module path in spawned worker processes.

pytest puts tests/integration on sys.path (rootdir-relative test modules), and multiprocessing's spawn start
method copies the parent's sys.path into the child, so "handlers_for_tests:record" imports in a worker too.
The process handlers are configured through environment variables set before the worker is spawned:

    KPIPE_TEST_RECORD    file that every handled event is appended to, one "key n partition offset" line
    KPIPE_TEST_DELAY_S   seconds each event takes (to kill a worker mid-batch)
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from pydantic import BaseModel

from kpipe.compilation.compiled import ClientConfig, CommitPolicy, ConsumerGroupSettings, ErrorPolicy, Setting
from kpipe.compilation.compiler import commit_settings


class Event(BaseModel):
    key: str
    n: int


def record(event: Any, ctx: Any) -> None:
    """Append the event to KPIPE_TEST_RECORD; O_APPEND writes of one short line survive a SIGKILL intact."""
    delay = float(os.environ.get("KPIPE_TEST_DELAY_S", "0") or 0)
    if delay:
        time.sleep(delay)
    key = event.get("key") if isinstance(event, dict) else event.key
    n = event.get("n") if isinstance(event, dict) else event.n
    line = f"{key} {n} {ctx.partition} {ctx.offset}\n".encode()
    fd = os.open(os.environ["KPIPE_TEST_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_records(path: str) -> list[tuple[str, int, int, int]]:
    """(key, n, partition, offset) per handled event, in the order they were handled."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 4:
                out.append((parts[0], int(parts[1]), int(parts[2]), int(parts[3])))
    return out


def run_worker_main(spec: Any) -> None:
    """A spawn target: worker_main's return value becomes the process exit code."""
    from kpipe.runtime.worker import worker_main

    sys.exit(worker_main(spec))


def group_settings(
    bootstrap: str,
    group: str,
    topics: tuple[str, ...],
    *,
    strategy: str = "batch",
    batch_size: int = 100,
    interval_ms: int = 5000,
    action: str = "dead_letter",
    retries: int = 0,
    backoff_ms: int = 10,
    max_backoff_ms: int = 100,
    dead_letter_topic: str | None = None,
    client: dict[str, Any] | None = None,
    max_poll_records: int = 500,
) -> ConsumerGroupSettings:
    """ConsumerGroupSettings as the compile step would make them, built by hand for in-process tests."""
    commit = CommitPolicy(strategy, batch_size=batch_size, interval_ms=interval_ms)  # type: ignore[arg-type]
    conf = {
        "bootstrap.servers": bootstrap,
        "auto.offset.reset": "earliest",
        **(client or {}),
        "group.id": group,
        **commit_settings(commit),
    }
    settings = tuple(Setting(k, str(v), "declared") for k, v in conf.items())
    return ConsumerGroupSettings(
        group_id=group,
        topics=topics,
        handler="handlers_for_tests:record",
        instances=1,
        commit=commit,
        on_error=ErrorPolicy(action, retries, backoff_ms, max_backoff_ms, dead_letter_topic),  # type: ignore[arg-type]
        client=ClientConfig(settings),
        topic_schemas={t: "Event" for t in topics},
        producer_client=ClientConfig((Setting("bootstrap.servers", bootstrap, "declared"),)),
        max_poll_records=max_poll_records,
    )

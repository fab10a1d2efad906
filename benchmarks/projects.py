"""Generated inputs for the benchmarks: the benchmark event, small runtime projects, the big validate project,
and the apply project. Pure file writing; no Kafka, no kpipe imports."""

from __future__ import annotations

import json
from pathlib import Path

EVENT_BYTES = 200
SCHEMA_NAME = "BenchEvent"

# A 7-field event like the example's OrderEvent (pattern, enum, exclusiveMinimum, date-time).
BENCH_SCHEMA = """\
$schema: https://json-schema.org/draft/2020-12/schema
title: BenchEvent
type: object
required: [event_type, order_id, customer_id, status, total_amount, timestamp]
properties:
  event_type: {type: string, pattern: "^order\\\\."}
  order_id: {type: string}
  customer_id: {type: string}
  status: {type: string, enum: [created, paid, shipped, delivered]}
  total_amount: {type: number, exclusiveMinimum: 0}
  timestamp: {type: string, format: date-time}
  note: {type: string}
"""

_STATUSES = ("created", "paid", "shipped", "delivered")


def event(i: int) -> dict:
    """Event number i; its compact JSON is exactly EVENT_BYTES bytes."""
    ev = {
        "event_type": "order." + _STATUSES[i % 4],
        "order_id": f"o-{i:09d}",
        "customer_id": f"c-{i % 5000:05d}",
        "status": _STATUSES[i % 4],
        "total_amount": round(1 + (i % 10_000) / 7, 2),
        "timestamp": "2026-11-27T10:00:00.123456+00:00",
        "note": "",
    }
    pad = EVENT_BYTES - len(encode(ev))
    ev["note"] = "x" * pad
    return ev


def encode(ev: dict) -> bytes:
    return json.dumps(ev, separators=(",", ":")).encode()


def runtime_project(root: Path, bootstrap: str, topic: str, *, typed: bool, max_poll_records: int) -> Path:
    """A small project: one topic (with or without the bench schema), one producer, one group per strategy."""
    (root / "schemas").mkdir(parents=True, exist_ok=True)
    (root / "schemas" / "bench_event.schema.yaml").write_text(BENCH_SCHEMA)
    pipelines = root / "pipelines"
    pipelines.mkdir(exist_ok=True)
    schema_line = f"    schema: {SCHEMA_NAME}\n" if typed else ""
    groups = {
        "batch": "{strategy: batch, batch_size: 1000, interval_ms: 5000}",
        "auto": "{strategy: auto, interval_ms: 5000}",
        "per_message": "{strategy: per_message}",
    }
    consumers = "".join(
        f"  bench-{name}:\n"
        f"    topics: [{topic}]\n"
        f"    handler: bench_handlers:noop\n"
        f"    max_poll_records: {max_poll_records}\n"
        f"    commit: {commit}\n"
        f"    on_error: {{action: stop, retries: 0}}\n"
        for name, commit in groups.items()
    )
    (pipelines / "bench.yaml").write_text(
        f"cluster:\n  bootstrap_servers: {bootstrap}\n"
        f"schemas:\n  {SCHEMA_NAME}: ../schemas/bench_event.schema.yaml\n"
        f"topics:\n  {topic}:\n    partitions: 3\n    key: customer_id\n{schema_line}"
        f"producers:\n  bench-api:\n    topic: {topic}\n    acks: all\n    linger_ms: 5\n"
        f"    compression: none\n    idempotent: true\n"
        f"consumers:\n{consumers}"
    )
    (pipelines / "bench_handlers.py").write_text("def noop(event, ctx):\n    pass\n")
    return pipelines


def validate_project(root: Path, files: int = 200, topics: int = 2000, groups: int = 500) -> list[Path]:
    """The issue's big project: `files` pipeline files, `topics` topics with schemas from a few schema files,
    `groups` consumer groups and a producer per topic, in root/pipelines (schemas in root/schemas).
    Returns every file kpipe reads (pipeline files and schema files)."""
    schema_dir = root / "schemas"
    schema_dir.mkdir(parents=True, exist_ok=True)
    root = root / "pipelines"
    root.mkdir(exist_ok=True)
    schema_names = [f"Event{k}" for k in range(5)]
    out: list[Path] = []
    for name in schema_names:
        path = schema_dir / f"{name.lower()}.schema.yaml"
        path.write_text(BENCH_SCHEMA.replace("title: BenchEvent", f"title: {name}"))
        out.append(path)
    cluster = root / "cluster.yaml"
    cluster.write_text(
        "cluster:\n  bootstrap_servers: localhost:9092\n  config:\n    socket.keepalive.enable: true\n"
        "schemas:\n" + "".join(f"  {n}: ../schemas/{n.lower()}.schema.yaml\n" for n in schema_names)
    )
    out.append(cluster)
    per_file_topics = topics // (files - 1)
    extra_topics = topics % (files - 1)
    per_file_groups = groups // (files - 1)
    extra_groups = groups % (files - 1)
    t = g = 0
    for f in range(files - 1):
        lines = ["topics:"]
        names = []
        for _ in range(per_file_topics + (1 if f < extra_topics else 0)):
            name = f"domain{f}.events-{t}"
            names.append(name)
            lines += [
                f"  {name}:",
                "    partitions: 6",
                "    replication_factor: 1",
                "    key: customer_id",
                f"    schema: {schema_names[t % len(schema_names)]}",
                "    config: {retention.ms: 604800000, cleanup.policy: delete}",
                f"    description: Events of domain {f}, stream {t}.",
            ]
            t += 1
        lines.append("producers:")
        for name in names:
            lines += [
                f"  {name}-api:",
                f"    topic: {name}",
                "    acks: all",
                "    linger_ms: 5",
                "    compression: zstd",
                "    idempotent: true",
            ]
        lines.append("consumers:")
        for k in range(per_file_groups + (1 if f < extra_groups else 0)):
            lines += [
                f"  group-{g}:",
                f"    topics: [{names[k % len(names)]}]",
                "    handler: app.handlers:handle",
                "    instances: 2",
                "    commit: {strategy: batch, batch_size: 100, interval_ms: 5000}",
                "    on_error: {action: skip, retries: 2, backoff_ms: 100}",
                "    config: {fetch.wait.max.ms: 100}",
            ]
            g += 1
        path = root / f"domain{f:03d}.yaml"
        path.write_text("\n".join(lines) + "\n")
        out.append(path)
    assert t == topics and g == groups, (t, g)
    return out


def apply_project(root: Path, bootstrap: str, prefix: str, topics: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    body = "".join(f"  {prefix}-{i}: {{partitions: 1, replication_factor: 1}}\n" for i in range(topics))
    (root / "topics.yaml").write_text(f"cluster:\n  bootstrap_servers: {bootstrap}\ntopics:\n{body}")
    return root


# --- the concurrency case (issue 14): a handler that waits, many keys ---------------------------------------

WAIT_KEYS = 600


def wait_event(i: int) -> tuple[str, bytes]:
    """(key, value) of event i of the concurrency case: WAIT_KEYS keys, round robin, EVENT_BYTES of JSON."""
    key = f"k-{i % WAIT_KEYS:04d}"
    head = json.dumps({"key": key, "n": i, "note": ""}, separators=(",", ":"))
    pad = EVENT_BYTES - len(head)
    return key, json.dumps({"key": key, "n": i, "note": "x" * pad}, separators=(",", ":")).encode()


def concurrency_project(root: Path, bootstrap: str, topic: str) -> Path:
    """One topic (no schema: the case measures waiting, not validation) and one group; the child sets the
    group's concurrency per run."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "bench.yaml").write_text(
        f"cluster:\n  bootstrap_servers: {bootstrap}\n"
        f"topics:\n  {topic}:\n    partitions: 3\n"
        f"consumers:\n  bench-wait:\n    topics: [{topic}]\n    handler: bench_wait:handle\n"
        f"    concurrency: 50\n    ordering: key\n"
        f"    commit: {{strategy: batch, batch_size: 100, interval_ms: 5000}}\n"
        f"    on_error: {{action: stop, retries: 0}}\n"
    )
    (root / "bench_wait.py").write_text("def handle(event, ctx):\n    pass\n")
    return root

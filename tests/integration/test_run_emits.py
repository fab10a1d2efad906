"""Declared emits against a broker, through `kpipe run`: a declared emit is delivered, keyed by the target's key
field; an emit to an undeclared topic and an emitted event that fails the target's schema both fail the
handler, so the source event is dead-lettered with the reason, and nothing reaches the target."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from broker_helpers import read_all
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from run_helpers import KpipeRun

HANDLER = """\
import json

def handle(event, ctx):
    order = json.loads(event)
    if order["mode"] == "ok":
        ctx.emit("{out}", {{"order_id": order["id"], "amount": 3}})
    elif order["mode"] == "invalid":
        ctx.emit("{out}", {{"order_id": order["id"], "amount": "three"}})
    else:
        ctx.emit("{other}", {{"order_id": order["id"]}})
"""


def _read(bootstrap: str, topic: str, count: int) -> list[tuple[bytes | None, bytes, dict[str, bytes]]]:
    return [
        (m.key(), m.value(), dict(m.headers() or [])) for m in read_all(bootstrap, topic, count, timeout=60)
    ]


def test_declared_emits_are_validated_and_undeclared_ones_fail(
    tmp_path: Path,
    kafka_bootstrap: str,
    prefix: str,
    kpipe_run: Callable[..., KpipeRun],
    unique_name: Callable[..., str],
) -> None:
    source, out, other, dlq = (f"{prefix}-{n}" for n in ("in", "out", "other", "in.dlq"))
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in (source, out, other, dlq)]).values():
        future.result(10)
    (tmp_path / "emitter.py").write_text(HANDLER.format(out=out, other=other))
    (tmp_path / "payment.schema.yaml").write_text(
        "type: object\nrequired: [order_id, amount]\nproperties:\n"
        "  order_id: {type: string}\n  amount: {type: integer}\n"
    )
    group = unique_name("emitters")
    (tmp_path / "project.yaml").write_text(
        f"cluster:\n  bootstrap_servers: '{kafka_bootstrap}'\n"
        "schemas:\n  Payment: payment.schema.yaml\n"
        f"topics:\n  {source}: {{partitions: 1}}\n  {out}: {{partitions: 1, key: order_id, schema: Payment}}\n"
        f"  {other}: {{partitions: 1}}\n  {dlq}: {{partitions: 1}}\n"
        f"consumers:\n  {group}:\n    topics: [{source}]\n    handler: emitter:handle\n    emits: [{out}]\n"
        f"    commit: {{strategy: per_message}}\n"
        f"    on_error: {{retries: 0, dead_letter_topic: {dlq}}}\n"
    )
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i, mode in enumerate(("ok", "invalid", "undeclared", "ok")):
        producer.produce(source, json.dumps({"id": f"o-{i}", "mode": mode}).encode())
    assert producer.flush(10) == 0

    run = kpipe_run(tmp_path / "project.yaml")
    try:
        emitted = _read(kafka_bootstrap, out, 2)
        dead = _read(kafka_bootstrap, dlq, 2)
    finally:
        run.stop()
    assert [(k, json.loads(v)) for k, v, _ in emitted] == [
        (b"o-0", {"order_id": "o-0", "amount": 3}),
        (b"o-3", {"order_id": "o-3", "amount": 3}),
    ]
    reasons = {json.loads(v)["mode"]: h["kpipe.error.message"].decode() for _, v, h in dead}
    assert reasons["invalid"].startswith(
        f"EventInvalid: invalid event for emit to '{out}' (schema 'Payment'): field 'amount':"
    )
    assert reasons["undeclared"].startswith(
        f"UndeclaredEmit: consumer group '{group}' emits to '{other}', which it does not declare (emits: {out}); "
    )

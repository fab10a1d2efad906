"""One pipeline project and a set of scenarios, run both in memory (kpipe.testing) and on a broker: the
fidelity test (tests/integration/test_testing_fidelity.py) asserts that both give the same outcome, and
tests/testing/test_scenarios.py checks the in-memory outcome of each on its own.

`write_project(directory, prefix)` writes the project (topics named `{prefix}-in`, ...) and its handler module;
an outcome is plain data: events handled per group, each topic's values per partition in order (the events of
the concurrency scenario per key, the only order it promises), dead letters with their error types, and the
groups that stopped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = """\
type: object
required: [id, n]
properties:
  id: {type: string}
  mode: {type: string, enum: [ok, flaky, fail], default: ok}
  n: {type: integer}
"""

HANDLERS = """\
import time

OUT = "{prefix}-out"
FINAL = "{prefix}-final"
CONC_OUT = "{prefix}-conc-out"
attempts = {{}}


def handle(event, ctx):
    if event.mode == "fail":
        raise RuntimeError(f"refused {{event.id}}")
    if event.mode == "flaky":
        attempts[event.id] = attempts.get(event.id, 0) + 1
        if attempts[event.id] == 1:
            raise RuntimeError(f"first attempt at {{event.id}} fails")
    ctx.emit(OUT, {{"id": event.id, "n": event.n}})


def chained(event, ctx):
    ctx.emit(FINAL, {{"id": event.id, "n": event.n * 10}})


def plain(event, ctx):
    if event.mode == "fail":
        raise RuntimeError(f"refused {{event.id}}")


def concurrent(event, ctx):
    time.sleep(0.002 * (event.n % 3))  # events finish out of order unless kpipe keeps a key's order
    ctx.emit(CONC_OUT, {{"id": event.id, "n": event.n}})
"""

PROJECT = """\
cluster:
  bootstrap_servers: "{bootstrap}"
schemas:
  Event: ../event.schema.yaml
topics:
  {p}-in: {{partitions: 3, key: id, schema: Event}}
  {p}-out: {{partitions: 3, key: id, schema: Event}}
  {p}-final: {{partitions: 3, key: id, schema: Event}}
  {p}-dlq: {{partitions: 3}}
  {p}-skip: {{partitions: 2, key: id, schema: Event}}
  {p}-stop: {{partitions: 1, key: id, schema: Event}}
  {p}-conc-in: {{partitions: 2, key: id, schema: Event}}
  {p}-conc-out: {{partitions: 2, key: id, schema: Event}}
consumers:
  {p}-main:
    topics: [{p}-in]
    handler: {module}:handle
    emits: [{p}-out]
    auto_offset_reset: earliest
    commit: {{strategy: per_message}}
    on_error: {{retries: 2, backoff_ms: 10, max_backoff_ms: 20, dead_letter_topic: {p}-dlq}}
  {p}-chained:
    topics: [{p}-out]
    handler: {module}:chained
    emits: [{p}-final]
    auto_offset_reset: earliest
    commit: {{strategy: per_message}}
  {p}-skipper:
    topics: [{p}-skip]
    handler: {module}:plain
    auto_offset_reset: earliest
    commit: {{strategy: per_message}}
    on_error: {{action: skip, retries: 0}}
  {p}-stopper:
    topics: [{p}-stop]
    handler: {module}:plain
    auto_offset_reset: earliest
    commit: {{strategy: per_message}}
    on_error: {{action: stop, retries: 0}}
  {p}-conc:
    topics: [{p}-conc-in]
    handler: {module}:concurrent
    emits: [{p}-conc-out]
    concurrency: 8
    ordering: key
    auto_offset_reset: earliest
    commit: {{strategy: per_message}}
"""

# Topics whose contents an outcome holds (the inputs are what the scenario sent). Every keyed topic a scenario
# chains through has 3 partitions: a key keeps its partition number from topic to topic, so each partition's
# order is the order of one source partition, the same on any broker.
OUTPUTS = ("out", "final", "dlq", "conc-out")


def write_project(directory: Path, prefix: str, bootstrap: str = "localhost:9092") -> Path:
    """Write the project under `directory` (its root); return the directory of its pipeline file."""
    module = "handlers_" + prefix.replace("-", "_")
    pipelines = directory / "pipelines"
    pipelines.mkdir()
    (directory / "event.schema.yaml").write_text(SCHEMA)
    (directory / f"{module}.py").write_text(HANDLERS.format(prefix=prefix))
    (pipelines / "project.yaml").write_text(PROJECT.format(p=prefix, module=module, bootstrap=bootstrap))
    return pipelines


@dataclass(frozen=True)
class Given:
    topic: str  # the topic's suffix: "in" is `{prefix}-in`
    event: dict[str, Any] | None = None  # sent as kpipe's producer sends it
    raw: bytes | None = None  # sent as it is
    key: str | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    groups: tuple[str, ...]  # suffixes: "main" is `{prefix}-main`
    given: tuple[Given, ...]
    per_key: frozenset[str] = field(default_factory=frozenset)  # topics compared per key, not per partition


def _events(topic: str, *events: dict[str, Any]) -> tuple[Given, ...]:
    return tuple(Given(topic, event) for event in events)


SCENARIOS = [
    Scenario("valid", ("main",), _events("in", {"id": "a1", "n": 1}, {"id": "a2", "n": 2})),
    Scenario(
        "schema-invalid",
        ("main",),
        (
            Given("in", raw=json.dumps({"id": "b1", "n": "not a number"}).encode(), key="b1"),
            Given("in", raw=b"not json", key="b2"),
            Given("in", {"id": "b3", "n": 3}),
        ),
    ),
    Scenario("raises-then-succeeds", ("main",), _events("in", {"id": "c1", "mode": "flaky", "n": 1})),
    Scenario(
        "always-raises", ("main",), _events("in", {"id": "d1", "mode": "fail", "n": 1}, {"id": "d2", "n": 2})
    ),
    Scenario(
        "skip", ("skipper",), _events("skip", {"id": "e1", "mode": "fail", "n": 1}, {"id": "e2", "n": 2})
    ),
    Scenario(
        "stop",
        ("stopper",),
        _events("stop", {"id": "f1", "n": 1}, {"id": "f2", "mode": "fail", "n": 2}, {"id": "f3", "n": 3}),
    ),
    Scenario(
        "emits-chain",
        ("main", "chained"),
        _events("in", *({"id": f"g{i}", "n": i} for i in range(6))),
    ),
    Scenario(
        "key-order-concurrency-8",
        ("conc",),
        _events("conc-in", *({"id": f"k{i % 5}", "n": i} for i in range(60))),
        per_key=frozenset({"conc-out"}),
    ),
]


def outcome(
    scenario: Scenario,
    prefix: str,
    handled: dict[str, int],
    records: dict[str, list[tuple[int, Any, dict[str, str]]]],
    stopped: list[str],
) -> dict[str, Any]:
    """The comparable outcome: `records` maps each output topic's suffix to (partition, value, headers) in
    offset order per partition; values are JSON-decoded (bytes kept when not JSON)."""
    topics: dict[str, Any] = {}
    for suffix in OUTPUTS:
        rows = records.get(suffix, [])
        if suffix in scenario.per_key:
            per_key: dict[str, list[Any]] = {}
            for _, value, _ in rows:
                per_key.setdefault(value["id"], []).append(value)
            topics[suffix] = per_key
        elif suffix == "dlq":
            topics[suffix] = [(p, value, headers.get("kpipe.error.type")) for p, value, headers in rows]
        else:
            topics[suffix] = [(p, value) for p, value, _ in rows]
    return {
        "handled": {g: handled.get(f"{prefix}-{g}", 0) for g in scenario.groups},
        "topics": topics,
        "stopped": sorted(s.removeprefix(f"{prefix}-") for s in stopped),
    }


def run_in_memory(scenario: Scenario, directory: Path, prefix: str) -> dict[str, Any]:
    """The scenario on kpipe.testing's in-memory cluster."""
    from kpipe.testing import run_pipeline

    with run_pipeline(
        directory / "pipelines", groups=[f"{prefix}-{g}" for g in scenario.groups], root=directory
    ) as p:
        for given in scenario.given:
            topic = f"{prefix}-{given.topic}"
            if given.event is not None:
                p.send(topic, given.event, key=given.key)
            else:
                p.send_raw(topic, given.raw, key=given.key)
        p.drain()
    handled = {name: len(p.handled(name)) for name in p.groups}
    records = {
        suffix: [(r.partition, r.value, r.headers) for r in p.topic(f"{prefix}-{suffix}")]
        for suffix in OUTPUTS
    }
    return outcome(scenario, prefix, handled, records, p.stopped)

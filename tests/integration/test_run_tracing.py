"""Tracing on a real broker: one trace from a produce through two groups, an emit, retries and a dead letter
(spans kept by the SDK's in-memory exporter); concurrent and async handlers each see their own process span;
`kpipe run` exports over OTLP/HTTP and OTLP/gRPC to a local receiver, flushed on SIGTERM; and with tracing off a worker
imports no OpenTelemetry module at all."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import tracing_handlers
from broker_helpers import Running, read_all, worker_start
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from run_helpers import KpipeRun

from helpers import kpipe, wait_for
from kpipe.compilation.project import load_project
from kpipe.runtime import tracing
from kpipe.runtime.producer import open_producer
from kpipe.runtime.tracing.otel import OtelTracing
from kpipe.runtime.worker import build_worker

pytestmark = pytest.mark.integration

_EXPORTER = InMemorySpanExporter()
_PROVIDER: TracerProvider | None = None


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, into an in-memory exporter (one provider per session: the global one can be
    set only once); off again after the test."""
    global _PROVIDER
    if _PROVIDER is None:
        _PROVIDER = TracerProvider()
        _PROVIDER.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        on = OtelTracing(_PROVIDER)
    else:
        on = OtelTracing(_PROVIDER, set_global=False)
    _EXPORTER.clear()
    tracing_handlers.SEEN.clear()
    previous = tracing.install(on)
    try:
        yield _EXPORTER
    finally:
        tracing.install(previous)


def _project(root: Path, bootstrap: str, topics: dict[str, str], consumers: str) -> Path:
    lines = [f'cluster:\n  bootstrap_servers: "{bootstrap}"', "topics:"]
    lines += [f"  {name}: {{partitions: 1}}" for name in topics.values()]
    lines += [f"producers:\n  source:\n    topic: {topics['source']}", "consumers:", consumers]
    path = root / "project.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _send(path: Path, events: dict[str, dict[str, int]]) -> None:
    """Send each key's event through the project's producer `source` (a send span each, with tracing on)."""
    with open_producer(load_project([str(path)]), "source") as producer:
        for key, event in events.items():
            producer.send(event, key=key)
        assert producer.flush(10).ok


def _worker(path: Path, group: str, fast: dict[str, Any]) -> Running:
    """The group's worker as a worker process builds it (build_worker: the tracing hooks are there)."""
    extra = tuple((k, str(v)) for k, v in fast.items())
    start = worker_start(str(path), group, extra)
    return Running(build_worker(start))


def test_produce_group_emit_group_and_dead_letter_share_one_trace(
    tmp_path: Path,
    kafka_bootstrap: str,
    prefix: str,
    unique_name: Callable[..., str],
    fast_group_config: dict[str, Any],
    make_topics: Callable[..., None],
    spans: InMemorySpanExporter,
) -> None:
    topics = {n: f"{prefix}-{n}" for n in ("source", "middle", "dlq")}
    make_topics(*topics.values())
    group_a, group_b = unique_name("trace-a"), unique_name("trace-b")
    tracing_handlers.EMIT_TO[group_a] = topics["middle"]
    path = _project(
        tmp_path, kafka_bootstrap, topics,
        f"  {group_a}:\n    topics: [{topics['source']}]\n    handler: tracing_handlers:forward\n"
        f"    emits: [{topics['middle']}]\n    commit: {{strategy: per_message}}\n"
        f"  {group_b}:\n    topics: [{topics['middle']}]\n    handler: tracing_handlers:fail\n"
        f"    on_error: {{retries: 1, backoff_ms: 10, dead_letter_topic: {topics['dlq']}}}\n",
    )  # fmt: skip
    _send(path, {"o-1": {"order": 1}})
    workers = [_worker(path, group_a, fast_group_config), _worker(path, group_b, fast_group_config)]
    try:
        dead = read_all(kafka_bootstrap, topics["dlq"], 1, timeout=60)[0]
        middle = read_all(kafka_bootstrap, topics["middle"], 1)[0]
        wait_for(lambda: any(s.attributes.get("kpipe.dead_letter") for s in spans.get_finished_spans()), 10)
    finally:
        for worker in workers:
            worker.stop()

    finished = spans.get_finished_spans()
    by_name: dict[str, list[Any]] = {}
    for span in finished:
        by_name.setdefault(span.name, []).append(span)
    [send_a] = by_name[f"send {topics['source']}"]
    [process_a] = by_name[f"process {topics['source']}"]
    [send_b] = by_name[f"send {topics['middle']}"]
    first_b, retry_b = sorted(
        by_name[f"process {topics['middle']}"], key=lambda s: s.attributes["kpipe.attempt"]
    )
    [send_dlq] = by_name[f"send {topics['dlq']}"]
    chain = [send_a, process_a, send_b, first_b, retry_b, send_dlq]
    assert len({s.context.trace_id for s in chain}) == 1, "one trace from the produce to the dead letter"
    # Who is whose child.
    assert send_a.parent is None
    assert process_a.parent.span_id == send_a.context.span_id
    assert send_b.parent.span_id == process_a.context.span_id
    assert first_b.parent.span_id == send_b.context.span_id
    assert retry_b.parent.span_id == send_b.context.span_id
    assert [link.context.span_id for link in retry_b.links] == [first_b.context.span_id]
    assert send_dlq.parent.span_id == retry_b.context.span_id
    # Kinds and the messaging semantic conventions.
    assert [s.kind for s in chain] == [SpanKind.PRODUCER, SpanKind.CONSUMER, SpanKind.PRODUCER] + [
        SpanKind.CONSUMER, SpanKind.CONSUMER, SpanKind.PRODUCER,
    ]  # fmt: skip
    assert dict(process_a.attributes) == {
        "messaging.system": "kafka",
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": topics["source"],
        "messaging.destination.partition.id": "0",
        "messaging.kafka.offset": 0,
        "messaging.consumer.group.name": group_a,
        "messaging.kafka.message.key": "o-1",
        "kpipe.attempt": 1,
    }
    assert dict(send_a.attributes) == {
        "messaging.system": "kafka",
        "messaging.operation.name": "send",
        "messaging.operation.type": "send",
        "messaging.destination.name": topics["source"],
        "messaging.kafka.message.key": "o-1",
    }
    assert (first_b.attributes["kpipe.attempt"], retry_b.attributes["kpipe.attempt"]) == (1, 2)
    for failed in (first_b, retry_b):
        assert failed.status.status_code.name == "ERROR"
        assert failed.attributes["error.type"] == "RuntimeError"
        assert [e.name for e in failed.events] == ["exception"]
    assert send_dlq.attributes["kpipe.dead_letter"] is True
    # Inside each handler the current span was its process span.
    current = {
        (group, offset): span.get_span_context().span_id for group, offset, span in tracing_handlers.SEEN
    }
    assert current[(group_a, 0)] == process_a.context.span_id
    # The emitted event carries the send span's context; the dead letter keeps it (not one of its own).
    middle_headers = dict(middle.headers())
    dead_headers = dict(dead.headers())
    trace_hex = f"{send_a.context.trace_id:032x}"
    assert middle_headers["traceparent"].decode().split("-")[1:3] == [
        trace_hex,
        f"{send_b.context.span_id:016x}",
    ]
    assert dead_headers["traceparent"] == middle_headers["traceparent"]


def test_retries_and_the_dead_letter_of_a_concurrent_group_stay_in_the_events_trace(
    tmp_path: Path,
    kafka_bootstrap: str,
    prefix: str,
    unique_name: Callable[..., str],
    fast_group_config: dict[str, Any],
    make_topics: Callable[..., None],
    spans: InMemorySpanExporter,
) -> None:
    topics = {n: f"{prefix}-{n}" for n in ("source", "dlq")}
    make_topics(*topics.values())
    group = unique_name("trace-concurrent-dlq")
    path = _project(
        tmp_path, kafka_bootstrap, topics,
        f"  {group}:\n    topics: [{topics['source']}]\n    handler: tracing_handlers:fail\n    concurrency: 4\n"
        f"    on_error: {{retries: 2, backoff_ms: 10, dead_letter_topic: {topics['dlq']}}}\n",
    )  # fmt: skip
    _send(path, {f"o-{n}": {"order": n} for n in range(3)})
    worker = _worker(path, group, fast_group_config)
    try:
        read_all(kafka_bootstrap, topics["dlq"], 3, timeout=60)

        def dead_letter_sends() -> list[Any]:
            return [s for s in spans.get_finished_spans() if s.name == f"send {topics['dlq']}"]

        wait_for(lambda: len(dead_letter_sends()) == 3, 10)
    finally:
        worker.stop()
    finished = spans.get_finished_spans()
    for send in [s for s in finished if s.name == f"send {topics['source']}"]:
        trace_id = send.context.trace_id
        attempts = sorted(
            (
                s
                for s in finished
                if s.name == f"process {topics['source']}" and s.context.trace_id == trace_id
            ),
            key=lambda s: s.attributes["kpipe.attempt"],
        )
        assert [s.attributes["kpipe.attempt"] for s in attempts] == [1, 2, 3]
        assert all(s.parent.span_id == send.context.span_id for s in attempts)
        assert [link.context.span_id for link in attempts[2].links] == [attempts[1].context.span_id]
        [dead] = [s for s in dead_letter_sends() if s.context.trace_id == trace_id]
        assert dead.parent.span_id == attempts[2].context.span_id


def test_a_replayed_dead_letter_is_processed_in_the_trace_of_the_original_event(
    tmp_path: Path,
    kafka_bootstrap: str,
    prefix: str,
    unique_name: Callable[..., str],
    fast_group_config: dict[str, Any],
    make_topics: Callable[..., None],
    spans: InMemorySpanExporter,
) -> None:
    topics = {n: f"{prefix}-{n}" for n in ("source", "dlq")}
    make_topics(*topics.values())
    group = unique_name("trace-replay")
    path = _project(
        tmp_path, kafka_bootstrap, topics,
        f"  {group}:\n    topics: [{topics['source']}]\n    handler: tracing_handlers:fail_unless_replayed\n"
        f"    on_error: {{retries: 0, dead_letter_topic: {topics['dlq']}}}\n",
    )  # fmt: skip
    _send(path, {"o-1": {"order": 1}})
    worker = _worker(path, group, fast_group_config)
    try:
        read_all(kafka_bootstrap, topics["dlq"], 1, timeout=60)
        # The replay as users run it (in this process, so its spans reach the same exporter).
        replayed = kpipe("dlq", "replay", topics["dlq"], str(path), "--yes", "--format", "json")
        assert replayed.code == 0, replayed.err
        assert json.loads(replayed.out)["sent"] == 1

        def processed_again() -> list[Any]:
            return [
                s for s in spans.get_finished_spans()
                if s.name == f"process {topics['source']}" and s.attributes["messaging.kafka.offset"] == 1
            ]  # fmt: skip

        wait_for(processed_again, 60)
    finally:
        worker.stop()
    by_name: dict[str, list[Any]] = {}
    for span in spans.get_finished_spans():
        by_name.setdefault(span.name, []).append(span)
    send_original, send_replay = sorted(by_name[f"send {topics['source']}"], key=lambda s: s.start_time)
    first, again = sorted(by_name[f"process {topics['source']}"], key=lambda s: s.start_time)
    [send_dlq] = by_name[f"send {topics['dlq']}"]
    chain = [send_original, first, send_dlq, send_replay, again]
    assert len({s.context.trace_id for s in chain}) == 1, "the replay goes on in the original event's trace"
    assert first.status.status_code.name == "ERROR" and again.status.status_code.name == "UNSET"
    assert send_dlq.parent.span_id == first.context.span_id
    # The replayed event keeps the original's traceparent: its processing and the replay's write are both
    # children of the original send.
    assert again.parent.span_id == send_original.context.span_id
    assert send_replay.parent.span_id == send_original.context.span_id
    assert send_replay.kind is SpanKind.PRODUCER and "kpipe.dead_letter" not in send_replay.attributes


@pytest.mark.parametrize("handler", ["slow", "slow_async"])
def test_concurrent_handlers_each_see_their_own_process_span(
    handler: str,
    tmp_path: Path,
    kafka_bootstrap: str,
    prefix: str,
    unique_name: Callable[..., str],
    fast_group_config: dict[str, Any],
    make_topics: Callable[..., None],
    spans: InMemorySpanExporter,
) -> None:
    topics = {"source": f"{prefix}-source"}
    make_topics(*topics.values(), partitions=4)
    group = unique_name("trace-concurrent")
    path = _project(
        tmp_path, kafka_bootstrap, topics,
        f"  {group}:\n    topics: [{topics['source']}]\n    handler: tracing_handlers:{handler}\n"
        "    concurrency: 8\n",
    )  # fmt: skip
    count = 40
    _send(path, {f"k-{i}": {"n": i} for i in range(count)})
    worker = _worker(path, group, fast_group_config)
    try:
        wait_for(
            lambda: len(tracing_handlers.SEEN) >= count, 60, message=lambda: f"{len(tracing_handlers.SEEN)}"
        )
    finally:
        worker.stop()
    sends = {s.context.trace_id: s for s in spans.get_finished_spans() if s.kind is SpanKind.PRODUCER}
    assert len(sends) == count  # one trace per event
    for _group, offset, span in tracing_handlers.SEEN:
        assert span.attributes["messaging.kafka.offset"] == offset  # its own event's span, not a neighbour's
        assert span.parent.span_id == sends[span.context.trace_id].context.span_id


# --- `kpipe run` in its own processes -----------------------------------------------------------------------------

RECORDING_HANDLER = """\
import os
import sys


def handle(event, ctx):
    loaded = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
    with open(os.environ["KPIPE_TEST_MODULES"], "a") as out:
        out.write(f"{ctx.offset} {len(loaded)}\\n")
"""


class _HttpHandler(BaseHTTPRequestHandler):
    """An OTLP/HTTP traces endpoint: each request body is decoded as the protobuf the exporter sends."""

    requests: list[ExportTraceServiceRequest]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.requests.append(request)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class _HttpReceiver:
    """A local OTLP/HTTP collector keeping the decoded export requests."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        handler = type("Handler", (_HttpHandler,), {"requests": self.requests})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self._server.server_port}"

    def stop(self) -> None:
        self._server.shutdown()


class _GrpcReceiver:
    """A local OTLP/gRPC collector (the TraceService the exporter calls) keeping the decoded export requests;
    the grpc exporter and grpcio come with the test extra."""

    def __init__(self) -> None:
        grpc = pytest.importorskip("grpc")
        services = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc")
        from concurrent.futures import ThreadPoolExecutor

        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        requests: list[ExportTraceServiceRequest] = []

        class Service(services.TraceServiceServicer):
            def Export(self, request: ExportTraceServiceRequest, context: Any) -> Any:  # noqa: N802
                requests.append(request)
                return ExportTraceServiceResponse()

        self.requests = requests
        self._server = grpc.server(ThreadPoolExecutor(max_workers=2))
        services.add_TraceServiceServicer_to_server(Service(), self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self.endpoint = f"http://127.0.0.1:{port}"  # http: the exporter connects without TLS

    def stop(self) -> None:
        self._server.stop(grace=None)


_RECEIVERS: dict[str, Callable[[], Any]] = {"http/protobuf": _HttpReceiver, "grpc": _GrpcReceiver}


def _otel_off() -> dict[str, str | None]:
    """Environment overrides that remove every OTEL_ variable of this process."""
    return {k: None for k in os.environ if k.startswith("OTEL_")}


def _write_run_project(tmp_path: Path, bootstrap: str, topic: str, group: str) -> Path:
    (tmp_path / "recording.py").write_text(RECORDING_HANDLER)
    path = tmp_path / "project.yaml"
    path.write_text(
        f'cluster:\n  bootstrap_servers: "{bootstrap}"\n'
        f"topics:\n  {topic}: {{partitions: 1}}\n"
        f"producers:\n  source: {{topic: {topic}}}\n"
        f"consumers:\n  {group}:\n    topics: [{topic}]\n    handler: recording:handle\n"
    )
    return path


def _produce(path: Path, tmp_path: Path, env: dict[str, str | None], count: int) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps({"n": i}) + "\n" for i in range(count)))
    done = kpipe("produce", "source", str(path), "-f", str(events), env=env, process=True, timeout=120)
    assert done.code == 0, done.err


def _recorded(path: Path, count: int) -> list[tuple[int, int]]:
    def lines() -> list[tuple[int, int]]:
        if not path.exists():
            return []
        return [tuple(map(int, line.split())) for line in path.read_text().splitlines()]  # type: ignore[misc]

    return wait_for(lambda: len(lines()) >= count and lines(), 90, message=lambda: f"handled: {lines()}")


def test_a_worker_without_tracing_imports_no_opentelemetry(
    tmp_path: Path, kafka_bootstrap: str, prefix: str, unique_name: Callable[..., str],
    kpipe_run: Callable[..., KpipeRun],
) -> None:  # fmt: skip
    topic, group = f"{prefix}-plain", unique_name("untraced")
    path = _write_run_project(tmp_path, kafka_bootstrap, topic, group)
    env = {**_otel_off(), "KPIPE_TEST_MODULES": str(tmp_path / "modules.txt")}
    _produce(path, tmp_path, env, 3)
    run = kpipe_run(path, env=env)
    handled = _recorded(tmp_path / "modules.txt", 3)
    assert run.stop(60) == 0, run.log()
    assert handled == [(0, 0), (1, 0), (2, 0)]  # no opentelemetry module in the worker while it handled


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_kpipe_run_exports_spans_over_otlp_and_flushes_them_on_sigterm(
    protocol: str, tmp_path: Path, kafka_bootstrap: str, prefix: str, unique_name: Callable[..., str],
    kpipe_run: Callable[..., KpipeRun],
) -> None:  # fmt: skip
    receiver = _RECEIVERS[protocol]()
    topic, group = f"{prefix}-traced", unique_name("traced")
    path = _write_run_project(tmp_path, kafka_bootstrap, topic, group)
    env = _otel_off()
    env.update(
        KPIPE_TEST_MODULES=str(tmp_path / "modules.txt"),
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
        OTEL_SERVICE_NAME="orders-pipeline",
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment=test",
        # Longer than the test: spans reach the receiver only through the flush at SIGTERM.
        OTEL_BSP_SCHEDULE_DELAY="600000",
    )
    try:
        _produce(path, tmp_path, env, 3)
        run = kpipe_run(path, env=env)
        handled = _recorded(tmp_path / "modules.txt", 3)
        assert run.stop(60) == 0, run.log()
    finally:
        receiver.stop()
    assert all(loaded > 0 for _offset, loaded in handled)
    spans = []
    for request in receiver.requests:
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                spans += [(resource, span) for span in scope_spans.spans]
    assert {r["service.name"] for r, _ in spans} == {"orders-pipeline"}
    assert {r["deployment.environment"] for r, _ in spans} == {"test"}
    sends = {s.trace_id: s for _, s in spans if s.name == f"send {topic}"}
    processes = [s for _, s in spans if s.name == f"process {topic}"]
    assert len(sends) == 3 and len(processes) == 3
    for process in processes:
        attributes = {a.key: a.value for a in process.attributes}
        assert attributes["messaging.consumer.group.name"].string_value == group
        assert process.parent_span_id == sends[process.trace_id].span_id  # the produce → process link

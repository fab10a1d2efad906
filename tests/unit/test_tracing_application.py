"""kpipe's Python API inside an application that configured OpenTelemetry itself: `project.producer(...)` sends
into the application's provider, as a child of the application's current span, without turning tracing on for
the rest of the process; and nothing is traced when the application configured nothing or disabled the SDK."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import kpipe
from fakes import FakeProducer
from kpipe.runtime import tracing


@pytest.fixture
def project(tmp_path: Path) -> kpipe.Project:
    (tmp_path / "project.yaml").write_text(
        'cluster:\n  bootstrap_servers: "127.0.0.1:9"\n'
        "topics:\n  orders: {partitions: 1, key: id}\n"
        "producers:\n  checkout: {topic: orders}\n"
    )
    return kpipe.load(tmp_path / "project.yaml", root=tmp_path)


@pytest.fixture
def application(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """The application's own SDK provider as OpenTelemetry's global one (patched: the real global can be set
    once per process)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    return exporter


def _send(project: kpipe.Project, client: FakeProducer) -> dict:
    with project.producer("checkout", client_factory=client.build) as producer:
        producer.send({"id": "o-1"})
    [sent] = client.sent
    return sent


def test_sends_join_the_applications_trace_in_its_provider(
    project: kpipe.Project, application: InMemorySpanExporter
) -> None:
    client = FakeProducer()
    with trace.get_tracer_provider().get_tracer("app").start_as_current_span("checkout request") as request:
        sent = _send(project, client)
    assert tracing.current() is tracing.NO_TRACING  # adopted for this producer, not turned on for the process
    [send] = [s for s in application.get_finished_spans() if s.name == "send orders"]
    assert send.kind is SpanKind.PRODUCER
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id
    traceparent = sent["headers"]["traceparent"].decode()
    assert traceparent.split("-")[1] == f"{request.get_span_context().trace_id:032x}"
    assert send.attributes["messaging.destination.name"] == "orders"


def test_nothing_is_traced_when_the_application_disabled_the_sdk(
    project: kpipe.Project, application: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    client = FakeProducer()
    assert "traceparent" not in _send(project, client)["headers"]
    assert application.get_finished_spans() == ()


def test_nothing_is_traced_when_the_application_configured_nothing(
    project: kpipe.Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: trace.ProxyTracerProvider())
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    client = FakeProducer()
    assert "traceparent" not in _send(project, client)["headers"]
    assert tracing.current() is tracing.NO_TRACING

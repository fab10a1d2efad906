"""Tracing on: OpenTelemetry spans for kpipe's sends and handler calls (imported only when tracing is on).

    send <topic>     PRODUCER  one per produce() of a kpipe client: kpipe's Producer (`kpipe produce`), ctx.emit
                               and dead letters. It injects `traceparent` (and `tracestate`, baggage) into the
                               record's headers, unless they carry a traceparent already: a dead letter keeps
                               the one of the event it carries. It ends when the broker acknowledges the record
                               (a per-record delivery callback) or, without one, when produce() returns.
    process <topic>  CONSUMER  one per handler call, the child of the context the event carries (a root span
                               when it carries none), current while the handler runs (contextvars: threads and
                               asyncio tasks each see their own), so `opentelemetry.trace.get_current_span()` in
                               a handler is its process span and the handler's own spans are its children.

A retry is a new process span with `kpipe.attempt` one higher, linked to the failed attempt (whose span holds
the exception); when the event carried no context, retries are children of its first attempt, so one event is
one trace. A dead letter's send span is the child of the event's last process span.

Attributes follow the OpenTelemetry messaging semantic conventions for Kafka.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter, Setter, TextMapPropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider, sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from kpipe.runtime.concurrent.executor import is_async_handler
from kpipe.runtime.tracing.settings import TracingSettings

T = TypeVar("T")

TRACER_NAME = "kpipe"
TRACEPARENT = "traceparent"
# Dead-letter headers (kpipe.runtime.worker.failures) that say which event a dead letter carries.
H_ERROR_TYPE = "kpipe.error.type"
H_SOURCE = ("kpipe.group", "kpipe.source.topic", "kpipe.source.partition", "kpipe.source.offset")
# Failed events whose retry (or dead letter) is still to come, per worker: bounded, in case one never comes.
MAX_PENDING_RETRIES = 10_000
# How long a worker waits at exit for its spans to be exported.
FLUSH_TIMEOUT = 5.0

SAMPLERS: dict[str, Callable[[float], sampling.Sampler]] = {
    "always_on": lambda _ratio: sampling.ALWAYS_ON,
    "always_off": lambda _ratio: sampling.ALWAYS_OFF,
    "traceidratio": lambda ratio: sampling.TraceIdRatioBased(ratio),
    "parentbased_always_on": lambda _ratio: sampling.ParentBased(sampling.ALWAYS_ON),
    "parentbased_always_off": lambda _ratio: sampling.ParentBased(sampling.ALWAYS_OFF),
    "parentbased_traceidratio": lambda ratio: sampling.ParentBased(sampling.TraceIdRatioBased(ratio)),
}


def _otlp_http(endpoint: str | None) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint)


def _otlp_grpc(endpoint: str | None) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint)


OTLP_EXPORTERS: dict[str, Callable[[str | None], SpanExporter]] = {
    "http/protobuf": _otlp_http,
    "grpc": _otlp_grpc,
}


def provider_for(settings: TracingSettings) -> TracerProvider:
    """A TracerProvider exporting as `settings` say, through a batch processor per exporter."""
    ratio = settings.sampler_arg if settings.sampler_arg is not None else 1.0
    provider = TracerProvider(
        resource=Resource.create(dict(settings.resource_attributes)),
        sampler=SAMPLERS[settings.sampler](ratio),
    )
    for name in settings.exporters:
        if name == "console":
            exporter: SpanExporter = ConsoleSpanExporter(out=sys.stderr)  # stdout holds commands' results
        else:
            exporter = OTLP_EXPORTERS[settings.protocol](settings.endpoint)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


class _HeaderGetter(Getter):
    """Reads a Kafka record's headers, a list of (name, bytes); they come from anyone: bad values are ignored
    by the propagator (it parses what it reads)."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        values = [_text(v) for k, v in carrier if k == key]
        return values or None

    def keys(self, carrier: Any) -> list[str]:
        return [k for k, _ in carrier]


class _HeaderSetter(Setter):
    def set(self, carrier: Any, key: str, value: str) -> None:
        carrier.append((key, value.encode()))


GETTER, SETTER = _HeaderGetter(), _HeaderSetter()


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return "" if value is None else str(value)


class OtelTracing:
    """Tracing on: the hooks of kpipe.runtime.tracing, on one TracerProvider."""

    on = True

    def __init__(
        self, provider: Any, propagator: TextMapPropagator | None = None, *, set_global: bool = True
    ):
        """provider: an SDK TracerProvider (tests pass one with an in-memory exporter). With `set_global` it
        becomes OpenTelemetry's global provider, so the spans handlers start themselves are exported too."""
        self.provider = provider
        if set_global:
            trace.set_tracer_provider(provider)
        self._tracer = provider.get_tracer(TRACER_NAME)
        self._propagator = propagator or propagate.get_global_textmap()
        # (group, topic, partition, offset) -> (attempts so far, last failed span, first span) of failed events.
        self._failed: dict[tuple[str, str, int, int], tuple[int, Any, Any]] = {}

    @classmethod
    def from_settings(cls, settings: TracingSettings) -> OtelTracing:
        return cls(provider_for(settings))

    # -- hooks --------------------------------------------------------------------------------------------

    def handler(self, handler: T, group: str) -> T:
        """The handler, each call in a process span (an async handler stays async)."""
        start, failed, done = self._start_process, self._failed_process, self._done_process
        detach = otel_context.detach

        if is_async_handler(handler):

            async def traced_async(event: Any, ctx: Any) -> Any:
                span, key, token = start(ctx, group)
                try:
                    result = await handler(event, ctx)  # type: ignore[operator]
                except BaseException as exc:
                    failed(span, key, exc)
                    raise
                else:
                    done(span, key)
                    return result
                finally:
                    detach(token)

            return functools.wraps(handler)(traced_async)  # type: ignore[return-value]

        def traced(event: Any, ctx: Any) -> Any:
            span, key, token = start(ctx, group)
            try:
                result = handler(event, ctx)  # type: ignore[operator]
            except BaseException as exc:
                failed(span, key, exc)
                raise
            else:
                done(span, key)
                return result
            finally:
                detach(token)

        return functools.wraps(handler)(traced)  # type: ignore[return-value]

    def producer_factory(self, factory: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
        def traced_client(config: dict[str, Any]) -> TracedProducer:
            return TracedProducer(factory(config), self)

        return traced_client

    def flush(self, timeout: float = FLUSH_TIMEOUT) -> None:
        self.provider.force_flush(int(timeout * 1000))

    def shutdown(self) -> None:
        """Export what is left (bounded), then stop the exporters."""
        self.flush()
        self.provider.shutdown()

    # -- process spans ------------------------------------------------------------------------------------

    def _start_process(self, ctx: Any, group: str) -> tuple[Any, tuple[str, str, int, int], object]:
        topic, partition, offset = ctx.topic, ctx.partition, ctx.offset
        headers = ctx.headers
        parent = self._propagator.extract(headers, getter=GETTER) if headers else otel_context.Context()
        key = (group, topic, partition, offset)
        failed = self._failed.get(key)
        attempt, links = 1, None
        if failed is not None:
            attempt, last, first = failed[0] + 1, failed[1], failed[2]
            links = [Link(last.get_span_context(), {"kpipe.link": "previous attempt"})]
            if not trace.get_current_span(parent).get_span_context().is_valid:
                parent = trace.set_span_in_context(first, parent)
        span = self._tracer.start_span(f"process {topic}", parent, SpanKind.CONSUMER, links=links)
        if span.is_recording():
            attributes = {
                "messaging.system": "kafka",
                "messaging.operation.name": "process",
                "messaging.operation.type": "process",
                "messaging.destination.name": topic,
                "messaging.destination.partition.id": str(partition),
                "messaging.kafka.offset": offset,
                "messaging.consumer.group.name": group,
                "kpipe.attempt": attempt,
            }
            message_key = ctx.key
            if message_key is not None:
                attributes["messaging.kafka.message.key"] = message_key
            value = ctx.value
            if value is not None:
                attributes["messaging.message.body.size"] = len(value)
            span.set_attributes(attributes)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return span, key, token

    def _failed_process(self, span: Any, key: tuple[str, str, int, int], exc: BaseException) -> None:
        if span.is_recording():
            span.record_exception(exc)
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:500]))
        span.end()
        failed = self._failed
        before = failed.get(key)
        if before is None and len(failed) >= MAX_PENDING_RETRIES:
            failed.clear()
        failed[key] = (before[0] + 1, span, before[2]) if before else (1, span, span)

    def _done_process(self, span: Any, key: tuple[str, str, int, int]) -> None:
        span.end()
        if self._failed:
            self._failed.pop(key, None)

    # -- send spans ---------------------------------------------------------------------------------------

    def start_send(self, topic: str, key: Any, value: Any, headers: list[tuple[str, Any]]) -> Any:
        """The send span of one record; injects its context into `headers` unless they carry one already."""
        carried = any(k == TRACEPARENT for k, _ in headers)
        dead_letter = carried and any(k == H_ERROR_TYPE for k, _ in headers)
        parent = None
        if carried and not trace.get_current_span().get_span_context().is_valid:
            parent = self._propagator.extract(headers, getter=GETTER)
        if dead_letter:
            found = self._failed.pop(_source_of(headers), None)
            if found is not None:  # the event's last attempt
                parent = trace.set_span_in_context(found[1], parent)
        span = self._tracer.start_span(f"send {topic}", parent, SpanKind.PRODUCER)
        if span.is_recording():
            attributes: dict[str, Any] = {
                "messaging.system": "kafka",
                "messaging.operation.name": "send",
                "messaging.operation.type": "send",
                "messaging.destination.name": topic,
            }
            if key is not None:
                attributes["messaging.kafka.message.key"] = _text(key)
            if value is not None:
                attributes["messaging.message.body.size"] = len(value)
            if dead_letter:
                attributes["kpipe.dead_letter"] = True
            span.set_attributes(attributes)
        if not carried:
            self._propagator.inject(headers, context=trace.set_span_in_context(span), setter=SETTER)
        return span


def _source_of(headers: list[tuple[str, Any]]) -> tuple[str, str, int, int]:
    found = {k: _text(v) for k, v in headers if k in H_SOURCE}
    try:
        return (found[H_SOURCE[0]], found[H_SOURCE[1]], int(found[H_SOURCE[2]]), int(found[H_SOURCE[3]]))
    except (KeyError, ValueError):
        return ("", "", -1, -1)


def _end(span: Any, err: Any) -> None:
    if err is not None and span.is_recording():
        name = err.name() if hasattr(err, "name") else type(err).__name__
        span.set_attribute("error.type", name)
        span.set_status(Status(StatusCode.ERROR, err.str() if hasattr(err, "str") else str(err)))
    span.end()


class TracedProducer:
    """A librdkafka producer client whose produce() is traced; everything else is the client's own."""

    def __init__(self, client: Any, tracing: OtelTracing):
        self._client = client
        self._start_send = tracing.start_send

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def __len__(self) -> int:
        return len(self._client)

    def produce(self, topic: str, value: Any = None, key: Any = None, *args: Any, **kwargs: Any) -> None:
        headers = kwargs.get("headers")
        if isinstance(headers, Mapping):
            headers = list(headers.items())
        else:
            headers = list(headers or ())
        span = self._start_send(topic, key, value, headers)
        kwargs["headers"] = headers
        callback = kwargs.pop("on_delivery", None) or kwargs.pop("callback", None)
        if callback is not None:

            def on_delivery(err: Any, msg: Any) -> None:
                _end(span, err)
                callback(err, msg)

            kwargs["on_delivery"] = on_delivery
        try:
            self._client.produce(topic, value, key, *args, **kwargs)
        except BufferError:
            span.add_event("queue full")  # the caller waits for room and produces again (another span)
            span.end()
            raise
        except BaseException as exc:
            _end(span, exc)
            raise
        if callback is None:
            span.end()

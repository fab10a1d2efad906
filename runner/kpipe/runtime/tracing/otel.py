"""Tracing on: OpenTelemetry spans for kpipe's sends and handler calls (imported only when tracing is on).

    send <topic>     PRODUCER  one per produce() of a kpipe client: kpipe's Producer (`kpipe produce`), ctx.emit
                               and dead letters. It injects `traceparent` (and `tracestate`, baggage) into the
                               record's headers, unless they carry a traceparent already: a dead letter keeps
                               the one of the event it carries, and is the child of the event's last process span. It ends when the broker acknowledges the record
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

import contextvars
import functools
import math
import random
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter, Setter, TextMapPropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider, sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from kpipe.runtime.concurrent.executor import is_async_handler
from kpipe.runtime.tracing import BATCH_SCOPE, BatchScope
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


# The share of root spans each sampler keeps, for kpipe's own draw (Drawn, below).
ROOT_RATIOS: dict[str, Callable[[float], float]] = {
    "always_on": lambda _ratio: 1.0,
    "always_off": lambda _ratio: 0.0,
    "traceidratio": lambda ratio: ratio,
    "parentbased_always_on": lambda _ratio: 1.0,
    "parentbased_always_off": lambda _ratio: 0.0,
    "parentbased_traceidratio": lambda ratio: ratio,
}
# Unsampled events without a context share one, renewed at each batch of the sequential loop and, one event at
# a time, after this many uses, so that a downstream sampler that ignores the parent's decision still draws
# over many trace ids.
RENEW_AFTER = 100

# The parent context of the root spans kpipe has drawn to keep: the sampler keeps a span started from it (an
# identity test, nothing to look up) without drawing again. It holds no span: what starts from it is a root.
DRAWN_ROOT = otel_context.Context()


class Drawn(sampling.Sampler):
    """The configured sampler, except for the root spans kpipe has drawn to keep already.

    Starting a span only to drop it costs about ten times a no-op handler call, so for events without a context
    (and for sends outside a handler) kpipe draws first, with the configured sampler's root ratio, and starts a
    span only for those it keeps: the others run under a shared unsampled context (their emits carry a
    traceparent flagged unsampled, and a handler's own spans are dropped, never orphaned). The kept ones are
    started from DRAWN_ROOT and must not be drawn a second time."""

    def __init__(self, inner: sampling.Sampler):
        self._inner = inner
        self._kept = sampling.SamplingResult(sampling.Decision.RECORD_AND_SAMPLE)

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: Any = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> sampling.SamplingResult:
        if parent_context is DRAWN_ROOT:
            if attributes or trace_state:
                return sampling.SamplingResult(sampling.Decision.RECORD_AND_SAMPLE, attributes, trace_state)
            return self._kept
        return self._inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"KpipeDrawn{{{self._inner.get_description()}}}"


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
        sampler=Drawn(SAMPLERS[settings.sampler](ratio)),
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
        self,
        provider: Any,
        propagator: TextMapPropagator | None = None,
        *,
        set_global: bool = True,
        root_ratio: float | None = None,
        parent_based: bool = True,
        draw: Callable[[], float] = random.random,
    ):
        """provider: an SDK TracerProvider (tests pass one with an in-memory exporter). With `set_global` it
        becomes OpenTelemetry's global provider, so the spans handlers start themselves are exported too.
        root_ratio: the share of root spans the provider's sampler keeps, when it is a Drawn sampler: kpipe then
        draws itself (`draw`, uniform in [0, 1): one draw per kept root, see _keep_root) and starts spans only
        for what it keeps; None: every span is started and the sampler decides. parent_based: the sampler
        follows the parent's decision (an unsampled parent's events then skip span building too)."""
        self.provider = provider
        if set_global:
            trace.set_tracer_provider(provider)
        self._tracer = provider.get_tracer(TRACER_NAME)
        self._propagator = propagator or propagate.get_global_textmap()
        self._fields = frozenset(self._propagator.fields)
        self._root_ratio = root_ratio if root_ratio is not None and root_ratio < 1.0 else None
        # log(1 - ratio): a gap between kept roots is geometric (_gap); 0.0 when nothing is kept.
        self._log_unkept = math.log1p(-self._root_ratio) if self._root_ratio else 0.0
        self._parent_based = parent_based
        self._draw = draw
        # Roots still to leave unkept before the next kept one (None: not drawn yet).
        self.unkept_roots: int | None = None
        # [uses left, context]: the unsampled context that events without one share (see RENEW_AFTER).
        self._shared: list[Any] = [0, None]
        self._renew_unsampled()
        # (group, topic, partition) -> what its process spans share (_partition_attributes).
        self._partitions: dict[tuple[str, str, int], tuple[str, dict[str, Any]]] = {}
        # (group, topic, partition, offset) -> (attempts so far, last failed span, first span) of failed events.
        self._failed: dict[tuple[str, str, int, int], tuple[int, Any, Any]] = {}

    @classmethod
    def from_settings(cls, settings: TracingSettings) -> OtelTracing:
        ratio = settings.sampler_arg if settings.sampler_arg is not None else 1.0
        return cls(
            provider_for(settings),
            root_ratio=ROOT_RATIOS[settings.sampler](ratio),
            parent_based=settings.sampler.startswith("parentbased_"),
        )

    # -- hooks --------------------------------------------------------------------------------------------

    def handler(self, handler: T, group: str) -> T:
        """The handler, each call in a process span (an async handler stays async), with a BatchScope for the
        sequential loop (kpipe.runtime.tracing.batch_scope).

        Every call goes through _start_process, which builds a span only for the events kept (a root kpipe's
        draw keeps, a sampled parent's child, a retry of a kept event) and otherwise attaches an unsampled
        context for the call. Through a BatchScope, the shared unsampled context stays attached for the whole
        batch instead, so an unkept event without headers costs a counter decrement and a headers check before
        the handler's own call (BatchScope.call); the others take the way above."""
        start, failed, done = self._start_process, self._failed_process, self._done_process
        failures, shared_unsampled = self._failed, self._shared_unsampled
        current, _attach, detach = _context_var()

        if is_async_handler(handler):

            async def traced_async(event: Any, ctx: Any) -> Any:
                span, key, token = start(ctx, group)
                try:
                    result = await handler(event, ctx)  # type: ignore[operator]
                except BaseException as exc:
                    if span is not None:
                        failed(span, key, exc)
                    raise
                else:
                    if span is not None:
                        done(span, key)
                    return result
                finally:
                    detach(token)

            return functools.wraps(handler)(traced_async)  # type: ignore[return-value]

        def traced(event: Any, ctx: Any) -> Any:
            # An unkept root outside a BatchScope (the concurrent loop's threads, kpipe.testing): under the
            # shared unsampled context for this call only, set directly.
            left = self.unkept_roots
            if left and not failures and not ctx.headers:
                self.unkept_roots = left - 1
                token = current.set(shared_unsampled())
                try:
                    return handler(event, ctx)  # type: ignore[operator]
                finally:
                    current.reset(token)
            span, key, token = start(ctx, group)
            try:
                result = handler(event, ctx)  # type: ignore[operator]
            except BaseException as exc:
                if span is not None:
                    failed(span, key, exc)
                raise
            else:
                if span is not None:
                    done(span, key)
                return result
            finally:
                detach(token)

        wrapped = functools.wraps(handler)(traced)
        if self._root_ratio is not None:
            setattr(wrapped, BATCH_SCOPE, self._batch_scope(handler, traced))
        return wrapped  # type: ignore[return-value]

    def _batch_scope(self, handler: Any, traced: Callable[[Any, Any], Any]) -> BatchScope:
        """The handler's calls for a batch of the sequential loop: the shared unsampled context attached from
        the batch's start to its end (so nothing of it is left in the thread after the worker stops), and an
        event counted off the gap to the next kept root without a context change of its own, when it carries
        no headers (no traceparent to follow) and no failed kept event awaits its retry."""
        failures, shared = self._failed, self._shared

        def enter() -> object:
            self._renew_unsampled()
            return otel_context.attach(shared[1])

        def call(event: Any, ctx: Any) -> Any:
            # The loop's HandlerContext holds its message as `_msg`: read directly, its `headers` property (a
            # list made for each call) would cost more than the rest of this check.
            left = self.unkept_roots
            if left and not failures and ctx._msg.headers() is None:
                self.unkept_roots = left - 1
                return handler(event, ctx)
            return traced(event, ctx)

        return BatchScope(enter, call, otel_context.detach)

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

    def _start_process(self, ctx: Any, group: str) -> tuple[Any, Any, object]:
        """The process span of this call (None when it is not kept), its key, and the token of its context."""
        headers = ctx.headers
        failures = self._failed
        drawn = False
        if self._root_ratio is not None and (
            not failures or (group, ctx.topic, ctx.partition, ctx.offset) not in failures
        ):  # a retry of a kept event is kept: it goes on as its first attempt went
            if not headers or not self._carries_context(headers):  # a root: kpipe's draw decides
                if not self._keep_root():
                    return None, None, otel_context.attach(self._shared_unsampled())
                drawn = True
            elif self._parent_based:
                carried = _unsampled_parent(headers)
                if carried is not None:
                    return None, None, otel_context.attach(carried)
        topic, partition, offset = ctx.topic, ctx.partition, ctx.offset
        if drawn:
            parent = DRAWN_ROOT
        elif headers:
            parent = self._propagator.extract(headers, getter=GETTER)
        else:
            parent = otel_context.Context()
        key = (group, topic, partition, offset)
        failed = failures.get(key) if failures else None
        attempt, links = 1, None
        if failed is not None:
            attempt, last, first = failed[0] + 1, failed[1], failed[2]
            links = [Link(last.get_span_context(), {"kpipe.link": "previous attempt"})]
            if not trace.get_current_span(parent).get_span_context().is_valid:
                parent = trace.set_span_in_context(first, parent)
        name, constant = self._partition_attributes(group, topic, partition)
        span = self._tracer.start_span(name, parent, SpanKind.CONSUMER, links=links)
        if span.is_recording():
            attributes = {**constant, "messaging.kafka.offset": offset, "kpipe.attempt": attempt}
            message_key = ctx.key
            if message_key is not None:
                attributes["messaging.kafka.message.key"] = message_key
            span.set_attributes(attributes)
        token = otel_context.attach(trace.set_span_in_context(span, None if drawn else parent))
        return span, key, token

    def _partition_attributes(self, group: str, topic: str, partition: int) -> tuple[str, dict[str, Any]]:
        """The name of a partition's process spans and their attributes that do not change from one event to
        the next, made once per partition.

        Each attribute costs about as much as the rest of a span again, when it is set and when it is exported
        (OTLP encodes it per span), so a process span holds the attributes the messaging conventions require or
        recommend for Kafka, and `kpipe.attempt`; `messaging.message.body.size` (opt-in) is left out."""
        where = (group, topic, partition)
        made = self._partitions.get(where)
        if made is None:
            made = self._partitions[where] = (
                f"process {topic}",
                {
                    "messaging.system": "kafka",
                    "messaging.operation.name": "process",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": topic,
                    "messaging.destination.partition.id": str(partition),
                    "messaging.consumer.group.name": group,
                },
            )
        return made

    def _carries_context(self, headers: Any) -> bool:
        """Whether the headers hold anything the propagator reads (traceparent, tracestate, baggage): events
        with other headers only are roots, decided by the draw like events without headers."""
        fields = self._fields
        return any(name in fields for name, _ in headers)

    def _keep_root(self) -> bool:
        """Whether kpipe keeps this root span (an event, or a send outside a handler, without a context).

        Keeping each root with probability `ratio` is the same as leaving a geometric number of roots unkept
        between two kept ones: that number is drawn once per kept root (_gap), and each root in between only
        counts it down (no draw per event)."""
        left = self.unkept_roots
        if left is None:  # the first root
            left = self._gap()
        if left:
            self.unkept_roots = left - 1
            return False
        self.unkept_roots = self._gap()  # now, so that the roots until the next kept one only count down
        return True

    def _gap(self) -> int:
        """How many roots to leave unkept before the next kept one: geometric, P(k) = (1 - ratio)^k * ratio,
        by inversion of one uniform draw."""
        if self._log_unkept == 0.0:  # a ratio of 0: none is kept
            return sys.maxsize
        return int(math.log(1.0 - self._draw()) / self._log_unkept)

    def _shared_unsampled(self) -> Any:
        """The shared unsampled context, for one event's call (renewed after RENEW_AFTER uses)."""
        shared = self._shared
        shared[0] -= 1
        if shared[0] <= 0:
            self._renew_unsampled()
        return shared[1]

    def _renew_unsampled(self) -> None:
        """A new shared unsampled context for events without one (see RENEW_AFTER)."""
        context = SpanContext(random.getrandbits(128), random.getrandbits(64), False, TraceFlags(0))
        self._shared[:] = [RENEW_AFTER, trace.set_span_in_context(NonRecordingSpan(context))]

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
        """The send span of one record (None when it is not kept); injects its context into `headers` unless
        they carry one already."""
        carried = any(k == TRACEPARENT for k, _ in headers)
        dead_letter = any(k == H_ERROR_TYPE for k, _ in headers)
        # A dead letter of an event that failed in a kept process span: the child of its last attempt.
        failed = self._failed.pop(_source_of(headers), None) if dead_letter and self._failed else None
        drawn = False
        if self._root_ratio is not None and not carried and failed is None:
            current = trace.get_current_span().get_span_context()
            if not current.is_valid:
                if not self._keep_root():
                    headers.append((TRACEPARENT, _unsampled_traceparent(random.getrandbits(128))))
                    return None
                drawn = True
            elif self._parent_based and not current.trace_flags.sampled:
                headers.append((TRACEPARENT, _unsampled_traceparent(current.trace_id, current.span_id)))
                return None
        parent = None
        if failed is not None:
            parent = trace.set_span_in_context(failed[1])
        elif carried and not trace.get_current_span().get_span_context().is_valid:
            parent = self._propagator.extract(headers, getter=GETTER)
        span = self._tracer.start_span(f"send {topic}", DRAWN_ROOT if drawn else parent, SpanKind.PRODUCER)
        if span.is_recording():
            attributes: dict[str, Any] = {
                "messaging.system": "kafka",
                "messaging.operation.name": "send",
                "messaging.operation.type": "send",
                "messaging.destination.name": topic,
            }
            if key is not None:
                attributes["messaging.kafka.message.key"] = _text(key)
            if dead_letter:
                attributes["kpipe.dead_letter"] = True
            span.set_attributes(attributes)
        if not carried:
            self._propagator.inject(headers, context=trace.set_span_in_context(span), setter=SETTER)
        return span


def _context_var() -> tuple[Any, Callable[[Any], Any], Callable[[Any], None]]:
    """OpenTelemetry's current-context variable, set directly on the hot path (its attach/detach functions
    cost more than the rest of an unsampled event); attach and detach for everything else."""
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    if not isinstance(var, contextvars.ContextVar):
        var = _FallbackVar()
    return var, otel_context.attach, otel_context.detach


class _FallbackVar:
    """attach/detach behind the ContextVar interface, for a runtime context that is not the contextvars one."""

    def set(self, value: Any) -> object:
        return otel_context.attach(value)

    def reset(self, token: Any) -> None:
        otel_context.detach(token)


def _unsampled_traceparent(trace_id: int, span_id: int | None = None) -> bytes:
    span_id = span_id if span_id is not None else random.getrandbits(64)
    return f"00-{trace_id:032x}-{span_id:016x}-00".encode()


def _unsampled_parent(headers: Any) -> Any:
    """The context of an event whose traceparent says "not sampled", read without the propagator (it is
    most events of a sampled pipeline); None when it has none, or one that is sampled or malformed."""
    for name, value in headers:
        if name == TRACEPARENT:
            if type(value) is not bytes or len(value) != 55 or value[53:55] not in (b"00", b"02"):
                return None
            try:
                context = SpanContext(int(value[3:35], 16), int(value[36:52], 16), True, TraceFlags(0))
            except ValueError:
                return None
            if value[:3] != b"00-" or not context.is_valid:
                return None
            return trace.set_span_in_context(NonRecordingSpan(context))
    return None


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
        if span is None:  # not kept: only the context travels
            self._client.produce(topic, value, key, *args, **kwargs)
            return
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


class AdoptedTracing(OtelTracing):
    """Tracing on a provider the application owns (kpipe.runtime.tracing.for_application): every span is
    started and the provider's own sampler decides; kpipe flushes, but never shuts the provider down."""

    def __init__(self, provider: Any):
        super().__init__(provider, set_global=False)

    def shutdown(self) -> None:
        self.flush()

"""Tracing: when it is on and how (the OTEL_* environment over the cluster's `tracing:` block), the one error
when OpenTelemetry is missing, nothing of OpenTelemetry imported while it is off, and the spans of the hooks
(through the SDK's in-memory exporter and a fake producer client)."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import ValidationError

from fakes import FakeConsumer, FakeProducer
from helpers import kpipe
from kpipe.compilation.compiled import ClientConfig, CommitPolicy, ConsumerGroupSettings, ErrorPolicy, Setting
from kpipe.compilation.compiler import commit_settings
from kpipe.errors import UsageError
from kpipe.model.pipeline import PipelineFile, TracingSpec
from kpipe.runtime import tracing
from kpipe.runtime.concurrent.executor import is_async_handler
from kpipe.runtime.tracing import TracingUnavailable, tracing_settings
from kpipe.runtime.tracing.otel import OtelTracing

# --- settings ---------------------------------------------------------------------------------------------------


def test_tracing_is_off_without_the_environment_or_a_block() -> None:
    assert tracing_settings(None, {}) is None
    assert (
        tracing_settings(None, {"OTEL_SERVICE_NAME": "x", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
        is None
    )


def test_the_environment_alone_turns_it_on_with_the_specification_defaults() -> None:
    settings = tracing_settings(None, {"OTEL_TRACES_EXPORTER": "otlp"})
    assert settings is not None
    assert (settings.exporters, settings.protocol, settings.endpoint) == (("otlp",), "http/protobuf", None)
    assert (settings.sampler, settings.sampler_arg, settings.service_name) == (
        "parentbased_always_on",
        None,
        "kpipe",
    )
    assert settings.origin == "OTEL_TRACES_EXPORTER=otlp"


def test_a_block_turns_it_on_and_its_endpoint_gets_the_traces_path() -> None:
    spec = TracingSpec(endpoint="http://collector:4318/", service_name="orders", sampler="traceidratio",
                       sampler_arg=0.25, resource_attributes={"deployment.environment": "prod"})  # fmt: skip
    settings = tracing_settings(spec, {})
    assert settings is not None
    assert settings.endpoint == "http://collector:4318/v1/traces"
    assert (settings.sampler, settings.sampler_arg) == ("traceidratio", 0.25)
    assert dict(settings.resource_attributes) == {"service.name": "orders", "deployment.environment": "prod"}
    grpc = tracing_settings(TracingSpec(endpoint="http://collector:4317", protocol="grpc"), {})
    assert grpc is not None and grpc.endpoint == "http://collector:4317"


def test_the_environment_wins_over_the_block_key_by_key() -> None:
    spec = TracingSpec(exporter="console", endpoint="http://file:4318", service_name="from-file",
                       sampler="always_on", resource_attributes={"team": "file", "region": "eu"})  # fmt: skip
    settings = tracing_settings(spec, {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4318",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.01",
        "OTEL_RESOURCE_ATTRIBUTES": "team=env,service.name=from-attributes,note=a%2Cb",
    })  # fmt: skip
    assert settings is not None
    assert settings.exporters == ("otlp",)
    assert settings.endpoint == "http://env:4318/v1/traces"
    traces = tracing_settings(spec, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:4318/x"})
    assert traces is not None and traces.endpoint == "http://t:4318/x"
    assert (settings.sampler, settings.sampler_arg) == ("parentbased_traceidratio", 0.01)
    assert dict(settings.resource_attributes) == {
        "service.name": "from-attributes", "team": "env", "region": "eu", "note": "a,b",
    }  # fmt: skip
    named = tracing_settings(spec, {"OTEL_SERVICE_NAME": "svc", "OTEL_RESOURCE_ATTRIBUTES": "service.name=x"})
    assert named is not None and named.service_name == "svc"


@pytest.mark.parametrize(
    ("spec", "environ"),
    [
        (TracingSpec(), {"OTEL_TRACES_EXPORTER": "none"}),
        (TracingSpec(exporter="none"), {}),
        (TracingSpec(), {"OTEL_SDK_DISABLED": "true"}),
        (None, {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "TRUE"}),
    ],
)
def test_none_and_sdk_disabled_turn_it_off(spec: TracingSpec | None, environ: dict[str, str]) -> None:
    assert tracing_settings(spec, environ) is None


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER=zipkin: kpipe exports traces to otlp or console, not zipkin"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
         "OTEL_EXPORTER_OTLP_PROTOCOL=http/json: kpipe exports traces over http/protobuf or grpc"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "xray"}, "OTEL_TRACES_SAMPLER=xray: kpipe knows"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER_ARG": "2"},
         "OTEL_TRACES_SAMPLER_ARG=2: the sampling ratio is a number from 0 to 1"),
    ],
)  # fmt: skip
def test_an_environment_value_kpipe_cannot_honour_is_a_usage_error(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(UsageError) as raised:
        tracing_settings(None, environ)
    assert str(raised.value).startswith(message)


def test_the_block_forbids_unknown_keys_and_checks_its_values() -> None:
    with pytest.raises(ValidationError, match="endpont"):
        PipelineFile.model_validate({"cluster": {"tracing": {"endpont": "http://c:4318"}}})
    with pytest.raises(ValidationError, match="sampler_arg"):
        PipelineFile.model_validate({"cluster": {"tracing": {"sampler_arg": 1.5}}})
    parsed = PipelineFile.model_validate({"cluster": {"tracing": {"exporter": "console"}}})
    assert parsed.cluster is not None and parsed.cluster.tracing == TracingSpec(exporter="console")


# --- missing extra ----------------------------------------------------------------------------------------------


def test_tracing_asked_for_without_opentelemetry_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "_installed", lambda module: False)
    settings = tracing_settings(None, {"OTEL_TRACES_EXPORTER": "otlp"})
    with pytest.raises(TracingUnavailable) as raised:
        tracing.require(settings)
    assert str(raised.value) == (
        "tracing is on (OTEL_TRACES_EXPORTER=otlp) but opentelemetry-sdk, opentelemetry-exporter-otlp-proto-http "
        "are not installed; install kpipe's otel extra (from kpipe's checkout: pip install -e '.[otel]'), or unset it"
    )
    assert raised.value.exit_code == 2


def test_grpc_needs_its_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "_installed", lambda module: "grpc" not in module)
    settings = tracing_settings(TracingSpec(protocol="grpc"), {})
    with pytest.raises(TracingUnavailable) as raised:
        tracing.require(settings)
    assert str(raised.value).endswith(
        "opentelemetry-exporter-otlp-proto-grpc is not installed; install kpipe's otel extra (from kpipe's "
        "checkout: pip install -e '.[otel]') and opentelemetry-exporter-otlp-proto-grpc, or unset it"
    )


@pytest.mark.parametrize("command", ["run", "dev"])
def test_kpipe_run_and_dev_say_so_once_before_starting_any_worker(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracing, "_installed", lambda module: False)
    (tmp_path / "handlers.py").write_text("def handle(event, ctx):\n    pass\n")
    (tmp_path / "project.yaml").write_text(
        "cluster:\n  bootstrap_servers: 127.0.0.1:1\n  tracing: {endpoint: 'http://collector:4318'}\n"
        "topics:\n  orders: {partitions: 1}\n"
        "consumers:\n  billing: {topics: [orders], handler: 'handlers:handle'}\n"
    )
    result = kpipe(command, str(tmp_path / "project.yaml"), "--root", str(tmp_path))
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "error: tracing is on (the cluster's tracing: block) but opentelemetry-sdk, "
        "opentelemetry-exporter-otlp-proto-http are not installed; install kpipe's otel extra (from kpipe's checkout: pip install -e '.[otel]'), or unset it"
    ]


# --- off: free -------------------------------------------------------------------------------------------------


def test_nothing_imports_opentelemetry_while_tracing_is_off() -> None:
    code = (
        "import sys\n"
        "import kpipe.cli, kpipe.cli.run_cmd, kpipe.runtime.worker.process, kpipe.runtime.producer\n"
        "from kpipe.runtime import tracing\n"
        "assert tracing.start(None, {}) is tracing.NO_TRACING\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'opentelemetry'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr


def test_the_hooks_hand_back_what_they_are_given_while_off() -> None:
    def handler(event: Any, ctx: Any) -> None:
        pass

    assert tracing.NO_TRACING.handler(handler, "g") is handler
    assert tracing.NO_TRACING.producer_factory(dict) is dict


def test_a_command_session_leaves_a_tracing_that_was_on_running_and_is_off_when_nothing_asks() -> None:
    class Running(tracing.NoTracing):
        on = True
        shutdowns = 0

        def shutdown(self) -> None:
            self.shutdowns += 1

    with tracing.session(None, {}) as off:
        assert off is tracing.NO_TRACING
    running = Running()
    previous = tracing.install(running)
    try:
        with tracing.session(TracingSpec(), {}) as used:  # a block too: what is on already is used
            assert used is running
        assert running.shutdowns == 0 and tracing.current() is running
    finally:
        tracing.install(previous)


# --- on: spans of the hooks ------------------------------------------------------------------------------------


class FakeProducerClient:
    """Keeps what produce() was given; calls the delivery callback when told."""

    def __init__(self) -> None:
        self.produced: list[dict[str, Any]] = []

    def produce(self, topic: str, value: Any = None, key: Any = None, **kwargs: Any) -> None:
        self.produced.append({"topic": topic, "value": value, "key": key, **kwargs})

    def __len__(self) -> int:
        return 0


class Ctx:
    def __init__(self, headers: list[tuple[str, bytes]], offset: int = 7) -> None:
        self.headers, self.offset = headers, offset
        self.topic, self.partition, self.key, self.value = "orders", 2, "o-1", b"{}"


@pytest.fixture
def on() -> tuple[OtelTracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return OtelTracing(provider, set_global=False), exporter


def test_a_send_injects_its_context_and_a_carried_traceparent_is_kept(on: tuple[OtelTracing, Any]) -> None:
    traced, exporter = on
    client = FakeProducerClient()
    producer = traced.producer_factory(lambda config: client)({})
    producer.produce("orders", b"{}", "o-1", headers={"source": b"web"})
    sent = client.produced[0]["headers"]
    [send] = exporter.get_finished_spans()
    assert [k for k, _ in sent] == ["source", "traceparent"] and sent[0][1] == b"web"
    version, trace_id, span_id, _flags = sent[1][1].decode().split("-")
    assert (version, trace_id, span_id) == (
        "00",
        f"{send.context.trace_id:032x}",
        f"{send.context.span_id:016x}",
    )
    # A dead letter carries the event's traceparent: kept, and its send span joins that trace.
    errors: list[Any] = []
    producer.produce("orders.dlq", b"{}", None, headers=[*sent, ("kpipe.error.type", b"handler")],
                     on_delivery=lambda err, msg: errors.append(err))  # fmt: skip
    dead = client.produced[1]
    assert [v for k, v in dead["headers"] if k == "traceparent"] == [sent[1][1]]
    dead["on_delivery"](None, None)
    assert errors == [None]
    dead_span = exporter.get_finished_spans()[-1]
    assert dead_span.context.trace_id == send.context.trace_id
    assert dead_span.attributes["kpipe.dead_letter"] is True


def test_a_hostile_traceparent_starts_a_new_trace(on: tuple[OtelTracing, Any]) -> None:
    traced, exporter = on
    handler = traced.handler(lambda event, ctx: trace.get_current_span(), "billing")
    span = handler(None, Ctx([("traceparent", b"00-zz-\xff\xfe-01"), ("traceparent", b"")]))
    [process] = exporter.get_finished_spans()
    assert process.parent is None and span.get_span_context().span_id == process.context.span_id


def test_retries_are_numbered_linked_and_one_trace_when_the_event_carried_none(
    on: tuple[OtelTracing, Any],
) -> None:
    traced, exporter = on
    calls = []

    def flaky(event: Any, ctx: Any) -> None:
        calls.append(1)
        if len(calls) < 3:
            raise ValueError("not yet")

    handler = traced.handler(flaky, "billing")
    for _ in range(2):
        with pytest.raises(ValueError):
            handler(None, Ctx([]))
    handler(None, Ctx([]))
    first, second, third = exporter.get_finished_spans()
    assert [s.attributes["kpipe.attempt"] for s in (first, second, third)] == [1, 2, 3]
    assert first.parent is None
    assert second.parent.span_id == third.parent.span_id == first.context.span_id
    assert [link.context.span_id for link in third.links] == [second.context.span_id]
    assert [s.status.status_code.name for s in (first, second, third)] == ["ERROR", "ERROR", "UNSET"]
    handler(None, Ctx([]))  # the next event of that offset (a redelivery) starts again at 1
    assert exporter.get_finished_spans()[-1].attributes["kpipe.attempt"] == 1


def test_an_async_handler_stays_async_and_runs_in_its_span(on: tuple[OtelTracing, Any]) -> None:
    traced, exporter = on

    async def handle(event: Any, ctx: Any) -> Any:
        await asyncio.sleep(0)
        return trace.get_current_span()

    handler = traced.handler(handle, "billing")
    assert is_async_handler(handler)
    span = asyncio.run(handler(None, Ctx([])))
    [process] = exporter.get_finished_spans()
    assert span.get_span_context().span_id == process.context.span_id
    assert trace.get_current_span().get_span_context().is_valid is False  # detached afterwards


# --- on, sampled by kpipe's own draw (parentbased_traceidratio and the like) -----------------------------------


def drawn_tracing(
    draws: list[float] | Callable[[], float], ratio: float = 0.01, roots: Any = None
) -> tuple[OtelTracing, InMemorySpanExporter, Any]:
    """kpipe's draw from `draws` (the uniform numbers of which each gap between kept roots is made). `roots`:
    what the configured sampler does with a root span kpipe has not drawn (a handler's own span started
    without a context, say); by default it keeps none, so what is kept, kpipe's draw kept."""
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from kpipe.runtime.tracing.otel import Drawn

    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        sampler=Drawn(ParentBased(roots if roots is not None else TraceIdRatioBased(0.0)))
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    draw = draws if callable(draws) else iter(draws).__next__
    return OtelTracing(provider, set_global=False, root_ratio=ratio, draw=draw), exporter, provider


def test_an_event_the_draw_does_not_keep_builds_no_span_and_its_emits_say_unsampled() -> None:
    traced, exporter, provider = drawn_tracing([0.5, 0.5])
    client = FakeProducerClient()
    producer = traced.producer_factory(lambda config: client)({})
    seen = []

    def handle(event: Any, ctx: Any) -> None:
        current = trace.get_current_span()
        with provider.get_tracer("handler").start_as_current_span("own work") as own:
            seen.append((current.get_span_context(), own.is_recording()))
        producer.produce("shipments", b"{}", "o-1")

    traced.handler(handle, "billing")(None, Ctx([]))
    assert exporter.get_finished_spans() == ()  # neither the process span nor the handler's own: no orphans
    [(context, own_recording)] = seen
    assert context.is_valid and not context.trace_flags.sampled and not own_recording
    [(name, value)] = client.produced[0]["headers"]
    assert (name, value.decode().split("-")[1], value.decode()[-2:]) == (
        "traceparent",
        f"{context.trace_id:032x}",
        "00",
    )
    assert trace.get_current_span().get_span_context().is_valid is False  # detached afterwards


def test_an_event_the_draw_keeps_is_traced_whatever_the_configured_sampler_would_draw() -> None:
    traced, exporter, _provider = drawn_tracing(
        [0.001, 0.5]
    )  # kept, then 68 left unkept (log 0.5 / log 0.99)
    traced.handler(lambda event, ctx: None, "billing")(None, Ctx([]))
    [process] = exporter.get_finished_spans()
    assert process.name == "process orders" and process.parent is None and process.context.trace_flags.sampled


def test_an_unsampled_traceparent_is_followed_without_building_a_span() -> None:
    traced, exporter, _provider = drawn_tracing([])  # no draw: the parent decided
    parent = f"00-{0xABC:032x}-{0xDEF:016x}-00".encode()
    contexts = []
    traced.handler(lambda e, c: contexts.append(trace.get_current_span().get_span_context()), "billing")(
        None, Ctx([("traceparent", parent)])
    )
    assert exporter.get_finished_spans() == ()
    assert (contexts[0].trace_id, contexts[0].span_id, contexts[0].trace_flags.sampled) == (
        0xABC,
        0xDEF,
        False,
    )


def test_a_retry_of_a_kept_event_is_kept() -> None:
    traced, exporter, _provider = drawn_tracing([0.001, 0.99])  # the retry would not be drawn again

    def fail(event: Any, ctx: Any) -> None:
        raise RuntimeError("no")

    handler = traced.handler(fail, "billing")
    for _ in range(2):
        with pytest.raises(RuntimeError):
            handler(None, Ctx([]))
    assert [s.attributes["kpipe.attempt"] for s in exporter.get_finished_spans()] == [1, 2]


def test_what_kpipe_run_hands_its_workers_resolves_to_the_same_settings() -> None:
    spec = TracingSpec(endpoint="http://collector:4318", service_name="orders", sampler="parentbased_traceidratio",
                       sampler_arg=0.05, resource_attributes={"team": "a,b=c"})  # fmt: skip
    environ = {"OTEL_TRACES_SAMPLER_ARG": "0.2", "PATH": "/bin"}
    settings = tracing_settings(spec, environ)
    tracing.for_workers(spec, environ)
    assert environ["OTEL_TRACES_EXPORTER"] == "otlp" and environ["PATH"] == "/bin"
    assert tracing_settings(None, environ) == settings  # a worker reads no file: the environment is enough
    assert settings is not None and (settings.sampler_arg, settings.endpoint) == (
        0.2,
        "http://collector:4318/v1/traces",
    )
    untouched = {"PATH": "/bin"}
    tracing.for_workers(None, untouched)
    assert untouched == {"PATH": "/bin"}


def test_the_dead_letter_of_an_event_without_context_joins_the_trace_of_its_attempts(
    on: tuple[OtelTracing, Any],
) -> None:
    traced, exporter = on
    client = FakeProducerClient()
    producer = traced.producer_factory(lambda config: client)({})

    def fail(event: Any, ctx: Any) -> None:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        traced.handler(fail, "billing")(None, Ctx([], offset=9))
    from kpipe.runtime.worker import dead_letter_headers

    headers = dead_letter_headers("orders", 2, 9, "handler", "RuntimeError: no", "billing", [], attempts=1)
    producer.produce("orders.dlq", b"{}", "o-1", headers=headers)
    process, dead = exporter.get_finished_spans()
    assert dead.parent.span_id == process.context.span_id and dead.attributes["kpipe.dead_letter"] is True
    sent = dict(client.produced[0]["headers"])
    assert sent["traceparent"].decode().split("-")[1] == f"{process.context.trace_id:032x}"


def test_the_draw_keeps_roots_at_the_ratio_with_one_draw_per_kept_root() -> None:
    source = random.Random(7)
    draws = []

    def draw() -> float:
        draws.append(source.random())
        return draws[-1]

    traced, exporter, _provider = drawn_tracing(draw, ratio=0.05)
    handler = traced.handler(lambda event, ctx: None, "billing")
    for offset in range(20_000):
        handler(None, Ctx([], offset=offset))
    kept = len(exporter.get_finished_spans())
    assert 850 <= kept <= 1150  # 5 % of 20,000 is 1,000, with a standard deviation of 31
    assert len(draws) == kept + 1  # a gap drawn at the first root and after each kept one, no draw per event


def sequential_worker(handler: Any, batches: list[list[Message]]) -> Any:
    """A GroupWorker (sequential loop) on topic 't' over the fake consumer, which delivers `batches`."""
    from kpipe.runtime.worker import GroupWorker, Outside

    commit = CommitPolicy("batch", batch_size=100, interval_ms=60_000)
    conf = {"bootstrap.servers": "unused:9092", "group.id": "g", **commit_settings(commit)}
    settings = ConsumerGroupSettings(
        group_id="g", topics=("t",), handler="m:f", instances=1, commit=commit, on_error=ErrorPolicy("skip"),
        client=ClientConfig(tuple(Setting(k, v, "declared") for k, v in conf.items())),
    )  # fmt: skip
    consumer = FakeConsumer()
    worker = GroupWorker(
        settings, {}, handler, outside=Outside(consumer=consumer.build, producer=FakeProducer().build)
    )
    consumer.when_idle = worker.stop
    consumer.batches.extend(batches)
    return worker


def test_through_the_sequential_loop_only_kept_events_are_traced_and_no_context_is_left_afterwards() -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    # Ratio 0.5: a gap is int(log(1 - u) / log(0.5)); u = 0 keeps the next root, 0.8 leaves 2 unkept, 0.9 3.
    # The configured sampler keeps every root it is asked about: a handler's span started without a context
    # would be recorded, an orphan.
    traced, exporter, provider = drawn_tracing([0.0, 0.8, 0.0, 0.9], ratio=0.5, roots=ALWAYS_ON)
    client = FakeProducerClient()
    producer = traced.producer_factory(lambda config: client)({})
    seen: dict[int, Any] = {}

    def handle(event: Any, ctx: Any) -> None:
        seen[ctx.offset] = trace.get_current_span().get_span_context()
        with provider.get_tracer("handler").start_as_current_span("own work"):
            producer.produce("out", b"{}", None, headers={"offset": str(ctx.offset).encode()})

    sampled = f"00-{0xABC:032x}-{0xDEF:016x}-01".encode()
    unsampled = f"00-{0xABC:032x}-{0xDEF:016x}-00".encode()
    plain = [Message(topic="t", partition=0, offset=i, value=b"{}") for i in range(6)]
    carried = [
        Message(topic="t", partition=1, offset=10, value=b"{}", headers=[("traceparent", sampled)]),
        Message(topic="t", partition=1, offset=11, value=b"{}", headers=[("traceparent", unsampled)]),
    ]
    worker = sequential_worker(traced.handler(handle, "g"), [plain[:4], [*plain[4:], *carried]])
    worker.run()
    assert worker.handled == 8
    assert trace.get_current_span().get_span_context().is_valid is False  # the batch's context is gone

    spans = exporter.get_finished_spans()
    process = {s.attributes["messaging.kafka.offset"]: s for s in spans if s.name == "process t"}
    # Kept: offsets 0, 3 and 4 by the draw (gaps 0, 2, 0, then 3), 10 by its sampled parent; 11 never.
    assert sorted(process) == [0, 3, 4, 10]
    assert process[10].parent.span_id == 0xDEF and process[10].context.trace_id == 0xABC
    own = [s for s in spans if s.name == "own work"]
    assert sorted(s.parent.span_id for s in own) == sorted(s.context.span_id for s in process.values())
    sends = [s for s in spans if s.name == "send out"]
    assert len(sends) == 4 and all(
        s.parent is not None for s in sends
    )  # no orphan: each in its event's trace
    for offset in (1, 2, 5, 11):  # not kept: an unsampled context in the handler, and on what it emitted
        assert seen[offset].is_valid and not seen[offset].trace_flags.sampled
    emitted = {dict(r["headers"])["offset"]: dict(r["headers"])["traceparent"] for r in client.produced}
    assert {o for o, tp in emitted.items() if tp.endswith(b"-00")} == {b"1", b"2", b"5", b"11"}
    assert emitted[b"11"].split(b"-")[1] == f"{0xABC:032x}".encode()  # the carried trace goes on, unsampled


def test_an_event_whose_headers_carry_no_context_is_a_root_for_the_draw() -> None:
    traced, exporter, _provider = drawn_tracing([0.5, 0.001, 0.5])  # 68 unkept, then one kept
    contexts = []
    handler = traced.handler(lambda e, c: contexts.append(trace.get_current_span().get_span_context()), "g")
    for offset in range(69):
        handler(None, Ctx([("source", b"web")], offset=offset))
    [process] = exporter.get_finished_spans()  # not a span started (and dropped) for each of the others
    assert process.attributes["messaging.kafka.offset"] == 68 and process.parent is None
    assert all(c.is_valid and not c.trace_flags.sampled for c in contexts[:68])

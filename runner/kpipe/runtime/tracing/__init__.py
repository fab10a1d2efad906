"""OpenTelemetry tracing, off by default and then free: nothing here imports OpenTelemetry.

Tracing is turned on by the standard environment (OTEL_TRACES_EXPORTER=otlp|console, ...) or by a `tracing:`
block in the cluster section of the files; the environment wins key by key (settings.py). When it is on, the
implementation (otel.py, which needs kpipe's `otel` extra) is imported and becomes this process's
`current()`; when it is off, `current()` is NO_TRACING, whose hooks hand back what they are given, so the
runtime pays one call per worker or producer built, and nothing per event.

The runtime's hooks, each one line (they are all there is to re-apply when the consume loop changes):

    for_workers(spec, os.environ)                          `kpipe run`/`dev`: checked once, passed on as OTEL_*
    traced = start(None, os.environ)                       a worker process: on as its environment says
    handler = current().handler(handler, group)            the worker's handler: one `process` span per call
    scope = batch_scope(handler)                           the sequential loop: a batch's calls at less cost
    factory = current().producer_factory(factory)          every producer client: one `send` span per produce()
    current().shutdown()                                   spans exported before a worker or `produce` exits
    with session(spec, os.environ): ...                    a command that sends (`dlq replay`): on, then exported
    traced = for_application(spec, os.environ)             kpipe's Python API (`project.producer(...)`)

An application that configured OpenTelemetry itself (an SDK TracerProvider made the global one) and sends with
kpipe's Python API keeps its provider: for_application() hands its producers an adopted tracing on that provider,
as any instrumented library uses the application's, so their sends join the application's traces. Adopting
changes nothing of this process's current() and is found in sys.modules (nothing is imported to find out).

Dead letters go through the worker's producer client like emitted events, so they get a `send` span too; they
keep the traceparent of the event they carry (a traceparent already in the headers is never replaced).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any, NamedTuple, Protocol, TypeVar

from kpipe.errors import UsageError
from kpipe.runtime.tracing.settings import TracingSettings, as_environment, sdk_disabled, tracing_settings

__all__ = [
    "NO_TRACING",
    "as_environment",
    "BatchScope",
    "Tracing",
    "TracingSettings",
    "TracingUnavailable",
    "batch_scope",
    "current",
    "for_application",
    "install",
    "for_workers",
    "require",
    "session",
    "start",
    "tracing_settings",
]

T = TypeVar("T")

# The distributions of `kpipe[otel]`, by the module each provides.
REQUIRED_MODULES = {
    "opentelemetry.sdk": "opentelemetry-sdk",
    "opentelemetry.exporter.otlp.proto.http": "opentelemetry-exporter-otlp-proto-http",
}
GRPC_MODULE = ("opentelemetry.exporter.otlp.proto.grpc", "opentelemetry-exporter-otlp-proto-grpc")


class TracingUnavailable(UsageError):
    """Tracing was asked for, but OpenTelemetry (the `otel` extra) is not installed."""


class Tracing(Protocol):
    on: bool

    def handler(self, handler: T, group: str) -> T: ...

    def producer_factory(
        self, factory: Callable[[dict[str, Any]], Any]
    ) -> Callable[[dict[str, Any]], Any]: ...

    def flush(self, timeout: float = ...) -> None: ...

    def shutdown(self) -> None: ...


class BatchScope(NamedTuple):
    """How the sequential loop calls a traced handler through a batch at less cost than one call at a time:
    `enter()` before the batch's first event (it returns a token), `leave(token)` after its last, whatever
    happens; between them, `call` in place of the handler (outside them, the handler as it is)."""

    enter: Callable[[], object]
    call: Callable[[Any, Any], Any]
    leave: Callable[[object], None]


# The attribute of a traced handler that holds its BatchScope.
BATCH_SCOPE = "kpipe_batch_scope"


def batch_scope(handler: Any) -> BatchScope | None:
    """The BatchScope a tracing hook gave `handler`; None for any other handler (call it as it is)."""
    scope = getattr(handler, BATCH_SCOPE, None)
    return scope if isinstance(scope, BatchScope) else None


class NoTracing:
    """Tracing off: every hook hands back what it was given."""

    on = False

    def handler(self, handler: T, group: str) -> T:
        return handler

    def producer_factory(self, factory: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
        return factory

    def flush(self, timeout: float = 5.0) -> None:
        pass

    def shutdown(self) -> None:
        pass


NO_TRACING = NoTracing()
_current: Tracing = NO_TRACING


def current() -> Tracing:
    """This process's tracing (NO_TRACING until start() or install() turned it on)."""
    return _current


def install(tracing: Tracing) -> Tracing:
    """Make `tracing` this process's (tests install one with an in-memory exporter); returns the previous."""
    global _current
    previous, _current = _current, tracing
    return previous


def require(settings: TracingSettings | None) -> None:
    """Raise TracingUnavailable when tracing is on but the packages it needs are missing (checked without
    importing them: the supervisor of `kpipe run` says so once, before any worker starts)."""
    if settings is None:
        return
    needed = dict(REQUIRED_MODULES)
    if settings.protocol == "grpc" and "otlp" in settings.exporters:
        needed[GRPC_MODULE[0]] = GRPC_MODULE[1]
    missing = [dist for module, dist in needed.items() if not _installed(module)]
    if missing:
        extra = "install kpipe's otel extra (from kpipe's checkout: pip install -e '.[otel]')"
        if GRPC_MODULE[1] in missing:
            extra += f" and {GRPC_MODULE[1]}"
        raise TracingUnavailable(
            f"tracing is on ({settings.origin}) but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed; {extra}, or unset it"
        )


def for_workers(spec: Any, environ: MutableMapping[str, str]) -> None:
    """Where worker processes are started (`kpipe run`, `kpipe dev`): check that tracing, if asked for by
    `environ` or the files' block (`spec`), can start (TracingUnavailable, once, before any worker), and put
    its settings in `environ` as OTEL_* variables for the workers to inherit (they read no project file)."""
    settings = tracing_settings(spec, environ)
    require(settings)
    environ.update(as_environment(settings))


def start(spec: Any, environ: Mapping[str, str]) -> Tracing:
    """Turn tracing on in this process as the environment and the files' `tracing:` block (`spec`, a
    TracingSpec or None) ask; once per process (a tracing already on, e.g. a test's, is kept)."""
    global _current
    if _current.on:
        return _current
    settings = tracing_settings(spec, environ)
    if settings is None:
        return _current
    require(settings)
    from kpipe.runtime.tracing.otel import OtelTracing  # only here: off, OpenTelemetry is never imported

    _current = OtelTracing.from_settings(settings)
    return _current


def for_application(spec: Any, environ: Mapping[str, str]) -> Tracing:
    """The tracing for what an application sends through kpipe's Python API: this process's when it is on;
    else, when the application made an OpenTelemetry SDK TracerProvider the global one, a tracing on that
    provider (its sampler decides, its owner exports and shuts it down); else as the environment and the files'
    block ask (start()). OTEL_SDK_DISABLED=true: off."""
    if _current.on or sdk_disabled(environ):
        return _current
    provider = _application_provider()
    if provider is None:
        return start(spec, environ)
    from kpipe.runtime.tracing.otel import AdoptedTracing

    return AdoptedTracing(provider)


@contextmanager
def session(spec: Any, environ: Mapping[str, str]) -> Iterator[Tracing]:
    """Tracing on for a command's block, as start() turns it on; its spans exported when the block ends. A
    tracing that was on already (a test's, a worker's) is used and left running."""
    was_on = _current.on
    traced = start(spec, environ)
    try:
        yield traced
    finally:
        if not was_on:
            traced.shutdown()


def _application_provider() -> Any:
    """The OpenTelemetry SDK TracerProvider the application made global, or None (also when OpenTelemetry was
    never imported: nothing is imported to find out)."""
    api, sdk = sys.modules.get("opentelemetry.trace"), sys.modules.get("opentelemetry.sdk.trace")
    if api is None or sdk is None:
        return None
    provider = api.get_tracer_provider()
    return provider if isinstance(provider, sdk.TracerProvider) else None


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False

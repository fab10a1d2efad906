"""Whether and how to trace: the standard OTEL_* environment over the files' `tracing:` block. Pure.

    OTEL_SDK_DISABLED=true                      off, whatever else is set
    OTEL_TRACES_EXPORTER                        otlp | console | none (a comma-separated list of them)
    OTEL_EXPORTER_OTLP_PROTOCOL                 http/protobuf | grpc (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL first)
    OTEL_EXPORTER_OTLP_ENDPOINT                 (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT first); the exporter reads its
                                                _HEADERS, _TIMEOUT, _CERTIFICATE, ... itself
    OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG

With neither OTEL_TRACES_EXPORTER nor a `tracing:` block, tracing is off (unlike the SDK's own default: kpipe
sends nothing anywhere unless asked). A value kpipe cannot honour is a usage error, never silently ignored.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kpipe.errors import UsageError

EXPORTERS = ("otlp", "console")
PROTOCOLS = ("http/protobuf", "grpc")
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
DEFAULT_SERVICE_NAME = "kpipe"
DEFAULT_SAMPLER = "parentbased_always_on"
# The path of the traces signal under an OTLP/HTTP base endpoint (what the SDK appends to the environment's).
HTTP_TRACES_PATH = "/v1/traces"


@dataclass(frozen=True)
class TracingSettings:
    """What a process traces with. `endpoint` is the traces URL, or None for the exporter's default
    (localhost). `origin` says what turned tracing on."""

    exporters: tuple[str, ...]
    protocol: str
    endpoint: str | None
    sampler: str
    sampler_arg: float | None
    resource_attributes: tuple[tuple[str, str], ...]
    origin: str = field(compare=False)

    @property
    def service_name(self) -> str:
        return dict(self.resource_attributes)["service.name"]


def sdk_disabled(environ: Mapping[str, str]) -> bool:
    """OTEL_SDK_DISABLED=true: no tracing at all, whatever else is set."""
    return _env(environ, "OTEL_SDK_DISABLED").lower() == "true"


def tracing_settings(spec: Any, environ: Mapping[str, str]) -> TracingSettings | None:
    """The settings from `spec` (a TracingSpec from the cluster section, or None) and the environment, or None
    when tracing is off. Raises UsageError for an environment value kpipe cannot honour."""
    if sdk_disabled(environ):
        return None
    exporter_env = _env(environ, "OTEL_TRACES_EXPORTER")
    if exporter_env:
        names = tuple(dict.fromkeys(n.strip() for n in exporter_env.split(",") if n.strip()))
        unknown = [n for n in names if n not in (*EXPORTERS, "none")]
        if unknown:
            raise UsageError(
                f"OTEL_TRACES_EXPORTER={exporter_env}: kpipe exports traces to otlp or console, "
                f"not {', '.join(unknown)}"
            )
        exporters = tuple(n for n in names if n != "none")
        origin = f"OTEL_TRACES_EXPORTER={exporter_env}"
    elif spec is not None:
        exporters = () if spec.exporter == "none" else (spec.exporter,)
        origin = "the cluster's tracing: block"
    else:
        return None
    if not exporters:
        return None
    protocol = _env(environ, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or _env(
        environ, "OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    if protocol and protocol not in PROTOCOLS:
        raise UsageError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: kpipe exports traces over http/protobuf or grpc"
        )
    protocol = protocol or (spec.protocol if spec is not None else PROTOCOLS[0])
    sampler = _env(environ, "OTEL_TRACES_SAMPLER") or (spec.sampler if spec is not None else DEFAULT_SAMPLER)
    if sampler not in SAMPLERS:
        raise UsageError(f"OTEL_TRACES_SAMPLER={sampler}: kpipe knows the samplers {', '.join(SAMPLERS)}")
    return TracingSettings(
        exporters=exporters,
        protocol=protocol,
        endpoint=_endpoint(spec, environ, protocol),
        sampler=sampler,
        sampler_arg=_sampler_arg(spec, environ),
        resource_attributes=tuple(sorted(_resource(spec, environ).items())),
        origin=origin,
    )


def as_environment(settings: TracingSettings | None) -> dict[str, str]:
    """The OTEL_* variables that resolve to `settings` again, for the worker processes of `kpipe run` and
    `kpipe dev` to inherit: they read only the environment, so the files' block travels this way (empty when
    tracing is off: nothing is added)."""
    if settings is None:
        return {}
    environ = {
        "OTEL_TRACES_EXPORTER": ",".join(settings.exporters),
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": settings.protocol,
        "OTEL_TRACES_SAMPLER": settings.sampler,
        "OTEL_RESOURCE_ATTRIBUTES": ",".join(
            f"{urllib.parse.quote(k, safe='')}={urllib.parse.quote(v, safe='')}"
            for k, v in settings.resource_attributes
        ),
        "OTEL_SERVICE_NAME": settings.service_name,
    }
    if settings.endpoint is not None:
        environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = settings.endpoint
    if settings.sampler_arg is not None:
        environ["OTEL_TRACES_SAMPLER_ARG"] = repr(settings.sampler_arg)
    return environ


def _endpoint(spec: Any, environ: Mapping[str, str], protocol: str) -> str | None:
    """The traces URL, by the specification's rules: a signal-specific endpoint as it is; a base endpoint
    (OTEL_EXPORTER_OTLP_ENDPOINT, or the block's) with /v1/traces added for http/protobuf. None: the default."""
    traces = _env(environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if traces:
        return traces
    base = _env(environ, "OTEL_EXPORTER_OTLP_ENDPOINT") or (spec.endpoint if spec is not None else None)
    if not base:
        return None
    if protocol == "grpc":
        return base
    return base.rstrip("/") + HTTP_TRACES_PATH


def _sampler_arg(spec: Any, environ: Mapping[str, str]) -> float | None:
    text = _env(environ, "OTEL_TRACES_SAMPLER_ARG")
    if not text:
        return spec.sampler_arg if spec is not None else None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise UsageError(f"OTEL_TRACES_SAMPLER_ARG={text}: the sampling ratio is a number from 0 to 1")
    return value


def _resource(spec: Any, environ: Mapping[str, str]) -> dict[str, str]:
    """The files' attributes and service name, then the environment's (OTEL_SERVICE_NAME last: it wins)."""
    attributes: dict[str, str] = {"service.name": DEFAULT_SERVICE_NAME}
    if spec is not None:
        attributes.update(spec.resource_attributes)
        if spec.service_name:
            attributes["service.name"] = spec.service_name
    for pair in _env(environ, "OTEL_RESOURCE_ATTRIBUTES").split(","):
        key, sep, value = pair.partition("=")
        if sep and key.strip():
            attributes[urllib.parse.unquote(key.strip())] = urllib.parse.unquote(value.strip())
    service = _env(environ, "OTEL_SERVICE_NAME")
    if service:
        attributes["service.name"] = service
    return attributes


def _env(environ: Mapping[str, str], name: str) -> str:
    return environ.get(name, "").strip()

"""`kpipe explain`: the final settings of one producer or consumer group, with the origin of each value."""

from __future__ import annotations

import json

from kpipe.compilation.compiled import ClientConfig
from kpipe.compilation.project import CompiledProject
from kpipe.diagnostics import did_you_mean
from kpipe.errors import UsageError
from kpipe.redaction import REDACTED, redact, safe_text

__all__ = ["REDACTED", "explain_client"]


def _rows(config: ClientConfig) -> list[dict]:
    rows = []
    for s in sorted(config.settings, key=lambda s: s.key):
        rows.append(
            {
                "key": s.key,
                "value": REDACTED if s.secret else redact(s.value),
                "source": s.source,
                "origin": s.origin,
                "position": str(s.position) if s.position else None,
            }
        )
    return rows


def explain_client(
    project: CompiledProject, name: str, output_format: str = "text", *, instance: int = 0
) -> str:
    """The final settings of producer or consumer group `name` (for a group: of its `instance`), exactly as the
    client is given them, with where each value came from. Secrets are redacted."""
    if name in project.declarations.producers:
        settings = project.producer_settings(name)
        kind, rows, extra = (
            "producer",
            _rows(settings.client),
            {"topic": settings.topic, "key_field": settings.key_field},
        )
    elif name in project.declarations.consumers:
        group = project.consumer_group(name)
        kind, rows = "consumer group", _rows(group.client_for(instance))
        extra = {
            "topics": list(group.topics),
            "handler": group.handler,
            "instances": group.instances,
            "instance": instance,
            "commit": group.commit.strategy,
            "dead_letter_topic": group.on_error.dead_letter_topic,
            "handler_timeout_ms": group.on_error.timeout_ms,
            "concurrency": group.concurrency,
            "ordering": group.ordering,
            "emits": list(group.emits) or None,
        }
    else:
        names = list(project.declarations.producers) + list(project.declarations.consumers)
        hint = did_you_mean(name, names)
        known = "; ".join(
            f"{noun}: {', '.join(sorted(section))}"
            for noun, section in (
                ("producers", project.declarations.producers),
                ("consumer groups", project.declarations.consumers),
            )
            if section
        )
        raise UsageError(
            f"no producer or consumer group named '{name}'"
            + (f"; {hint}" if hint else "")
            + (f" ({known})" if known else " (the project declares none)")
        )
    if output_format == "json":
        return redact(json.dumps({"name": name, "kind": kind, **extra, "settings": rows}, indent=2))
    width = max(len(r["key"]) for r in rows)
    vwidth = min(40, max(len(r["value"]) for r in rows))
    lines = [f"{kind} '{name}'"]
    lines += [f"  {k}: {v}" for k, v in extra.items() if v is not None]
    lines.append("")
    for r in rows:
        where = r["origin"] or ""
        if r["position"]:
            where = f"{where} ({r['position']})" if where else r["position"]
        lines.append(
            f"  {r['key']:<{width}}  {r['value']:<{vwidth}}  {r['source']}" + (f": {where}" if where else "")
        )
    return "\n".join(safe_text(line) for line in lines)

"""Handlers of the in-process tracing tests (test_tracing.py): they note the span current while they run."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from opentelemetry import trace

# (group, offset, the span current in the handler) of every call.
SEEN: list[tuple[str, int, Any]] = []
# group -> the topic its handler emits to.
EMIT_TO: dict[str, str] = {}


def forward(event: Any, ctx: Any) -> None:
    SEEN.append((ctx.group, ctx.offset, trace.get_current_span()))
    ctx.emit(EMIT_TO[ctx.group], {"from": ctx.offset})


def fail(event: Any, ctx: Any) -> None:
    SEEN.append((ctx.group, ctx.offset, trace.get_current_span()))
    raise RuntimeError(f"cannot handle offset {ctx.offset}")


def slow(event: Any, ctx: Any) -> None:
    time.sleep(0.02)  # calls overlap on the pool's threads
    SEEN.append((ctx.group, ctx.offset, trace.get_current_span()))


async def slow_async(event: Any, ctx: Any) -> None:
    await asyncio.sleep(0.02)  # tasks interleave on the event loop
    SEEN.append((ctx.group, ctx.offset, trace.get_current_span()))


def fail_unless_replayed(event: Any, ctx: Any) -> None:
    """Fails an event until `kpipe dlq replay` sends it back (the fix deployed, as it were)."""
    SEEN.append((ctx.group, ctx.offset, trace.get_current_span()))
    if not any(name == "kpipe-replay" for name, _ in ctx.headers):
        raise RuntimeError(f"cannot handle offset {ctx.offset} yet")

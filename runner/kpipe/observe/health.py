"""The HTTP server `kpipe run --metrics-port` starts in the supervisor process: one port for every worker.

    GET /metrics   Prometheus text (or OpenMetrics, when the scraper asks for it)
    GET /healthz   200 while the supervisor loop turns and no instance has given up (crash loop or halt)
    GET /readyz    200 when every group is running, assigned and making progress: each instance runs, is not
                   stale (it reported its status within STALE_AFTER, 15 s), is not stalled (it holds no
                   unfinished events of which it finished none for its hang limit: on_error.timeout_ms, or
                   30 s), reaches a broker, and holds partitions, or the group has more instances than
                   partitions and every partition is held

Health answers carry a short JSON body: {"status": "ok"} or {"status": "unavailable", "reasons": [...]}.
This module holds the rules (what each path answers); the server, bounded under abuse, is
kpipe.observe.http_server. It only reads what the supervisor already keeps (`snapshot()`,
`seconds_since_loop()`), so a slow scraper cannot hold up supervision.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from kpipe.observe.metrics import Views
from kpipe.runtime.protocol import STALE_AFTER
from kpipe.runtime.supervisor import HEARTBEAT_EVERY

# /healthz fails when the supervisor loop has not turned for this long (it turns every HEARTBEAT_EVERY).
STALL_AFTER = 5 * HEARTBEAT_EVERY
GAVE_UP = {"gave_up": "crash loop", "halted": "halted"}


class Supervised(Protocol):
    """What the server reads from the supervisor (kpipe.runtime.supervisor.Supervisor)."""

    def snapshot(self) -> Views: ...

    def seconds_since_loop(self) -> float | None: ...


def health(supervisor: Supervised) -> tuple[bool, list[str]]:
    """Liveness: the loop turns, and no instance has given up."""
    reasons = []
    since = supervisor.seconds_since_loop()
    if since is None:
        reasons.append("the supervisor is not running")
    elif since > STALL_AFTER:
        reasons.append(f"the supervisor loop has not run for {since:.0f} s")
    for (group, instance), view in sorted(supervisor.snapshot().items()):
        if view.state in GAVE_UP:
            last = f": {view.last_exit}" if view.last_exit else ""
            reasons.append(f"{group}[{instance}] gave up ({GAVE_UP[view.state]}){last}")
    return not reasons, reasons


def readiness(views: Views, partitions: Mapping[str, int]) -> tuple[bool, list[str]]:
    """Readiness: per group, every instance runs, reports (not stale), progresses (not stalled), and holds
    partitions unless the group has more instances than partitions (`partitions`: group -> partitions of its
    topics; unknown: assume plenty)."""
    reasons = []
    groups: dict[str, list[tuple[int, Any]]] = {}
    for (group, instance), view in sorted(views.items()):
        groups.setdefault(group, []).append((instance, view))
    for group, members in groups.items():
        idle = []
        holding = 0
        for instance, view in members:
            if view.state != "running" or view.status is None:
                reasons.append(f"{group}[{instance}] is {view.state}")
                continue
            if view.status_age is not None and view.status_age > STALE_AFTER:
                reasons.append(
                    f"{group}[{instance}] is stale: no status report for {view.status_age:.0f} s (frozen?)"
                )
                continue
            if view.status.stalled:
                reasons.append(f"{group}[{instance}] is stuck: {view.status.stalled}")
            if view.status.unreachable:
                reasons.append(f"{group}[{instance}] is cut off: {view.status.unreachable}")
            if view.status.assigned:
                holding += 1
            else:
                idle.append(instance)
        # With more instances than partitions, some must stay idle: ready once every partition is held.
        needed = min(len(members), partitions.get(group, len(members)))
        if idle and holding < needed:
            names = ", ".join(f"{group}[{i}]" for i in idle)
            reasons.append(f"{names} {'has' if len(idle) == 1 else 'have'} no partitions assigned yet")
    return not reasons, reasons


def partitions_by_group(groups: Any, topics: Any) -> dict[str, int]:
    """group -> the declared partitions of the topics it reads (what /readyz expects to see held)."""
    declared = {t.name: t.partitions for t in topics}
    return {g.group_id: sum(declared.get(t, 0) for t in g.topics) or len(g.topics) for g in groups}


def __getattr__(name: str) -> Any:
    # The server moved to kpipe.observe.http_server (which reads the rules above); existing callers import it
    # from here.
    if name == "MetricsServer":
        from kpipe.observe.http_server import MetricsServer

        return MetricsServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Running consumer groups: what `kpipe run` does around its supervisor.

    groups = prepare(project, names, create_topics=None)   # checked, topics there, cluster reachable
    interrupted = supervise(supervisor, project, groups, metrics)   # until SIGTERM/Ctrl-C

`prepare` refuses, before any worker starts, what would only make the workers fail: an unknown group, a
handler certainly missing, an unreachable cluster (BrokerUnreachable, exit 3, after the connect timeout) and a
topic missing with creation off. `supervise` runs the supervisor with its metrics server and turns its end into
an outcome: whether Ctrl-C stopped it, or a KpipeError naming the instances that did not stop cleanly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from kpipe.compilation.project import CompiledProject, check_handlers_statically
from kpipe.errors import KpipeError, PipelineInvalid, UsageError
from kpipe.service.load import ensure_topics
from kpipe.topics.cluster import DEFAULT_CONNECT_TIMEOUT_S

log = logging.getLogger("kpipe.run")


def prepare(
    project: CompiledProject,
    names: Iterable[str],
    *,
    create_topics: bool | None = None,
    timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
) -> list[Any]:
    """The groups to run (those named, else all), once nothing known stands in their way: handlers checked
    without importing them, the cluster reached, the topics they read, dead-letter to and emit to created if
    missing (never altered)."""
    groups = select_groups(project, names)
    check_handlers(project, groups)  # before anything is created for workers that could not start
    ensure_topics(project, groups=[g.group_id for g in groups], create=create_topics, timeout=timeout)
    return groups


def select_groups(project: CompiledProject, names: Iterable[str]) -> list[Any]:
    """The groups to run: those named (an unknown name is a usage error with a did-you-mean), else all."""
    wanted = list(dict.fromkeys(names))
    if wanted:
        return [project.consumer_group(name) for name in wanted]
    groups = project.consumer_groups()
    if not groups:
        files = ", ".join(str(f) for f in project.files) or "the project"
        raise UsageError(f"nothing to run: {files} declares no consumer groups")
    return groups


def check_handlers(project: CompiledProject, groups: list[Any]) -> None:
    """Handlers whose module or function is certainly not there, found without importing them (the supervisor
    runs no project code; each worker imports its handler): PipelineInvalid before topics are created. A
    module found nowhere passes (it may be installed in a way the check cannot see); its workers halt."""
    found = check_handlers_statically(project.declarations, [g.group_id for g in groups])
    problems = [d for d in found if d.is_error]
    if problems:
        raise PipelineInvalid(problems)


def supervise(supervisor: Any, project: CompiledProject, groups: list[Any], metrics: Any) -> bool:
    """Run `supervisor` until its workers stop, serving /metrics, /healthz and /readyz when `metrics.port` is
    set. True when Ctrl-C (SIGINT) stopped it and every worker stopped cleanly (exit 130, as for any command
    interrupted), False when something else did (SIGTERM: how an orchestrator stops a service, exit 0);
    KpipeError naming every instance that did not stop cleanly."""
    server = metrics_server(project, supervisor, groups, metrics)
    try:
        code = supervisor.run()
    finally:
        if server is not None:
            server.close()
    if code != 0:
        unclean = [
            f"{group}[{instance}] {view.state}"
            for (group, instance), view in sorted(supervisor.snapshot().items())
            if view.state != "stopped"
        ]
        raise KpipeError("workers did not all stop cleanly: " + ", ".join(unclean))
    return supervisor.stop_requests[:1] == ("SIGINT",)


def metrics_server(project: CompiledProject, supervisor: Any, groups: list[Any], settings: Any) -> Any:
    """The /metrics, /healthz and /readyz server, when a port is given (flag or the files' metrics.port)."""
    if settings.port is None:
        return None
    from kpipe.observe.health import MetricsServer, partitions_by_group

    server = MetricsServer(
        supervisor, settings.host, settings.port, partitions_by_group(groups, project.topic_settings())
    )
    log.info("serving metrics on %s/metrics (health: /healthz, /readyz)", server.url)
    return server

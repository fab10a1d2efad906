"""The one way to load a project (and the `Project` the API hands out), and the one way to make sure the
topics a command uses exist.

    project = load(["pipelines/"], bootstrap_override="local")
    created = ensure_topics(project, groups=["billing"])

`load` is the edge where `bootstrap_servers: local` becomes the running local broker's address (unless told
not to resolve it, for the commands that start or only describe the local broker); the compiled project below
it (kpipe.compilation.project) is data and does no I/O.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kpipe.compilation.project import CompiledProject, load_project
from kpipe.local.state import resolve
from kpipe.topics.cluster import DEFAULT_CONNECT_TIMEOUT_S

if TYPE_CHECKING:
    from kpipe.runtime.producer import Producer


class Project(CompiledProject):
    """A loaded, valid project: compiled settings on demand, and producers to send events with."""

    def producer(self, name: str, **kwargs: Any) -> Producer:
        """Open declared producer `name` (see kpipe.runtime.producer.Producer for the keyword arguments). Its
        sends are traced as the environment (OTEL_*) and the files' `tracing:` block say, or into the
        application's own OpenTelemetry provider when it set one (kpipe.runtime.tracing.for_application)."""
        # Imported here: commands that load a project without producing (validate, plan, apply) skip the
        # producer runtime.
        from kpipe.runtime import tracing
        from kpipe.runtime.producer import open_producer

        kwargs.setdefault(
            "traced_by", tracing.for_application(self.declarations.cluster_spec.tracing, os.environ)
        )
        return open_producer(self, name, **kwargs)


def load(
    paths: Iterable[Path | str],
    *,
    variables: Mapping[str, str] | None = None,
    values_files: Iterable[Path | str] | None = None,
    bootstrap_override: str | None = None,
    root: Path | str | None = None,
    resolve_local: bool = True,
    consumer_overrides: Mapping[str, str] | None = None,
    import_code: bool = True,
    check_code: bool = True,
) -> Project:
    """The valid, compiled project; PipelineInvalid with every diagnostic when it is not.

    `bootstrap_override` wins over KPIPE_BOOTSTRAP_SERVERS, which wins over the files. `local` is resolved to
    the running local broker (LocalBrokerError when none runs) unless `resolve_local=False`.
    `consumer_overrides` are `-X` settings every consumer group's config gets last. `import_code` imports
    pydantic-model schemas (what running needs); offline commands pass False (and `check_code=False` when they
    need no check of project code either, as plan)."""
    project = load_project(
        list(paths) or ["pipelines"],
        variables=variables,
        values_files=values_files,
        bootstrap_override=bootstrap_override,
        consumer_overrides=consumer_overrides,
        project_type=Project,
        root=root,
        import_code=import_code,
        check_code=check_code,
    )
    return resolve(project) if resolve_local else project


def ensure_topics(
    project: CompiledProject,
    *,
    groups: Iterable[str] = (),
    producers: Iterable[str] = (),
    create: bool | None = None,
    timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
    info: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> list[str]:
    """Create the missing declared topics these groups and producers use, as `kpipe run` and `kpipe produce`
    do before their clients start; return the names created.

    `create`: None follows cluster.create_missing_topics; False makes a missing topic a ClusterError (exit 3)
    naming every one. An unreachable cluster is BrokerUnreachable after `timeout`. `info`/`warn` get the
    "created topic" and drift lines (default: the kpipe.topics logger). See kpipe.topics.provision.
    """
    from kpipe.topics.cluster import connect
    from kpipe.topics.provision import provision

    provisioning = project.provisioning(groups, producers)
    if not provisioning.topics:
        return []
    cluster = connect(project.cluster_client_config().as_dict(), timeout=timeout)
    try:
        return provision(cluster, provisioning, create=create, info=info, warn=warn).created
    finally:
        cluster.close()

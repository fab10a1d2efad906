"""The public entry point: load a project from files, resolved and ready to connect.

    project = kpipe.load("pipelines/")
    with project.producer("order-api") as producer:
        producer.send({...})

This is the edge where `bootstrap_servers: local` becomes the running local broker's address; the compiled
project below it (kpipe.compilation.project) is data and does no I/O. May import every layer but the CLI.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kpipe.compilation import project as compiled
from kpipe.local.state import resolve
from kpipe.runtime.producer import Producer, open_producer


class Project(compiled.CompiledProject):
    """A loaded, valid project: compiled settings on demand, and producers to send events with."""

    def producer(self, name: str, **kwargs: Any) -> Producer:
        """Open declared producer `name` (see kpipe.runtime.producer.Producer for the keyword arguments)."""
        return open_producer(self, name, **kwargs)


def load(
    *paths: Path | str,
    variables: Mapping[str, str] | None = None,
    values_files: Iterable[Path | str] | None = None,
    bootstrap_override: str | None = None,
    root: Path | str | None = None,
) -> Project:
    """Load, validate and compile a pipeline project; raise PipelineInvalid with every diagnostic if it is wrong.

    `bootstrap_override` (or the KPIPE_BOOTSTRAP_SERVERS environment variable) replaces the files' bootstrap
    servers; `local` (in the files or here) is resolved to the running local broker, or LocalBrokerError.
    """
    project = compiled.load_project(
        list(paths) or ["pipelines"],
        variables=variables,
        values_files=values_files,
        bootstrap_override=bootstrap_override,
        project_type=Project,
        root=root,
    )
    return resolve(project)


def ensure_topics(
    project: compiled.CompiledProject,
    *,
    groups: Iterable[str] = (),
    producers: Iterable[str] = (),
    create: bool | None = None,
) -> list[str]:
    """Create the missing declared topics these groups and producers use, as `kpipe run`/`produce` do; return
    the names created (see kpipe.topics.provision.ensure_topics)."""
    from kpipe.topics.provision import ensure_project_topics

    return ensure_project_topics(project, groups=groups, producers=producers, create=create).created

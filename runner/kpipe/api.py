"""The public entry point: load a project from files, resolved and ready to connect.

    project = kpipe.load("pipelines/")
    with project.producer("order-api") as producer:
        producer.send({...})

The API is the service layer (kpipe.service) under public names: `kpipe.load` loads a project exactly as the
commands do, and `ensure_topics` is what `kpipe run`/`produce` do before their clients start.

Imports: kpipe.service.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from kpipe.service import load as service
from kpipe.service.load import Project, ensure_topics

__all__ = ["Project", "ensure_topics", "load"]


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
    return service.load(
        paths,
        variables=variables,
        values_files=values_files,
        bootstrap_override=bootstrap_override,
        root=root,
    )

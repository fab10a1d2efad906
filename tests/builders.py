"""Builders of kpipe's in-memory objects for unit tests: the Declarations of project files given as text (no
files, no schema compiler), and the view the supervisor keeps of one worker."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kpipe.check.rules import SchemaFields, check_project
from kpipe.diagnostics import Diagnostic
from kpipe.loading.loader import SourceDocument
from kpipe.loading.yaml_source import parse_yaml
from kpipe.model.assemble import Declarations, assemble
from kpipe.runtime.protocol import WorkerCounters, WorkerStatus
from kpipe.runtime.supervisor import WorkerView


def assemble_texts(*texts: str, names: Sequence[str] | None = None) -> tuple[Declarations, list[Diagnostic]]:
    """The files `texts`, named p0.yaml, p1.yaml, ... (or `names`) in /project, assembled: the Declarations and
    the problems assembling found. Each text must parse as YAML."""
    documents = []
    for text, name in zip(texts, names or [f"p{i}.yaml" for i in range(len(texts))], strict=True):
        data, positions, problems = parse_yaml(text, name)
        assert problems == []
        documents.append(SourceDocument(Path("/project") / name, name, data, positions, text))
    return assemble(documents)


def check_texts(
    *texts: str, names: Sequence[str] | None = None, schemas: dict[str, SchemaFields | None] | None = None
) -> list[str]:
    """The check step's diagnostics of `texts` (which must assemble cleanly), formatted as kpipe prints them."""
    declarations, problems = assemble_texts(*texts, names=names)
    assert problems == []
    return [d.format() for d in check_project(declarations, schemas or {})]


def worker_view(
    group: str,
    instance: int,
    state: str = "running",
    *,
    restarts: int = 0,
    counters: WorkerCounters | None = None,
    status_age: float | None = None,
    **status: Any,
) -> WorkerView:
    """Instance `instance` of `group` (pid 100 + instance) whose last status report holds `status`."""
    pid = 100 + instance
    return WorkerView(
        group, instance, pid, state, restarts, None,
        WorkerStatus(group, instance, pid, state=state, **status), counters or WorkerCounters(), status_age,
    )  # fmt: skip

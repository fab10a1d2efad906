"""What `tail`, `dlq` and `offsets` share: the project with its cluster clients, and a topic's schema model.

A schema given as a pydantic model is project code: it is imported only with --import-code (`dlq replay`, which
sends events through it, always imports it, as `produce` does). Without it, events of such a topic are shown
unchecked (`valid: null`) and stderr says why, once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from kpipe.cli.common import ProjectOptions
from kpipe.errors import UsageError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from kpipe.api import Project
    from kpipe.runtime.records import RecordReader
    from kpipe.topics.cluster import KafkaCluster
    from kpipe.topics.group_offsets import GroupOffsetsAdmin

format_option = click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for people, json for tools.",
)


@dataclass(frozen=True)
class Clients:
    project: Project
    cluster: KafkaCluster
    reader: RecordReader
    # Changes group offsets (a reset, a replay's cursor) and finds groups by id.
    admin: GroupOffsetsAdmin

    @property
    def client_config(self) -> dict[str, str]:
        # May hold secrets (sasl.password, …): it goes to the clients, never to output.
        return self.project.cluster_client_config().as_dict()


def load(options: ProjectOptions, *, import_code: bool = False) -> Project:
    """The project (its warnings printed to stderr), read before anything connects: a wrong name fails fast."""
    from kpipe.diagnostics import render_text, sort_diagnostics

    project = options.load(import_code=import_code, check_code=False)
    if project.warnings:
        click.echo(render_text(sort_diagnostics(project.warnings)), err=True)
    return project


@contextlib.contextmanager
def clients(project: Project, timeout: float) -> Iterator[Clients]:
    """Admin clients of the project's cluster and a record reader, closed on the way out."""
    from kpipe.runtime.records import RecordReader
    from kpipe.topics.cluster import connect
    from kpipe.topics.group_offsets import GroupOffsetsAdmin

    config = project.cluster_client_config().as_dict()
    cluster = connect(config, timeout=timeout)  # fails fast, within `timeout`, when no broker answers
    admin = GroupOffsetsAdmin(config, request_timeout=max(timeout, 30.0))
    try:
        reader = RecordReader(config, timeout=timeout)
        try:
            yield Clients(project, cluster, reader, admin)
        finally:
            reader.close()
    finally:
        admin.close()
        cluster.close()


def topic_model(project: Any, topic: str) -> type[BaseModel] | None:
    """The schema model of a declared topic; None (and a note on stderr) when it cannot be had without
    importing project code, or when the topic has no schema or is not declared."""
    try:
        return project.topic_model(topic)
    except UsageError as exc:
        from kpipe.redaction import safe_text

        note = f"note: events of '{topic}' are not checked against their schema ({exc}); pass --import-code"
        click.echo(safe_text(note), err=True)
        return None

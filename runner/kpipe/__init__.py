"""kpipe: declarative YAML pipelines for Apache Kafka.

    import kpipe
    project = kpipe.load("pipelines/")
    with project.producer("order-api") as producer:
        producer.send({"event_type": "order.created", ...})

Heavy modules (confluent_kafka, the schema compiler) are imported lazily so `kpipe --help` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from kpipe.compilation.project import Project


def load(
    *paths: Any,
    variables: dict[str, str] | None = None,
    values_files: list[Any] | None = None,
    bootstrap_override: str | None = None,
) -> Project:
    """Load, validate and compile a pipeline project; raise PipelineInvalid with every diagnostic if it is wrong.

    `bootstrap_override` (or the KPIPE_BOOTSTRAP_SERVERS environment variable) replaces the files'
    bootstrap servers.
    """
    from kpipe.compilation.project import load_project

    return load_project(
        list(paths) or ["pipelines"],
        variables=variables,
        values_files=values_files,
        bootstrap_override=bootstrap_override,
    )


def ensure_topics(
    project: Project, *, groups: Any = (), producers: Any = (), create: bool | None = None
) -> list[str]:
    """Create the missing declared topics these consumer groups and producers use, as `kpipe run` and
    `kpipe produce` do; return their names. Nothing else in the API changes the cluster.

    With `create=False` (or `cluster.create_missing_topics: false`) a missing topic raises ClusterError naming
    every one. Existing topics are never altered; a difference from the files is logged as a warning.
    """
    from kpipe.topics.provision import ensure_project_topics

    return ensure_project_topics(project, groups=groups, producers=producers, create=create).created


__all__ = ["load", "ensure_topics", "__version__"]

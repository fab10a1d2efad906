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
    from kpipe.api import Project


def load(
    *paths: Any,
    variables: dict[str, str] | None = None,
    values_files: list[Any] | None = None,
    bootstrap_override: str | None = None,
) -> Project:
    """Load, validate and compile a pipeline project; raise PipelineInvalid with every diagnostic if it is wrong.

    `bootstrap_override` (or the KPIPE_BOOTSTRAP_SERVERS environment variable) replaces the files'
    bootstrap servers; `local` means the running local broker (LocalBrokerError when none is running).
    """
    from kpipe.api import load as load_api

    return load_api(
        *paths, variables=variables, values_files=values_files, bootstrap_override=bootstrap_override
    )


__all__ = ["load", "__version__"]

"""kpipe: declarative YAML pipelines for Apache Kafka.

    import kpipe
    project = kpipe.load("pipelines/")
    with project.producer("order-api") as producer:
        producer.send({"event_type": "order.created", ...})

The public API is what `__all__` lists. Heavy modules (confluent_kafka, pydantic, the schema compiler) are
imported only when a name that needs them is first used, so `import kpipe` and `kpipe --help` stay fast.

Imports: kpipe.api, kpipe.errors.
"""

# No `from __future__ import annotations` here: the first thing this package does is below, and `__future__`
# is a module read from sys.path like any other.
import os
import sys

# `python -m kpipe` puts the working directory first on sys.path and then imports this package (while
# sys.argv[0] is "-m"), before kpipe/__main__.py runs: a project file named like a module imported from here
# on (typing.py, enum.py, __future__.py in kpipe.errors) would run, unasked. So the entry goes first thing,
# as `python -P` would do; `os` and `sys` are loaded with the interpreter itself.
_ran_as = [b for a, b in zip(sys.orig_argv, sys.orig_argv[1:], strict=False) if a == "-m"] + [
    a[2:] for a in sys.orig_argv if a.startswith("-m") and len(a) > 2
]
if (
    sys.argv[:1] == ["-m"]
    and any(m == "kpipe" or m.startswith("kpipe.") for m in _ran_as)
    and sys.path[:1] in ([""], [os.getcwd()])
):
    del sys.path[0]
del _ran_as

from typing import TYPE_CHECKING  # noqa: E402

from kpipe.errors import (  # noqa: E402
    BrokerUnreachable,
    ClusterError,
    EventInvalid,
    HandlerError,
    KpipeError,
    LagExceeded,
    LocalBrokerError,
    PipelineInvalid,
    SchemaModelImportError,
    UndeclaredEmit,
    UnsafePlanRefused,
    UsageError,
)

__version__ = "0.1.0"

# Public name -> the module that defines it, imported on first use.
_LAZY = {
    "ensure_topics": "kpipe.api",
    "Project": "kpipe.api",
    "Producer": "kpipe.runtime.producer",
    "DeliverySummary": "kpipe.runtime.producer",
    "HandlerContext": "kpipe.runtime.handler",
    "Diagnostic": "kpipe.diagnostics",
}

if TYPE_CHECKING:
    from os import PathLike

    from kpipe.api import Project, ensure_topics
    from kpipe.diagnostics import Diagnostic
    from kpipe.runtime.handler import HandlerContext
    from kpipe.runtime.producer import DeliverySummary, Producer
del TYPE_CHECKING

__all__ = [
    "__version__",
    "load",
    "ensure_topics",
    # the loaded project and what it hands out
    "Project",
    "Producer",
    "DeliverySummary",
    "HandlerContext",
    "Diagnostic",
    # errors (every one is a KpipeError; `exit_code` says what the CLI would exit with)
    "KpipeError",
    "PipelineInvalid",
    "UsageError",
    "EventInvalid",
    "ClusterError",
    "BrokerUnreachable",
    "UnsafePlanRefused",
    "LagExceeded",
    "LocalBrokerError",
    "HandlerError",
    "SchemaModelImportError",
    "UndeclaredEmit",
]


def load(
    *paths: "str | PathLike[str]",
    variables: dict[str, str] | None = None,
    values_files: "list[str | PathLike[str]] | None" = None,
    bootstrap_override: str | None = None,
    root: "str | PathLike[str] | None" = None,
) -> "Project":
    """Load, validate and compile a pipeline project; raise PipelineInvalid with every diagnostic if it is wrong.

    `paths` are pipeline files or directories (default: pipelines/). `bootstrap_override` (or the
    KPIPE_BOOTSTRAP_SERVERS environment variable) replaces the files' bootstrap servers; `local` means the
    running local broker (LocalBrokerError when none is running). `root` is the project root (no file outside
    it is read; it is importable for handlers), found from the paths when not given. Loading imports the
    project's pydantic-model schemas: it runs project code.
    """
    from kpipe.api import load as load_api

    return load_api(
        *paths,
        variables=variables,
        values_files=values_files,
        bootstrap_override=bootstrap_override,
        root=root,
    )


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kpipe' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

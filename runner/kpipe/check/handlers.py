"""`kpipe validate --check-handlers`: import every consumer group's handler and report what fails.

Behind a flag because CI that validates pipeline files may not have the application's packages installed.
"""

from __future__ import annotations

from kpipe.compilation.project import Inspection, import_paths
from kpipe.diagnostics import Diagnostic, error
from kpipe.errors import HandlerError
from kpipe.runtime.handler import load_handler


def check_handlers(inspection: Inspection) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    paths = inspection.spec.directories
    with import_paths(paths):
        for name, group in sorted(inspection.spec.consumers.items()):
            try:
                load_handler(group.spec.handler, paths)
            except HandlerError as exc:
                out.append(
                    error(f"consumer group '{name}': {exc}", group.locate("handler"), code="handler-import")
                )
    return out

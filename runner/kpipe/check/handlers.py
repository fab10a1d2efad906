"""`kpipe validate --import-code` (alias --check-handlers): import every consumer group's handler and report
what fails.

Behind a flag because importing runs project code (pull requests are untrusted), and CI that validates
pipeline files may not have the application's packages installed. Without it, kpipe.check.imports checks the
same references by reading their source.
"""

from __future__ import annotations

from kpipe.diagnostics import Diagnostic, error
from kpipe.errors import HandlerError
from kpipe.loading.code import import_paths, load_handler
from kpipe.model.assemble import Declarations


def check_handlers(project: Declarations) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    paths = project.directories
    with import_paths(paths):
        for name, group in sorted(project.consumers.items()):
            try:
                load_handler(group.spec.handler, paths)
            except HandlerError as exc:
                out.append(
                    error(f"consumer group '{name}': {exc}", group.locate("handler"), code="handler-import")
                )
    return out

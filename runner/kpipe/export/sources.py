"""What the pods need from disk: the project's files below its root, and the code its handlers and schema
models are imported from (found by looking, never by importing). Reads only files the loaded project already
read; secrets are export.secrets' business."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kpipe.check.imports import find_module_source
from kpipe.errors import UsageError
from kpipe.loading.files import ProjectFiles


@dataclass(frozen=True)
class ProjectFile:
    """A file the pods need: where it is, and its path below the project root (inside the image too)."""

    path: Path
    relative: str


def project_files(files: Sequence[Path], root: Path) -> list[ProjectFile]:
    out = []
    for path in files:
        resolved = path.resolve()
        try:
            relative = resolved.relative_to(root)
        except ValueError:
            raise UsageError(f"{path} is outside the project root {root}") from None
        out.append(ProjectFile(resolved, relative.as_posix()))
    return sorted(out, key=lambda f: f.relative)


def code_paths(
    import_paths: Sequence[str], modules: Sequence[str], root: Path
) -> tuple[list[str], list[str]]:
    """Where the image must hold the code of `modules` ('package.module' or 'package.module:attr'): the
    top-level package directory (or module file) below the project root, found in `import_paths` (the
    project's directories, as `kpipe run` imports from them) without importing anything.

    Returns (root-relative paths to copy, modules not found below the root)."""
    files = ProjectFiles(root)
    found: set[str] = set()
    missing: list[str] = []
    for module in dict.fromkeys(modules):
        source = find_module_source(module.split(":", 1)[0], import_paths)
        if isinstance(source, Path) and files.inside(source):
            found.add(source.resolve().relative_to(files.root).parts[0])
        else:
            missing.append(module)
    return sorted(found), missing

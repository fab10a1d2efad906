"""What the pods need from disk: the project's files below its root, and the code its handlers and schema
models are imported from (found by looking, never by importing). Reads only files the loaded project already
read; secrets are export.secrets' business."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kpipe.errors import UsageError


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


def below(path: Path, root: Path) -> bool:
    return path.resolve() == root or root in path.resolve().parents


def code_paths(
    import_paths: Sequence[str], modules: Sequence[str], root: Path
) -> tuple[list[str], list[str]]:
    """Where the image must hold the code of `modules` ('package.module' or 'package.module:attr'): the
    top-level package directory (or module file) below the project root, found in the pipeline files'
    directories and the root (the import path `kpipe run` uses), without importing anything.

    Returns (root-relative paths to copy, modules not found below the root)."""
    found: set[str] = set()
    missing: list[str] = []
    bases = [Path(d).resolve() for d in import_paths] + [root]
    for module in dict.fromkeys(modules):
        top = module.split(":", 1)[0].split(".", 1)[0]
        hit = None
        for base in bases:
            for candidate in (base / top, base / f"{top}.py"):
                if candidate.exists() and below(candidate, root):
                    hit = candidate.resolve().relative_to(root)
                    break
            if hit is not None:
                break
        if hit is None:
            missing.append(module)
        else:
            found.add(hit.parts[0] if len(hit.parts) > 1 else hit.as_posix())
    return sorted(found), missing

"""What the pods need from disk: the project's files below its root, and a refusal to publish a secret that
is written into one of them. Reads only files the loaded project already read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kpipe.errors import UsageError
from kpipe.model import librdkafka as props


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


def project_root(first: Path, override: Path | None = None) -> Path:
    """The project root (kpipe.loading.files.project_root): `override` (--root), else found from `first`."""
    from kpipe.loading.files import project_root as find_root

    return find_root([first], override)


def refuse_literal_secrets(spec: Any) -> None:
    """A secret librdkafka value written into a file (not read with env()) would be published by the files
    ConfigMap: refuse, naming the line."""
    owners = [spec.cluster] if spec.cluster else []
    owners += [*spec.producers.values(), *spec.consumers.values()]
    for owner in owners:
        for key, value in owner.spec.config.items():
            text = str(value)
            if not props.is_secret(key) or not text:
                continue
            raw = owner.document.path.read_text(encoding="utf-8", errors="replace").splitlines()
            for number, line in enumerate(raw, 1):
                if key in line and text in line and "{{" not in line and not line.lstrip().startswith("#"):
                    raise UsageError(
                        f"{owner.document.display}:{number}: {key} is written into the file; the files "
                        f"ConfigMap would publish it: read it with env('...') from a Secret, or use "
                        "--files-in-image"
                    )


def below(path: Path, root: Path) -> bool:
    return path.resolve() == root or root in path.resolve().parents

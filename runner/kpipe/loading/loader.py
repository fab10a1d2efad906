"""Reading a project from disk: find the pipeline files, read them safely, render templates, parse YAML.

This is the only layer of the validation path that touches the filesystem. Its output is a list of
SourceDocument (data + positions) and every problem found, each with a position.

Which files belong to a project: every path given on the command line; for a directory, every `*.yaml` /
`*.yml` below it, except names starting with `.` or `_` and anything under a `values/` directory (values files
are passed with `--values`, never picked up implicitly).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kpipe.diagnostics import Diagnostic, Position, error
from kpipe.loading.files import CONTROL_IN_NAME, MAX_FILE_BYTES, ProjectFiles, project_root
from kpipe.loading.template_syntax import needs_rendering
from kpipe.loading.yaml_source import PositionMap, parse_yaml

PIPELINE_SUFFIXES = (".yaml", ".yml")
__all__ = [
    "MAX_FILE_BYTES",
    "LoadResult",
    "SourceDocument",
    "load_documents",
    "load_values",
    "load_yaml_file",
]


@dataclass
class SourceDocument:
    path: Path  # absolute
    display: str  # as shown in messages: relative to the working directory when below it
    data: Any
    positions: PositionMap
    rendered_text: str


@dataclass
class LoadResult:
    documents: list[SourceDocument]
    diagnostics: list[Diagnostic]
    files: list[Path]
    root: Path | None = None


def display_path(path: Path) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
    return str(path) if relative.startswith("..") else relative


def discover(
    paths: Iterable[Path | str], files: ProjectFiles | None = None
) -> tuple[list[Path], list[Diagnostic]]:
    """The pipeline files named by `paths` (absolute, as written: symlinks are resolved when read)."""
    found_files: list[Path] = []
    diagnostics: list[Diagnostic] = []
    for raw in paths:
        path = Path(raw)
        if files is not None and path.exists() and not files.inside(path):
            diagnostics.append(
                error(
                    f"'{raw}' is outside the project root {files.root}",
                    Position(str(raw)),
                    code="path-outside-root",
                    hint="pass --root to widen the project root",
                )
            )
        elif not path.exists() and not path.is_symlink():
            diagnostics.append(error("no such file or directory", Position(str(raw)), code="path-missing"))
        elif path.is_dir():
            found = sorted(_walk(path))
            if not found:
                diagnostics.append(
                    error(
                        "directory holds no pipeline files (*.yaml, *.yml)",
                        Position(str(raw)),
                        code="path-empty",
                    )
                )
            found_files.extend(found)
        else:
            found_files.append(path)
    # One entry per real file; os.path.realpath does not raise on a symlink loop (the read reports it).
    unique = {os.path.realpath(p): p.absolute() for p in reversed(found_files)}
    return list(reversed(unique.values())), diagnostics


def _walk(directory: Path) -> Iterable[Path]:
    for root, dirs, names in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith((".", "_")) and d != "values"]
        # A name with a control character is refused when read (kpipe.loading.files), so it is said, not
        # skipped in silence; a directory so named is reported once and not walked.
        for name in [*names, *dirs]:
            if CONTROL_IN_NAME.search(name):
                yield Path(root) / name
        dirs[:] = [d for d in dirs if not CONTROL_IN_NAME.search(d)]
        for name in names:
            if name.endswith(PIPELINE_SUFFIXES) and not name.startswith((".", "_")):
                if not CONTROL_IN_NAME.search(name):
                    yield Path(root) / name


def read_text(
    path: Path,
    display: str,
    files: ProjectFiles | None = None,
    at: Position | None = None,
    written: str | None = None,
) -> tuple[str | None, list[Diagnostic]]:
    """Read a file as UTF-8 text, turning every way it can fail into one diagnostic.

    `files` bounds what may be read (the project root, regular files, size caps); without it the file's own
    directory is the root. `written` is the path as the user wrote it and `at` where, when not on the
    command line.
    """
    if files is None:
        files = ProjectFiles(Path(path).absolute().parent)
    raw, problems = files.read_bytes_of(path, written or display, at or Position(display))
    if raw is None:
        return None, problems
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, [
            error(
                f"not valid UTF-8: byte 0x{raw[exc.start]:02x} cannot be decoded",
                Position(display, line, column),
                code="file-encoding",
                hint="save the file as UTF-8",
            )
        ]
    if "\x00" in text:
        return None, [
            error("file contains NUL bytes; is it a binary file?", Position(display), code="file-encoding")
        ]
    return text, []


def load_yaml_file(
    path: Path,
    *,
    variables: Mapping[str, Any] | None = None,
    files: ProjectFiles | None = None,
    written: str | None = None,
    at: Position | None = None,
) -> tuple[SourceDocument | None, list[Diagnostic]]:
    """Read, render (when variables is not None) and parse one file.

    `written` is the path as the user wrote it and `at` where (for a file named inside another one): a file
    that may not be read is reported there, naming it as written.
    """
    display = display_path(path)
    text, diagnostics = read_text(path, display, files, at, written)
    if text is None:
        return None, diagnostics
    path = Path(os.path.realpath(path))
    if variables is not None and needs_rendering(text):
        # Only here is Jinja imported: text without template syntax renders to itself (templating.render).
        from kpipe.loading.templating import render

        text, diagnostics = render(text, display, variables)
        if text is None:
            return None, diagnostics
    data, positions, diagnostics = parse_yaml(text, display)
    if diagnostics and data is None:
        return None, diagnostics
    return SourceDocument(path, display, data, positions, text), diagnostics


def load_values(
    values_files: Iterable[Path | str], variables: Mapping[str, str], files: ProjectFiles | None = None
) -> tuple[dict[str, Any], list[Diagnostic]]:
    """Merge --values files (later wins, shallowly) and then --var pairs on top."""
    merged: dict[str, Any] = {}
    diagnostics: list[Diagnostic] = []
    for raw in values_files:
        path = Path(raw)
        if path.is_dir() or not (path.exists() or path.is_symlink()):
            problem = "is a directory, expected a values file" if path.is_dir() else "values file not found"
            diagnostics.append(error(problem, Position(str(raw)), code="path-missing"))
            continue
        document, problems = load_yaml_file(path, files=files, written=str(raw))
        diagnostics.extend(problems)
        if document is None:
            continue
        if document.data is None:
            continue
        if not isinstance(document.data, dict):
            diagnostics.append(
                error("a values file must be a mapping of names to values", Position(document.display, 1, 1))
            )
            continue
        merged.update(document.data)
    merged.update(variables)
    return merged, diagnostics


def load_documents(
    paths: Iterable[Path | str],
    *,
    variables: Mapping[str, str] | None = None,
    values_files: Iterable[Path | str] = (),
    root: Path | str | None = None,
    files: ProjectFiles | None = None,
) -> LoadResult:
    """Load every pipeline file under `paths`; nothing outside the project root (`root`, else found from the
    paths: see kpipe.loading.files.project_root) is read. Pass the project's `files` reader when it reads more
    afterwards (schemas), so that one whole-project size cap covers everything read."""
    paths = list(paths)
    reader = files if files is not None else ProjectFiles(project_root(paths, root))
    template_vars, diagnostics = load_values(values_files, variables or {}, reader)
    files, problems = discover(paths, reader)
    diagnostics.extend(problems)
    documents: list[SourceDocument] = []
    for path in files:
        document, problems = load_yaml_file(path, variables=template_vars, files=reader)
        diagnostics.extend(problems)
        if document is None:
            continue
        if document.data is None:
            diagnostics.append(error("file is empty", Position(document.display), code="file-empty"))
            continue
        documents.append(document)
    return LoadResult(documents, diagnostics, [Path(os.path.realpath(p)) for p in files], reader.root)

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
from kpipe.loading.templating import render
from kpipe.loading.yaml_source import PositionMap, parse_yaml

PIPELINE_SUFFIXES = (".yaml", ".yml")
# A pipeline file bigger than this is almost certainly a mistake (a data dump passed by accident).
MAX_FILE_BYTES = 5 * 1024 * 1024


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


def display_path(path: Path) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
    return str(path) if relative.startswith("..") else relative


def discover(paths: Iterable[Path | str]) -> tuple[list[Path], list[Diagnostic]]:
    files: list[Path] = []
    diagnostics: list[Diagnostic] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
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
            files.extend(found)
        else:
            files.append(path)
    unique = list(dict.fromkeys(p.resolve() for p in files))
    return unique, diagnostics


def _walk(directory: Path) -> Iterable[Path]:
    for root, dirs, names in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith((".", "_")) and d != "values"]
        for name in names:
            if name.endswith(PIPELINE_SUFFIXES) and not name.startswith((".", "_")):
                yield Path(root) / name


def read_text(path: Path, display: str) -> tuple[str | None, list[Diagnostic]]:
    """Read a file as UTF-8 text, turning every way it can fail into one diagnostic."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return None, [
                error(
                    f"file is too large ({size / 1024 / 1024:.1f} MiB; the limit is {MAX_FILE_BYTES // 1024 // 1024} MiB)",
                    Position(display),
                    code="file-too-large",
                )
            ]
        raw = path.read_bytes()
    except IsADirectoryError:
        return None, [error("is a directory, expected a file", Position(display), code="file-unreadable")]
    except PermissionError:
        return None, [
            error("permission denied: cannot read the file", Position(display), code="file-unreadable")
        ]
    except OSError as exc:
        return None, [
            error(f"cannot read the file: {exc.strerror or exc}", Position(display), code="file-unreadable")
        ]
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
    path: Path, *, variables: Mapping[str, Any] | None = None
) -> tuple[SourceDocument | None, list[Diagnostic]]:
    """Read, render (when variables is not None) and parse one file."""
    display = display_path(path)
    text, diagnostics = read_text(path, display)
    if text is None:
        return None, diagnostics
    if variables is not None:
        text, diagnostics = render(text, display, variables)
        if text is None:
            return None, diagnostics
    data, positions, diagnostics = parse_yaml(text, display)
    if diagnostics and data is None:
        return None, diagnostics
    return SourceDocument(path, display, data, positions, text), diagnostics


def load_values(
    values_files: Iterable[Path | str], variables: Mapping[str, str]
) -> tuple[dict[str, Any], list[Diagnostic]]:
    """Merge --values files (later wins, shallowly) and then --var pairs on top."""
    merged: dict[str, Any] = {}
    diagnostics: list[Diagnostic] = []
    for raw in values_files:
        path = Path(raw)
        if not path.is_file():
            problem = "is a directory, expected a values file" if path.is_dir() else "values file not found"
            diagnostics.append(error(problem, Position(str(raw)), code="path-missing"))
            continue
        document, problems = load_yaml_file(path)
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
) -> LoadResult:
    template_vars, diagnostics = load_values(values_files, variables or {})
    files, problems = discover(paths)
    diagnostics.extend(problems)
    documents: list[SourceDocument] = []
    for path in files:
        document, problems = load_yaml_file(path, variables=template_vars)
        diagnostics.extend(problems)
        if document is None:
            continue
        if document.data is None:
            diagnostics.append(error("file is empty", Position(document.display), code="file-empty"))
            continue
        documents.append(document)
    return LoadResult(documents, diagnostics, files)

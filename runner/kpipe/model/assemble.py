"""Validate each parsed file against the spec models and merge them into one Declarations.

Names are global across a project's files: a topic, schema, producer or consumer group declared twice is an
error that names both places. Pure: takes SourceDocuments, returns data and diagnostics.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from kpipe.diagnostics import Diagnostic, Position, error
from kpipe.loading.loader import SourceDocument
from kpipe.model import pipeline as spec
from kpipe.redaction import has_token, is_token, typed_value

T = TypeVar("T")


@dataclass(frozen=True)
class Declared(Generic[T]):
    """One named object as declared, with where it was declared."""

    name: str
    spec: T
    document: SourceDocument
    section: str

    @property
    def path(self) -> tuple[str, ...]:
        return (self.section,) if self.section in SINGLETONS else (self.section, self.name)

    @property
    def position(self) -> Position:
        return self.document.positions.locate(self.path, prefer="key")

    def locate(self, *subpath: Any, prefer: str = "value") -> Position:
        return self.document.positions.locate(self.path + subpath, prefer=prefer)

    def written(self, field: str) -> bool:
        """Whether the user wrote `field` (rather than leaving it to its default)."""
        return field in self.spec.model_fields_set

    @property
    def directory(self) -> Path:
        return self.document.path.parent


@dataclass
class Declarations:
    documents: list[SourceDocument] = field(default_factory=list)
    cluster: Declared[spec.ClusterSpec] | None = None
    schemas: dict[str, Declared[spec.SchemaFile | spec.SchemaModel]] = field(default_factory=dict)
    topics: dict[str, Declared[spec.TopicSpec]] = field(default_factory=dict)
    producers: dict[str, Declared[spec.ProducerSpec]] = field(default_factory=dict)
    consumers: dict[str, Declared[spec.ConsumerGroupSpec]] = field(default_factory=dict)
    metrics: Declared[spec.MetricsSpec] | None = None
    # Names whose declaration was invalid (already reported): they exist for reference checks.
    broken: dict[str, dict[str, Position]] = field(default_factory=lambda: {s: {} for s in NOUN})
    # The project root (kpipe.loading.files.project_root): nothing outside it is read; it is importable.
    root: Path | None = None

    @property
    def directories(self) -> list[str]:
        """Where handlers and schema models are imported from, in order: the pipeline files' directories, then
        the project root (as a Python program's own directory is importable)."""
        dirs = [str(d.path.parent) for d in self.documents]
        return list(dict.fromkeys(dirs + ([str(self.root)] if self.root else [])))

    def names(self, section: str) -> set[str]:
        return set(getattr(self, section)) | set(self.broken[section])

    @property
    def cluster_spec(self) -> spec.ClusterSpec:
        return self.cluster.spec if self.cluster else spec.ClusterSpec()

    @property
    def metrics_spec(self) -> spec.MetricsSpec:
        return self.metrics.spec if self.metrics else spec.MetricsSpec()


NOUN = {"schemas": "schema", "topics": "topic", "producers": "producer", "consumers": "consumer group"}


SECTIONS = ("schemas", "topics", "producers", "consumers")
# Sections that hold one object for the whole project rather than named entries.
SINGLETONS = ("cluster", "metrics")


def assemble(documents: list[SourceDocument]) -> tuple[Declarations, list[Diagnostic]]:
    project = Declarations(documents=list(documents))
    diagnostics: list[Diagnostic] = []
    for document in documents:
        if not isinstance(document.data, dict):
            diagnostics.append(
                error(
                    "a pipeline file must be a mapping with sections (" + ", ".join(spec.SECTION_NAMES) + ")",
                    Position(document.display, 1, 1),
                    code="file-not-mapping",
                )
            )
            continue
        data, from_env = typed_env_values(document.data)
        try:
            parsed = spec.PipelineFile.model_validate(data)
            singles = {s: getattr(parsed, s) for s in SINGLETONS}
            sections = {s: dict(getattr(parsed, s)) for s in SECTIONS}
        except ValidationError as exc:
            from kpipe.model.messages import translate  # only for a file with errors

            diagnostics.extend(translate(_Named(exc, data, from_env), document.data, document.positions))
            singles, sections = _salvage(data)
        _merge(project, singles, sections, document, diagnostics)
    return project, diagnostics


# Pydantic's error types for a value that is not the number, boolean or choice a field parses.
_TYPED_ERRORS = frozenset(
    {
        "int_parsing",
        "int_type",
        "int_from_float",
        "float_parsing",
        "float_type",
        "bool_parsing",
        "bool_type",
        "literal_error",
        "enum",
        "decimal_parsing",
        "decimal_type",
    }
)


def typed_env_values(data: Any) -> tuple[Any, dict[tuple[Any, ...], str]]:
    """`data` with the real value put where a field parses a whole `env()` token as a number, boolean or
    choice (kpipe.redaction.typed_value), and the token each such place held. Text fields keep the token.

    Which fields are typed is found by validating: a token where a number is wanted is a type error there.
    """
    from_env: dict[tuple[Any, ...], str] = {}
    if not has_token_anywhere(data):
        return data, from_env
    from kpipe.model.messages import data_path

    for _ in range(8):  # a union may reveal a deeper typed field once the first is fixed
        try:
            spec.PipelineFile.model_validate(data)
            return data, from_env
        except ValidationError as exc:
            found = {}
            for err in exc.errors(include_url=False):
                value = err.get("input")
                if err["type"] in _TYPED_ERRORS and is_token(value):
                    path = data_path(data, tuple(err["loc"]))
                    if path and path not in from_env and _value_at(data, path) == value:
                        found[path] = value
            if not found:
                return data, from_env
            data = copy.deepcopy(data)
            for path, token in found.items():
                _set_at(data, path, typed_value(token))
                from_env[path] = token
    return data, from_env


def has_token_anywhere(data: Any) -> bool:
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif has_token(node):
            return True
    return False


def _value_at(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def _set_at(data: Any, path: tuple[Any, ...], value: Any) -> None:
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value


class _Named:
    """A ValidationError whose errors name a value from env() by its token, never by the value."""

    def __init__(self, exc: ValidationError, data: Any, from_env: dict[tuple[Any, ...], str]):
        self._exc, self._data, self._from_env = exc, data, from_env

    def errors(self, **options: Any) -> list[Any]:
        errors = self._exc.errors(**options)
        if not self._from_env:
            return errors
        from kpipe.model.messages import data_path

        for err in errors:
            path = data_path(self._data, tuple(err["loc"]))
            if path in self._from_env:
                err["input"] = self._from_env[path]
        return errors


def _salvage(data: dict) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Keep the entries that are valid on their own so cross-reference checks still run on them.

    An invalid entry is kept as None: its name exists (references to it are not also reported), its
    contents were already reported.
    """
    singles: dict[str, Any] = dict.fromkeys(SINGLETONS)
    for single in SINGLETONS:
        if isinstance(data.get(single), dict):
            with contextlib.suppress(ValidationError):
                singles[single] = getattr(spec.PipelineFile.model_validate({single: data[single]}), single)
    sections: dict[str, dict[str, Any]] = {}
    for section in SECTIONS:
        entries = data.get(section)
        if not isinstance(entries, dict):
            continue
        kept: dict[str, Any] = {}
        for name, value in entries.items():
            try:
                kept[name] = getattr(spec.PipelineFile.model_validate({section: {name: value}}), section)[
                    name
                ]
            except ValidationError:
                kept[name] = None
        sections[section] = kept
    return singles, sections


def _merge(
    project: Declarations,
    singles: dict[str, Any],
    sections: dict[str, dict[str, Any]],
    document: SourceDocument,
    diagnostics: list[Diagnostic],
) -> None:
    for single, value in singles.items():
        if value is None:
            continue
        first: Declared | None = getattr(project, single)
        if first is not None:
            diagnostics.append(
                error(
                    f"'{single}' is declared twice (first at {first.position})",
                    document.positions.locate((single,), prefer="key"),
                    code="duplicate-name",
                )
            )
        else:
            setattr(project, single, Declared(single, value, document, single))
    for section, entries in sections.items():
        target: dict[str, Declared] = getattr(project, section)
        for name, value in entries.items():
            declared = Declared(str(name), value, document, section)
            if name in target or name in project.broken[section]:
                first = target[name].position if name in target else project.broken[section][name]
                diagnostics.append(
                    error(
                        f"{NOUN[section]} '{name}' is declared twice (first at {first})",
                        declared.position,
                        code="duplicate-name",
                    )
                )
                continue
            if value is None:
                project.broken[section][name] = declared.position
            else:
                target[name] = declared

"""A loaded project: the one entry point from files on disk to compiled, ready-to-run objects.

    load (loader) → assemble (spec) → resolve schemas → check → compile

`load_project` raises PipelineInvalid with every diagnostic when anything is wrong; `inspect_project` returns
the diagnostics instead (for `kpipe validate`, which reports warnings too).

Project code runs only when asked: with `import_code=False` (every offline command unless `--import-code`)
pydantic-model schemas and handlers are checked statically (kpipe.check.imports) and nothing from the project
is imported; JSON Schema files are compiled without touching sys.path. The runtime (`kpipe run`, `produce`,
`kpipe.load`) imports them: that is what it is asked to do.

A CompiledProject is compiled data and does no I/O: `bootstrap_servers: local` (or `-b local`) stays the word `local`
here. The edges that connect resolve it once to the running local broker's address (`kpipe.load`, the CLI:
kpipe.local.state.resolve) and hand over a project with that address as its bootstrap override.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from kpipe.check.rules import SchemaFields, check_project
from kpipe.compilation import compiler
from kpipe.compilation.compiled import (
    ClientConfig,
    ConsumerGroupSettings,
    MetricsSettings,
    ProducerSettings,
    Provisioning,
    TopicSettings,
)
from kpipe.diagnostics import Diagnostic, did_you_mean, error, sort_diagnostics
from kpipe.errors import PipelineInvalid, SchemaModelImportError, UsageError
from kpipe.loading.code import import_paths
from kpipe.loading.files import ProjectFiles, project_root
from kpipe.loading.loader import LoadResult, load_documents, load_yaml_file
from kpipe.model.aliases import json_names
from kpipe.model.assemble import Declarations, assemble
from kpipe.model.librdkafka import remember_secret_values
from kpipe.model.pipeline import SchemaFile, SchemaModel
from kpipe.redaction import reveal

if TYPE_CHECKING:
    from pydantic import BaseModel


@dataclass
class Inspection:
    """Everything `validate` learns about a project, valid or not."""

    declarations: Declarations
    diagnostics: list[Diagnostic]
    files: list[Path]
    schema_models: dict[str, type[BaseModel] | None] = field(default_factory=dict)
    schema_sources: dict[str, Path] = field(default_factory=dict)
    # Whether pydantic-model schemas were imported (else they are None in schema_models: checked statically).
    imported: bool = False

    @property
    def valid(self) -> bool:
        return not any(d.is_error for d in self.diagnostics)


def _schema_fields(model: type[BaseModel]) -> SchemaFields:
    names = json_names(model)
    required = frozenset(k for k, attr in names.items() if model.model_fields[attr].is_required())
    return SchemaFields(frozenset(names), required)


def resolve_schemas(
    spec: Declarations,
    files: ProjectFiles | None = None,
    *,
    import_code: bool = False,
    check_code: bool = True,
) -> tuple[dict[str, type[BaseModel] | None], dict[str, Path], list[Diagnostic]]:
    """Read and compile each schema file; import pydantic-model schemas only when `import_code`, else check
    statically that their module and class exist."""
    files = files or ProjectFiles(spec.root or Path.cwd())
    models: dict[str, type[BaseModel] | None] = {}
    sources: dict[str, Path] = {}
    diagnostics: list[Diagnostic] = []
    for name, declared in sorted(spec.schemas.items()):
        schema = declared.spec
        models[name] = None
        if isinstance(schema, SchemaModel):
            models[name], problems = _model_schema(
                spec, declared, import_code=import_code, check_code=check_code
            )
            diagnostics += problems
            continue
        assert isinstance(schema, SchemaFile)
        path = declared.directory / schema.file
        # The `file:` value, or the shorthand string itself (locate falls back to the nearest parent).
        where = declared.locate("file")
        if not path.exists() and not path.is_symlink() and files.inside(path):
            diagnostics.append(
                error(
                    f"schema '{name}': file '{schema.file}' not found (looked in {path.parent.resolve()})",
                    where,
                    code="schema-missing",
                )
            )
            continue
        resolved, problems = files.check(path, schema.file, where)
        if resolved is None:
            diagnostics.extend(problems)
            continue
        sources[name] = resolved
        document, problems = load_yaml_file(path, files=files, written=schema.file, at=where)
        diagnostics.extend(problems)
        if document is None or document.data is None:
            if document is not None:
                diagnostics.append(error(f"schema file for '{name}' is empty", where, code="schema-invalid"))
            continue
        from kpipe.schemas.schema_models import compile_schema  # only for a project with schema files

        model, problems = compile_schema(
            document.data, name=name, file=document.display, locate=document.positions.locate
        )
        diagnostics.extend(problems)
        models[name] = model
    return models, sources, diagnostics


def _model_schema(
    spec: Declarations, declared: Any, *, import_code: bool, check_code: bool
) -> tuple[type[BaseModel] | None, list[Diagnostic]]:
    """A pydantic-model schema: imported when `import_code`, else its module and class checked statically
    (or not at all without `check_code`)."""
    from kpipe.check.imports import check_import_target
    from kpipe.schemas.schema_models import import_model

    schema = declared.spec
    if not import_code:
        if not check_code:
            return None, []
        return None, check_import_target(
            schema.model,
            what="schema model",
            position=declared.locate("model"),
            import_directories=spec.directories,
            code="schema-import",
            root=str(spec.root) if spec.root else None,
        )
    with import_paths(spec.directories):
        try:
            return import_model(schema.model), []
        except SchemaModelImportError as exc:
            return None, [error(str(exc), declared.locate("model"), code="schema-import")]


def read_documents(
    paths: Iterable[Path | str],
    *,
    variables: Mapping[str, str] | None = None,
    values_files: Iterable[Path | str] = (),
    root: Path | str | None = None,
    files: ProjectFiles | None = None,
) -> LoadResult:
    """kpipe.loading.loader.load_documents, with every secret value in the files registered for redaction
    (kpipe.redaction) before anything is shown."""
    loaded = load_documents(paths, variables=variables, values_files=values_files, root=root, files=files)
    for document in loaded.documents:
        remember_secret_values(document.data)
    return loaded


def inspect_project(
    paths: Iterable[Path | str],
    *,
    variables: Mapping[str, str] | None = None,
    values_files: Iterable[Path | str] = (),
    root: Path | str | None = None,
    import_code: bool = False,
    check_code: bool = True,
) -> Inspection:
    """Everything wrong with a project. Reads nothing outside the project root (`root`, else found from
    `paths`); imports pydantic-model schemas only with `import_code`, else checks them and the handlers
    statically (unless not `check_code`: commands that need neither, such as plan)."""
    files = ProjectFiles(project_root(list(paths), root))
    loaded = read_documents(paths, variables=variables, values_files=values_files, files=files)
    spec, diagnostics = assemble(loaded.documents)
    spec.root = files.root
    diagnostics = loaded.diagnostics + diagnostics
    models, sources, problems = resolve_schemas(spec, files, import_code=import_code, check_code=check_code)
    diagnostics += problems
    if check_code and not import_code:
        diagnostics += check_handlers_statically(spec)
    fields = {name: (_schema_fields(m) if m is not None else None) for name, m in models.items()}
    if check_code and not import_code:
        fields.update(_static_model_fields(spec))
    checked = check_project(spec, fields)
    if any(d.is_error and d.code.startswith(("template-", "yaml-")) for d in loaded.diagnostics):
        # A file that did not load declares nothing: references to its names would only repeat its error.
        checked = [d for d in checked if d.code != "unknown-reference"]
    diagnostics += checked
    return Inspection(spec, sort_diagnostics(diagnostics), loaded.files, models, sources, import_code)


def _static_model_fields(spec: Declarations) -> dict[str, SchemaFields]:
    """The fields of pydantic-model schemas read from their source, so key-field checks run without importing."""
    from kpipe.check.imports import static_model_fields

    out = {}
    for name, declared in spec.schemas.items():
        if isinstance(declared.spec, SchemaModel):
            found = static_model_fields(declared.spec.model, spec.directories)
            if found is not None:
                out[name] = SchemaFields(*found)
    return out


def check_handlers_statically(spec: Declarations, groups: Iterable[str] | None = None) -> list[Diagnostic]:
    """Each handler's module and function looked for without importing them (`groups`: only these)."""
    from kpipe.check.imports import check_import_target

    out: list[Diagnostic] = []
    wanted = set(groups) if groups is not None else None
    for name, group in sorted(spec.consumers.items()):
        if wanted is not None and name not in wanted:
            continue
        out += check_import_target(
            group.spec.handler,
            what=f"consumer group '{name}': handler",
            position=group.locate("handler"),
            import_directories=spec.directories,
            code="handler-import",
            root=str(spec.root) if spec.root else None,
        )
    return out


_P = TypeVar("_P", bound="CompiledProject")


class CompiledProject:
    """A valid project, compiled on demand. Build one with `kpipe.load(...)`.

    bootstrap_override: the address clients connect to instead of the files' (`--bootstrap-servers`, the
    environment, or the resolved local broker). consumer_overrides: runtime librdkafka settings for every
    consumer group (`kpipe run -X`), compiled into the groups' configs like any other layer.
    """

    def __init__(
        self,
        inspection: Inspection,
        *,
        bootstrap_override: str | None = None,
        consumer_overrides: Mapping[str, str] | None = None,
        embedded_broker: bool = False,
    ):
        self.inspection = inspection
        self.declarations = inspection.declarations
        self.warnings = [d for d in inspection.diagnostics if not d.is_error]
        self.bootstrap_override = bootstrap_override or None
        self.consumer_overrides: dict[str, str] = dict(consumer_overrides or {})
        self._embedded_broker = embedded_broker

    # --- names -------------------------------------------------------------------------------------------
    @property
    def files(self) -> list[Path]:
        return self.inspection.files

    @property
    def bootstrap_servers(self) -> str:
        return self.bootstrap_override or self.declarations.cluster_spec.bootstrap_servers

    def with_bootstrap(self: _P, bootstrap: str | None, *, embedded_broker: bool = False) -> _P:
        """The project connecting to `bootstrap`; embedded_broker: that address is kpipe's embedded broker."""
        if not bootstrap:
            return self
        return type(self)(
            self.inspection,
            bootstrap_override=bootstrap,
            consumer_overrides=self.consumer_overrides,
            embedded_broker=embedded_broker,
        )

    @property
    def uses_local_broker(self) -> bool:
        """True while the bootstrap servers are the word `local`, not yet resolved to an address."""
        return reveal(self.bootstrap_servers, remember=False) == "local"  # KAFKA_BOOTSTRAP_SERVERS=local too

    @property
    def embedded_broker(self) -> bool:
        """Whether clients talk to kpipe's embedded broker: still `local`, or resolved from it (the edge that
        resolves it says so: `with_bootstrap(address, embedded_broker=True)`, and a worker's spec carries it)."""
        return self._embedded_broker or self.uses_local_broker

    def _lookup(self, section: str, name: str, noun: str) -> None:
        names = getattr(self.declarations, section)
        if name not in names:
            hint = did_you_mean(name, names)
            known = ", ".join(sorted(names)) or "none"
            raise UsageError(f"no {noun} named '{name}'" + (f"; {hint}" if hint else f" (declared: {known})"))

    # --- compiled objects ---------------------------------------------------------------------------------
    def topic_settings(self) -> list[TopicSettings]:
        return compiler.compile_topics(self.declarations)

    def topic(self, name: str) -> TopicSettings:
        for topic in self.topic_settings():
            if topic.name == name:
                return topic
        self._lookup("topics", name, "topic")
        raise AssertionError("unreachable")

    def provisioning(self, groups: Iterable[str] = (), producers: Iterable[str] = ()) -> Provisioning:
        """The topics these groups and producers use, for creating the missing ones before they start."""
        groups, producers = list(groups), list(producers)
        for name in groups:
            self._lookup("consumers", name, "consumer group")
        for name in producers:
            self._lookup("producers", name, "producer")
        return compiler.compile_provisioning(self.declarations, groups, producers)

    def cluster_client_config(self) -> ClientConfig:
        return compiler.compile_cluster_client(self.declarations, self.bootstrap_override)

    def metrics_settings(self, port: int | None = None, host: str | None = None) -> MetricsSettings:
        """Where `kpipe run` serves metrics: the files' `metrics:` section, overridden by `port`/`host`."""
        return compiler.compile_metrics(self.declarations, port, host)

    def producer_names(self) -> list[str]:
        return sorted(self.declarations.producers)

    def producer_settings(self, name: str) -> ProducerSettings:
        self._lookup("producers", name, "producer")
        return compiler.compile_producer(
            self.declarations, name, self.bootstrap_override, embedded=self.embedded_broker
        )

    def consumer_group_names(self) -> list[str]:
        return sorted(self.declarations.consumers)

    def consumer_group(self, name: str, *, metrics: bool | None = None) -> ConsumerGroupSettings:
        """The group's compiled settings. metrics: compiled for a run that serves metrics (consumer lag from
        librdkafka statistics); None: as the files' `metrics:` section says."""
        self._lookup("consumers", name, "consumer group")
        if metrics is None:
            metrics = self.metrics_settings().port is not None
        return compiler.compile_consumer_group(
            self.declarations,
            name,
            self.bootstrap_override,
            self.consumer_overrides,
            embedded=self.embedded_broker,
            metrics=metrics,
        )

    def consumer_groups(self, *, metrics: bool | None = None) -> list[ConsumerGroupSettings]:
        return [self.consumer_group(n, metrics=metrics) for n in self.consumer_group_names()]

    def schema_model(self, name: str) -> type[BaseModel]:
        model = self.inspection.schema_models.get(name)
        if model is None:
            self._lookup("schemas", name, "schema")
            if not self.inspection.imported and isinstance(self.declarations.schemas[name].spec, SchemaModel):
                raise UsageError(
                    f"schema '{name}' is a pydantic model and the project was loaded without importing "
                    "project code (load it with import_code=True)"
                )
            raise UsageError(f"schema '{name}' did not compile")
        return model

    def topic_model(self, topic: str) -> type[BaseModel] | None:
        declared = self.declarations.topics.get(topic)
        if declared is None or declared.spec.schema_ is None:
            return None
        return self.schema_model(declared.spec.schema_)


def load_project(
    paths: Iterable[Path | str],
    *,
    variables: Mapping[str, str] | None = None,
    values_files: Iterable[Path | str] | None = None,
    bootstrap_override: str | None = None,
    consumer_overrides: Mapping[str, str] | None = None,
    project_type: type[_P] = CompiledProject,  # type: ignore[assignment]
    root: Path | str | None = None,
    import_code: bool = True,
    check_code: bool = True,
    embedded_broker: bool = False,
) -> _P:
    """Load a valid project. The bootstrap servers come from `bootstrap_override`, else KPIPE_BOOTSTRAP_SERVERS,
    else the files (`local` stays unresolved: see the module docstring).

    `import_code` (the default: running a project means running its code) imports pydantic-model schemas;
    the offline commands pass False and get them checked statically instead."""
    inspection = inspect_project(
        paths,
        variables=variables,
        values_files=values_files or (),
        root=root,
        import_code=import_code,
        check_code=check_code,
    )
    if not inspection.valid:
        raise PipelineInvalid(inspection.diagnostics)
    override = bootstrap_override or os.environ.get("KPIPE_BOOTSTRAP_SERVERS") or None
    return project_type(
        inspection,
        bootstrap_override=override,
        consumer_overrides=consumer_overrides,
        embedded_broker=embedded_broker,
    )

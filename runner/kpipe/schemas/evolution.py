"""`kpipe validate --against REF`: is every schema change safe for the consumers and producers already running?

The previous project is loaded from REF (a git ref, materialised with `git archive`, or a directory holding the
previous files) with the same paths and template values, and compared with the current one. The caller loads
both versions (it passes the function that inspects a project), so this module stays below the compile stage:

- each schema against its previous version(s) under its compatibility mode (Schema Registry's rules, in
  `kpipe.schemas.compat`); a pydantic-model schema is compared through the JSON Schema pydantic produces;
- each topic's key field (removed, changed, or retyped) and schema (swapped for another).
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kpipe.diagnostics import Diagnostic, Position, error, warning
from kpipe.errors import GitFailed, UsageError
from kpipe.loading.loader import load_yaml_file
from kpipe.model.assemble import Declared
from kpipe.model.pipeline import SchemaModel, TopicSpec
from kpipe.schemas.compat import Violation, check_compatibility
from kpipe.schemas.history import git

if TYPE_CHECKING:
    from kpipe.compilation.project import Inspection


def materialise(against: str, root: Path, stack: ExitStack) -> Path:
    """A directory holding the previous version of `root` (the working directory)."""
    candidate = Path(against)
    if candidate.is_dir():
        return candidate.resolve()
    try:
        top = Path(git(["rev-parse", "--show-toplevel"], root).strip())
    except GitFailed:
        raise UsageError(
            f"--against {against}: not a directory, and {root} is not in a git repository"
        ) from None
    try:
        git(["rev-parse", "--verify", "--quiet", f"{against}^{{commit}}"], root)
        archive = git(["archive", "--format=tar", against], top, binary=True)
    except GitFailed:
        raise UsageError(f"--against {against}: unknown git ref (nor is it a directory)") from None
    target = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kpipe-against-")))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target / root.resolve().relative_to(top.resolve())


@contextmanager
def _fresh_model_modules(inspection: Inspection) -> Iterator[None]:
    """Import the previous version's pydantic-model schemas from the previous files, not from the module cache.

    The old and new model live in modules of the same name; without this the old project would get the
    already-imported new module and every model change would look compatible.
    """
    packages = {
        declared.spec.model.partition(":")[0].split(".")[0]
        for declared in inspection.declarations.schemas.values()
        if isinstance(declared.spec, SchemaModel)
    }
    saved = dict(sys.modules)
    for name in list(sys.modules):
        if name.split(".")[0] in packages:
            del sys.modules[name]
    try:
        yield
    finally:
        sys.modules.clear()
        sys.modules.update(saved)


def _schema_document(inspection: Inspection, name: str) -> Mapping[str, Any] | None:
    model = inspection.schema_models.get(name)
    if model is None:
        return None
    document = getattr(model, "__kpipe_json_schema__", None)
    return document if document is not None else model.model_json_schema()


def _schema_locator(inspection: Inspection, name: str) -> Callable[[tuple], Position]:
    """Where a key path of schema `name` sits in its file, read once per schema; a path only the old version
    had resolves to its closest surviving parent. A pydantic-model schema points at its declaration."""
    source = inspection.schema_sources.get(name)
    document = load_yaml_file(source)[0] if source is not None else None
    if document is None:
        declared = inspection.declarations.schemas[name].position
        return lambda path: declared
    return document.positions.locate


def _violation_diagnostic(name: str, mode: str, v: Violation, where: Position) -> Diagnostic:
    field = v.path or "(root)"
    # Says which rollout would have been safe, and that this mode does not assume it: not a fix to follow.
    order = (
        f"it would be safe only with the {v.deploy_first} deployed first, which {mode} does not assume"
        if v.deploy_first
        else "unsafe whichever side is deployed first"
    )
    message = f"schema '{name}' is not {mode} compatible: {field}: {v.message} [{v.rule}]; {order}"
    return error(message, where, hint=v.fix, code="schema-incompatible")


def _history(
    inspection: Inspection, name: str, against: str, previous: Mapping[str, Any]
) -> list[Mapping[str, Any]]:
    """All earlier versions of a file schema for transitive modes (just the previous one otherwise)."""
    source = inspection.schema_sources.get(name)
    if source is None or Path(against).is_dir():
        return [previous]
    from kpipe.schemas.history import history_documents

    versions = list(history_documents(source, against, Path.cwd()))
    return versions or [previous]


def check_evolution(
    inspection: Inspection,
    against: str,
    *,
    inspect: Callable[..., Inspection],
    paths: list[Path] | None = None,
    import_code: bool = False,
) -> list[Diagnostic]:
    """Diagnostics for every unsafe schema or key change since `against`. `inspect(paths, root=, import_code=)`
    loads a project's files (with the current template values) into an Inspection; it is called for the
    previous version, with the previous tree's project root. Without `import_code`, pydantic-model schemas
    are not imported (old or new), so only JSON Schema files are compared."""
    root = Path.cwd()
    out: list[Diagnostic] = []
    with ExitStack() as stack:
        base = materialise(against, root, stack)
        old_paths = []
        for p in paths or [Path("pipelines")]:
            absolute = Path(p).resolve()
            try:
                old_paths.append(base / absolute.relative_to(root.resolve()))
            except ValueError:
                raise UsageError(f"--against: {p} is outside the working directory {root}") from None
        existing = [p for p in old_paths if p.exists()]
        if not existing:
            return []  # a new project: nothing to be compatible with
        # The previous project's root is where the current root sits in the previous tree.
        current_root = inspection.declarations.root or root
        old_root = (base / os.path.relpath(current_root, root)).resolve()
        with _fresh_model_modules(inspection) if import_code else nullcontext():
            old = inspect(existing, root=old_root, import_code=import_code)
        if not old.valid:
            first = next(d for d in old.diagnostics if d.is_error)
            return [
                warning(
                    f"the previous version at {against} does not validate, so compatibility was not checked ({first.message})",
                    None,
                    code="against-invalid",
                )
            ]
        for name in sorted(inspection.declarations.schemas):
            out += _check_schema_versions(inspection, old, name, against, import_code)
        out += _check_topics(inspection, old)
    return out


def _check_schema_versions(
    inspection: Inspection, old: Inspection, name: str, against: str, import_code: bool
) -> list[Diagnostic]:
    """Schema `name` against its previous version(s), under its compatibility mode."""
    declared = inspection.declarations.schemas[name]
    out: list[Diagnostic] = []
    if isinstance(declared.spec, SchemaModel) and not import_code:
        out.append(
            warning(
                f"schema '{name}' is a pydantic model; its changes are compared only with "
                "--import-code (which imports the old and new model modules)",
                declared.locate("model"),
                code="against-model-not-imported",
            )
        )
        return out
    new_document = _schema_document(inspection, name)
    old_document = _schema_document(old, name) if name in old.declarations.schemas else None
    if new_document is None or old_document is None:
        return out
    mode = declared.spec.compatibility
    previous = (
        _history(inspection, name, against, old_document) if mode.endswith("_TRANSITIVE") else [old_document]
    )
    violations = check_compatibility(new_document, previous, mode, declared_only=True)
    if violations:
        locate = _schema_locator(inspection, name)
        out += [_violation_diagnostic(name, mode, v, locate(v.schema_path)) for v in violations]
    else:
        out += _unvouched_additions(inspection, name, new_document, previous, mode)
    return out


def _unvouched_additions(
    inspection: Inspection, name: str, new: Mapping[str, Any], previous: list[Mapping[str, Any]], mode: str
) -> list[Diagnostic]:
    """A property added to a schema without additionalProperties passes because kpipe's producers write only
    declared properties. Where no producer or group of the project writes the schema's topics, that guarantee
    is not kpipe's to give: warn there, and nowhere else."""
    relied = [
        v
        for v in check_compatibility(new, previous, mode)  # the registry's reading: an open schema
        if v.rule.endswith("_ADDED_TO_OPEN_CONTENT_MODEL") and v.direction == "backward"
    ]
    if not relied:
        return []
    declarations = inspection.declarations
    topics = sorted(t for t, d in declarations.topics.items() if d.spec.schema_ == name)
    written = {d.spec.topic for d in declarations.producers.values()}
    written |= {t for d in declarations.consumers.values() for t in d.spec.emits}
    outside = [t for t in topics if t not in written]
    if not outside:
        return []
    added = ", ".join(f"'{v.path}'" for v in relied)
    shown = ", ".join(f"'{t}'" for t in outside)
    return [
        warning(
            f"schema '{name}' adds {added}, which is {mode} compatible because kpipe's producers write only "
            f"declared properties; no producer or consumer group of this project writes {shown}, so kpipe "
            "cannot vouch that earlier events lack it",
            declarations.schemas[name].position,
            hint="if clients outside kpipe write the topic and may send undeclared properties, say "
            "additionalProperties: true in the schema to have them checked",
            code="schema-addition-unvouched",
        )
    ]


def _field_type(inspection: Inspection, schema: str | None, field: str | None) -> Any:
    if schema is None or field is None:
        return None
    document = _schema_document(inspection, schema) or {}
    prop = (document.get("properties") or {}).get(field)
    if not isinstance(prop, Mapping):
        return None
    return prop.get("type", prop.get("$ref", prop.get("format")))


def _check_topics(new: Inspection, old: Inspection) -> list[Diagnostic]:
    """Changes to topics declared on both sides that break what is already in them: partitions, keys, schemas."""
    out: list[Diagnostic] = []
    for name, topic in sorted(new.declarations.topics.items()):
        before = old.declarations.topics.get(name)
        if before is None:
            continue
        _check_partitions(name, topic, before.spec, out)
        _check_key(name, topic, before.spec, new, old, out)
        _check_schema(name, topic, before.spec, new, old, out)
    return out


Topic = Declared[TopicSpec]


def _check_partitions(name: str, topic: Topic, was: TopicSpec, out: list[Diagnostic]) -> None:
    """Kafka cannot take partitions away."""
    now = topic.spec
    if now.partitions < was.partitions:
        out.append(
            error(
                f"topic '{name}': partitions decreased from {was.partitions} to {now.partitions}; Kafka cannot "
                "remove partitions from a topic, so `kpipe apply` will refuse this",
                topic.locate("partitions"),
                hint=f"keep partitions: {was.partitions}, or declare a topic under a new name to have fewer",
                code="partitions-decreased",
            )
        )


def _check_key(
    name: str, topic: Topic, was: TopicSpec, new: Inspection, old: Inspection, out: list[Diagnostic]
) -> None:
    """A removed, renamed or retyped key field sends the same entity to another partition."""
    now = topic.spec
    if was.key and not now.key:
        out.append(
            error(
                f"topic '{name}': key field '{was.key}' was removed; events will be produced without a key, "
                "so events of one key no longer stay on one partition, in order",
                topic.position,
                hint=f"keep key: {was.key}",
                code="key-removed",
            )
        )
    elif was.key and now.key and was.key != now.key:
        out.append(
            error(
                f"topic '{name}': key field changed from '{was.key}' to '{now.key}'; existing keys map to "
                "other partitions, so per-key ordering breaks across the change",
                topic.locate("key"),
                code="key-changed",
            )
        )
    elif was.key and now.key:
        old_type = _field_type(old, was.schema_, was.key)
        new_type = _field_type(new, now.schema_, now.key)
        if old_type is not None and new_type is not None and old_type != new_type:
            out.append(
                error(
                    f"topic '{name}': key field '{now.key}' changed type from {old_type} to {new_type}; the same "
                    "entity now serialises to a different key and lands on another partition",
                    topic.locate("key"),
                    code="key-retyped",
                )
            )


def _check_schema(
    name: str, topic: Topic, was: TopicSpec, new: Inspection, old: Inspection, out: list[Diagnostic]
) -> None:
    """A topic's schema swapped for another (compatible or not with the old one), or removed."""
    now = topic.spec
    if was.schema_ and now.schema_ and was.schema_ != now.schema_:
        old_document = _schema_document(old, was.schema_)
        new_document = _schema_document(new, now.schema_)
        mode = (
            new.declarations.schemas[now.schema_].spec.compatibility
            if now.schema_ in new.declarations.schemas
            else "BACKWARD"
        )
        problems = (
            check_compatibility(new_document, [old_document], mode, declared_only=True)
            if old_document and new_document
            else []
        )
        if problems:
            first = problems[0]
            out.append(
                error(
                    f"topic '{name}': schema swapped from '{was.schema_}' to '{now.schema_}', which is not {mode} "
                    f"compatible with it: {first.path or '(root)'}: {first.message} [{first.rule}]"
                    + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                    topic.locate("schema"),
                    hint=first.fix,
                    code="schema-swapped",
                )
            )
        else:
            out.append(
                warning(
                    f"topic '{name}': schema swapped from '{was.schema_}' to '{now.schema_}' (compatible under {mode})",
                    topic.locate("schema"),
                    code="schema-swapped",
                )
            )
    elif was.schema_ and not now.schema_:
        out.append(
            error(
                f"topic '{name}': schema '{was.schema_}' was removed; consumers relying on validated events will "
                "receive raw bytes",
                topic.position,
                code="schema-removed",
            )
        )

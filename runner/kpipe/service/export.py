"""Exports as whole operations: the project in, the text or manifests out, checked for secrets, written.

    text = asyncapi_text(project, output_format="yaml", bootstrap_servers=None)
    objects = kubernetes_manifests(source, settings)      # renders the files as the pods will
    write_text(text, output)    /    write_manifests(objects, output)

The formats themselves live in kpipe.export; this module decides what each export reads (which environment
the files are rendered under, which secrets no output may hold) and how its result reaches a file. Offline: it
connects to nothing, and imports project code only when the project was loaded with it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kpipe.errors import UsageError

# What loads the project, given how the CLI or the API was asked to.
Loader = Callable[[], Any]


@dataclass(frozen=True)
class ProjectSource:
    """Where an export's project is, for the exports that read the files themselves before loading them (to
    find the variables the templates read) and that name them in what they write."""

    paths: tuple[Path, ...]
    load: Loader
    values_files: tuple[Path, ...] = ()
    variables: Mapping[str, str] = field(default_factory=dict)
    root: Path | None = None


def secrets_of(
    project: Any, environ: Mapping[str, str | None] | None = None, env: list[Any] | None = None
) -> list[Any]:
    """The project's secret values (export.secrets), with the env() values the render saw: `environ`, or
    this process's environment. `env` is the variables the files read, when already found."""
    from kpipe.export.environment import env_vars
    from kpipe.export.secrets import secret_values
    from kpipe.loading.files import ProjectFiles
    from kpipe.loading.loader import display_path

    if env is None:
        env = env_vars(((f, display_path(f)) for f in project.files), ProjectFiles(project.declarations.root))
    seen = {k: v for k, v in (environ if environ is not None else os.environ).items() if v is not None}
    return secret_values(project, env, seen)


# -- AsyncAPI and the graph --------------------------------------------------------------------------------------


def asyncapi_text(
    project: Any,
    *,
    output_format: str = "yaml",
    title: str | None = None,
    version: str | None = None,
    bootstrap_servers: str | None = None,
) -> str:
    """The AsyncAPI 3.0 document as YAML or JSON text; refused when it would hold a secret."""
    from kpipe.export.asyncapi import document
    from kpipe.export.secrets import refuse_secrets
    from kpipe.export.text import dump_json, dump_yaml

    doc = document(project, title=title, version=version, bootstrap_servers=bootstrap_servers)
    text = dump_json(doc) if output_format == "json" else dump_yaml(doc)
    refuse_secrets([("the AsyncAPI document", text)], secrets_of(project))
    return text


def graph_text(project: Any, output_format: str = "mermaid") -> str:
    """The topology as Mermaid or DOT."""
    from kpipe.export.graph import FORMATS
    from kpipe.export.topology import topology

    return FORMATS[output_format](topology(project))


# -- Kubernetes --------------------------------------------------------------------------------------------------


def kubernetes_manifests(
    source: ProjectSource, settings: Any, warn: Callable[[str], None] = lambda text: None
) -> list[dict[str, Any]]:
    """Every Kubernetes object for the project (kpipe.export.kubernetes.Options `settings`), with the files
    rendered exactly as the pods will render them; refused when an object would hold a secret. `warn` gets
    one line per env() default baked in because no --set-env value was given."""
    from kpipe.export.environment import env_vars
    from kpipe.export.kubernetes import check_environment, default_warnings, manifests, render_environment
    from kpipe.export.pods import Pods
    from kpipe.export.secrets import refuse_secrets
    from kpipe.export.text import dump_yaml
    from kpipe.export.topology import topology
    from kpipe.loading.files import ProjectFiles, project_root
    from kpipe.loading.loader import discover, display_path

    # The variables the templates read, before rendering: the render gets exactly what the pods will.
    # Read as loading reads them: inside the project root, regular files, size caps.
    reader = ProjectFiles(project_root(source.paths[:1], source.root))
    files, _ = discover(source.paths, reader)
    env = env_vars(((f, display_path(f)) for f in files), reader)
    check_environment(env, settings.set_env, Pods(env, [], settings).secret_name)
    render_env = render_environment(env, settings.set_env)
    with _environment(render_env):
        project = source.load()
        secrets = secrets_of(project, render_env, env)
        # Inside: an env() value the manifests consume (KEDA's bootstrapServers) is the --set-env one.
        objects = manifests(
            project,
            topology(project),
            env,
            list(source.paths),
            list(source.values_files),
            dict(source.variables),
            settings,
            root=project.declarations.root,
        )
    refuse_secrets(((f"{o['kind']} {o['metadata']['name']}", dump_yaml(o)) for o in objects), secrets)
    for line in default_warnings(env, settings.set_env):
        warn(line)
    return objects


@contextmanager
def _environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """Render the files as the pods will: every variable the templates read set to `values` (None: unset),
    whatever this shell holds, and without its KPIPE_BOOTSTRAP_SERVERS, which the pods do not get."""
    names = [*values, "KPIPE_BOOTSTRAP_SERVERS"]
    saved = {name: os.environ.get(name) for name in names}
    for name in names:
        value = values.get(name)
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def _manifest_name(index: int, obj: dict[str, Any]) -> str:
    return f"{index:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


_MANIFEST_FILE = re.compile(r"\d{2}-[a-z]+-[a-z0-9.-]+\.yaml")


def _written_by_kpipe(path: Path) -> bool:
    """A manifest an earlier `export kubernetes -o` wrote: its file name, and the object's kpipe label."""
    import yaml

    if not (path.is_file() and _MANIFEST_FILE.fullmatch(path.name)):
        return False
    try:
        obj = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    labels = (obj.get("metadata") or {}).get("labels") or {} if isinstance(obj, dict) else {}
    return isinstance(labels, dict) and labels.get("app.kubernetes.io/name") == "kpipe"


def write_manifests(objects: list[dict[str, Any]], output: Path) -> int:
    """One file per object in `output`; returns how many earlier manifests it replaced. The directory's earlier
    kpipe manifests are replaced (a group that is gone must not leave its Deployment behind for
    `kubectl apply -f DIR`); anything else in it is refused rather than mixed in or deleted."""
    from kpipe.export.text import dump_yaml

    try:
        output.mkdir(parents=True, exist_ok=True)
        existing = sorted(output.iterdir())
        foreign = [p.name for p in existing if not _written_by_kpipe(p)]
        if foreign:
            raise UsageError(
                f"{output} holds files kpipe did not write ({', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}); give an empty directory or one holding only an "
                "earlier export's manifests"
            )
        for path in existing:
            path.unlink()
        for i, obj in enumerate(objects):
            (output / _manifest_name(i, obj)).write_text(dump_yaml(obj))
    except OSError as exc:
        raise cannot_write(output, exc) from None
    return len(existing)


# -- Dockerfile --------------------------------------------------------------------------------------------------


def dockerfile_build(
    project: Any,
    paths: Sequence[Path],
    values_files: Sequence[Path],
    *,
    python_version: str,
    kpipe_requirement: str | None,
    extra_dirs: Sequence[str] = (),
    warn: Callable[[str], None] = lambda text: None,
) -> Any:
    """The project image's Dockerfile and .dockerignore (kpipe.export.dockerfile.DockerBuild): wheels built from
    the project's own packaging; what it copies is the project's files, schema sources, values files and the
    code below the root its handlers and models come from (`warn` names code found nowhere there)."""
    from kpipe.export.dockerfile import dockerfile as build
    from kpipe.export.dockerfile import read_packaging, tracing_requirements
    from kpipe.export.sources import code_paths, project_files
    from kpipe.model.pipeline import SchemaModel

    root = project.declarations.root
    files = project_files([*project.files, *project.inspection.schema_sources.values(), *values_files], root)
    modules = [g.spec.handler for g in project.declarations.consumers.values()]
    modules += [
        s.spec.model for s in project.declarations.schemas.values() if isinstance(s.spec, SchemaModel)
    ]
    code, missing = code_paths(project.declarations.directories, modules, root)
    if missing:
        warn(
            f"warning: no code below the project root for {', '.join(missing)}: if the image must hold it, "
            "add its directory with --copy DIR (or install it from requirements.txt)"
        )
    copied = {f.relative.split("/")[0] for f in files if "/" in f.relative} | set(code) | set(extra_dirs)
    directories = sorted(p for p in copied if not (root / p).is_file())
    single_files = sorted(p for p in copied if (root / p).is_file())
    requirements = "requirements.txt" if (root / "requirements.txt").is_file() else None
    args = ["run", *(p.resolve().relative_to(root).as_posix() for p in paths)]
    return build(
        directories,
        packaging=read_packaging(root),
        python=python_version,
        kpipe_requirement=kpipe_requirement,
        requirements=requirements,
        default_args=args,
        files=single_files,
        tracing=tracing_requirements(project.declarations.cluster_spec.tracing),
    )


def write_dockerignore(path: Path, generated: str, warn: Callable[[str], None] = lambda text: None) -> None:
    """The build context's .dockerignore, beside the Dockerfile's sources: kpipe's own is replaced, the user's
    kept (with a warning naming what it lacks)."""
    from kpipe.export.dockerfile import merge_dockerignore

    try:
        existing = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None
    except OSError as exc:
        raise cannot_write(path, exc) from None
    text, missing = merge_dockerignore(existing, generated)
    if text is not None:
        write_text(text, path)
    elif missing:
        warn(f"warning: kept your {path}; kpipe's would also leave out: {', '.join(missing)}")


# -- files -------------------------------------------------------------------------------------------------------


def write_text(text: str, output: Path) -> None:
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
    except OSError as exc:
        raise cannot_write(output, exc) from None


def cannot_write(path: Path, exc: OSError) -> UsageError:
    return UsageError(f"cannot write {path}: {exc.strerror or exc}")

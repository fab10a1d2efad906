"""`kpipe export`: the project described for other tools. Offline; imports no project code unless
--import-code is given."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from kpipe.cli.common import (
    ProjectOptions,
    import_code_option,
    parse_vars,
    project_options,
    shutdown_timeout_option,
)
from kpipe.errors import UsageError


def _load(options: ProjectOptions, import_code: bool) -> Any:
    """The project as an export sees it: `local` left unresolved (nothing connects), project code imported
    only with --import-code."""
    return options.load(resolve_local=False, import_code=import_code)


def _write(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=not text.endswith("\n"))
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
    except OSError as exc:
        raise _cannot_write(output, exc) from None
    click.echo(f"wrote {output}", err=True)


def _cannot_write(path: Path, exc: OSError) -> UsageError:
    return UsageError(f"cannot write {path}: {exc.strerror or exc}")


def _secrets(
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


@click.group()
def export() -> None:
    """Describe the project for other tools: AsyncAPI, a topology graph, Kubernetes manifests, a Dockerfile.

    Offline: reads the files, connects to nothing, and imports no project code unless --import-code is given.
    """


@export.command()
@project_options(bootstrap=True)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write to this file instead of stdout.")
@click.option("--title", help="info.title (default: 'kpipe pipelines').")
@click.option("--version", "doc_version", help="info.version, the document's version (default: 0.0.0).")
@import_code_option
def asyncapi(
    options: ProjectOptions,
    output_format: str,
    output: Path | None,
    title: str | None,
    doc_version: str | None,
    import_code: bool,
) -> None:
    """Write an AsyncAPI 3.0 document: servers, a channel per topic, producers and consumer groups as
    operations, dead-letter routes and declared emits.

    \b
    Examples:
      kpipe export asyncapi pipelines/ -o asyncapi.yaml --title "Orders platform" --version 1.4.0
      kpipe export asyncapi pipelines/ --format json -b broker-1:9092,broker-2:9092
    """
    from kpipe.export.asyncapi import document
    from kpipe.export.secrets import refuse_secrets

    project = _load(options, import_code)
    doc = document(project, title=title, version=doc_version, bootstrap_servers=options.bootstrap_servers)
    if output_format == "json":
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    else:
        from kpipe.export.text import dump_yaml

        text = dump_yaml(doc)
    refuse_secrets([("the AsyncAPI document", text)], _secrets(project))
    _write(text, output)


@export.command()
@project_options()
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["mermaid", "dot"]),
    default="mermaid",
    show_default=True,
)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write to this file instead of stdout.")
def graph(options: ProjectOptions, output_format: str, output: Path | None) -> None:
    """Draw the topology: producers → topics → consumer groups, with dead-letter routes and emits.

    \b
    Examples:
      kpipe export graph pipelines/                      # Mermaid, for a README
      kpipe export graph pipelines/ --format dot | dot -Tsvg > topology.svg
    """
    from kpipe.export.graph import FORMATS
    from kpipe.export.topology import topology

    project = _load(options, import_code=False)
    _write(FORMATS[output_format](topology(project)), output)


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


def _image(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value.strip() or any(c.isspace() or not c.isprintable() for c in value):
        raise click.BadParameter(f"{value!r} is not an image reference (empty, or holds whitespace)")
    return value


@export.command()
@project_options()
@click.option(
    "--image", required=True, callback=_image, help="The image to run (see `kpipe export dockerfile`)."
)
@click.option("--namespace", "-n", help="Put every object in this namespace (default: none, kubectl's).")
@click.option("--name-prefix", default="", help="Prefix every object's name (e.g. the release name).")
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one file per object into this directory instead of one stream on stdout. The directory must "
    "be empty or hold only manifests kpipe wrote before, which are replaced.",
)
@click.option(
    "--files-in-image",
    is_flag=True,
    help="The image already holds the pipeline and schema files: no ConfigMap, no mounts.",
)
@click.option(
    "--set-env",
    "set_env",
    multiple=True,
    metavar="NAME=VALUE",
    help="Value of a non-secret variable the files read with env() (repeatable; goes into a ConfigMap).",
)
@click.option(
    "--secret-name",
    help="The Secret holding the secret variables (default: [PREFIX-]kpipe-secrets; not generated).",
)
@shutdown_timeout_option
@click.option(
    "--keda", is_flag=True, help="A KEDA ScaledObject for every group (else only for deploy.autoscale)."
)
@click.option(
    "--hook",
    type=click.Choice(["helm", "argo"]),
    help="Annotate the apply Job as a Helm pre-install/pre-upgrade or an Argo CD PreSync hook.",
)
@click.option(
    "--job-suffix",
    help="End the apply Job's name with this (default: a hash of the image, files and environment; none "
    "with --hook). A Job cannot be changed once created: each deploy needs a name of its own.",
)
def kubernetes(
    options: ProjectOptions,
    image: str,
    namespace: str | None,
    name_prefix: str,
    output: Path | None,
    files_in_image: bool,
    set_env: tuple[str, ...],
    secret_name: str | None,
    shutdown_timeout: float,
    keda: bool,
    hook: str | None,
    job_suffix: str | None,
) -> None:
    """Write Kubernetes manifests: a Deployment per consumer group (one worker per pod), a
    PodDisruptionBudget per group, a Job running `kpipe apply --yes`, ConfigMaps for the files and the
    environment, and optional KEDA ScaledObjects.

    Each pod runs `kpipe run --group G --instances 1 --shutdown-timeout S`; its grace period is S + 15 s.
    Variables the files read with env() are found in the templates: secret ones (behind sasl.password and
    the like) come from the Secret named by --secret-name, which you create; the others from --set-env.

    \b
    Examples:
      kpipe export kubernetes pipelines/ --image registry/orders:1.4 --set-env KAFKA_BOOTSTRAP_SERVERS=kafka:9092
      kpipe export kubernetes pipelines/ --image registry/orders:1.4 -n orders --keda -o deploy/
    """
    from kpipe.export.environment import env_vars
    from kpipe.export.kubernetes import Options, check_environment, manifests, render_environment
    from kpipe.export.pods import Pods
    from kpipe.export.secrets import refuse_secrets
    from kpipe.export.text import dump_yaml
    from kpipe.export.topology import topology
    from kpipe.loading.files import ProjectFiles, project_root
    from kpipe.loading.loader import discover, display_path

    env_values = parse_vars(set_env, "--set-env")
    for label, value in (
        ("--namespace", namespace),
        ("--secret-name", secret_name),
        ("--job-suffix", job_suffix),
    ):
        if value is not None and not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", value):
            raise click.BadParameter(
                f"'{value}' is not a Kubernetes name (lowercase letters, digits and '-')", param_hint=label
            )
    settings = Options(
        image=image,
        namespace=namespace,
        name_prefix=name_prefix,
        files_in_image=files_in_image,
        set_env=env_values,
        secret_name=secret_name,
        shutdown_timeout=shutdown_timeout,
        keda=keda,
        hook=hook,
        job_suffix=job_suffix,
    )
    # The variables the templates read, before rendering: the render gets exactly what the pods will.
    # Read as loading reads them: inside the project root, regular files, size caps.
    reader = ProjectFiles(project_root(options.paths[:1], options.root))
    files, _ = discover(options.paths, reader)
    env = env_vars(((f, display_path(f)) for f in files), reader)
    check_environment(env, env_values, Pods(env, [], settings).secret_name)
    render_env = render_environment(env, env_values)
    with _environment(render_env):
        project = _load(options, import_code=False)
        secrets = _secrets(project, render_env, env)
        # Inside: an env() value the manifests consume (KEDA's bootstrapServers) is the --set-env one.
        objects = manifests(
            project,
            topology(project),
            env,
            list(options.paths),
            list(options.values_files),
            options.variables,
            settings,
            root=project.declarations.root,
        )
    refuse_secrets(((f"{o['kind']} {o['metadata']['name']}", dump_yaml(o)) for o in objects), secrets)
    _write_manifests(objects, output)


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


def _write_manifests(objects: list[dict[str, Any]], output: Path | None) -> None:
    """One stream on stdout, or one file per object in `output`. The directory's earlier kpipe manifests are
    replaced (a group that is gone must not leave its Deployment behind for `kubectl apply -f DIR`); anything
    else in it is refused rather than mixed in or deleted."""
    from kpipe.export.text import dump_yaml, dump_yaml_stream

    if output is None:
        click.echo(dump_yaml_stream(objects), nl=False)
        return
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
        raise _cannot_write(output, exc) from None
    removed = f" (replacing {len(existing)} earlier ones)" if existing else ""
    click.echo(f"wrote {len(objects)} manifests to {output}{removed}", err=True)


@export.command()
@project_options()
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write to this file instead of stdout.")
@click.option(
    "--python", "python_version", default="3.12", show_default=True, help="The python base image tag."
)
@click.option(
    "--kpipe",
    "kpipe_requirement",
    help="pip requirement for kpipe (default: its source when the project is kpipe's repository, else a "
    "wheel in wheels/; not the bare name, which PyPI gives to an unrelated project).",
)
@click.option(
    "--copy", "extra_dirs", multiple=True, metavar="DIR", help="Another directory to copy (handlers)."
)
def dockerfile(
    options: ProjectOptions,
    output: Path | None,
    python_version: str,
    kpipe_requirement: str | None,
    extra_dirs: tuple[str, ...],
) -> None:
    """Write a Dockerfile for the project's image: python slim, kpipe, the project's directories, a
    non-root user, and `kpipe` as the entrypoint.

    \b
    Example:
      kpipe export dockerfile pipelines/ -o Dockerfile && docker build -t registry/orders:1.4 .
    """
    from kpipe.export.dockerfile import dockerfile as build
    from kpipe.export.sources import code_paths, project_files
    from kpipe.model.pipeline import SchemaModel

    project = _load(options, import_code=False)
    root = project.declarations.root
    files = project_files(
        [*project.files, *project.inspection.schema_sources.values(), *options.values_files], root
    )
    modules = [g.spec.handler for g in project.declarations.consumers.values()]
    modules += [
        s.spec.model for s in project.declarations.schemas.values() if isinstance(s.spec, SchemaModel)
    ]
    code, missing = code_paths(project.declarations.directories, modules, root)
    if missing:
        click.echo(
            f"warning: no code below the project root for {', '.join(missing)}: if the image must hold it, "
            "add its directory with --copy DIR (or install it from requirements.txt)",
            err=True,
        )
    paths = {f.relative.split("/")[0] for f in files if "/" in f.relative} | set(code) | set(extra_dirs)
    directories = sorted(p for p in paths if not (root / p).is_file())
    single_files = sorted(p for p in paths if (root / p).is_file())
    requirements = "requirements.txt" if (root / "requirements.txt").is_file() else None
    args = ["run", *(p.resolve().relative_to(root).as_posix() for p in options.paths)]
    pyproject = root / "pyproject.toml"
    from_source = pyproject.is_file() and 'name = "kpipe"' in pyproject.read_text(errors="replace")
    text = build(
        directories,
        python=python_version,
        kpipe_requirement=kpipe_requirement,
        kpipe_from_source=from_source,
        requirements=requirements,
        default_args=args,
        files=single_files,
    )
    _write(text, output)

"""`kpipe export`: the project described for other tools. Offline; imports no project code unless
--import-code is given."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
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


def _load(options: ProjectOptions, import_code: bool) -> Any:
    """The project as an export sees it: `local` left unresolved (nothing connects), project code imported
    only with --import-code."""
    return options.load(resolve_local=False, import_code=import_code)


def _write(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=not text.endswith("\n"))
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        click.echo(f"wrote {output}", err=True)


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

    project = _load(options, import_code)
    doc = document(project, title=title, version=doc_version, bootstrap_servers=options.bootstrap_servers)
    if output_format == "json":
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    else:
        from kpipe.export.text import dump_yaml

        text = dump_yaml(doc)
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
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Render the files as the pods will: with the --set-env values in the environment, and without this
    shell's KPIPE_BOOTSTRAP_SERVERS, which the pods do not get."""
    saved = {name: os.environ.get(name) for name in [*values, "KPIPE_BOOTSTRAP_SERVERS"]}
    os.environ.pop("KPIPE_BOOTSTRAP_SERVERS", None)
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


@export.command()
@project_options()
@click.option("--image", required=True, help="The image to run (see `kpipe export dockerfile`).")
@click.option("--namespace", "-n", help="Put every object in this namespace (default: none, kubectl's).")
@click.option("--name-prefix", default="", help="Prefix every object's name (e.g. the release name).")
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one file per object into this directory instead of one stream on stdout.",
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
    from kpipe.export.kubernetes import Options, manifests
    from kpipe.export.sources import project_root
    from kpipe.export.topology import topology
    from kpipe.loading.loader import display_path

    env_values = parse_vars(set_env, "--set-env")
    for label, value in (("--namespace", namespace), ("--secret-name", secret_name)):
        if value is not None and not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", value):
            raise click.BadParameter(
                f"'{value}' is not a Kubernetes name (lowercase letters, digits and '-')", param_hint=label
            )
    with _environment(env_values):
        project = _load(options, import_code=False)
    env = env_vars((f, display_path(f)) for f in project.files)
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
    )
    objects = manifests(
        project,
        topology(project),
        env,
        list(options.paths),
        list(options.values_files),
        options.variables,
        settings,
        root=project_root(options.paths[0], options.root),
    )
    _write_manifests(objects, output)


def _write_manifests(objects: list[dict[str, Any]], output: Path | None) -> None:
    from kpipe.export.text import dump_yaml, dump_yaml_stream

    if output is None:
        click.echo(dump_yaml_stream(objects), nl=False)
        return
    output.mkdir(parents=True, exist_ok=True)
    for i, obj in enumerate(objects):
        path = output / f"{i:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        path.write_text(dump_yaml(obj))
    click.echo(f"wrote {len(objects)} manifests to {output}", err=True)


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
    from kpipe.export.sources import project_files, project_root

    project = _load(options, import_code=False)
    root = project_root(options.paths[0], options.root)
    files = project_files(
        [*project.files, *project.inspection.schema_sources.values(), *options.values_files], root
    )
    directories = sorted({f.relative.split("/")[0] for f in files if "/" in f.relative} | set(extra_dirs))
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
    )
    _write(text, output)

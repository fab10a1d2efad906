"""`kpipe export`: the project described for other tools. Offline; imports no project code unless
--import-code is given."""

from __future__ import annotations

import re
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
    from kpipe.service.export import write_text

    if output is None:
        click.echo(text, nl=not text.endswith("\n"))
        return
    write_text(text, output)
    click.echo(f"wrote {output}", err=True)


def _warn(text: str) -> None:
    click.echo(text, err=True)


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
    from kpipe.service.export import asyncapi_text

    text = asyncapi_text(
        _load(options, import_code),
        output_format=output_format,
        title=title,
        version=doc_version,
        bootstrap_servers=options.bootstrap_servers,
    )
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
    from kpipe.service.export import graph_text

    _write(graph_text(_load(options, import_code=False), output_format), output)


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
    from kpipe.export.kubernetes import Options
    from kpipe.service.export import ProjectSource, kubernetes_manifests, write_manifests

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
        set_env=parse_vars(set_env, "--set-env"),
        secret_name=secret_name,
        shutdown_timeout=shutdown_timeout,
        keda=keda,
        hook=hook,
        job_suffix=job_suffix,
    )
    source = ProjectSource(
        paths=options.paths,
        load=lambda: _load(options, import_code=False),
        values_files=options.values_files,
        variables=options.variables,
        root=options.root,
    )
    objects = kubernetes_manifests(source, settings, warn=_warn)
    if output is None:
        from kpipe.export.text import dump_yaml_stream

        click.echo(dump_yaml_stream(objects), nl=False)
        return
    replaced = write_manifests(objects, output)
    removed = f" (replacing {replaced} earlier ones)" if replaced else ""
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
    help="pip requirement for kpipe (default: pyproject.toml's `kpipe @ URL` dependency, or the source when "
    "the project is kpipe's repository; not the bare name, which PyPI gives to an unrelated project).",
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
    """Write a Dockerfile for the project's image: wheels built from the project's own packaging (kpipe, the
    handler package and its dependencies), python slim, the project's directories, a non-root user, and
    `kpipe` as the entrypoint. With -o, also the project root's .dockerignore.

    \b
    Example:
      kpipe export dockerfile pipelines/ -o Dockerfile && docker build -t registry/orders:1.4 .
    """
    from kpipe.service.export import dockerfile_build, write_dockerignore

    project = _load(options, import_code=False)
    image = dockerfile_build(
        project,
        options.paths,
        options.values_files,
        python_version=python_version,
        kpipe_requirement=kpipe_requirement,
        extra_dirs=extra_dirs,
        warn=_warn,
    )
    _write(image.dockerfile, output)
    if output is not None:
        write_dockerignore(project.declarations.root / ".dockerignore", image.dockerignore, warn=_warn)
    else:
        click.echo("note: no .dockerignore written: give -o FILE to write it into the project root", err=True)

"""`kpipe export`: the project described for other tools. Offline; imports no project code unless
--import-code is given."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from kpipe.cli.common import bootstrap_option, default_paths, parse_vars, project_options

import_code_option = click.option(
    "--import-code",
    is_flag=True,
    help="Import handler and schema-model modules: runs project code (needed for pydantic-model payloads).",
)


def _load(
    paths: tuple[Path, ...],
    variables: tuple[str, ...],
    values_files: tuple[Path, ...],
    import_code: bool,
    bootstrap_servers: str | None = None,
) -> Any:
    from kpipe.compilation.project import load_project

    return load_project(
        default_paths(paths),
        variables=parse_vars(variables),
        values_files=list(values_files),
        bootstrap_override=bootstrap_servers,
        resolve_local=False,
        import_code=import_code,
    )


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
@project_options
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
@bootstrap_option
@import_code_option
def asyncapi(
    paths: tuple[Path, ...],
    variables: tuple[str, ...],
    values_files: tuple[Path, ...],
    output_format: str,
    output: Path | None,
    title: str | None,
    doc_version: str | None,
    bootstrap_servers: str | None,
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

    project = _load(paths, variables, values_files, import_code, bootstrap_servers)
    doc = document(project, title=title, version=doc_version, bootstrap_servers=bootstrap_servers)
    if output_format == "json":
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    else:
        import yaml

        text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=110)
    _write(text, output)


@export.command()
@project_options
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["mermaid", "dot"]),
    default="mermaid",
    show_default=True,
)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write to this file instead of stdout.")
def graph(
    paths: tuple[Path, ...],
    variables: tuple[str, ...],
    values_files: tuple[Path, ...],
    output_format: str,
    output: Path | None,
) -> None:
    """Draw the topology: producers → topics → consumer groups, with dead-letter routes and emits.

    \b
    Examples:
      kpipe export graph pipelines/                      # Mermaid, for a README
      kpipe export graph pipelines/ --format dot | dot -Tsvg > topology.svg
    """
    from kpipe.export.graph import FORMATS
    from kpipe.export.topology import topology

    project = _load(paths, variables, values_files, import_code=False)
    _write(FORMATS[output_format](topology(project)), output)

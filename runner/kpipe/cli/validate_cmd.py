"""Offline commands: validate, render, schema, explain. None of them connects to a cluster."""

from __future__ import annotations

import json
from pathlib import Path

import click

from kpipe.cli.common import (
    ProjectOptions,
    consumer_config_option,
    import_code_option,
    parse_vars,
    print_diagnostics,
    project_options,
)
from kpipe.errors import EXIT_INVALID, EXIT_OK, PipelineInvalid


@click.command()
@project_options()
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "github"]),
    default="text",
    show_default=True,
    help="text for people, json for tools, github for GitHub Actions annotations.",
)
@import_code_option
@click.option(
    "--against",
    metavar="REF",
    help="Check schema changes for compatibility against a git ref (e.g. origin/main) or a directory.",
)
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
def validate(
    options: ProjectOptions, output_format: str, import_code: bool, against: str | None, strict: bool
) -> int:
    """Check pipeline files offline: YAML, templates, every field and every reference.

    Reports every problem at once as FILE:LINE:COL: error: MESSAGE. Exits 0 when the project is valid, 1 when
    it is not. Runs no project code: handlers and pydantic-model schemas are checked without importing them,
    unless --import-code.

    \b
    Examples:
      kpipe validate pipelines/
      kpipe validate pipelines/ --values pipelines/values/prod.yaml
      kpipe validate pipelines/ --format github --against origin/main
    """
    from kpipe.cli.output_guard import annotation_lines
    from kpipe.diagnostics import render_github, render_json, sort_diagnostics, summary_line

    inspection = options.inspect(import_code=import_code)
    diagnostics = list(inspection.diagnostics)
    if import_code and inspection.valid:
        from kpipe.check.handlers import check_handlers as run_handler_checks

        diagnostics += run_handler_checks(inspection.declarations)
    if against and inspection.valid:
        from kpipe.schemas.evolution import check_evolution

        diagnostics += check_evolution(
            inspection,
            against,
            paths=list(options.paths),
            inspect=options.inspect,
            import_code=import_code,
        )
    diagnostics = sort_diagnostics(diagnostics)
    files = len(inspection.files) + len(set(inspection.schema_sources.values()))
    if output_format == "json":
        click.echo(render_json(diagnostics, files))
    elif output_format == "github":
        if diagnostics:
            click.echo(annotation_lines(render_github(diagnostics)))
        click.echo(summary_line(diagnostics, files), err=True)
    else:
        print_diagnostics(diagnostics, files)
    failed = any(d.is_error for d in diagnostics) or (strict and diagnostics)
    return EXIT_INVALID if failed else EXIT_OK


@click.command()
@project_options()
@click.option(
    "--show-secrets",
    is_flag=True,
    help="Print env() values and secret settings as they are (default: env('NAME') and *****).",
)
def render(options: ProjectOptions, show_secrets: bool) -> None:
    """Print each pipeline file after Jinja2 rendering (what kpipe parses).

    Values that came from env() are shown as env('NAME') and secret settings (sasl.password, ...) as *****,
    unless --show-secrets (a flag: no file can turn it on). What a template did to an env() value is shown
    as it is: the template only ever saw an opaque token, never the value (see docs/security.md).

    \b
    Example:
      kpipe render pipelines/ --values pipelines/values/prod.yaml
    """
    from kpipe.redaction import escape_controls, escape_line, reveal, safe_block, safe_text

    loaded = options.documents()
    if any(d.is_error for d in loaded.diagnostics):
        raise PipelineInvalid(loaded.diagnostics)
    for i, document in enumerate(loaded.documents):
        if i:
            click.echo("---")
        text = document.rendered_text.rstrip("\n")
        if show_secrets:
            click.echo(escape_line(f"# {document.display}"))
            click.echo(escape_controls(reveal(text, remember=False)))
        else:
            click.echo(safe_text(f"# {document.display}"))
            click.echo(safe_block(text))


@click.command()
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write to a file instead of stdout.")
def schema(output: Path | None) -> None:
    """Print the JSON Schema of the pipeline file format.

    Point your editor at it for completion and checks while you type, e.g. in VS Code's YAML extension:

    \b
      kpipe schema -o .kpipe.schema.json
      # .vscode/settings.json: {"yaml.schemas": {".kpipe.schema.json": "pipelines/*.yaml"}}
    """
    from kpipe.model.pipeline import PipelineFile

    document = PipelineFile.model_json_schema(by_alias=True)
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    text = json.dumps(document, indent=2)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text)


@click.command()
@click.argument("name")
@project_options(bootstrap=True)
@click.option(
    "--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@consumer_config_option
@click.option(
    "--instance",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Which instance of a consumer group (each has a client.id of its own).",
)
@import_code_option
def explain(
    name: str,
    options: ProjectOptions,
    output_format: str,
    consumer_config: tuple[str, ...],
    instance: int,
    import_code: bool,
) -> None:
    """Show the final librdkafka settings of producer or consumer group NAME, and where each came from.

    Secrets (sasl.password, ssl.key.password, ...) are redacted.

    \b
    Example:
      kpipe explain order-processors pipelines/
    """
    from kpipe.compilation.explain import explain_client

    project = options.load(
        resolve_local=False,
        consumer_overrides=parse_vars(consumer_config, "--consumer-config"),
        import_code=import_code,
    )
    click.echo(explain_client(project, name, output_format, instance=instance))

"""What every command shares: the project options, output streams, and the error → exit-code mapping."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from kpipe.errors import EXIT_USAGE, KpipeError, PipelineInvalid


def run_cli(cli: click.Group, argv: list[str] | None) -> int:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        # In non-standalone mode click returns a command's ctx.exit(n) code instead of raising it.
        rc = cli.main(args=argv, standalone_mode=False, prog_name="kpipe")
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code if exc.exit_code != 1 else EXIT_USAGE
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except PipelineInvalid as exc:
        if debug:
            raise
        print_diagnostics(exc.diagnostics)
        return exc.exit_code
    except KpipeError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return rc if isinstance(rc, int) else 0


def print_diagnostics(diagnostics: list, files_checked: int | None = None) -> None:
    from kpipe.diagnostics import render_text, sort_diagnostics, summary_line

    ordered = sort_diagnostics(diagnostics)
    if ordered:
        click.echo(render_text(ordered), err=True)
    click.echo(summary_line(ordered, files_checked), err=True)


def project_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """PATHS, --var and --values: how every command that reads a project is told where it is."""
    func = click.option(
        "--values",
        "values_files",
        multiple=True,
        type=click.Path(path_type=Path),
        help="A YAML file of template variables (repeatable; later files win).",
    )(func)
    func = click.option(
        "--var",
        "variables",
        multiple=True,
        metavar="KEY=VALUE",
        help="Set a template variable (repeatable; wins over --values).",
    )(func)
    func = click.argument("paths", nargs=-1, type=click.Path(path_type=Path))(func)
    return func


def parse_vars(pairs: Iterable[str], option: str = "--var") -> dict[str, str]:
    """KEY=VALUE pairs from a repeatable option, as a dict (a malformed pair is a usage error)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=option)
        out[key.strip()] = value
    return out


bootstrap_option = click.option(
    "--bootstrap-servers",
    "-b",
    metavar="HOST:PORT[,…]",
    envvar="KPIPE_BOOTSTRAP_SERVERS",
    help="Use these brokers instead of the files' cluster.bootstrap_servers; `local` means the embedded broker "
    "(env: KPIPE_BOOTSTRAP_SERVERS).",
)

consumer_config_option = click.option(
    "-X",
    "--consumer-config",
    "consumer_config",
    multiple=True,
    metavar="KEY=VALUE",
    help="Extra librdkafka consumer setting, applied last (repeatable); `kpipe explain` takes the same.",
)


def default_paths(paths: tuple[Path, ...]) -> list[Path]:
    return list(paths) or [Path("pipelines")]

"""What every command shares: the project options object, output of diagnostics, and the one place where an
exception becomes an exit code.

A command is a function that parses nothing itself: `@project_options` hands it a ProjectOptions, it calls
one function of a lower layer, prints, and returns an exit code (or None for 0). It raises KpipeError for
anything that went wrong; `exit_code_for` decides what the user sees and which code the process ends with.
"""

from __future__ import annotations

import functools
import gc
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from kpipe.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, KpipeError, PipelineInvalid

if TYPE_CHECKING:
    from kpipe.compilation.project import Inspection
    from kpipe.loading.loader import LoadResult
    from kpipe.service.load import Project
    from kpipe.topics.cluster import KafkaCluster

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_PROJECT_PATH = Path("pipelines")


# -- exit codes ----------------------------------------------------------------------------------------------------


def run_cli(cli: click.Group, argv: list[str] | None) -> int:
    """Run the command line and return the process exit code; never raises for a kpipe or usage error."""
    from kpipe.cli.output_guard import guarded_output

    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    with guarded_output():  # no line printed can start a GitHub Actions command unless kpipe wrote it
        try:
            # Not standalone: click hands back what the command returned instead of exiting with it.
            code = cli.main(args=argv, standalone_mode=False, prog_name="kpipe")
        except (Exception, KeyboardInterrupt) as exc:
            return exit_code_for(exc, debug=debug)
    return code if isinstance(code, int) else EXIT_OK


def exit_code_for(exc: BaseException, *, debug: bool = False) -> int:
    """Tell the user what went wrong, in one line (or every diagnostic), and return the exit code for it.

    The only place an exception becomes an exit code. Anything that is neither a kpipe error nor a click usage
    error is a bug: it is re-raised with its traceback. Under --debug a kpipe error's traceback is printed
    too, and the exit code stays the one it would be without --debug.
    """
    if isinstance(exc, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    if isinstance(exc, click.exceptions.Abort):  # Ctrl-C or end of input at a prompt
        click.echo("aborted", err=True)
        return EXIT_INTERRUPTED
    if isinstance(exc, click.exceptions.Exit):  # --help, --version
        return exc.exit_code
    if isinstance(exc, click.ClickException):
        exc.show()
        return EXIT_USAGE if exc.exit_code == 1 else exc.exit_code
    if not isinstance(exc, KpipeError):
        raise exc
    from kpipe.redaction import safe_block, safe_text

    if debug:
        import traceback

        click.echo(safe_block("".join(traceback.format_exception(exc))).rstrip(), err=True)
    if isinstance(exc, PipelineInvalid):
        print_diagnostics(exc.diagnostics)
    else:
        click.echo(safe_text(f"error: {exc}"), err=True)
    return exc.exit_code


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the work of a command that loads the project, does one
    bounded thing with it and ends (plan, apply); the collector is as it was afterwards.

    That work makes tens of thousands of objects that all live until the command ends (the parsed files, the
    models, the plan), and almost no cyclic garbage: each collection would walk them all to find nothing,
    about a tenth of `kpipe apply`'s own time on 1,000 topics. Never around a command that keeps running
    (run, dev, tail), whose garbage must be collected.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def print_diagnostics(diagnostics: list, files_checked: int | None = None) -> None:
    from kpipe.diagnostics import render_text, sort_diagnostics, summary_line

    ordered = sort_diagnostics(diagnostics)
    if ordered:
        click.echo(render_text(ordered), err=True)
    click.echo(summary_line(ordered, files_checked), err=True)


# -- the project a command works on -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectOptions:
    """Where a command's project is and how to render it: PATHS, --var, --values, and -b where it connects.

    Every command reads its project through these methods, so a new way of finding or loading a project is
    added here once.
    """

    paths: tuple[Path, ...] = (DEFAULT_PROJECT_PATH,)
    variables: dict[str, str] = field(default_factory=dict)
    values_files: tuple[Path, ...] = ()
    bootstrap_servers: str | None = None
    # --root: no file outside it is read; None finds it from the paths (kpipe.loading.files.project_root).
    root: Path | None = None

    def documents(self) -> LoadResult:
        """The rendered files, before any validation (for `render`)."""
        from kpipe.compilation.project import read_documents

        return read_documents(
            self.paths, variables=self.variables, values_files=self.values_files, root=self.root
        )

    def inspect(
        self, paths: Iterable[Path] | None = None, *, root: Path | None = None, import_code: bool = False
    ) -> Inspection:
        """Every diagnostic of the project (or of the same project at other `paths` under another `root`, as
        `validate --against` loads the previous version), valid or not. Project code is imported only with
        `import_code` (else handlers and models are checked statically)."""
        from kpipe.compilation.project import inspect_project

        variables, values_files = self.variables, self.values_files
        if root is not None and values_files:
            # Another tree: the --values files are this project's, read once under this project's own root.
            from kpipe.loading.files import ProjectFiles, project_root
            from kpipe.loading.loader import load_values

            own_root = ProjectFiles(project_root(self.paths, self.root))
            variables, _ = load_values(values_files, variables, own_root)
            values_files = ()
        return inspect_project(
            list(paths) if paths is not None else self.paths,
            variables=variables,
            values_files=values_files,
            root=root or self.root,
            import_code=import_code,
        )

    def load(
        self,
        *,
        resolve_local: bool = True,
        consumer_overrides: Mapping[str, str] | None = None,
        import_code: bool = True,
        check_code: bool = True,
    ) -> Project:
        """The valid, compiled project; PipelineInvalid with every diagnostic when it is not.

        -b wins over KPIPE_BOOTSTRAP_SERVERS, which wins over the files. `bootstrap_servers: local` is resolved
        to the running local broker here, at the edge (LocalBrokerError when none runs), unless
        `resolve_local=False` (for commands that start or explain the local broker). `consumer_overrides` are
        `-X` settings every consumer group's config gets last. `import_code` imports pydantic-model schemas
        (what running needs); offline commands pass False (and check_code=False when they need no check of
        project code either, as plan)."""
        from kpipe.service.load import load

        return load(
            self.paths,
            variables=self.variables,
            values_files=self.values_files,
            bootstrap_override=self.bootstrap_servers,
            root=self.root,
            resolve_local=resolve_local,
            consumer_overrides=consumer_overrides,
            import_code=import_code,
            check_code=check_code,
        )

    def connect(self, timeout: float) -> tuple[Project, KafkaCluster]:
        """The project as the commands that read the cluster need it (no project code imported or checked),
        with its warnings printed to stderr, and a client of its cluster, which the caller closes."""
        from kpipe.topics.cluster import connect

        project = self.load(import_code=False, check_code=False)
        if project.warnings:
            from kpipe.diagnostics import render_text, sort_diagnostics

            click.echo(render_text(sort_diagnostics(project.warnings)), err=True)
        # The client config may hold secrets (sasl.password, …): it goes to the cluster clients, never to output.
        return project, connect(project.cluster_client_config().as_dict(), timeout=timeout)


def project_options(*, bootstrap: bool = False) -> Callable[[F], F]:
    """Give a command PATHS, --var and --values (and --bootstrap-servers when `bootstrap`), and call it with
    one `options: ProjectOptions` instead of those parameters."""

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def wrapper(
            *args: Any,
            paths: tuple[Path, ...],
            variables: tuple[str, ...],
            values_files: tuple[Path, ...],
            root: Path | None = None,
            bootstrap_servers: str | None = None,
            **kwargs: Any,
        ) -> Any:
            options = ProjectOptions(
                paths=paths or (DEFAULT_PROJECT_PATH,),
                variables=parse_vars(variables),
                values_files=values_files,
                bootstrap_servers=bootstrap_servers or None,
                root=root,
            )
            return command(*args, options=options, **kwargs)

        decorated: Any = wrapper
        if bootstrap:
            decorated = bootstrap_option(decorated)
        decorated = click.option(
            "--root",
            type=click.Path(path_type=Path, file_okay=False),
            help="The project root: no file outside it is read (default: the nearest directory above the "
            "first path holding .git or pyproject.toml, else the working directory).",
        )(decorated)
        decorated = click.option(
            "--values",
            "values_files",
            multiple=True,
            type=click.Path(path_type=Path),
            help="A YAML file of template variables (repeatable; later files win).",
        )(decorated)
        decorated = click.option(
            "--var",
            "variables",
            multiple=True,
            metavar="KEY=VALUE",
            help="Set a template variable (repeatable; wins over --values).",
        )(decorated)
        decorated = click.argument("paths", nargs=-1, type=click.Path(path_type=Path))(decorated)
        return decorated  # type: ignore[no-any-return]

    return decorate


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

import_code_option = click.option(
    "--import-code",
    "--check-handlers",
    "import_code",
    is_flag=True,
    help="Import handler and model modules: runs project code (default: checked without running them).",
)

# The commands that talk to the cluster (plan, apply, status).
cluster_timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the cluster to answer before giving up (exit 3).",
)

# `kpipe run` takes it; `kpipe export kubernetes` passes it on to the pods' `kpipe run`.
shutdown_timeout_option = click.option(
    "--shutdown-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How long workers get to commit and exit after SIGTERM before they are killed.",
)

consumer_config_option = click.option(
    "-X",
    "--consumer-config",
    "consumer_config",
    multiple=True,
    metavar="KEY=VALUE",
    help="Extra librdkafka consumer setting, applied last (repeatable); `kpipe explain` takes the same.",
)

"""`kpipe test`: run YAML test cases against the project's consumer groups in memory (no broker, no socket)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import click

from kpipe.cli.common import ProjectOptions, print_diagnostics, project_options
from kpipe.errors import EXIT_INVALID, EXIT_OK, UsageError


class _CasesCommand(click.Command):
    """`--cases A B C` as written in `kpipe test PATHS... --cases FILE_OR_DIR...`: every argument after --cases up
    to the next option is a case file or directory (click's options take one value each)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rewritten: list[str] = []
        taking = False
        for arg in args:
            if arg == "--":
                taking = False
            elif arg.startswith("-"):
                taking = arg == "--cases"
                if taking:
                    continue
            elif taking:
                rewritten += ["--cases", arg]
                continue
            rewritten.append(arg)
        return super().parse_args(ctx, rewritten)


@click.command(name="test", cls=_CasesCommand)
@project_options()
@click.option(
    "--cases",
    "case_paths",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    metavar="FILE_OR_DIR",
    help="Test case files or directories of them (*.yaml, *.yml): every argument up to the next option.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "junit"]),
    default="text",
    show_default=True,
    help="text: PASS/FAIL lines; junit: JUnit XML (to -o FILE, else stdout).",
)
@click.option(
    "-o", "--output", type=click.Path(path_type=Path, dir_okay=False), help="Write the JUnit XML here."
)
@click.option("-k", "match", metavar="TEXT", help="Run only the cases whose name contains TEXT.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Seconds a case's handlers may take before the case fails.",
)
@click.option("-v", "--verbose", is_flag=True, help="Show the consumer groups' log lines on stderr.")
def test(
    options: ProjectOptions,
    case_paths: tuple[Path, ...],
    output_format: str,
    output: Path | None,
    match: str | None,
    timeout: float,
    verbose: bool,
) -> int:
    """Run test cases against the pipeline's consumer groups, in memory: no broker, no socket, no process.

    Each case sends its `given` events, runs the groups' handlers (retries, dead letters, emits into other
    groups, as `kpipe run` does) until no event is left, and compares the outcome with its `expect`.
    Prints PASS or FAIL per case; exits 0 when every case passes, 1 when one fails or a case file is invalid.
    See docs/testing.md for the case file format.

    \b
    Examples:
      kpipe test pipelines/ --cases pipeline-tests/
      kpipe test pipelines/ --cases pipeline-tests/orders.yaml pipeline-tests/users.yaml -k refused
      kpipe test pipelines/ --cases pipeline-tests/ --format junit -o kpipe-tests.xml
    """
    from kpipe.loading.files import ProjectFiles, project_root
    from kpipe.testing.cases import load_cases
    from kpipe.testing.harness import load_memory_project
    from kpipe.testing.report import junit_xml, summary, text_lines
    from kpipe.testing.runner import run_cases

    project = load_memory_project(
        options.paths, variables=options.variables, values_files=options.values_files, root=options.root
    )
    files = ProjectFiles(project_root(options.paths, options.root))
    cases, problems = load_cases(list(case_paths), project, files)
    if problems:
        print_diagnostics(problems)
        return EXIT_INVALID
    if match:
        cases = [c for c in cases if match in c.name]
        if not cases:
            raise UsageError(f"no case name contains '{match}'")
    started = time.perf_counter()
    results = []
    to_stdout = output_format == "text" or output is not None
    with _worker_logs(verbose):
        for result in run_cases(cases, project, timeout=timeout):
            results.append(result)
            if to_stdout:
                for line in text_lines(result):
                    click.echo(line)
    seconds = time.perf_counter() - started
    if output_format == "junit":
        xml = junit_xml(results)
        if output is not None:
            output.write_text(xml, encoding="utf-8")
        else:
            click.echo(xml, nl=False)
    click.echo(summary(results, seconds), err=True)
    return EXIT_OK if all(r.passed for r in results) else EXIT_INVALID


@contextlib.contextmanager
def _worker_logs(verbose: bool) -> Iterator[None]:
    """The workers log as under `kpipe run` (retries, dead letters...): shown with --verbose, else kept quiet,
    since the case results say what happened."""
    logger = logging.getLogger("kpipe")
    saved = logger.level, logger.propagate, list(logger.handlers)
    handler: logging.Handler = logging.StreamHandler() if verbose else logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO if verbose else logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        logger.handlers = saved[2]

"""The `kpipe` command line: a thin layer that parses options, calls one function, prints, and returns an exit code.

Commands live in their own modules and are imported only when invoked, so `kpipe --help` does not import
confluent_kafka or build schema models. A command that reads a project takes `@project_options` (one
ProjectOptions object); exceptions become exit codes in one place, `kpipe.cli.common.exit_code_for`.

May import every stage below it; nothing imports kpipe.cli.

Imports: kpipe (for __version__), kpipe.service, kpipe.testing, kpipe.operate, kpipe.export, kpipe.observe, kpipe.local, kpipe.runtime,
    kpipe.topics, kpipe.compilation, kpipe.check, kpipe.schemas, kpipe.model, kpipe.loading, kpipe.errors,
    kpipe.diagnostics, kpipe.logs, kpipe.redaction.
"""

from __future__ import annotations

import gc
import importlib
import sys

import click

from kpipe import __version__

# command name -> "module:attribute"; the module is imported only when the command runs or shows its help.
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": (
        "kpipe.cli.validate_cmd:validate",
        "Check pipeline files offline: YAML, templates, fields, references.",
    ),
    "render": ("kpipe.cli.validate_cmd:render", "Print the project after Jinja2 rendering."),
    "schema": (
        "kpipe.cli.validate_cmd:schema",
        "Print the JSON Schema of the pipeline file format (for editors).",
    ),
    "explain": (
        "kpipe.cli.validate_cmd:explain",
        "Show the final librdkafka settings of a producer or group, and their origin.",
    ),
    "plan": ("kpipe.cli.plan_cmd:plan", "Compare declared topics with the cluster; show the changes."),
    "apply": ("kpipe.cli.plan_cmd:apply", "Create or update topics so the cluster matches the files."),
    "status": (
        "kpipe.cli.status_cmd:status",
        "Show consumer groups' state, members and lag, and whether declared topics are in sync.",
    ),
    "run": ("kpipe.cli.run_cmd:run", "Run consumer groups as supervised worker processes."),
    "produce": ("kpipe.cli.run_cmd:produce", "Send JSON-lines events through a declared producer."),
    "broker": ("kpipe.cli.dev_cmd:broker", "Run the embedded local Kafka-protocol broker in the foreground."),
    "dev": ("kpipe.cli.dev_cmd:dev", "Local loop: broker, apply, run the groups, live table."),
    "test": ("kpipe.cli.test_cmd:test", "Run YAML test cases against the consumer groups, in memory."),
    "export": (
        "kpipe.cli.export_cmd:export",
        "Describe the project for other tools: AsyncAPI, graph, Kubernetes, Dockerfile.",
    ),
    "tail": ("kpipe.cli.tail_cmd:tail", "Print a topic's events, decoded and checked against its schema."),
    "dlq": (
        "kpipe.cli.dlq_cmd:dlq",
        "Summarise dead-letter topics; `dlq replay` sends their events back.",
    ),
    "offsets": ("kpipe.cli.offsets_cmd:offsets", "Reset a consumer group's committed offsets, as a plan."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n in COMMANDS if _module_exists(COMMANDS[n][0]))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target[0].split(":")
        module = importlib.import_module(module_name)
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help from the table, so listing commands imports none of them.
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _module_exists(target: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(target.split(":")[0]) is not None


@click.group(
    cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110}
)
@click.version_option(__version__, prog_name="kpipe")
@click.option("--debug", is_flag=True, envvar="KPIPE_DEBUG", help="Show tracebacks for kpipe errors too.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """kpipe: declarative YAML pipelines for Apache Kafka.

    Describe topics, event schemas, producers and consumer groups in YAML; validate them offline,
    apply the topics to a cluster, and run the consumer groups.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn kpipe errors into one-line messages and exit codes."""
    from kpipe.cli.common import run_cli

    code = run_cli(cli, argv)
    # The process ends here. Every object the command made is moved out of the collector's reach, so the
    # interpreter's last collections at exit do not walk them all (a tenth of a second after loading a large
    # project) only to free memory the operating system takes back anyway.
    gc.freeze()
    sys.exit(code)

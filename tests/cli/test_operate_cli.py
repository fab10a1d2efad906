"""`kpipe tail`, `kpipe dlq` and `kpipe offsets` by their output and exit codes, where no broker is needed: usage
errors come before any connection, and an unreachable cluster is one line, exit 3, with no secret in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import kpipe
from kpipe.errors import EXIT_CLUSTER, EXIT_USAGE

NOWHERE = "127.0.0.1:1"  # nothing listens on port 1


def write_project(directory: Path, *, dead_letters: bool = True) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    on_error = "{retries: 0}" if dead_letters else "{action: skip}"
    (directory / "project.yaml").write_text(
        f"""\
cluster:
  bootstrap_servers: "{NOWHERE}"
  config:
    sasl.password: hunter2-secret
topics:
  orders: {{partitions: 3, replication_factor: 1}}
consumers:
  billing:
    topics: [orders]
    handler: app:handle
    on_error: {on_error}
"""
    )
    return str(directory)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tail", "orders", "P", "--from", "yesterday"], "error: --from: 'yesterday' is not a position"),
        (["offsets", "billing", "P"], "error: give one of --to earliest|latest|DATETIME|OFFSET or --shift N"),
        (["offsets", "billing", "P", "--to", "latest", "--shift", "3"], "error: give one of --to"),
        (["offsets", "billing", "P", "--to", "-5"], "error: --to: '-5' is not a position"),
        (
            ["dlq", "replay", "orders.dlq", "P", "--since", "soon"],
            "error: --since: 'soon' is not a date and time",
        ),
    ],
)
def test_usage_errors_are_one_line_before_any_connection(
    tmp_path: Path, args: list[str], message: str
) -> None:
    project = write_project(tmp_path)
    code, out, err = (
        kpipe(*args[:2], project, *args[2:]) if args[0] != "dlq" else kpipe(*args[:3], project, *args[3:])
    )
    assert code == EXIT_USAGE, err
    assert err.startswith(message) and len(err.splitlines()) == 1, err
    assert out == ""


@pytest.mark.parametrize(
    "args",
    [
        ["tail", "orders", "P"],
        ["dlq", "P"],
        ["dlq", "replay", "billing.dlq", "P"],
        ["offsets", "billing", "P", "--to", "earliest"],
    ],
)
def test_an_unreachable_cluster_is_one_line_exit_3_without_secrets(tmp_path: Path, args: list[str]) -> None:
    project = write_project(tmp_path)
    code, out, err = kpipe(*(project if a == "P" else a for a in args), "--timeout", "1")
    assert code == EXIT_CLUSTER, err
    assert err == f"error: cannot reach Kafka at {NOWHERE} within 1 s (listing topics: _TRANSPORT)\n"
    assert "hunter2" not in out + err


def test_dlq_without_dead_letter_topics_says_how_to_name_one(tmp_path: Path) -> None:
    code, out, err = kpipe("dlq", write_project(tmp_path, dead_letters=False), "--timeout", "1")
    assert (code, out) == (EXIT_USAGE, "")
    assert err == (
        "error: no consumer group writes dead letters (on_error.action: dead_letter); name a topic with --topic\n"
    )


def test_an_unknown_group_suggests_the_closest_before_connecting(tmp_path: Path) -> None:
    code, _, err = kpipe("offsets", "biling", write_project(tmp_path), "--to", "earliest", "--timeout", "1")
    assert code == EXIT_USAGE
    assert err.startswith("error: no consumer group named 'biling'; did you mean 'billing'"), err


def test_a_topic_the_group_does_not_read_is_refused_before_connecting(tmp_path: Path) -> None:
    code, _, err = kpipe(
        "offsets", "billing", write_project(tmp_path), "--to", "earliest", "--topic", "refunds"
    )
    assert code == EXIT_USAGE
    assert err == "error: --topic refunds: consumer group 'billing' does not read it (it reads orders)\n"


def test_dlq_help_lists_replay_and_the_summary_takes_paths(tmp_path: Path) -> None:
    code, out, _ = kpipe("dlq", "--help")
    assert code == 0 and "replay" in out and "kpipe dlq [PATHS]..." in out
    code, out, _ = kpipe("dlq", "replay", "--help")
    assert code == 0 and out.startswith("Usage: kpipe dlq replay [OPTIONS] DLQ [PATHS]...")

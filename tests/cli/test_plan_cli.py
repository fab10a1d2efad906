"""`kpipe plan` and `kpipe apply` by their output and exit codes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from helpers import kpipe

NOWHERE = "127.0.0.1:1"  # nothing listens on port 1


def write_project(
    directory: Path, prefix: str, *, partitions: int = 3, retention: str = "1000", extra: str = ""
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "project.yaml"
    path.write_text(
        f"""\
cluster:
  bootstrap_servers: "{NOWHERE}"
topics:
  {prefix}.orders:
    partitions: {partitions}
    replication_factor: 1
    key: id
    config:
      retention.ms: {retention}
consumers:
  {prefix}-billing:
    topics: [{prefix}.orders]
    handler: app:handle
{extra}"""
    )
    return path


def ours(text: str) -> str:
    """The output without the count of other tests' topics on the shared broker (or an external cluster's)."""
    return "".join(line for line in text.splitlines(keepends=True) if "not declared in any file" not in line)


def topics_on(bootstrap: str, prefix: str) -> dict[str, int]:
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    return {n: len(t.partitions) for n, t in metadata.topics.items() if n.startswith(prefix)}


def test_plan_apply_plan_round_trip(tmp_path: Path, prefix: str, kafka_bootstrap: str) -> None:
    project = str(write_project(tmp_path, prefix))
    b = ["--bootstrap-servers", kafka_bootstrap]

    code, out, err = kpipe("plan", project, *b, "--detailed-exitcode")
    assert (code, err) == (2, "")
    assert ours(out).splitlines() == [
        f"+ create topic {prefix}-billing.dlq (partitions 3, replication 1, dead-letter topic)",
        f"+ create topic {prefix}.orders (partitions 3, replication 1)",
        "    retention.ms = 1000",
        "Plan: 2 to create, 0 to update, 0 to delete.",
    ]
    code, out, _ = kpipe("plan", project, *b)
    assert code == 0  # without --detailed-exitcode, pending changes are not a failure

    code, out, err = kpipe("apply", project, *b, "--yes")
    assert (code, err) == (0, "")
    lines = ours(out).splitlines()
    assert lines[4:6] == [f"created topic {prefix}-billing.dlq", f"created topic {prefix}.orders"]
    assert lines[6].startswith("Apply complete: 2 created, 0 updated, 0 deleted in ")
    assert topics_on(kafka_bootstrap, prefix) == {f"{prefix}-billing.dlq": 3, f"{prefix}.orders": 3}

    code, out, err = kpipe("apply", project, *b, "--yes")
    assert (code, ours(out), err) == (0, "No changes: the cluster matches the files (2 topics).\n", "")
    code, out, _ = kpipe("plan", project, *b, "--detailed-exitcode")
    assert (code, ours(out)) == (0, "No changes: the cluster matches the files (2 topics).\n")


def test_plan_json_and_config_drift(tmp_path: Path, prefix: str, kafka_bootstrap: str) -> None:
    b = ["-b", kafka_bootstrap]
    assert kpipe("apply", str(write_project(tmp_path, prefix)), *b, "--yes")[0] == 0
    project = str(write_project(tmp_path, prefix, retention="2000"))
    code, out, err = kpipe("plan", project, *b, "--format", "json", "--detailed-exitcode")
    assert (code, err) == (2, "")
    data = json.loads(out)
    assert data["summary"] == {"create": 0, "update": 1, "delete": 0, "refused": 0}
    assert data["changes"] == [
        {
            "action": "update_config",
            "topic": f"{prefix}.orders",
            "config": [{"key": "retention.ms", "old": "1000", "new": "2000"}],
            "refused": None,
            "warnings": [],
        }
    ]
    code, out, _ = kpipe("apply", project, *b, "--yes")
    assert code == 0
    assert ours(out).splitlines()[:3] == [
        f"~ update config of topic {prefix}.orders",
        "    retention.ms: 1000 -> 2000",
        "Plan: 0 to create, 1 to update, 0 to delete.",
    ]
    assert f"updated config of topic {prefix}.orders" in out
    assert kpipe("plan", project, *b, "--detailed-exitcode")[0] == 0


def test_env_bootstrap_is_used_and_the_option_wins(tmp_path: Path, prefix: str, kafka_bootstrap: str) -> None:
    project = str(write_project(tmp_path, prefix))
    code, _, err = kpipe(
        "plan", project, "--detailed-exitcode", env={"KPIPE_BOOTSTRAP_SERVERS": kafka_bootstrap}
    )
    assert (code, err) == (2, "")
    code, _, err = kpipe(
        "plan",
        project,
        "-b",
        kafka_bootstrap,
        "--detailed-exitcode",
        env={"KPIPE_BOOTSTRAP_SERVERS": NOWHERE},
    )
    assert (code, err) == (2, "")


def test_apply_needs_yes_when_not_on_a_terminal(tmp_path: Path, prefix: str, kafka_bootstrap: str) -> None:
    code, out, err = kpipe("apply", str(write_project(tmp_path, prefix)), "-b", kafka_bootstrap)
    assert code == 2
    assert (
        err == "error: not on a terminal and no --yes: refusing to change the cluster without confirmation\n"
    )
    assert "Plan: 2 to create" in out
    assert topics_on(kafka_bootstrap, prefix) == {}


def test_apply_asks_on_a_terminal(
    tmp_path: Path, prefix: str, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kpipe.cli.plan_cmd as plan_cmd

    monkeypatch.setattr(plan_cmd, "_interactive", lambda: True)
    project = str(write_project(tmp_path, prefix))
    code, out, err = kpipe("apply", project, "-b", kafka_bootstrap, stdin="n\n")
    assert code == 1
    assert out.endswith("Apply these changes? [y/N]: n\n")
    assert err == "Apply cancelled; nothing changed.\n"
    assert topics_on(kafka_bootstrap, prefix) == {}

    code, out, _ = kpipe("apply", project, "-b", kafka_bootstrap, stdin="y\n")
    assert code == 0
    assert f"created topic {prefix}.orders" in out
    assert len(topics_on(kafka_bootstrap, prefix)) == 2


def test_partition_decrease_is_refused_with_exit_4(tmp_path: Path, prefix: str, kafka_bootstrap: str) -> None:
    b = ["-b", kafka_bootstrap]
    assert kpipe("apply", str(write_project(tmp_path, prefix, partitions=3)), *b, "--yes")[0] == 0
    project = str(write_project(tmp_path, prefix, partitions=1, retention="5"))
    code, out, err = kpipe("plan", project, *b, "--detailed-exitcode")
    assert code == 4
    assert f"! decrease partitions of topic {prefix}.orders: 3 -> 1" in out.splitlines()
    # The derived dead-letter topic already exists: its partition count is not managed, so only the
    # declared topic's decrease is refused.
    assert f"{prefix}-billing.dlq" not in out
    assert err == (
        f"error: refusing to decrease partitions of topic {prefix}.orders: 3 -> 1: Kafka cannot remove partitions "
        "from a topic; recreate it under a new name (or delete it) to have fewer\n"
    )
    code, _, err = kpipe("apply", project, *b, "--yes")
    assert code == 4
    assert topics_on(kafka_bootstrap, prefix)[f"{prefix}.orders"] == 3


def test_invalid_files_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("topics:\n  t:\n    partitions: zero\n")
    code, out, err = kpipe("plan", str(path), "--detailed-exitcode", "-b", NOWHERE)
    assert code == 1
    assert out == ""
    assert f"{path}:3:17: error:" in err


def test_unreachable_broker_is_one_line_exit_3_within_the_timeout(tmp_path: Path) -> None:
    project = write_project(
        tmp_path,
        "x",
        extra="",
    )
    # A secret in the cluster config must never be printed.
    project.write_text(
        project.read_text().replace(
            f'  bootstrap_servers: "{NOWHERE}"\n',
            f'  bootstrap_servers: "{NOWHERE}"\n  config:\n    sasl.password: hunter2-secret\n',
        )
    )
    started = time.monotonic()
    code, out, err = kpipe("plan", str(project), "--timeout", "1.5")
    elapsed = time.monotonic() - started
    assert (code, out) == (3, "")
    # `within 1.5 s`: the --timeout given is the one the request waited (the message is made from that value);
    # and it kept trying for all of it (load only makes this longer).
    assert err == f"error: cannot reach Kafka at {NOWHERE} within 1.5 s (listing topics: _TRANSPORT)\n"
    assert elapsed >= 1.4
    code, out, err = kpipe("apply", str(project), "--timeout", "1", "--yes")
    assert code == 3
    assert err == f"error: cannot reach Kafka at {NOWHERE} within 1 s (listing topics: _TRANSPORT)\n"
    assert "hunter2" not in out + err


@pytest.mark.integration  # starts a broker of its own
def test_prune_lists_and_deletes_with_guards(
    tmp_path: Path, unique_name: Callable[..., str], fast_group_config: dict
) -> None:
    # Its own broker: pruning deletes every undeclared topic, and the session broker has other tests' topics.
    from confluent_kafka import Consumer, TopicPartition

    from kpipe.local.broker import start_local_broker

    prefix = unique_name("prune")
    with start_local_broker() as broker:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        for future in admin.create_topics([NewTopic("stale", 1, 1), NewTopic("in-use", 1, 1)]).values():
            future.result()
        del admin  # an open client connection makes Tansu's graceful stop wait ~5 s
        consumer = Consumer(
            {"bootstrap.servers": broker.bootstrap, "group.id": "billing", **fast_group_config}
        )
        consumer.commit(offsets=[TopicPartition("in-use", 0, 0)], asynchronous=False)
        consumer.close()
        project = str(write_project(tmp_path, prefix))
        b = ["-b", broker.bootstrap]
        assert kpipe("apply", project, *b, "--yes")[0] == 0

        code, out, _ = kpipe("plan", project, *b)
        assert (code, out) == (
            0,
            "2 topics on the cluster not declared in any file (not shown; pass --prune to list them for deletion)\nNo changes: the cluster matches the files (2 topics).\n",
        )

        code, out, err = kpipe("plan", project, *b, "--prune")
        assert code == 4
        assert out.splitlines() == [
            "! delete topic in-use (partitions 1; no file declares it)",
            "    refused: consumer groups billing have committed offsets on it; pass --force to delete it anyway",
            "- delete topic stale (partitions 1; no file declares it)",
            "Plan: 0 to create, 0 to update, 1 to delete, 1 refused.",
        ]
        code, out, err = kpipe("apply", project, *b, "--prune", "--yes")
        assert code == 4
        assert set(topics_on(broker.bootstrap, "")) >= {"stale", "in-use"}

        code, out, err = kpipe("apply", project, *b, "--prune", "--force", "--yes")
        assert (code, err) == (0, "")
        assert "deleted topic in-use" in out and "deleted topic stale" in out
        assert sorted(topics_on(broker.bootstrap, "")) == sorted(
            [f"{prefix}.orders", f"{prefix}-billing.dlq"]
        )


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_the_collector_is_paused_while_the_command_works_and_restored_after(
    tmp_path: Path, command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    from kpipe.cli.common import ProjectOptions
    from kpipe.errors import ClusterError

    seen: list[bool] = []

    def connect(self: ProjectOptions, timeout: float) -> None:
        seen.append(gc.isenabled())
        raise ClusterError("stop here")

    monkeypatch.setattr(ProjectOptions, "connect", connect)
    assert gc.isenabled()
    result = kpipe(command, str(write_project(tmp_path, "gc")), "--yes" if command == "apply" else "--prune")
    assert (result.code, seen) == (3, [False])
    assert gc.isenabled()  # restored, after a command that failed too

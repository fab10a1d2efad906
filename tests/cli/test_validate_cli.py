"""The offline commands by their exit codes and output: validate, render, schema, explain, --help.

Commands run through `run_cli`, the same error-to-exit-code mapping `kpipe` itself uses.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest

from helpers import kpipe
from kpipe.cli import cli

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path("tests/fixtures/invalid")


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "KPIPE_BOOTSTRAP_SERVERS", "KPIPE_DEBUG"):
        monkeypatch.delenv(name, raising=False)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_project() -> None:
    assert kpipe("validate", "pipelines/") == (0, "", "0 errors, 0 warnings in 5 files\n")


def test_default_path_is_pipelines() -> None:
    assert kpipe("validate")[0] == 0


def test_one_error_with_hint() -> None:
    code, out, err = kpipe("validate", str(FIXTURES / "producer_unknown_topic.yaml"))
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"{FIXTURES}/producer_unknown_topic.yaml:8:12: error: producer 'order-api' refers to unknown topic 'order'",
        "  hint: did you mean 'orders'?",
        "1 error, 0 warnings in 1 file",
    ]


def test_every_problem_at_once_sorted(tmp_path: Path) -> None:
    _write(tmp_path / "b.yaml", "producers:\n  p:\n    topic: order\n")
    _write(
        tmp_path / "a.yaml",
        "topics:\n  orders:\n    partitions: 0\n  t:\n    partitions: 3\n    partitons: 3\n",
    )
    code, _, err = kpipe("validate", str(tmp_path))
    assert code == 1
    a, b = str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")
    assert err.splitlines() == [
        f"{a}:3:17: error: topic 'orders': 'partitions' must be at least 1 (got 0)",
        f"{a}:6:5: error: unknown key 'partitons' in topic 't'",
        "  hint: did you mean 'partitions'?",
        f"{b}:3:12: error: producer 'p' refers to unknown topic 'order'",
        "  hint: did you mean 'orders'?",
        "3 errors, 0 warnings in 2 files",
    ]


def test_warnings_pass_unless_strict() -> None:
    fixture = str(FIXTURES / "instances_exceed_partitions.yaml")
    code, _, err = kpipe("validate", fixture)
    assert code == 0
    assert err.splitlines()[-1] == "0 errors, 1 warning in 1 file"
    assert kpipe("validate", "--strict", fixture)[0] == 1


def test_json_format() -> None:
    code, out, err = kpipe("validate", "--format", "json", str(FIXTURES / "unknown_section.yaml"))
    assert (code, err) == (1, "")
    assert json.loads(out) == {
        "valid": False,
        "files": 1,
        "errors": 1,
        "warnings": 0,
        "diagnostics": [
            {
                "severity": "error",
                "code": "unknown-key",
                "message": "unknown key 'topic' at the top level",
                "file": f"{FIXTURES}/unknown_section.yaml",
                "line": 3,
                "column": 1,
                "hint": "did you mean 'topics'?",
            }
        ],
    }


def test_json_format_of_a_valid_project() -> None:
    code, out, _ = kpipe("validate", "--format", "json", "pipelines")
    assert code == 0
    assert json.loads(out)["valid"] is True


def test_github_format(tmp_path: Path) -> None:
    code, out, err = kpipe(
        "validate",
        "--format",
        "github",
        str(FIXTURES / "instances_exceed_partitions.yaml"),
        str(FIXTURES / "topic_name_dotdot.yaml"),
    )
    assert code == 1
    lines = out.splitlines()
    assert lines == [
        f"::warning file={FIXTURES}/instances_exceed_partitions.yaml,line=10,col=16::consumer group 'billing': "
        "5 instances but at most 3 partitions to share; 2 will sit idle (add partitions or lower instances)",
        f"::error file={FIXTURES}/topic_name_dotdot.yaml,line=3,col=3::topic name '..' is not allowed",
    ]
    assert err == "1 error, 1 warning in 2 files\n"


def test_github_format_without_a_line() -> None:
    code, out, _ = kpipe("validate", "--format", "github", "no/such/dir")
    assert code == 1
    assert out == "::error file=no/such/dir::no such file or directory\n"


def test_missing_path_is_exit_1() -> None:
    assert kpipe("validate", "nope/") == (
        1,
        "",
        "nope: error: no such file or directory\n1 error, 0 warnings in 0 files\n",
    )


@pytest.mark.parametrize(
    "args",
    [
        ["validate", "--format", "xml"],
        ["validate", "--var", "novalue", "pipelines"],
        ["validate", "--no-such-option"],
        ["no-such-command"],
        ["explain"],
    ],
)
def test_usage_errors_are_exit_2(args: list[str]) -> None:
    code, out, err = kpipe(*args)
    assert (code, out) == (2, "")
    assert "Error:" in err
    assert "Traceback" not in err


def test_var_and_values() -> None:
    code, out, _ = kpipe(
        "render", "pipelines/", "--values", "pipelines/values/prod.yaml", "--var", "user_partitions=9"
    )
    assert code == 0
    assert "    partitions: 12\n" in out
    assert "    partitions: 9\n" in out
    assert "{{" not in out


def test_render_prints_each_file() -> None:
    code, out, _ = kpipe("render", "pipelines/")
    assert code == 0
    headers = [line for line in out.splitlines() if line.startswith("# pipelines/")]
    assert headers == ["# pipelines/cluster.yaml", "# pipelines/orders.yaml", "# pipelines/users.yaml"]
    assert out.count("\n---\n") == 2
    assert '  bootstrap_servers: "local"\n' in out


def test_render_error_is_exit_1() -> None:
    code, out, err = kpipe("render", str(FIXTURES / "template_undefined_var.yaml"))
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"{FIXTURES}/template_undefined_var.yaml:6:20: error: template error: 'order_partitions' is undefined",
        "  hint: pass it with --var order_partitions=... or in a --values file",
        "1 error, 0 warnings",
    ]


def test_schema_is_json_schema_of_the_file_format(tmp_path: Path) -> None:
    code, out, _ = kpipe("schema")
    assert code == 0
    document = json.loads(out)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["additionalProperties"] is False
    assert set(document["properties"]) == {
        "cluster",
        "schemas",
        "topics",
        "producers",
        "consumers",
        "metrics",
    }
    topic = document["$defs"]["TopicSpec"]
    assert topic["required"] == ["partitions"]
    assert topic["properties"]["partitions"]["minimum"] == 1
    assert "schema" in topic["properties"]  # the alias, as users write it
    assert kpipe("schema", "-o", str(tmp_path / "s.json"))[0] == 0
    assert json.loads((tmp_path / "s.json").read_text()) == document


def _secret_project(tmp_path: Path) -> Path:
    return _write(
        tmp_path / "p.yaml",
        "cluster:\n"
        "  bootstrap_servers: b1:9092\n"
        "  config:\n"
        "    security.protocol: SASL_SSL\n"
        "    sasl.mechanisms: PLAIN\n"
        "    sasl.username: app\n"
        "    sasl.password: \"{{ env('KPIPE_TEST_PASSWORD') }}\"\n"
        "topics:\n  t:\n    partitions: 1\n"
        "producers:\n  p:\n    topic: t\n",
    )


def test_explain_redacts_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KPIPE_TEST_PASSWORD", "hunter2-s3cret")
    path = _secret_project(tmp_path)
    code, out, _ = kpipe("explain", "p", str(path))
    assert code == 0
    assert "hunter2-s3cret" not in out
    [line] = [line for line in out.splitlines() if "sasl.password" in line]
    assert line.split()[:3] == ["sasl.password", "*****", "cluster.config:"]
    code, out, _ = kpipe("explain", "p", str(path), "--format", "json")
    assert code == 0
    assert "hunter2-s3cret" not in out
    settings = {row["key"]: row for row in json.loads(out)["settings"]}
    assert settings["sasl.password"]["value"] == "*****"
    assert settings["security.protocol"]["value"] == "SASL_SSL"


def test_explain_a_producer() -> None:
    code, out, _ = kpipe("explain", "order-api", "pipelines/")
    assert code == 0
    lines = out.splitlines()
    assert lines[:3] == ["producer 'order-api'", "  topic: orders", "  key_field: customer_id"]
    [acks] = [line for line in lines if line.split()[:1] == ["acks"]]
    assert acks.split() == [
        "acks",
        "all",
        "declared:",
        "producers.order-api.acks",
        "(pipelines/orders.yaml:24:11)",
    ]


def test_explain_a_group_as_json() -> None:
    code, out, _ = kpipe("explain", "order-processors", "pipelines/", "--format", "json")
    assert code == 0
    document = json.loads(out)
    assert (document["kind"], document["commit"], document["dead_letter_topic"]) == (
        "consumer group",
        "batch",
        "orders.dlq",
    )


def test_explain_unknown_name() -> None:
    assert kpipe("explain", "order-apy", "pipelines/") == (
        2,
        "",
        "error: no producer or consumer group named 'order-apy'; did you mean 'order-api'? (producers: order-api, "
        "user-service; consumer groups: analytics, order-processors, welcome-mailer)\n",
    )
    # Nothing close: the valid names are still listed.
    assert kpipe("explain", "zzz", "pipelines/")[2] == (
        "error: no producer or consumer group named 'zzz' (producers: order-api, user-service; "
        "consumer groups: analytics, order-processors, welcome-mailer)\n"
    )


def test_explain_an_invalid_project() -> None:
    code, out, err = kpipe("explain", "order-api", str(FIXTURES / "producer_unknown_topic.yaml"))
    assert (code, out) == (1, "")
    assert err.splitlines()[-1] == "1 error, 0 warnings"


def test_help_lists_the_commands() -> None:
    code, out, _ = kpipe("--help")
    assert code == 0
    listed = out.split("Commands:")[1]
    for name in ("validate", "render", "schema", "explain"):
        assert f"  {name} " in listed


def _command_names() -> list[str]:
    with click.Context(cli) as ctx:
        return cli.list_commands(ctx)


@pytest.mark.parametrize("name", _command_names())
def test_every_command_has_help(name: str) -> None:
    code, out, _ = kpipe(name, "--help")
    assert code == 0
    assert out.startswith(f"Usage: kpipe {name} ")


def test_python_dash_m_kpipe() -> None:
    result = kpipe("validate", str(FIXTURES / "topic_name_dotdot.yaml"), cwd=ROOT, process=True)
    assert result.code == 1
    assert result.err.splitlines() == [
        f"{FIXTURES}/topic_name_dotdot.yaml:3:3: error: topic name '..' is not allowed",
        "1 error, 0 warnings in 1 file",
    ]


def test_check_handlers_imports_every_handler(tmp_path: Path) -> None:
    assert kpipe("validate", "pipelines/", "--check-handlers")[0] == 0
    project = _write(
        tmp_path / "p.yaml",
        "topics:\n  orders: {partitions: 1}\n"
        "consumers:\n"
        "  billing: {topics: [orders], handler: 'no_such_app.handlers:bill'}\n"
        "  audit: {topics: [orders], handler: 'json:not_there'}\n",
    )
    # Without the flag nothing is imported: a module found nowhere is a warning (CI may lack the app's
    # packages); a name the module does not define is an error.
    code, _, err = kpipe("validate", str(project))
    assert code == 1
    assert err.splitlines()[0] == (
        f"{project}:4:40: warning: consumer group 'billing': handler 'no_such_app.handlers:bill': module "
        "'no_such_app.handlers' not found"
    )
    assert "error: consumer group 'audit': handler 'json:not_there': module 'json' (" in err
    code, _, err = kpipe("validate", str(project), "--check-handlers")
    assert code == 1
    assert err.splitlines()[:2] == [
        f"{project}:4:40: error: consumer group 'billing': handler 'no_such_app.handlers:bill': cannot import module "
        f"'no_such_app' (searched {tmp_path}, {tmp_path.parent} and sys.path)",
        f"{project}:5:38: error: consumer group 'audit': handler 'json:not_there': module 'json' has no attribute "
        "'not_there'",
    ]


def test_explain_shows_concurrency_and_ordering(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "topics:\n  t:\n    partitions: 3\n"
        "consumers:\n  g:\n    topics: [t]\n    handler: app:handle\n    concurrency: 64\n    ordering: key\n",
    )
    code, out, _ = kpipe("explain", "g", str(path))
    assert code == 0
    assert "  concurrency: 64" in out.splitlines() and "  ordering: key" in out.splitlines()
    code, out, _ = kpipe("explain", "g", str(path), "--format", "json")
    document = json.loads(out)
    assert (document["concurrency"], document["ordering"]) == (64, "key")

"""Issue 11.3: no secret is echoed. env() values appear as env('NAME'), secret settings as *****."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostile import run_kpipe

TOKEN = "ghp_0123456789abcdefSECRET"
PASSWORD = "hunter2-but-longer"
ENV = {"GH_TOKEN": TOKEN, "KAFKA_PASSWORD": PASSWORD, "KAFKA_HOSTS": "kafka-1.internal:9093"}


def _project(project: Path, partitions: str = "3") -> None:
    (project / "pipelines" / "p.yaml").write_text(
        "cluster:\n"
        "  bootstrap_servers: \"{{ env('KAFKA_HOSTS') }}\"\n"
        "  config:\n"
        "    sasl.password: \"{{ env('KAFKA_PASSWORD') }}\"\n"
        "    sasl.oauthbearer.client.secret: literal-client-secret\n"
        "topics:\n"
        f"  orders: {{partitions: {partitions}}}\n"
        "producers:\n  api: {topic: orders}\n"
    )


def _no_secret(text: str) -> None:
    for secret in (TOKEN, PASSWORD, "kafka-1.internal", "literal-client-secret"):
        assert secret not in text, f"{secret!r} leaked:\n{text}"


@pytest.mark.parametrize("fmt", ["text", "json", "github"])
def test_env_value_echoed_by_a_diagnostic_is_masked(project: Path, fmt: str) -> None:
    # The attacker puts the CI job's token where validate will quote it back: "got '...'".
    _project(project, partitions="\"{{ env('GH_TOKEN') }}\"")
    result = run_kpipe(project, "validate", "pipelines/", "--format", fmt, env=ENV)
    assert result.code == 1
    assert "must be a whole number (got 'env('GH_TOKEN')')" in result.text.replace("\\'", "'")
    _no_secret(result.text)


def test_render_masks_unless_show_secrets(project: Path) -> None:
    _project(project)
    result = run_kpipe(project, "render", "pipelines/", env=ENV)
    assert result.code == 0
    _no_secret(result.text)
    assert "bootstrap_servers: \"env('KAFKA_HOSTS')\"" in result.out
    assert "sasl.password: \"env('KAFKA_PASSWORD')\"" in result.out  # never held the value: a token
    assert "sasl.oauthbearer.client.secret: *****" in result.out
    shown = run_kpipe(project, "render", "pipelines/", "--show-secrets", env=ENV)
    assert PASSWORD in shown.out and "literal-client-secret" in shown.out


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_explain_masks(project: Path, fmt: str) -> None:
    _project(project)
    result = run_kpipe(project, "explain", "api", "pipelines/", "--format", fmt, env=ENV)
    assert result.code == 0, result.text
    _no_secret(result.text)
    assert "env('KAFKA_HOSTS')" in result.out


def test_short_env_values_are_not_masked(project: Path) -> None:
    # "3" from env('PARTITIONS') is not a secret; masking every "3" would garble every message.
    (project / "pipelines" / "p.yaml").write_text(
        "topics:\n  orders: {partitions: \"{{ env('PARTITIONS') }}\", replication_factor: 0}\n"
    )
    result = run_kpipe(project, "validate", "pipelines/", env={"PARTITIONS": "3"})
    assert result.code == 1
    assert "pipelines/p.yaml:2:" in result.err

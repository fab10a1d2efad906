"""Issue 11.2: nothing outside the project root is read, only regular files are, and sizes are capped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hostile import run_kpipe

SECRET = "TOPSECRET_VALUE: do-not-print-me"


def _secret_outside(project: Path) -> Path:
    secret = project.parent / "secret.yaml"
    secret.write_text(SECRET + "\n")
    return secret


def _pipeline_with_schema(project: Path, schema_path: str) -> None:
    (project / "pipelines" / "p.yaml").write_text(
        f"schemas:\n  Leak: {{file: '{schema_path}'}}\ntopics:\n  t: {{partitions: 1, schema: Leak}}\n"
    )


@pytest.mark.parametrize("fmt", ["text", "json", "github"])
def test_schema_outside_the_root_is_refused_without_its_contents(project: Path, fmt: str) -> None:
    _secret_outside(project)
    _pipeline_with_schema(project, "../../secret.yaml")
    result = run_kpipe(project, "validate", "pipelines/", "--format", fmt)
    assert result.code == 1
    assert "'../../secret.yaml' is outside the project root" in result.text
    assert "TOPSECRET" not in result.text and "do-not-print-me" not in result.text


def test_absolute_schema_path_is_refused(project: Path) -> None:
    _pipeline_with_schema(project, "/etc/passwd")
    result = run_kpipe(project, "validate", "pipelines/")
    assert result.code == 1
    assert result.err.splitlines()[0] == (
        f"pipelines/p.yaml:2:16: error: '/etc/passwd' is outside the project root {project.resolve()}"
    )
    assert "root:" not in result.text


def test_symlink_that_leaves_the_project_is_refused(project: Path) -> None:
    secret = _secret_outside(project)
    (project / "pipelines" / "schema.yaml").symlink_to(secret)  # also picked up as a pipeline file
    _pipeline_with_schema(project, "schema.yaml")
    result = run_kpipe(project, "validate", "pipelines/")
    assert result.code == 1
    assert "'schema.yaml' is outside the project root" in result.err
    assert "'pipelines/schema.yaml' is outside the project root" in result.err
    assert "TOPSECRET" not in result.text


def test_values_file_outside_the_root_is_refused(project: Path) -> None:
    secret = _secret_outside(project)
    (project / "pipelines" / "p.yaml").write_text("topics:\n  t: {partitions: 1}\n")
    result = run_kpipe(project, "validate", "pipelines/", "--values", str(secret))
    assert result.code == 1
    assert f"'{secret}' is outside the project root" in result.err
    assert "TOPSECRET" not in result.text


def test_root_option_widens_the_project(project: Path) -> None:
    secret = project.parent / "shared.schema.yaml"
    secret.write_text("type: object\nproperties:\n  a: {type: string}\n")
    _pipeline_with_schema(project, "../../shared.schema.yaml")
    assert run_kpipe(project, "validate", "pipelines/").code == 1
    result = run_kpipe(project, "validate", "pipelines/", "--root", "..")
    assert result.code == 0, result.text


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_named_yaml_does_not_hang(project: Path) -> None:
    os.mkfifo(project / "pipelines" / "hang.yaml")
    (project / "pipelines" / "p.yaml").write_text("topics:\n  t: {partitions: 1}\n")
    result = run_kpipe(project, "validate", "pipelines/")
    assert result.code == 1
    assert "error: 'pipelines/hang.yaml' is a named pipe (FIFO); only regular files are read" in result.err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_as_schema_does_not_hang(project: Path) -> None:
    os.mkfifo(project / "schema.fifo")
    _pipeline_with_schema(project, "../schema.fifo")
    result = run_kpipe(project, "validate", "pipelines/")
    assert result.code == 1
    assert "'../schema.fifo' is a named pipe (FIFO); only regular files are read" in result.err


def test_device_is_refused_even_inside_the_root(project: Path) -> None:
    # With --root / the device is inside the root: it is refused for what it is, and /dev/zero is never read.
    (project / "pipelines" / "zero.yaml").symlink_to("/dev/zero")
    result = run_kpipe(project, "validate", "pipelines/", "--root", "/")
    assert result.code == 1
    assert "'pipelines/zero.yaml' is a character device; only regular files are read" in result.err
    result = run_kpipe(project, "validate", "pipelines/")
    assert result.code == 1
    assert "'pipelines/zero.yaml' is outside the project root" in result.err


def test_symlink_loop_is_one_positioned_error(project: Path) -> None:
    (project / "pipelines" / "a.yaml").symlink_to(project / "pipelines" / "b.yaml")
    (project / "pipelines" / "b.yaml").symlink_to(project / "pipelines" / "a.yaml")
    (project / "pipelines" / "loop.schema").symlink_to(project / "pipelines" / "loop.schema")
    (project / "pipelines" / "p.yaml").write_text(
        "schemas:\n  L: {file: loop.schema}\ntopics:\n  t: {partitions: 1, schema: L}\n"
    )
    result = run_kpipe(project, "validate", "pipelines/")
    assert result.code == 1
    errors = [line for line in result.err.splitlines() if "error:" in line]
    assert errors == [
        "pipelines/a.yaml: error: 'pipelines/a.yaml': symbolic link loop",
        "pipelines/b.yaml: error: 'pipelines/b.yaml': symbolic link loop",
        "pipelines/p.yaml:2:13: error: 'loop.schema': symbolic link loop",
    ]


def test_oversized_file_is_refused_without_reading_it(project: Path) -> None:
    big = project / "pipelines" / "big.yaml"
    with big.open("wb") as f:
        f.truncate(64 * 1024 * 1024)  # sparse: 64 MiB of zeros
    result = run_kpipe(project, "validate", "pipelines/")
    assert result.code == 1
    assert "pipelines/big.yaml: error: file is too large (64.0 MiB; the limit is 5 MiB)" in result.err

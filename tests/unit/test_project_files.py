"""kpipe.loading.files: the project root and the rules for reading a project's files."""

from __future__ import annotations

from pathlib import Path

import pytest

from kpipe.diagnostics import Position
from kpipe.loading.files import ProjectFiles, project_root


def test_root_is_the_nearest_ancestor_with_git_or_pyproject(tmp_path: Path) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "svc" / "pipelines").mkdir(parents=True)
    (tmp_path / "repo" / "svc" / "pyproject.toml").write_text("")
    assert project_root([tmp_path / "repo" / "svc" / "pipelines"]) == (tmp_path / "repo" / "svc").resolve()
    assert project_root([tmp_path / "repo" / "svc" / "pipelines" / "a.yaml"]) == (tmp_path / "repo" / "svc")
    (tmp_path / "repo" / "svc" / "pyproject.toml").unlink()
    assert project_root([tmp_path / "repo" / "svc" / "pipelines"]) == (tmp_path / "repo").resolve()


def test_root_without_markers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "p" / "pipelines").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "p")
    assert project_root([Path("pipelines")]) == (tmp_path / "p").resolve()  # the working directory
    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path / "other" / "pipelines"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "p")
    # Outside the working directory: the directory above the pipeline directory.
    assert project_root([elsewhere]) == (tmp_path / "other").resolve()
    assert project_root([elsewhere], override=tmp_path) == tmp_path.resolve()


def test_whole_project_cap(tmp_path: Path) -> None:
    files = ProjectFiles(tmp_path, max_file_bytes=100, max_project_bytes=250)
    for name in "abc":
        (tmp_path / f"{name}.yaml").write_text("x" * 90)
    results = [files.read_bytes_of(tmp_path / f"{n}.yaml", f"{n}.yaml", Position(f"{n}.yaml")) for n in "abc"]
    assert [r[0] is not None for r in results] == [True, True, False]
    assert results[2][1][0].format() == "c.yaml: error: the project's files add up to more than 0.0 MiB"
    (tmp_path / "d.yaml").write_text("x" * 101)
    _, problems = files.read_bytes_of(tmp_path / "d.yaml", "d.yaml", Position("d.yaml"))
    assert problems[0].code == "file-too-large"

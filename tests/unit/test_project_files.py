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


def test_one_cap_covers_pipeline_and_schema_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import functools

    import kpipe.compilation.project as project

    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "_schemas").mkdir()
    schema = "type: object\nproperties:\n  order_id: {type: string}\n" + "#" * 300 + "\n"
    (tmp_path / "_schemas" / "order.schema.yaml").write_text(schema)
    pipeline = "schemas:\n  Order: _schemas/order.schema.yaml\ntopics:\n  orders:\n    partitions: 1\n"
    pipeline += "    schema: Order\n" + "#" * 300 + "\n"
    (tmp_path / "pipeline.yaml").write_text(pipeline)
    # Each file fits the cap; together they do not.
    cap = max(len(schema), len(pipeline)) + 10
    assert len(schema) + len(pipeline) > cap
    monkeypatch.setattr(project, "ProjectFiles", functools.partial(ProjectFiles, max_project_bytes=cap))
    inspection = project.inspect_project([tmp_path / "pipeline.yaml"], check_code=False)
    assert [d.code for d in inspection.diagnostics if d.is_error] == ["project-too-large"]


def _outside_with_marker(tmp_path: Path, marker: str | None) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    if marker is not None:
        (outside / marker).write_text("[project]\n")
    (outside / "secret.yaml").write_text("topics: {}\n")
    return outside


@pytest.mark.parametrize("marker", ["pyproject.toml", ".git", None])
def test_a_symlink_in_the_project_cannot_move_the_root_outside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, marker: str | None
) -> None:
    # `kpipe validate pipelines/` where the checkout made `pipelines` a link to a directory elsewhere: the
    # root stays the checkout's (which then refuses the files behind the link), never the link's target.
    outside = _outside_with_marker(tmp_path, marker)
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "pipelines").symlink_to(outside)
    (checkout / "deploy").symlink_to(tmp_path)
    monkeypatch.chdir(checkout)
    for written in ("pipelines", "pipelines/secret.yaml", "deploy/outside", str(checkout / "pipelines")):
        root = project_root([Path(written)])
        assert root == checkout.resolve(), written
        assert not ProjectFiles(root).inside(outside / "secret.yaml")


def test_a_path_outside_the_root_is_refused_alike_whether_it_exists_or_not(tmp_path: Path) -> None:
    # Otherwise a file can probe the machine: `schema: ../../../home/runner/.aws/credentials` would say
    # "outside the project root" when it exists and "no such file" when it does not.
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "exists.yaml").write_text("x: 1\n")
    files = ProjectFiles(root)
    at = Position("p.yaml", 1, 1)
    answers = []
    for written in ("../exists.yaml", "../missing.yaml"):
        resolved, problems = files.check(root / written, "../x.yaml", at)
        assert resolved is None
        answers.append([(d.code, d.message) for d in problems])
    assert answers[0] == answers[1]
    assert answers[0][0][0] == "path-outside-root"


def test_a_missing_schema_outside_the_root_does_not_show_where_it_was_looked_for(tmp_path: Path) -> None:
    from helpers import kpipe

    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (tmp_path / "pipelines").mkdir()
    for name in ("exists", "missing"):
        (tmp_path / "pipelines" / "p.yaml").write_text(
            f"schemas:\n  S: ../../probe/{name}/x.yaml\ntopics:\n  orders: {{partitions: 1, schema: S}}\n"
        )
        (tmp_path.parent / "probe" / "exists").mkdir(parents=True, exist_ok=True)
        (tmp_path.parent / "probe" / "exists" / "x.yaml").write_text("type: object\n")
        code, out, err = kpipe("validate", str(tmp_path / "pipelines"))
        assert code == 1
        assert str(tmp_path.parent / "probe") not in out + err
        assert "outside the project root" in out + err, out + err

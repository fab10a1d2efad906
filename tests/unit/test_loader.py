"""loader: which files make a project, reading them safely, values files and --var."""

from __future__ import annotations

from pathlib import Path

import pytest

from kpipe.loading.loader import discover, display_path, load_documents, load_values, read_text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "pipelines"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_discover_the_example_project() -> None:
    files, diagnostics = discover([EXAMPLE])
    assert diagnostics == []
    assert [f.name for f in files] == ["cluster.yaml", "orders.yaml", "users.yaml"]


def test_discover_skips_values_hidden_and_underscored(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", "topics: {}\n")
    _write(tmp_path / "sub" / "b.yml", "topics: {}\n")
    _write(tmp_path / "values" / "prod.yaml", "x: 1\n")
    _write(tmp_path / ".hidden.yaml", "x: 1\n")
    _write(tmp_path / "_schemas" / "s.yaml", "x: 1\n")
    _write(tmp_path / "_draft.yaml", "x: 1\n")
    _write(tmp_path / "notes.txt", "x: 1\n")
    files, diagnostics = discover([tmp_path])
    assert diagnostics == []
    assert [f.relative_to(tmp_path.resolve()).as_posix() for f in files] == ["a.yaml", "sub/b.yml"]


def test_a_file_named_twice_is_read_once(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.yaml", "topics: {}\n")
    files, _ = discover([path, tmp_path, str(path)])
    assert files == [path.resolve()]


def test_an_explicit_file_is_read_whatever_its_name(tmp_path: Path) -> None:
    path = _write(tmp_path / "pipeline.txt", "topics: {}\n")
    assert discover([path])[0] == [path]


def test_display_path_is_relative_below_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path / "p" / "a.yaml", "")
    monkeypatch.chdir(tmp_path)
    assert display_path(path) == "p/a.yaml"
    monkeypatch.chdir(tmp_path / "p")
    assert display_path(tmp_path / "other.yaml") == str(tmp_path / "other.yaml")


def test_read_text_strips_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_bytes(b"\xef\xbb\xbfa: 1\n")
    assert read_text(path, "a.yaml") == ("a: 1\n", [])


def test_read_text_position_of_a_bad_byte(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_bytes(b"a: 1\nbb: \xff\n")
    text, diagnostics = read_text(path, "a.yaml")
    assert text is None
    assert diagnostics[0].format() == "a.yaml:2:5: error: not valid UTF-8: byte 0xff cannot be decoded"


def test_read_text_of_a_directory(tmp_path: Path) -> None:
    text, diagnostics = read_text(tmp_path, "d")
    assert text is None
    assert diagnostics[0].format() == "d: error: is a directory, expected a file"


def test_values_files_later_wins_and_var_wins_over_all(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.yaml", "partitions: 3\nreplication: 1\n")
    b = _write(tmp_path / "b.yaml", "partitions: 6\n")
    merged, diagnostics = load_values([a, b], {"replication": "3"})
    assert diagnostics == []
    assert merged == {"partitions": 6, "replication": "3"}


def test_values_file_must_be_a_mapping(tmp_path: Path) -> None:
    path = _write(tmp_path / "v.yaml", "- 1\n- 2\n")
    _, diagnostics = load_values([path], {})
    assert (
        diagnostics[0].format()
        == f"{display_path(path)}:1:1: error: a values file must be a mapping of names to values"
    )


def test_values_files_are_not_templates(tmp_path: Path) -> None:
    path = _write(tmp_path / "v.yaml", "n: '{{ nope }}'\n")
    assert load_values([path], {}) == ({"n": "{{ nope }}"}, [])


def test_missing_values_file(tmp_path: Path) -> None:
    _, diagnostics = load_values([tmp_path / "nope.yaml"], {})
    assert diagnostics[0].format() == f"{tmp_path / 'nope.yaml'}: error: values file not found"


def test_load_documents_renders_with_values() -> None:
    loaded = load_documents([EXAMPLE], values_files=[EXAMPLE / "values" / "prod.yaml"])
    assert loaded.diagnostics == []
    orders = next(d for d in loaded.documents if d.path.name == "orders.yaml")
    assert orders.data["topics"]["orders"]["partitions"] == 12
    assert orders.data["topics"]["orders"]["replication_factor"] == 3
    assert "partitions: 12" in orders.rendered_text


def test_load_documents_reports_every_file(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", "a: [\n")
    _write(tmp_path / "b.yaml", "# only a comment\n")
    _write(tmp_path / "c.yaml", "topics: {}\n")
    loaded = load_documents([tmp_path, tmp_path / "missing"])
    assert sorted(d.code for d in loaded.diagnostics) == ["file-empty", "path-missing", "yaml-syntax"]
    assert [d.path.name for d in loaded.documents] == ["c.yaml"]
    assert len(loaded.files) == 3


def test_positions_are_those_of_the_rendered_text(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "a.yaml",
        "topics:\n{% for t in ['x', 'y'] %}\n  {{ t }}:\n    partitions: 3\n{% endfor %}\n",
    )
    [document] = load_documents([path]).documents
    # Lines are counted in the rendered text (what `kpipe render` prints), where the loop wrote 'y'.
    assert document.rendered_text.splitlines()[5] == "  y:"
    assert document.positions.locate(("topics", "y"), prefer="key").line == 6

"""Every invalid-pipeline fixture yields exactly the diagnostic its header promises, at the promised position.

A fixture is a file `tests/fixtures/invalid/NAME.yaml`, or a directory `tests/fixtures/invalid/NAME/` when the
mistake needs a second file or a schema (schemas sit under `_schemas/`, which discovery skips). One of its files
carries the header:

    # expect: {file}:4:13: error: topic 'orders' refers to unknown schema 'OrderEvnt'
    # hint: did you mean 'OrderEvent'?
    # var: name=value          (optional: a template variable, as with --var)

`{file}` is that file's path as kpipe displays it, `{dir}` the fixture directory's, and `{here}` the absolute
directory holding the file. Mistakes that need bytes or sizes git should not hold are generated at runtime
below.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from kpipe.compilation.project import inspect_project
from kpipe.diagnostics import Diagnostic
from kpipe.loading.loader import MAX_FILE_BYTES, display_path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "invalid"


@dataclass
class Expected:
    line: str
    hint: str | None


@dataclass
class Fixture:
    path: Path
    expected: list[Expected]
    variables: dict[str, str]


def _load_fixture(path: Path) -> Fixture:
    files = [path] if path.is_file() else sorted(path.rglob("*.yaml"))
    expected: list[Expected] = []
    variables: dict[str, str] = {}
    holders = []
    for file in files:
        substitutions = {
            "{file}": display_path(file),
            "{dir}": display_path(path),
            "{here}": str(file.parent),
        }
        for line in file.read_text(encoding="utf-8").splitlines():
            if line.startswith("# expect: "):
                text = line.removeprefix("# expect: ")
                for placeholder, value in substitutions.items():
                    text = text.replace(placeholder, value)
                expected.append(Expected(text, None))
                holders.append(file)
            elif line.startswith("# hint: "):
                expected[-1].hint = line.removeprefix("# hint: ")
            elif line.startswith("# var: "):
                key, _, value = line.removeprefix("# var: ").partition("=")
                variables[key] = value
    assert len(set(holders)) == 1, f"{path.name}: one file must hold the '# expect:' header"
    return Fixture(path, expected, variables)


# app/ holds the handler module the fixtures name (validate finds it statically); it is not a fixture.
FIXTURE_PATHS = sorted(
    p for p in FIXTURES.iterdir() if (p.is_dir() and p.name != "app") or p.suffix == ".yaml"
)


def test_there_are_enough_fixtures() -> None:
    assert len(FIXTURE_PATHS) >= 45


@pytest.mark.parametrize("path", FIXTURE_PATHS, ids=lambda p: p.stem)
def test_fixture(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KPIPE_TEST_UNSET_BOOTSTRAP", raising=False)
    fixture = _load_fixture(path)
    assert len(fixture.expected) == 1, "one mistake per fixture"
    diagnostics = inspect_project([path], variables=fixture.variables).diagnostics
    assert [d.format() for d in diagnostics] == [e.line for e in fixture.expected]
    assert [d.hint for d in diagnostics] == [e.hint for e in fixture.expected]


# --- generated at runtime ------------------------------------------------------------------------------------


def _only(diagnostics: list[Diagnostic]) -> Diagnostic:
    assert len(diagnostics) == 1, [d.format() for d in diagnostics]
    return diagnostics[0]


def test_non_utf8_bytes(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"topics:\n  ord\xe9rs:\n    partitions: 3\n")
    found = _only(inspect_project([path]).diagnostics)
    assert found.format() == f"{display_path(path)}:2:6: error: not valid UTF-8: byte 0xe9 cannot be decoded"
    assert found.hint == "save the file as UTF-8"


def test_nul_bytes(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"topics: {}\x00\x01\n")
    found = _only(inspect_project([path]).diagnostics)
    assert found.format() == f"{display_path(path)}: error: file contains NUL bytes; is it a binary file?"


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes("\ufefftopics:\n  orders:\n    partitions: 3\n".encode())
    assert inspect_project([path]).diagnostics == []


def test_huge_file(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    entry = "  t{}:\n    partitions: 3\n"
    with path.open("w", encoding="utf-8") as out:
        out.write("topics:\n")
        i = 0
        while out.tell() <= MAX_FILE_BYTES:
            out.write(entry.format(i))
            i += 1
    size = path.stat().st_size / 1024 / 1024
    found = _only(inspect_project([path]).diagnostics)
    assert (
        found.format()
        == f"{display_path(path)}: error: file is too large ({size:.1f} MiB; the limit is 5 MiB)"
    )


def test_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    found = _only(inspect_project([path]).diagnostics)
    assert found.format() == f"{path}: error: no such file or directory"


def test_directory_without_pipeline_files(tmp_path: Path) -> None:
    (tmp_path / "values").mkdir()
    (tmp_path / "values" / "prod.yaml").write_text("partitions: 3\n")
    (tmp_path / "_draft.yaml").write_text("topics: {}\n")
    (tmp_path / "README.md").write_text("not a pipeline\n")
    found = _only(inspect_project([tmp_path]).diagnostics)
    assert found.format() == f"{tmp_path}: error: directory holds no pipeline files (*.yaml, *.yml)"


def test_empty_directory(tmp_path: Path) -> None:
    found = _only(inspect_project([tmp_path]).diagnostics)
    assert found.format() == f"{tmp_path}: error: directory holds no pipeline files (*.yaml, *.yml)"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_by_mode(tmp_path: Path) -> None:
    path = tmp_path / "secret.yaml"
    path.write_text("topics: {}\n")
    path.chmod(0)
    try:
        found = _only(inspect_project([path]).diagnostics)
    finally:
        path.chmod(0o644)
    assert found.format() == f"{display_path(path)}: error: permission denied: cannot read the file"


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Runs as root too: the read itself is made to fail the way an unreadable file fails.
    path = tmp_path / "secret.yaml"
    path.write_text("topics: {}\n")
    original = os.open

    def open_(name: str | Path, flags: int, *args: int) -> int:
        if Path(name) == path.resolve():
            raise PermissionError(13, "Permission denied", str(name))
        return original(name, flags, *args)

    monkeypatch.setattr(os, "open", open_)
    found = _only(inspect_project([path]).diagnostics)
    assert found.format() == f"{display_path(path)}: error: permission denied: cannot read the file"


def test_a_directory_given_as_values_file(tmp_path: Path) -> None:
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text("topics:\n  orders:\n    partitions: 3\n")
    found = _only(inspect_project([pipeline], values_files=[tmp_path]).diagnostics)
    assert found.format() == f"{tmp_path}: error: is a directory, expected a values file"

"""The examples of README.md's "Testing your pipelines" and docs/testing.md work as written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import kpipe

ROOT = Path(__file__).resolve().parents[2]


def _blocks(text: str, language: str) -> list[str]:
    return [part.split("```", 1)[0] for part in text.split(f"```{language}\n")[1:]]


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("document", ["README.md", "docs/testing.md"])
def test_the_pytest_example_passes(document: str) -> None:
    text = (ROOT / document).read_text(encoding="utf-8")
    if document == "README.md":
        text = text.split("## Testing your pipelines", 1)[1].split("\n## ", 1)[0]
    [example] = [b for b in _blocks(text, "python") if "run_pipeline" in b]
    namespace: dict = {}
    exec(compile(example, document, "exec"), namespace)  # noqa: S102 - our own documentation
    tests = [f for name, f in namespace.items() if name.startswith("test_")]
    assert tests
    for test in tests:
        test()


@pytest.mark.parametrize("document", ["README.md", "docs/testing.md"])
def test_the_case_file_example_passes(document: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / document).read_text(encoding="utf-8")
    [example] = [b for b in _blocks(text, "yaml") if b.startswith("# pipeline-tests/")]
    for part in ("pipelines", "schemas"):  # a copy of the example project, with the case file inside its root
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "cases.yaml").write_text(example, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    code, out, err = kpipe("test", "pipelines/", "--cases", "cases.yaml")
    assert code == 0, out + err
    assert out.startswith("PASS ")

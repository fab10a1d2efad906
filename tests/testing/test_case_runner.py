"""YAML cases on the scenario project: every kind of expectation passes when met and fails, with both values,
when not."""

from __future__ import annotations

from pathlib import Path

import pytest

from kpipe.loading.files import ProjectFiles
from kpipe.testing.cases import load_cases
from kpipe.testing.harness import load_memory_project
from kpipe.testing.runner import run_cases
from pipeline_scenarios import write_project

CASES = """\
cases:
  - name: skip, stop and emits
    groups: [cr-skipper, cr-stopper, cr-main, cr-chained]
    given:
      - {topic: cr-skip, event: {id: s1, mode: fail, n: 1}}
      - {topic: cr-skip, event: {id: s2, n: 2}}
      - {topic: cr-stop, event: {id: t1, mode: fail, n: 1}}
      - {topic: cr-stop, event: {id: t2, n: 2}}
      - {topic: cr-in, event: {id: m1, n: 3}, headers: {trace: x}}
      - {topic: cr-in, raw: '{"id": "m2"}', key: m2}
    expect:
      handled: {cr-skipper: 1, cr-stopper: 0, cr-main: 1, cr-chained: 1}
      skipped: {cr-skipper: 1}
      stopped: [cr-stopper]
      topics:
        cr-final: [{id: m1, n: 30}]
        cr-in: [{id: m1}, {id: m2}]  # raw JSON is decoded too
      dead_letters:
        cr-dlq: [{error_type: schema, key: m2, error_message: "field 'n'"}]
"""


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, object]:
    write_project(tmp_path, "cr")
    return tmp_path, load_memory_project([tmp_path / "pipelines"], root=tmp_path)


def _run(root: Path, project: object, text: str) -> list:
    (root / "cases.yaml").write_text(text)
    cases, problems = load_cases([root / "cases.yaml"], project, ProjectFiles(root))  # type: ignore[arg-type]
    assert problems == []
    return list(run_cases(cases, project))  # type: ignore[arg-type]


def test_every_expectation_met(project: tuple[Path, object]) -> None:
    [result] = _run(*project, CASES)
    assert result.error is None and result.mismatches == []


def test_every_expectation_missed(project: tuple[Path, object]) -> None:
    wrong = (
        CASES.replace("cr-skipper: 1, cr-stopper: 0", "cr-skipper: 2, cr-stopper: 0")
        .replace("skipped: {cr-skipper: 1}", "skipped: {cr-skipper: 0}")
        .replace("stopped: [cr-stopper]", "stopped: []")
        .replace("n: 30}", "n: 31}")
        .replace("error_type: schema", "error_type: handler")
    )
    [result] = _run(*project, wrong)
    got = {m.what: (m.expected, m.actual) for m in result.mismatches}
    assert got == {
        "handled.cr-skipper": (2, 1),
        "skipped.cr-skipper": (0, 1),
        "stopped": ([], ["cr-stopper"]),
        "topics.cr-final[0]": ({"id": "m1", "n": 31}, {"id": "m1", "n": 30}),
        "dead_letters.cr-dlq[0]": (
            {"error_type": "handler", "key": "m2", "error_message": "field 'n'"},
            got["dead_letters.cr-dlq[0]"][1],
        ),
    }
    assert got["dead_letters.cr-dlq[0]"][1]["error_type"] == "schema"

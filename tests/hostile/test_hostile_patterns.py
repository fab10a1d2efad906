"""Issue 11.5: schema patterns run in linear time; one the linear engine can't compile is a validate error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hostile import CPU_SECONDS, run_kpipe


def _project(project: Path, pattern: str) -> None:
    (project / "schemas").mkdir(exist_ok=True)
    (project / "schemas" / "e.yaml").write_text(
        f"type: object\nrequired: [v]\nproperties:\n  v: {{type: string, pattern: '{pattern}'}}\n"
    )
    (project / "pipelines" / "p.yaml").write_text(
        "schemas:\n  E: ../schemas/e.yaml\ntopics:\n  t: {partitions: 1, schema: E}\nproducers:\n  api: {topic: t}\n"
    )


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("^(?=a)(a+)+$", "look-around, including look-ahead and look-behind, is not supported"),
        ("^(a)\\1$", "backreferences are not supported"),
        ("^(?<!x)a$", "look-around, including look-ahead and look-behind, is not supported"),
    ],
)
def test_backtracking_pattern_is_a_validate_error(project: Path, pattern: str, reason: str) -> None:
    _project(project, pattern)
    result = run_kpipe(project, "validate", "pipelines/")
    assert result.code == 1
    lines = result.err.splitlines()
    assert lines[0] == f"schemas/e.yaml:4:30: error: 'pattern' cannot be used: {reason}"
    assert lines[1].startswith("  hint: patterns run on a linear-time engine")


def test_catastrophic_pattern_for_backtracking_engines_is_linear(project: Path) -> None:
    # ^(a+)+$ is exponential on a backtracking engine for "aaaa…a!"; the producer's and the worker's model
    # (the same compiled model, from kpipe.load) reject it at once.
    _project(project, "^(a+)+$")
    assert run_kpipe(project, "validate", "pipelines/").code == 0
    script = (
        "import kpipe, pydantic\n"
        "model = kpipe.load('pipelines').topic_model('t')\n"
        "try:\n    model.model_validate_json('{\"v\": \"' + 'a' * 100000 + '!\"}')\n"
        "except pydantic.ValidationError as exc:\n    print(exc.errors()[0]['type'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=project, capture_output=True, text=True, timeout=CPU_SECONDS
    )
    assert done.stdout.strip() == "string_pattern_mismatch", done.stderr

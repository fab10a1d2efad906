"""The README's CI example works as written, without secrets: its `env:` placeholders satisfy the env() calls of
the README's own real-cluster configuration, and validation connects to nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _block_after(heading: str, language: str) -> str:
    section = README.split(heading, 1)[1]
    return section.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_the_ci_example_validates_a_real_cluster_config_without_secrets(tmp_path: Path) -> None:
    cluster = _block_after("## Pointing kpipe at a real cluster", "yaml")
    workflow = yaml.safe_load(_block_after("## `kpipe validate` in CI", "yaml"))
    steps = workflow["jobs"]["validate"]["steps"]
    step = next(s for s in steps if "--values" in s.get("run", ""))
    placeholders = {k: str(v) for k, v in step["env"].items()}
    used = set(re.findall(r"env\('([A-Z_]+)'\)", cluster))
    assert used <= set(placeholders), f"the CI step sets no value for {sorted(used - set(placeholders))}"

    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "cluster.yaml").write_text(cluster + "topics:\n  orders: {partitions: 3}\n")
    env = {k: v for k, v in os.environ.items() if k not in used and not k.startswith("KPIPE_")}
    command = ["validate", "pipelines/", "--format", "github"]
    without = subprocess.run(
        [sys.executable, "-m", "kpipe", *command], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert without.returncode == 1  # what a user met: env() without a value
    with_placeholders = subprocess.run(
        [sys.executable, "-m", "kpipe", *command],
        cwd=tmp_path,
        env={**env, **placeholders},
        capture_output=True,
        text=True,
    )
    assert with_placeholders.returncode == 0, with_placeholders.stdout + with_placeholders.stderr

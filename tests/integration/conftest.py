"""Fixtures of the integration tests that start `kpipe run` as a process (see run_helpers.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from run_helpers import KpipeRun


@pytest.fixture
def kpipe_run(tmp_path: Path, fast_group_config: dict[str, str | int]) -> Iterator[Callable[..., KpipeRun]]:
    """kpipe_run(project, *args, ...) starts `kpipe run project *args` (a KpipeRun in `directory`, tmp_path by
    default) with the fast group settings, unless `consumer_config` is given; every run still going at the end
    of the test is killed."""
    runs: list[KpipeRun] = []

    def start(
        project: Path | str,
        *args: str,
        directory: Path | None = None,
        consumer_config: Mapping[str, str | int] | None = None,
        env: Mapping[str, str | None] | None = None,
        cwd: Path | None = None,
        metrics: bool = False,
    ) -> KpipeRun:
        config = fast_group_config if consumer_config is None else consumer_config
        run = KpipeRun(directory or tmp_path, project, config, *args, env=env, cwd=cwd, metrics=metrics)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill()

"""Workers run what the supervisor compiled: `kpipe run` compiles each group once and hands its workers the
settings and models (WorkerStart); a restarted worker reads no project file.

The project, the recording handler and the `kpipe run` process come from run_helpers.py.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from run_helpers import KpipeRun, produce, write_project

from helpers import wait_for

pytestmark = pytest.mark.integration


def test_files_edited_during_a_run_change_nothing_for_a_restarted_worker(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[..., str],
    kpipe_run: Callable[..., KpipeRun],
    make_topics: Callable[..., None],
) -> None:
    topic, group = unique_name("compiled"), unique_name("compiled")
    make_topics(topic, partitions=1)
    project = write_project(tmp_path / "project", kafka_bootstrap, topic, 1, {group: 1})
    run = kpipe_run(project)
    produce(kafka_bootstrap, topic, 5, 1)
    run.wait_handled(5)
    first = run.handled()[0]["pid"]
    # The group now names a handler that does not exist, and the file no longer even parses: a worker that
    # loaded the project again could not start.
    (project / "project.yaml").write_text(
        (project / "project.yaml").read_text().replace("recorder:record", "recorder:missing") + "\n: [\n"
    )
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: "restarting" in run.log(), timeout=30, message=run.log)
    produce(kafka_bootstrap, topic, 5, 1)
    wait_for(
        lambda: any(h["pid"] != first for h in run.handled()) and len(run.handled()) >= 10,
        timeout=90,
        message=run.log,
    )
    assert "cannot start consumer group" not in run.log()
    assert run.stop() == 0, run.log()

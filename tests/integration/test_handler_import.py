"""Issue 12.3 on the real broker: `kpipe run` imports a handler from the project root, as Python imports a
program's own modules, with no PYTHONPATH and from another working directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Producer
from run_helpers import KpipeRun

from helpers import wait_for

HANDLER = """\
import os

def record(event, ctx):
    with open(os.environ["KPIPE_TEST_OUT"], "a") as f:
        f.write(event.decode() + "\\n")
"""


def test_run_imports_the_handler_from_the_project_root(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[..., str],
    kpipe_run: Callable[..., KpipeRun],
    make_topics: Callable[..., None],
) -> None:
    topic, group = unique_name("rootimport"), unique_name("rootimporters")
    make_topics(topic)
    project = tmp_path / "myproj"
    (project / "app").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'myproj'\n")
    (project / "app" / "__init__.py").write_text("")
    (project / "app" / "handlers.py").write_text(HANDLER)
    (project / "pipelines").mkdir()
    (project / "pipelines" / "p.yaml").write_text(
        f"cluster: {{bootstrap_servers: '{kafka_bootstrap}'}}\n"
        f"topics:\n  {topic}: {{partitions: 1, replication_factor: 1}}\n"
        f"consumers:\n  {group}: {{topics: [{topic}], handler: 'app.handlers:record'}}\n"
    )
    out = tmp_path / "handled.txt"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = kpipe_run(
        project / "pipelines", cwd=elsewhere, env={"PYTHONPATH": None, "KPIPE_TEST_OUT": str(out)}
    )
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(3):
        producer.produce(topic, f"event-{i}".encode())
    assert producer.flush(10) == 0
    wait_for(lambda: out.exists() and len(out.read_text().splitlines()) == 3, timeout=60, message=run.log)
    assert out.read_text().splitlines() == ["event-0", "event-1", "event-2"]
    assert run.stop() == 0, run.log()

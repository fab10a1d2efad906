"""`local` is resolved once, at the edges (kpipe.load, the CLI), never by the compiled project or a worker."""

from __future__ import annotations

from pathlib import Path

import pytest

import kpipe
from kpipe.compilation.project import load_project
from kpipe.errors import LocalBrokerError
from kpipe.local import state
from kpipe.runtime.protocol import worker_starts

EXAMPLE = Path(__file__).resolve().parents[2] / "pipelines"  # bootstrap_servers: local


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KPIPE_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)


def test_the_compiled_project_does_no_io_for_local(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_io() -> str | None:
        raise AssertionError("the compiled project looked for the local broker")

    monkeypatch.setattr(state, "running_bootstrap", no_io)
    project = load_project([EXAMPLE])
    assert project.uses_local_broker
    assert project.producer_settings("order-api").client.get("bootstrap.servers") == "local"
    assert project.consumer_group("order-processors").client.get("bootstrap.servers") == "local"
    assert not hasattr(
        project, "producer"
    )  # opening clients is the runtime's (runtime.producer.open_producer)


def test_kpipe_load_resolves_local_to_the_running_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "running_bootstrap", lambda: "127.0.0.1:19999")
    project = kpipe.load(EXAMPLE)
    assert not project.uses_local_broker and project.bootstrap_servers == "127.0.0.1:19999"
    [setting] = [
        s for s in project.producer_settings("order-api").client.settings if s.key == "bootstrap.servers"
    ]
    assert (setting.value, setting.source) == ("127.0.0.1:19999", "override")
    assert callable(project.producer)


def test_kpipe_load_says_when_no_local_broker_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "running_bootstrap", lambda: None)
    with pytest.raises(LocalBrokerError, match="none is running"):
        kpipe.load(EXAMPLE)


def test_a_worker_is_never_left_to_resolve_local() -> None:
    project = load_project([EXAMPLE])  # `local`, not resolved: where the workers are started resolves it
    with pytest.raises(LocalBrokerError, match="not given the local broker's address"):
        worker_starts(project, [("order-processors", 1)])

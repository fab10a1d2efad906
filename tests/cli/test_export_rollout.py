"""`kpipe export kubernetes` and rollouts: content-hashed ConfigMaps (an old pod restarting mid-rollout reads its
own files), KEDA reading the brokers from the pods' environment, and a warning for every env() default the
manifests bake in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import kpipe

IMAGE = "registry.example/p:1"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BROKERS", "KPIPE_BOOTSTRAP_SERVERS", "LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)


def _project(root: Path, partitions: int = 2) -> Path:
    (root / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (root / "s.schema.json").write_text('{"type": "object"}\n')
    project = root / "p.yaml"
    project.write_text(
        "cluster: {bootstrap_servers: \"{{ env('BROKERS', 'localhost:9092') }}\"}\n"
        "schemas: {S: s.schema.json}\n"
        f"topics:\n  t: {{partitions: {partitions}, schema: S}}\n"
        "consumers:\n  g:\n    topics: [t]\n    handler: m:f\n"
        "    description: \"{{ env('LOG_LEVEL', 'info') }}\"\n"
        "    deploy: {autoscale: {lag_threshold: 10}}\n"
    )
    return project


def _export(project: Path, *args: str) -> tuple[list[dict[str, Any]], str]:
    code, out, err = kpipe("export", "kubernetes", str(project), "--image", IMAGE, *args)
    assert code == 0, err
    return [d for d in yaml.safe_load_all(out) if d], err


def _named(objects: list[dict[str, Any]], kind: str, component: str | None = None) -> dict[str, Any]:
    [found] = [
        o
        for o in objects
        if o["kind"] == kind and component in (None, o["metadata"]["labels"]["app.kubernetes.io/component"])
    ]
    return found


def _volume_config_map(deployment: dict[str, Any]) -> str:
    [volume] = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if "configMap" in v]
    return volume["configMap"]["name"]


def test_config_maps_are_named_by_their_content(tmp_path: Path) -> None:
    project = _project(tmp_path)
    first, _ = _export(project, "--set-env", "BROKERS=kafka:9092", "--set-env", "LOG_LEVEL=info")
    files = _named(first, "ConfigMap", "files")
    env = _named(first, "ConfigMap", "environment")
    assert files["immutable"] is True and env["immutable"] is True
    deployment = _named(first, "Deployment")
    assert _volume_config_map(deployment) == files["metadata"]["name"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    refs = {e["valueFrom"]["configMapKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}
    assert refs == {env["metadata"]["name"]}
    # The same project exported again: the same names (re-applying changes nothing).
    again, _ = _export(project, "--set-env", "BROKERS=kafka:9092", "--set-env", "LOG_LEVEL=info")
    assert [o["metadata"]["name"] for o in again] == [o["metadata"]["name"] for o in first]
    # A changed schema file: a new files ConfigMap, which the new pods mount; the old one keeps its content.
    (tmp_path / "s.schema.json").write_text('{"type": "object", "properties": {"id": {"type": "string"}}}\n')
    changed, _ = _export(project, "--set-env", "BROKERS=kafka:9092", "--set-env", "LOG_LEVEL=info")
    new_files = _named(changed, "ConfigMap", "files")
    assert new_files["metadata"]["name"] != files["metadata"]["name"]
    assert _volume_config_map(_named(changed, "Deployment")) == new_files["metadata"]["name"]
    assert _named(changed, "ConfigMap", "environment")["metadata"]["name"] == env["metadata"]["name"]
    # A changed --set-env value: a new env ConfigMap.
    moved, _ = _export(project, "--set-env", "BROKERS=kafka-2:9092", "--set-env", "LOG_LEVEL=info")
    assert _named(moved, "ConfigMap", "environment")["metadata"]["name"] != env["metadata"]["name"]


def test_keda_reads_the_brokers_from_the_pods_environment(tmp_path: Path) -> None:
    objects, _ = _export(_project(tmp_path), "--set-env", "BROKERS=kafka:9092", "--set-env", "LOG_LEVEL=info")
    [trigger] = _named(objects, "ScaledObject")["spec"]["triggers"]
    assert trigger["metadata"]["bootstrapServersFromEnv"] == "BROKERS"
    assert "bootstrapServers" not in trigger["metadata"]
    # KEDA resolves the variable from the scale target's container: it must be there, from the env ConfigMap.
    [container] = _named(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["BROKERS"]["valueFrom"]["configMapKeyRef"] == {
        "name": _named(objects, "ConfigMap", "environment")["metadata"]["name"],
        "key": "BROKERS",
    }
    assert _named(objects, "ConfigMap", "environment")["data"]["BROKERS"] == "kafka:9092"


def test_a_default_baked_into_the_manifests_is_named_in_a_warning(tmp_path: Path) -> None:
    project = _project(tmp_path)
    objects, err = _export(project)
    warnings = [line for line in err.splitlines() if ": warning: " in line]
    assert warnings == [
        f"{project}:1:34: warning: env('BROKERS') has no --set-env value: the manifests and the pods use its "
        "default from the files; pass --set-env BROKERS=VALUE if the cluster needs another",
        f"{project}:9:22: warning: env('LOG_LEVEL') has no --set-env value: the manifests and the pods use its "
        "default from the files; pass --set-env LOG_LEVEL=VALUE if the cluster needs another",
    ]
    assert "localhost:9092" not in err  # the variable is named, never its value
    # KEDA gets what the render saw, as a literal: there is no variable in the pods to read it from.
    [trigger] = _named(objects, "ScaledObject")["spec"]["triggers"]
    assert trigger["metadata"]["bootstrapServers"] == "localhost:9092"
    _, err = _export(project, "--set-env", "BROKERS=kafka:9092", "--set-env", "LOG_LEVEL=debug")
    assert "warning" not in err


def test_a_variable_name_no_pod_can_have_is_refused(tmp_path: Path) -> None:
    project = _project(tmp_path)
    project.write_text(
        project.read_text().replace("env('LOG_LEVEL', 'info')", "env('LOG\\nLEVEL: x', 'info')")
    )
    code, out, err = kpipe(
        "export", "kubernetes", str(project), "--image", IMAGE, "--set-env", "BROKERS=k:9092"
    )
    assert (code, out) == (2, "")
    assert f"{project}:9:22:" in err and "env() reads a variable no pod can have" in err
    assert len(err.strip().splitlines()) == 1

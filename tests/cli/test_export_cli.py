"""`kpipe export`: AsyncAPI, graph, Kubernetes and Dockerfile output for the example project (golden files),
checked against the official AsyncAPI 3.0.0 JSON Schema and Kubernetes' own schemas (kubernetes-validate,
strict), and against the rules that matter: no secret in any output, no project code imported unasked.

Regenerate the golden files after an intended change with KPIPE_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from helpers import kpipe

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "export"
ASYNCAPI_SCHEMA = ROOT / "tests" / "fixtures" / "asyncapi" / "asyncapi-3.0.0.schema.json"
# The oldest Kubernetes still commonly run and the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.28.0", kubernetes_validate.utils.latest_version())
IMAGE = "registry.example/orders:1.4.0"
BOOTSTRAP = "KAFKA_BOOTSTRAP_SERVERS=kafka-0.kafka:9092,kafka-1.kafka:9092"


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "KPIPE_BOOTSTRAP_SERVERS", "KPIPE_DEBUG", "KAFKA_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


def ok(*args: str) -> str:
    code, out, err = kpipe(*args)
    assert code == 0, err
    return out


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("KPIPE_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} differs; KPIPE_UPDATE_GOLDEN=1 regenerates it"


def asyncapi_errors(document: dict[str, Any]) -> list[str]:
    schema = json.loads(ASYNCAPI_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(document)]


def k8s_objects(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def k8s_validate(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        if obj["apiVersion"].startswith("keda.sh/"):
            keda_validate(obj)
        else:
            for version in K8S_VERSIONS:
                kubernetes_validate.validate(obj, version, strict=True)


# -- graph -----------------------------------------------------------------------------------------------------


def test_graph_of_the_example_project() -> None:
    mermaid = ok("export", "graph", "pipelines")
    golden("graph.mmd", mermaid)
    golden("graph.dot", ok("export", "graph", "pipelines", "--format", "dot"))
    assert mermaid.startswith("flowchart LR\n")
    assert '    topic_orders[("orders<br/>3 partitions, key customer_id")]:::topic' in mermaid
    assert "    group_order_processors -. dead letters .-> topic_orders_dlq" in mermaid


def test_the_readme_shows_the_example_graph() -> None:
    mermaid = ok("export", "graph", "pipelines")
    assert f"```mermaid\n{mermaid}```" in (ROOT / "README.md").read_text()


def test_graph_labels_escape_hostile_names(tmp_path: Path) -> None:
    project = tmp_path / "p.yaml"
    project.write_text(
        "topics:\n  t: {partitions: 1}\n  out: {partitions: 1}\nconsumers:\n"
        '  \'a"]-->x; click x "javascript:alert(1)"\':\n    topics: [t]\n    handler: m:f\n    emits: [out]\n'
        "    on_error: {action: skip}\n"
    )
    mermaid = ok("export", "graph", str(project))
    assert '"]-->x' not in mermaid and "#quot;#93;--#gt;x" in mermaid
    assert "-- emits --> topic_out" in mermaid
    dot = ok("export", "graph", str(project), "--format", "dot")
    assert '\\"]-->x' in dot and '[label="emits"]' in dot


# -- AsyncAPI --------------------------------------------------------------------------------------------------


def test_asyncapi_of_the_example_project() -> None:
    args = (
        "export",
        "asyncapi",
        "pipelines",
        "-b",
        "kafka-1:9092,kafka-2:9092",
        "--title",
        "Shop",
        "--version",
        "1.2.0",
    )
    text = ok(*args)
    golden("asyncapi.yaml", text)
    as_json = ok(*args, "--format", "json")
    golden("asyncapi.json", as_json)
    document = yaml.safe_load(text)
    assert document == json.loads(as_json)
    assert asyncapi_errors(document) == []
    assert document["info"] == {
        "title": "Shop",
        "version": "1.2.0",
        "description": document["info"]["description"],
    }
    assert set(document["servers"]) == {"kafka-1", "kafka-2"}
    assert sorted(c["address"] for c in document["channels"].values()) == [
        "orders", "orders.dlq", "user-events", "welcome-mailer.dlq"
    ]  # fmt: skip
    operations = document["operations"]
    assert {o["title"] for o in operations.values()} >= {
        "Producer order-api", "Producer user-service",
        "Consumer group order-processors", "Consumer group analytics", "Consumer group welcome-mailer",
    }  # fmt: skip
    receive = operations["order-processors.receive.orders"]
    assert receive["action"] == "receive"
    assert receive["bindings"]["kafka"]["groupId"] == {"type": "string", "enum": ["order-processors"]}
    orders = document["channels"]["orders"]
    assert orders["bindings"]["kafka"]["partitions"] == 3
    assert orders["messages"]["OrderEvent"]["bindings"]["kafka"]["key"]["type"] == "string"
    assert document["components"]["schemas"]["OrderEvent"]["required"][0] == "event_type"
    dead = operations["order-processors.dead-letter"]
    assert (dead["action"], dead["channel"]) == ("send", {"$ref": "#/channels/orders.dlq"})


def test_the_official_schema_rejects_a_broken_document() -> None:
    # The fixture must be able to fail: a channel binding with a field Kafka bindings do not have.
    document = yaml.safe_load(ok("export", "asyncapi", "pipelines"))
    document["channels"]["orders"]["bindings"]["kafka"]["partitionz"] = 3
    document["operations"]["order-api.send"]["action"] = "publish"  # AsyncAPI 2's word
    assert len(asyncapi_errors(document)) >= 2


def _larger_project(root: Path, topics: int = 30) -> Path:
    """A generated project: many topics, producers, groups with dead letters, emits, SASL, a model schema."""
    (root / "models.py").write_text(
        "from pydantic import BaseModel\n\n"
        "class Line(BaseModel):\n    sku: str\n    qty: int\n\n"
        "class Invoice(BaseModel):\n    invoice_id: str\n    lines: list[Line]\n"
    )
    (root / "event.schema.yaml").write_text(
        "type: object\nrequired: [id]\nproperties:\n  id: {type: string}\n  part: {$ref: '#/$defs/part'}\n"
        "$defs:\n  part: {type: object, properties: {n: {type: integer}}}\n"
    )
    lines = [
        "cluster:",
        "  bootstrap_servers: broker-a:9093,broker-b:9093",
        "  config:",
        "    security.protocol: SASL_SSL",
        "    sasl.mechanism: SCRAM-SHA-512",
        "    sasl.username: \"{{ env('KAFKA_USER', 'svc') }}\"",
        "    sasl.password: \"{{ env('KAFKA_PASSWORD') }}\"",
        "schemas:",
        "  Event: event.schema.yaml",
        "  Invoice: {model: models:Invoice}",
        "topics:",
        "  invoices: {partitions: 6, key: invoice_id, schema: Invoice, config: {cleanup.policy: [compact, delete]}}",
    ]
    lines += [
        f"  t{i}: {{partitions: {1 + i % 5}, replication_factor: 3, key: id, schema: Event}}"
        for i in range(topics)
    ]
    lines.append("producers:")
    lines += [f"  p{i}: {{topic: t{i}}}" for i in range(0, topics, 2)]
    lines.append("  billing: {topic: invoices}")
    lines.append("consumers:")
    for i in range(0, topics - 1, 3):
        lines += [
            f"  g{i}:",
            f"    topics: [t{i}, t{i + 1}]",
            "    handler: app:handle",
            f"    emits: [t{i + 2}, invoices]",
            f"    on_error: {{action: {['dead_letter', 'skip', 'stop'][i % 3]}}}",
        ]
    path = root / "big.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_asyncapi_of_a_larger_generated_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_PASSWORD", "pa55-never-in-output")
    project = _larger_project(tmp_path)
    text = ok("export", "asyncapi", str(project), "--import-code", "--format", "json")
    assert "pa55-never-in-output" not in text and "svc" not in text
    document = json.loads(text)
    assert asyncapi_errors(document) == []
    spec = yaml.safe_load(project.read_text().replace("{{", "'{{").replace('}}"', "}}'\""))
    addresses = {c["address"] for c in document["channels"].values()}
    assert set(spec["topics"]) <= addresses
    titles = {o["title"] for o in document["operations"].values()}
    assert {f"Producer {p}" for p in spec["producers"]} <= titles
    assert {f"Consumer group {g}" for g in spec["consumers"]} <= titles
    assert "g0 emits to invoices" in titles
    assert document["servers"]["kafka-1"] == {
        "host": "broker-a:9093",
        "protocol": "kafka-secure",
        "description": "security.protocol SASL_SSL",
        "security": [{"$ref": "#/components/securitySchemes/sasl"}],
    }
    assert document["components"]["securitySchemes"]["sasl"]["type"] == "scramSha512"
    invoice = document["components"]["schemas"]["Invoice"]
    assert invoice["properties"]["lines"]["items"] == {"$ref": "#/components/schemas/Invoice/$defs/Line"}
    event = document["components"]["schemas"]["Event"]
    assert event["properties"]["part"] == {"$ref": "#/components/schemas/Event/$defs/part"}


# -- no project code without --import-code ---------------------------------------------------------------------


def _marker_project(root: Path) -> tuple[Path, Path]:
    marker = root / "imported.marker"
    (root / "evil_models.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('imported')\n"
        "from pydantic import BaseModel\n\nclass Order(BaseModel):\n    order_id: str\n"
    )
    (root / "evil_handlers.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('h')\n\n\ndef handle(event, ctx):\n    pass\n"
    )
    project = root / "p.yaml"
    project.write_text(
        "cluster: {bootstrap_servers: 'kafka:9092'}\n"
        "schemas:\n  Order: {model: evil_models:Order}\n"
        "topics:\n  orders: {partitions: 2, key: order_id, schema: Order}\n"
        "producers:\n  api: {topic: orders}\n"
        "consumers:\n  g:\n    topics: [orders]\n    handler: evil_handlers:handle\n"
    )
    (root / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    return project, marker


def test_export_imports_no_project_code_without_the_flag(tmp_path: Path) -> None:
    project, marker = _marker_project(tmp_path)
    for args in (
        ("asyncapi",),
        ("graph",),
        ("graph", "--format", "dot"),
        ("kubernetes", "--image", IMAGE),
        ("dockerfile", "--kpipe", "kpipe @ https://x.example/kpipe-0.1.0-py3-none-any.whl"),
    ):
        ok("export", *args, str(project))
        assert not marker.exists(), f"kpipe export {args[0]} imported project code"
    document = yaml.safe_load(ok("export", "asyncapi", str(project)))
    message = document["channels"]["orders"]["messages"]["Order"]
    assert "payload" not in message and "--import-code" in message["description"]
    assert asyncapi_errors(document) == []
    # With the flag the model is imported, and its JSON Schema is the payload.
    document = yaml.safe_load(ok("export", "asyncapi", str(project), "--import-code"))
    assert marker.exists()
    assert document["components"]["schemas"]["Order"]["required"] == ["order_id"]
    assert asyncapi_errors(document) == []


# -- Kubernetes ------------------------------------------------------------------------------------------------


def test_kubernetes_manifests_of_the_example_project() -> None:
    text = ok("export", "kubernetes", "pipelines", "--image", IMAGE, "--set-env", BOOTSTRAP, "--keda")
    golden("kubernetes.yaml", text)
    objects = k8s_objects(text)
    k8s_validate(objects)
    kinds = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert kinds[2][1].startswith("kpipe-apply-")  # a name of its own per image and files (see docs)
    assert kinds[0][1].startswith("kpipe-files-") and kinds[1][1].startswith("kpipe-env-")  # content hashes
    assert kinds == [
        ("ConfigMap", kinds[0][1]),
        ("ConfigMap", kinds[1][1]),
        ("Job", kinds[2][1]),
        ("Deployment", "analytics"), ("PodDisruptionBudget", "analytics"), ("ScaledObject", "analytics"),
        ("Deployment", "order-processors"), ("PodDisruptionBudget", "order-processors"),
        ("ScaledObject", "order-processors"),
        ("Deployment", "welcome-mailer"), ("PodDisruptionBudget", "welcome-mailer"),
        ("ScaledObject", "welcome-mailer"),
    ]  # fmt: skip


def _by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def test_each_deployment_runs_its_group() -> None:
    objects = k8s_objects(
        ok("export", "kubernetes", "pipelines", "--image", IMAGE, "--set-env", BOOTSTRAP, "-n", "shop",
           "--shutdown-timeout", "50", "--values", "pipelines/values/prod.yaml", "--name-prefix", "prod")
    )  # fmt: skip
    k8s_validate(objects)
    deployments = _by_kind(objects, "Deployment")
    assert set(deployments) == {"prod-analytics", "prod-order-processors", "prod-welcome-mailer"}
    processors = deployments["prod-order-processors"]
    assert processors["metadata"]["namespace"] == "shop"
    assert processors["spec"]["replicas"] == 2
    assert processors["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    pod = processors["spec"]["template"]
    assert pod["spec"]["terminationGracePeriodSeconds"] > 50
    [container] = pod["spec"]["containers"]
    assert container["image"] == IMAGE
    assert container["args"] == [
        "run", "pipelines", "--values", "pipelines/values/prod.yaml",
        "--group", "order-processors", "--instances", "1", "--shutdown-timeout", "50",
        "--metrics-port", "9464", "--metrics-host", "0.0.0.0", "--log-format", "json",
    ]  # fmt: skip
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["ports"] == [{"name": "metrics", "containerPort": 9464, "protocol": "TCP"}]
    annotations = pod["metadata"]["annotations"]
    assert (annotations["prometheus.io/scrape"], annotations["prometheus.io/port"]) == ("true", "9464")
    [env_map] = [name for name in _by_kind(objects, "ConfigMap") if name.startswith("prod-kpipe-env-")]
    assert container["env"][0] == {
        "name": "KAFKA_BOOTSTRAP_SERVERS",
        "valueFrom": {"configMapKeyRef": {"name": env_map, "key": "KAFKA_BOOTSTRAP_SERVERS"}},
    }
    assert pod["metadata"]["labels"]["kpipe.dev/group"] == "order-processors"
    assert processors["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/app/pipelines/orders.yaml", "/app/schemas/order_event.schema.yaml"} <= mounts
    assert "/app/pipelines/values/prod.yaml" in mounts
    assert _by_kind(objects, "PodDisruptionBudget")["prod-order-processors"]["spec"]["maxUnavailable"] == 1
    [job] = _by_kind(objects, "Job").values()
    assert job["metadata"]["name"].startswith("prod-kpipe-apply-")
    assert job["spec"]["backoffLimit"] == 0  # a failed apply is a plan to read, not to retry (docs)
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "apply", "pipelines", "--values", "pipelines/values/prod.yaml", "--yes"
    ]  # fmt: skip


def test_files_in_image_leaves_out_the_files() -> None:
    objects = k8s_objects(
        ok("export", "kubernetes", "pipelines", "--image", IMAGE, "--set-env", BOOTSTRAP,
           "--files-in-image", "--hook", "helm")
    )  # fmt: skip
    k8s_validate(objects)
    assert [
        o["metadata"]["labels"]["app.kubernetes.io/component"] for o in objects if o["kind"] == "ConfigMap"
    ] == ["environment"]
    for deployment in _by_kind(objects, "Deployment").values():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert [m["mountPath"] for m in container["volumeMounts"]] == ["/tmp"]
    job = _by_kind(objects, "Job")["kpipe-apply"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"


def test_the_embedded_broker_is_refused() -> None:
    code, out, err = kpipe("export", "kubernetes", "pipelines", "--image", IMAGE)
    assert (code, out) == (2, "")
    assert "bootstrap_servers is 'local'" in err and "--set-env KAFKA_BOOTSTRAP_SERVERS=" in err


def _secret_project(root: Path) -> Path:
    (root / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    project = root / "p.yaml"
    project.write_text(
        "cluster:\n"
        "  bootstrap_servers: \"{{ env('BROKERS') }}\"\n"
        "  config:\n"
        "    security.protocol: SASL_SSL\n"
        "    sasl.mechanism: PLAIN\n"
        "    sasl.username: \"{{ env('KAFKA_USER') }}\"\n"
        "    sasl.password: \"{{ env('KAFKA_SECRET_VALUE') }}\"\n"
        "    ssl.key.password: \"{{ env('TLS_PASS', '') }}\"\n"
        "topics:\n  t: {partitions: 4}\n"
        "consumers:\n  g:\n    topics: [t]\n    handler: m:f\n    ordering: none\n"
        "    deploy:\n"
        "      resources: {limits: {cpu: '2'}}\n"
        "      autoscale: {min_replicas: 0, lag_threshold: 50}\n"
    )
    return project


def test_secret_values_never_reach_a_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = _secret_project(tmp_path)
    secrets = {
        "KAFKA_USER": "alice-the-user",
        "KAFKA_SECRET_VALUE": "hunter2-secret",
        "TLS_PASS": "tls-pass-9",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    text = ok("export", "kubernetes", str(project), "--image", IMAGE, "--set-env", "BROKERS=k:9092",
              "--secret-name", "kafka-credentials")  # fmt: skip
    for value in secrets.values():
        assert value not in text
    objects = k8s_objects(text)
    k8s_validate(objects)
    [container] = _by_kind(objects, "Deployment")["g"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["KAFKA_SECRET_VALUE"]["valueFrom"] == {
        "secretKeyRef": {"name": "kafka-credentials", "key": "KAFKA_SECRET_VALUE"}
    }
    assert env["KAFKA_USER"]["valueFrom"]["secretKeyRef"]["name"] == "kafka-credentials"
    assert env["TLS_PASS"]["valueFrom"]["secretKeyRef"] == {
        "name": "kafka-credentials", "key": "TLS_PASS", "optional": True
    }  # fmt: skip
    assert env["BROKERS"]["valueFrom"]["configMapKeyRef"]["key"] == "BROKERS"
    assert not any(o["kind"] == "Secret" for o in objects)
    assert _by_kind(objects, "Deployment")["g"]["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 1
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "512Mi", "cpu": "2"},
    }
    # The AsyncAPI document of the same project holds no secret either.
    monkeypatch.setenv("BROKERS", "k:9092")
    assert not any(v in ok("export", "asyncapi", str(project)) for v in secrets.values())


def test_a_secret_cannot_be_given_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _secret_project(tmp_path)
    monkeypatch.setenv("KAFKA_USER", "u")
    code, out, err = kpipe("export", "kubernetes", str(project), "--image", IMAGE,
                           "--set-env", "BROKERS=k:9092", "--set-env", "KAFKA_SECRET_VALUE=x")  # fmt: skip
    assert (code, out) == (2, "")
    assert "KAFKA_SECRET_VALUE is a secret (it feeds sasl.password)" in err
    # A variable no template reads, but whose name says it is a secret, is refused too.
    monkeypatch.setenv("KAFKA_SECRET_VALUE", "s")
    code, out, err = kpipe("export", "kubernetes", str(project), "--image", IMAGE,
                           "--set-env", "BROKERS=k:9092", "--set-env", "WEBHOOK_PASSWORD=x")  # fmt: skip
    assert (code, out) == (2, "") and "WEBHOOK_PASSWORD is a secret (its name says so)" in err


def test_a_variable_without_default_or_value_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _secret_project(tmp_path)
    message = f"{project}:2:26: env('BROKERS') has no default and no value: pass --set-env BROKERS=VALUE"
    code, _, err = kpipe("export", "kubernetes", str(project), "--image", IMAGE)
    assert code == 2 and message in err
    # Set in the exporting shell only, it would still be missing in the pods.
    monkeypatch.setenv("BROKERS", "k:9092")
    monkeypatch.setenv("KAFKA_USER", "u")
    monkeypatch.setenv("KAFKA_SECRET_VALUE", "s")
    code, _, err = kpipe("export", "kubernetes", str(project), "--image", IMAGE)
    assert code == 2 and message in err


def test_keda_scaled_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = _secret_project(tmp_path)
    monkeypatch.setenv("KAFKA_SECRET_VALUE", "x")
    monkeypatch.setenv("KAFKA_USER", "x")
    objects = k8s_objects(
        ok("export", "kubernetes", str(project), "--image", IMAGE, "--set-env", "BROKERS=k:9092")
    )
    [scaled] = _by_kind(objects, "ScaledObject").values()
    keda_validate(scaled)
    assert scaled["spec"]["scaleTargetRef"] == {"name": "g"}
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (0, 4)  # 4 partitions
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["metadata"] == {
        "bootstrapServersFromEnv": "BROKERS",  # the pods' own variable, from the env ConfigMap
        "consumerGroup": "g",
        "topic": "t",
        "lagThreshold": "50",
        "offsetResetPolicy": "earliest",
        "allowIdleConsumers": "false",
    }
    assert trigger["authenticationRef"] == {"name": "kpipe-keda-auth"}
    # KEDA owns the replica count: re-applying the Deployment must not reset it.
    assert "replicas" not in _by_kind(objects, "Deployment")["g"]["spec"]


# KEDA's ScaledObject as its CRD defines it, strict about unknown fields (see tests/fixtures/keda/README.md).
KEDA_SCALED_OBJECT = json.loads(
    (ROOT / "tests" / "fixtures" / "keda" / "scaledobject-v1alpha1.schema.json").read_text()
)


def keda_validate(obj: dict[str, Any]) -> None:
    jsonschema.validate(obj, KEDA_SCALED_OBJECT)
    spec = obj["spec"]
    assert spec.get("minReplicaCount", 0) <= spec.get("maxReplicaCount", 100)
    for trigger in spec["triggers"]:
        assert trigger["type"] == "kafka"
        assert {"consumerGroup", "topic", "lagThreshold"} <= set(trigger["metadata"])
        assert len({"bootstrapServers", "bootstrapServersFromEnv"} & set(trigger["metadata"])) == 1


# -- Dockerfile ------------------------------------------------------------------------------------------------


def test_dockerfile_of_the_example_project() -> None:
    # The repository's own Dockerfile is this command's output for the example project.
    text = ok("export", "dockerfile", "pipelines")
    if os.environ.get("KPIPE_UPDATE_GOLDEN"):
        (ROOT / "Dockerfile").write_text(text)
    assert text == (ROOT / "Dockerfile").read_text()
    lines = text.splitlines()
    assert [line for line in lines if line.startswith("FROM ")] == [
        "FROM python:3.12-slim AS build",
        "FROM python:3.12-slim",
    ]
    assert 'RUN ["pip", "wheel", "--wheel-dir", "/wheels", "."]' in lines  # kpipe's own repository
    assert "USER 10001:10001" in lines
    assert 'ENTRYPOINT ["kpipe"]' in lines
    assert 'COPY --chown=root:root ["pipelines/", "/app/pipelines/"]' in lines
    assert 'COPY --chown=root:root ["schemas/", "/app/schemas/"]' in lines


def test_dockerfile_never_installs_kpipe_by_its_bare_name(tmp_path: Path) -> None:
    # PyPI's `kpipe` is an unrelated project: outside kpipe's own repository the project must name a source.
    project, _ = _marker_project(tmp_path)
    code, out, err = kpipe("export", "dockerfile", str(project))
    assert (code, out) == (2, "")
    assert "the image needs kpipe, and the project names no source for it" in err
    pinned = ok(
        "export",
        "dockerfile",
        str(project),
        "--kpipe",
        "kpipe @ git+https://git.example/kpipe@v0.1.0",
    )
    assert (
        'RUN ["pip", "wheel", "--wheel-dir", "/wheels", "kpipe @ git+https://git.example/kpipe@v0.1.0", "."]'
        in pinned
    )
    assert not any("pip install" in line and "kpipe" in line for line in pinned.splitlines())


def test_a_secret_written_into_a_file_is_not_published(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    project = tmp_path / "p.yaml"
    project.write_text(
        "cluster:\n  bootstrap_servers: k:9092\n  config:\n    security.protocol: SASL_SSL\n"
        "    sasl.mechanism: PLAIN\n    sasl.username: svc-user\n    sasl.password: literal-pa55\n"
        "topics:\n  t: {partitions: 1}\nconsumers:\n  g: {topics: [t], handler: m:f}\n"
    )
    code, out, err = kpipe("export", "kubernetes", str(project), "--image", IMAGE)
    assert (code, out) == (2, "")
    assert f"the secret value of sasl.username of cluster at {project}:6:" in err
    assert "would be written into ConfigMap kpipe-files-" in err
    assert "literal-pa55" not in err and "svc-user" not in err
    text = ok("export", "kubernetes", str(project), "--image", IMAGE, "--files-in-image")
    assert "literal-pa55" not in text and "svc-user" not in text


def test_the_strict_kubernetes_check_can_fail() -> None:
    objects = k8s_objects(ok("export", "kubernetes", "pipelines", "--image", IMAGE, "--set-env", BOOTSTRAP))
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        k8s_validate([deployment])
    scaled = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "g"},
              "spec": {"scaleTargetRef": {"name": "g"}, "triggers": [{"type": "kafka", "metadata": {"lagThreshold": 5}}]}}  # fmt: skip
    with pytest.raises(jsonschema.ValidationError, match="is not of type 'string'"):
        keda_validate(scaled)  # trigger metadata values are strings in the CRD
    scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] = "5"
    scaled["spec"]["maxReplicas"] = 3  # misspelt maxReplicaCount
    with pytest.raises(jsonschema.ValidationError, match="'maxReplicas' was unexpected"):
        keda_validate(scaled)


def test_one_file_per_object_in_apply_order(tmp_path: Path) -> None:
    args = ("export", "kubernetes", "pipelines", "--image", IMAGE, "--set-env", BOOTSTRAP, "--keda")
    stream = k8s_objects(ok(*args))
    code, out, err = kpipe(*args, "-o", str(tmp_path / "deploy"))
    assert (code, out, err) == (0, "", f"wrote {len(stream)} manifests to {tmp_path / 'deploy'}\n")
    files = sorted((tmp_path / "deploy").iterdir())
    job = next(o for o in stream if o["kind"] == "Job")["metadata"]["name"]
    maps = [o["metadata"]["name"] for o in stream if o["kind"] == "ConfigMap"]
    assert [f.name for f in files][:4] == [
        f"00-configmap-{maps[0]}.yaml",
        f"01-configmap-{maps[1]}.yaml",
        f"02-job-{job}.yaml",
        "03-deployment-analytics.yaml",
    ]
    assert [yaml.safe_load(f.read_text()) for f in files] == stream


def test_as_a_hook_the_config_maps_the_job_mounts_come_first() -> None:
    objects = k8s_objects(ok("export", "kubernetes", "pipelines", "--image", IMAGE, "--set-env", BOOTSTRAP,
                             "--hook", "helm"))  # fmt: skip
    k8s_validate(objects)
    maps = _by_kind(objects, "ConfigMap")
    job = _by_kind(objects, "Job")["kpipe-apply"]["metadata"]["annotations"]
    for config_map in maps.values():
        annotations = config_map["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == job["helm.sh/hook"]
        assert int(annotations["helm.sh/hook-weight"]) < int(job["helm.sh/hook-weight"])
        assert "hook-succeeded" not in annotations["helm.sh/hook-delete-policy"]  # the Deployments need them
    argo = k8s_objects(ok("export", "kubernetes", "pipelines", "--image", IMAGE, "--set-env", BOOTSTRAP,
                          "--hook", "argo"))  # fmt: skip
    assert (
        _by_kind(argo, "Job")["kpipe-apply"]["metadata"]["annotations"]["argocd.argoproj.io/hook"]
        == "PreSync"
    )
    for config_map in _by_kind(argo, "ConfigMap").values():
        assert config_map["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "-1"

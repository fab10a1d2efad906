"""`kpipe export asyncapi`: what the document says about schemaless topics, emits, dead letters and the embedded
broker, checked against the official AsyncAPI 3.0.0 JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from helpers import kpipe

ROOT = Path(__file__).resolve().parents[2]
ASYNCAPI_SCHEMA = json.loads(
    (ROOT / "tests" / "fixtures" / "asyncapi" / "asyncapi-3.0.0.schema.json").read_text()
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "KPIPE_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(name, raising=False)


def _document(project: Path, *args: str) -> dict[str, Any]:
    code, out, err = kpipe("export", "asyncapi", str(project), *args)
    assert code == 0, err
    document = yaml.safe_load(out)
    errors = [e.message[:200] for e in jsonschema.Draft7Validator(ASYNCAPI_SCHEMA).iter_errors(document)]
    assert errors == []
    return document


def _project(root: Path, bootstrap: str = "kafka:9092") -> Path:
    (root / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (root / "s.schema.json").write_text('{"type": "object", "properties": {"id": {"type": "string"}}}\n')
    project = root / "p.yaml"
    project.write_text(
        f"cluster: {{bootstrap_servers: '{bootstrap}'}}\n"
        "schemas: {S: s.schema.json}\n"
        "topics:\n"
        "  in: {partitions: 1, schema: S}\n"
        "  audit: {partitions: 1}\n"
        "  checked: {partitions: 1, schema: S}\n"
        "  in.dlq: {partitions: 1}\n"
        "  typed.dlq: {partitions: 1, schema: S}\n"
        "consumers:\n"
        "  g:\n    topics: [in]\n    handler: m:f\n    emits: [audit, checked]\n"
        "    on_error: {action: dead_letter, dead_letter_topic: in.dlq}\n"
        "  h:\n    topics: [checked]\n    handler: m:f\n"
        "    on_error: {action: dead_letter, dead_letter_topic: typed.dlq}\n"
    )
    return project


def test_a_schemaless_topic_handlers_emit_to_is_json(tmp_path: Path) -> None:
    document = _document(_project(tmp_path))
    [(name, message)] = document["channels"]["audit"]["messages"].items()
    assert message.get("contentType", document["defaultContentType"]) == "application/json"
    assert "octet-stream" not in json.dumps(message)
    assert "No schema is declared" in message["description"] and "JSON" in message["description"]
    assert document["operations"]["g.emit.audit"]["messages"] == [
        {"$ref": f"#/channels/audit/messages/{name}"}
    ]


def test_the_emit_operation_says_what_is_validated(tmp_path: Path) -> None:
    operations = _document(_project(tmp_path))["operations"]
    assert "validated against its schema S" in operations["g.emit.checked"]["description"]
    unchecked = operations["g.emit.audit"]["description"]
    assert "validated against" not in unchecked and "not validated: the topic declares no schema" in unchecked


def test_every_dead_letter_header_is_listed(tmp_path: Path) -> None:
    from kpipe.runtime import dead_letters
    from kpipe.runtime.worker import failures

    written = {
        value
        for module in (failures, dead_letters)
        for name, value in vars(module).items()
        if name.startswith("H_") and isinstance(value, str)
    }
    assert len(written) >= 12
    document = _document(_project(tmp_path))
    for channel in ("in.dlq", "typed.dlq"):  # schemaless or not, a dead-letter topic carries the headers
        [message] = document["channels"][channel]["messages"].values()
        headers = message["headers"]
        assert set(headers["properties"]) == written, channel
        assert set(headers["required"]) == {
            "kpipe.source.topic", "kpipe.source.partition", "kpipe.source.offset",
            "kpipe.error.type", "kpipe.error.message", "kpipe.group", "kpipe.attempts",
        }  # fmt: skip
    [plain] = document["channels"]["in.dlq"]["messages"].values()
    assert plain["contentType"] == "application/octet-stream"  # the failed event's bytes, as read
    assert "headers" not in next(iter(document["channels"]["audit"]["messages"].values()))


def test_the_embedded_broker_is_described_not_dropped(tmp_path: Path) -> None:
    from kpipe.export.asyncapi import EMBEDDED_BROKER
    from kpipe.local.state import DEFAULT_PORT

    assert f"localhost:{DEFAULT_PORT}" == EMBEDDED_BROKER
    project = _project(tmp_path, bootstrap="local")
    document = _document(project)
    assert document["servers"] == {
        "local": {
            "host": EMBEDDED_BROKER,
            "protocol": "kafka",
            "title": "kpipe's embedded development broker",
            "description": document["servers"]["local"]["description"],
        }
    }
    assert "-b HOST:PORT" in document["servers"]["local"]["description"]
    # -b names the real brokers instead.
    assert set(_document(project, "-b", "k1:9092,k2:9092")["servers"]) == {"kafka-1", "kafka-2"}

"""One escaping rule per export format: names and descriptions from hostile files reach every export intact, as
data, and never as a line, node, edge, document or instruction of their own.

Each output is parsed by its own grammar (YAML, JSON, a line grammar of the Mermaid and DOT kpipe writes) and
must hold exactly the objects the project declares, with the hostile strings round-tripped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from helpers import kpipe

ROOT = Path(__file__).resolve().parents[2]
ASYNCAPI_SCHEMA = json.loads(
    (ROOT / "tests" / "fixtures" / "asyncapi" / "asyncapi-3.0.0.schema.json").read_text()
)
IMAGE = "registry.example/p:1"
# Group names and descriptions an attacker would write: line breaks, quotes, brackets, Mermaid and DOT syntax,
# YAML document markers, GitHub workflow commands, Markdown strings, HTML.
HOSTILE = [
    'a"]-->x; click x "javascript:alert(1)"',
    "b\n::error file=README.md,line=1::FORGED\n::stop-commands::x",
    "c\r\n---\nkind: Secret\n",
    "d]\n    evil[(injected)]\n    evil --> topic_t",
    "e` **md** `<img src=x onerror=alert(1)>",
    'f\\"; evil [label="x"]; //',
    "g #quot; %%{init: {}}%% \u2028 \u0085 \t end",
    "h }\n}\ndigraph x {",
    "i ##[error file=README.md]FORGED \\##[stop-commands]t",  # GitHub's legacy command runs anywhere in a line
]
DESCRIPTION = 'line one\n::warning::FORGED\n"quoted" ]] --> x\n---\nkind: Secret\r\n'


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "KPIPE_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(name, raising=False)


def _project(root: Path) -> Path:
    (root / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    topics = {
        "t": {"partitions": 2, "description": DESCRIPTION},
        "out": {"partitions": 1, "description": DESCRIPTION},
        "t.dlq": {"partitions": 1},
    }
    consumers = {
        name: {
            "topics": ["t"],
            "handler": "m:f",
            "emits": ["out"],
            "ordering": "none",
            "on_error": {"action": "dead_letter", "dead_letter_topic": "t.dlq"},
        }
        for name in HOSTILE
    }
    project = root / "p.yaml"
    # JSON is YAML: every string written with escapes, never raw.
    project.write_text(
        json.dumps(
            {
                "cluster": {"bootstrap_servers": "kafka:9092"},
                "topics": topics,
                "producers": {"api": {"topic": "t"}},
                "consumers": consumers,
            }
        )
    )
    return project


def _ok(*args: str) -> str:
    code, out, err = kpipe(*args)
    assert code == 0, err
    return out


# Mermaid as kpipe writes it: one statement per line, labels quoted.
_MERMAID_LABEL = r'"[^"\x00-\x1f\x7f\u2028\u2029\x85]*"'
_MERMAID_LINES = [
    r"flowchart LR",
    rf"    (producer|topic|group)_\w+(\[{_MERMAID_LABEL}\]|\[\({_MERMAID_LABEL}\)\]|\(\[{_MERMAID_LABEL}\]\)):::(producer|topic|group)",
    r"    \w+ (-->|-\. dead letters \.->|-- emits -->) \w+",
    r"    classDef (producer|topic|group) fill:#[0-9a-f]{6},stroke:#[0-9a-f]{6}",
]


def test_mermaid_labels_hold_every_hostile_name_as_text(tmp_path: Path) -> None:
    text = _ok("export", "graph", str(_project(tmp_path)))
    lines = text.splitlines()
    for line in lines:
        assert any(re.fullmatch(p, line) for p in _MERMAID_LINES), f"not a line kpipe writes: {line!r}"
    groups = [line for line in lines if re.match(r"    group_\w+\(\[", line)]
    assert len(groups) == len(HOSTILE)
    edges = [line for line in lines if re.fullmatch(_MERMAID_LINES[2], line)]
    assert len(edges) == 1 + 3 * len(HOSTILE)  # api → t, and per group: receive, dead letters, emits
    for line in groups:
        label = re.search(_MERMAID_LABEL, line).group(0)
        for part in label.strip('"').split("<br/>"):  # kpipe's own line break between name and detail
            for char in "[]<>`{}|":
                assert char not in part, (char, line)
    assert not any(line.lstrip().startswith("::") for line in lines)
    from kpipe.export.graph import mermaid_label

    assert mermaid_label('x"]\n-->y') == "x#quot;#93; --#gt;y"
    assert mermaid_label("#quot;") == "#35;quot;"  # a name that looks like a code stays text


_DOT_STRING = r'"(?:[^"\\\x00-\x1f\x7f\u2028\u2029\x85]|\\.)*"'
_DOT_LINES = [
    r"digraph kpipe \{",
    r"    rankdir=LR;",
    r'    node \[fontname="Helvetica"\];',
    rf"    (producer|topic|group)_\w+ \[label={_DOT_STRING}, shape=\w+, style=(?:{_DOT_STRING}|\w+), fillcolor={_DOT_STRING}\];",
    rf"    \w+ -> \w+( \[label={_DOT_STRING}(, style=dashed, color={_DOT_STRING})?\])?;",
    r"\}",
]


def test_dot_strings_hold_every_hostile_name_as_text(tmp_path: Path) -> None:
    text = _ok("export", "graph", str(_project(tmp_path)), "--format", "dot")
    lines = text.splitlines()
    for line in lines:
        assert any(re.fullmatch(p, line) for p in _DOT_LINES), f"not a line kpipe writes: {line!r}"
    assert lines.count("}") == 1 and lines[-1] == "}"
    nodes = [line for line in lines if re.match(r"    (producer|topic|group)_\w+ \[label=", line)]
    assert len(nodes) == 1 + 3 + len(HOSTILE)
    from kpipe.export.graph import dot_label

    assert dot_label('a\\"; b\nc') == 'a\\\\\\"; b c'


def test_kubernetes_yaml_round_trips_every_hostile_string(tmp_path: Path) -> None:
    text = _ok("export", "kubernetes", str(_project(tmp_path)), "--image", IMAGE)
    objects = [d for d in yaml.safe_load_all(text) if d is not None]
    assert [o["kind"] for o in objects].count("Deployment") == len(HOSTILE)
    assert {o["kind"] for o in objects} == {"ConfigMap", "Job", "Deployment", "PodDisruptionBudget"}
    for obj in objects:
        for version in ("1.28.0", kubernetes_validate.utils.latest_version()):
            kubernetes_validate.validate(obj, version, strict=True)
    named = {
        o["spec"]["template"]["metadata"]["annotations"]["kpipe.dev/consumer-group"]
        for o in objects
        if o["kind"] == "Deployment"
    }
    assert named == set(HOSTILE)
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        group = container["args"][container["args"].index("--group") + 1]
        assert group == deployment["spec"]["template"]["metadata"]["annotations"]["kpipe.dev/consumer-group"]
    [files] = [o for o in objects if o["kind"] == "ConfigMap"]
    assert files["data"]["p.yaml"] == (tmp_path / "p.yaml").read_text()
    assert not any(line.startswith("::") for line in text.splitlines())


def test_asyncapi_yaml_and_json_round_trip_every_hostile_string(tmp_path: Path) -> None:
    project = _project(tmp_path)
    as_yaml = yaml.safe_load(_ok("export", "asyncapi", str(project)))
    as_json = json.loads(_ok("export", "asyncapi", str(project), "--format", "json"))
    assert as_yaml == as_json
    assert [e.message for e in jsonschema.Draft7Validator(ASYNCAPI_SCHEMA).iter_errors(as_yaml)] == []
    assert as_yaml["channels"]["t"]["description"] == DESCRIPTION
    groups = {
        o["bindings"]["kafka"]["groupId"]["enum"][0]
        for o in as_yaml["operations"].values()
        if o["action"] == "receive"
    }
    assert groups == set(HOSTILE)
    for op_id in as_yaml["operations"]:
        assert re.fullmatch(r"[A-Za-z0-9._-]+", op_id), op_id


def test_json_output_is_one_document_whatever_the_names(tmp_path: Path) -> None:
    text = _ok("export", "asyncapi", str(_project(tmp_path)), "--format", "json")
    decoder = json.JSONDecoder()
    document, end = decoder.raw_decode(text)
    assert text[end:] == "\n" and isinstance(document, dict)
    assert all(line.startswith((" ", "{", "}")) for line in text.splitlines())


def test_two_paths_never_share_a_config_map_key() -> None:
    from kpipe.export.pods import config_key

    assert config_key("schemas/order.schema.json") == "schemas__order.schema.json"
    keys = {config_key(p) for p in ("sch x/s.json", "sch_x/s.json", "sch\nx/s.json", "sch\tx/s.json")}
    assert len(keys) == 4
    assert all(re.fullmatch(r"[-._a-zA-Z0-9]{1,253}", k) for k in keys)
    long = {config_key("d/" + "x" * 300 + "a"), config_key("e/" + "x" * 300 + "a")}
    assert len(long) == 2 and all(len(k) <= 253 for k in long)

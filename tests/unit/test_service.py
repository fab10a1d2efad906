"""The service layer (kpipe.service) is the one place a command's work is done: the CLI and the Python API call
the same functions, so they cannot drift apart."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import kpipe
from kpipe.cli.common import ProjectOptions
from kpipe.service import load as service

PACKAGE = Path(__file__).resolve().parents[2] / "runner" / "kpipe"
EXAMPLE = Path(__file__).resolve().parents[2] / "pipelines"


def _definitions(name: str) -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name == name:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    return found


def test_one_ensure_topics() -> None:
    definitions = _definitions("ensure_topics")
    assert len(definitions) == 1 and definitions[0].startswith("service/load.py:"), definitions
    assert kpipe.ensure_topics is service.ensure_topics


def test_the_api_and_the_commands_load_a_project_the_same_way() -> None:
    options = ProjectOptions(paths=(EXAMPLE,), bootstrap_servers="broker:9092")
    from_cli = options.load(resolve_local=False, import_code=False)
    from_api = kpipe.load(EXAMPLE, bootstrap_override="broker:9092")
    assert type(from_cli) is type(from_api) is kpipe.Project is service.Project
    assert from_cli.topic_settings() == from_api.topic_settings()
    assert from_cli.producer_settings("order-api") == from_api.producer_settings("order-api")


def test_the_commands_keep_no_produce_or_export_logic() -> None:
    # What moved to the service layer stays there: the produce loop and the export pipelines.
    run_cmd = (PACKAGE / "cli" / "run_cmd.py").read_text()
    export_cmd = (PACKAGE / "cli" / "export_cmd.py").read_text()
    assert "producer.send(" not in run_cmd and "json.loads(" not in run_cmd
    assert "refuse_secrets" not in export_cmd and "env_vars" not in export_cmd


def test_loading_a_project_of_plain_yaml_imports_neither_jinja_nor_the_runtime(tmp_path: Path) -> None:
    # What `kpipe apply` loads before it connects: Jinja only for a file with template syntax, and no producer
    # or worker code at all (it is imported when a producer is opened).
    (tmp_path / "topics.yaml").write_text("topics:\n  orders: {partitions: 3}\n")
    (tmp_path / "templated.yaml").write_text("topics:\n  {{ name }}: {partitions: 1}\n")
    code = (
        "import sys\n"
        "from kpipe.service.load import load\n"
        f"project = load([{str(tmp_path / 'topics.yaml')!r}], root={str(tmp_path)!r}, resolve_local=False,\n"
        "               import_code=False, check_code=False)\n"
        "assert [t.name for t in project.topic_settings()] == ['orders']\n"
        "loaded = sorted(m for m in sys.modules if m == 'jinja2' or m.startswith('kpipe.runtime'))\n"
        "assert not loaded, loaded\n"
        f"project = load([{str(tmp_path / 'templated.yaml')!r}], root={str(tmp_path)!r}, variables={{'name': 'refunds'}},\n"
        "               resolve_local=False, import_code=False, check_code=False)\n"
        "assert [t.name for t in project.topic_settings()] == ['refunds']\n"
        "assert 'jinja2' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

"""Issue 11.1 / 12.3: no project code runs unless asked (--import-code), and handlers import like programs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hostile import marker_module, run_kpipe

MODEL = "from pydantic import BaseModel\n\n\nclass Evil(BaseModel):\n    order_id: str\n\n\ndef handle(event, ctx):\n    pass\n"


def _evil_project(project: Path, marker: Path) -> None:
    """A model schema and a handler whose module writes `marker` when imported, and a file named like the
    library the email format imports, next to the YAML (it would run if pipelines/ were on sys.path)."""
    marker_module(project / "pipelines" / "evil.py", marker, MODEL)
    marker_module(project / "pipelines" / "email_validator.py", marker)
    marker_module(project / "email_validator.py", marker)  # `python -m kpipe` puts the cwd on sys.path
    (project / "schemas").mkdir()
    (project / "schemas" / "contact.yaml").write_text(
        "type: object\nproperties:\n  email: {type: string, format: email}\n"
    )
    (project / "pipelines" / "p.yaml").write_text(
        "cluster: {bootstrap_servers: '127.0.0.1:1'}\n"
        "schemas:\n  Evil: {model: 'evil:Evil'}\n  Contact: ../schemas/contact.yaml\n"
        "topics:\n  orders: {partitions: 1, schema: Evil}\n  contacts: {partitions: 1, schema: Contact}\n"
        "producers:\n  api: {topic: orders}\n"
        "consumers:\n  billing: {topics: [orders], handler: 'evil:handle'}\n"
    )


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["validate", "pipelines/"], 0),
        (["validate", "pipelines/", "--format", "github"], 0),
        (["explain", "api", "pipelines/"], 0),
        (["explain", "billing", "pipelines/"], 0),
        (["render", "pipelines/"], 0),
        (["schema"], 0),
        (["export", "graph", "pipelines/"], 0),
        (["export", "asyncapi", "pipelines/"], 0),
        (["plan", "pipelines/", "--timeout", "1"], 3),  # no broker at 127.0.0.1:1: exit 3, still no code
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v),
)
def test_offline_commands_import_nothing(project: Path, args: list[str], code: int) -> None:
    marker = project.parent / "MARKER"
    _evil_project(project, marker)
    result = run_kpipe(project, *args)
    assert result.code == code, result.text
    assert not marker.exists(), f"project code ran during `kpipe {' '.join(args)}`"


def test_import_code_runs_it_when_asked(project: Path) -> None:
    # The control case: the marker really is written once importing is asked for.
    marker = project.parent / "MARKER"
    _evil_project(project, marker)
    result = run_kpipe(project, "validate", "pipelines/", "--import-code")
    assert result.code == 0, result.text
    assert marker.exists()


def test_validate_against_imports_no_old_model(project: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    marker = project.parent / "MARKER"
    _evil_project(project, marker)

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=project, check=True, capture_output=True)

    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "empty")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "evil")
    result = run_kpipe(project, "validate", "pipelines/", "--against", "HEAD")
    assert result.code == 0, result.text
    assert "schema 'Evil' is a pydantic model; its changes are compared only with --import-code" in result.err
    assert not marker.exists()


def test_missing_handler_and_model_are_reported_statically(project: Path) -> None:
    marker = project.parent / "MARKER"
    marker_module(project / "app" / "handlers.py", marker, "def process(event, ctx):\n    pass\n")
    (project / "pipelines" / "p.yaml").write_text(
        "schemas:\n  E: {model: 'app.events:Event'}\n"
        "topics:\n  orders: {partitions: 1}\n"
        "consumers:\n"
        "  a: {topics: [orders], handler: 'app.handlers:proces'}\n"
        "  b: {topics: [orders], handler: 'nowhere.handlers:handle'}\n"
    )
    result = run_kpipe(project, "validate", "pipelines/")
    assert result.code == 1
    lines = result.err.splitlines()
    assert lines[0] == (
        "pipelines/p.yaml:2:14: error: schema model 'app.events:Event': module 'app.events' not found"
    )
    # app/ is in the project, app/events.py is not: an error. A package found nowhere (nowhere.handlers
    # below) is a warning, since CI may validate without the application's packages installed.
    assert (
        lines[1]
        == "  hint: looked for app/events.py in pipelines, the project root (.) and the installed packages"
    )
    assert lines[2] == (
        "pipelines/p.yaml:6:34: error: consumer group 'a': handler 'app.handlers:proces': module "
        "'app.handlers' (app/handlers.py) defines no top-level 'proces'"
    )
    assert lines[3] == "  hint: did you mean 'process'?"
    assert lines[4].startswith(
        "pipelines/p.yaml:7:34: warning: consumer group 'b': handler 'nowhere.handlers:handle': module "
        "'nowhere.handlers' not found"
    )
    assert not marker.exists()


def test_handlers_import_from_the_project_root_without_pythonpath(project: Path) -> None:
    # Issue 12.3: myproj/app/handlers.py beside myproj/pipelines/ is importable as app.handlers.
    (project / "app").mkdir()
    (project / "app" / "__init__.py").write_text("")
    (project / "app" / "handlers.py").write_text("def process(event, ctx):\n    pass\n")
    (project / "pipelines" / "p.yaml").write_text(
        "topics:\n  orders: {partitions: 1}\nconsumers:\n  a: {topics: [orders], handler: 'app.handlers:process'}\n"
    )
    assert run_kpipe(project, "validate", "pipelines/").code == 0
    result = run_kpipe(project, "validate", "pipelines/", "--import-code")
    assert result.code == 0, result.text
    # The runtime's own loading path: the compiled group's import paths, then load_handler (as a worker does).
    script = (
        "import kpipe\nfrom kpipe.runtime.handler import load_handler\n"
        "group = kpipe.load('pipelines').consumer_group('a')\n"
        "print(load_handler(group.handler, group.import_paths).__module__)\n"
    )
    done = subprocess.run(
        [__import__("sys").executable, "-c", script], cwd=project, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "app.handlers", done.stderr


@pytest.mark.parametrize("module", ["__future__", "typing", "enum"])
def test_python_m_kpipe_runs_no_project_file_named_like_a_module_kpipe_itself_imports(
    project: Path, module: str
) -> None:
    # `python -m kpipe` puts the working directory first on sys.path before it imports the package kpipe:
    # kpipe/__init__.py and what it imports run before kpipe/__main__.py could take the entry away.
    marker = project.parent / "MARKER"
    marker_module(project / f"{module}.py", marker)
    (project / "pipelines" / "p.yaml").write_text("topics:\n  orders: {partitions: 1}\n")
    result = run_kpipe(project, "validate", "pipelines/", traceback_ok=True)
    assert not marker.exists(), f"the project's {module}.py ran"
    assert result.code == 0, result.text

"""kpipe.check.imports: handlers and pydantic models checked by reading their source, never importing it."""

from __future__ import annotations

import sys
from pathlib import Path

from kpipe.check.imports import check_import_target, find_module_source, static_model_fields, top_level_names
from kpipe.compilation.project import inspect_project
from kpipe.diagnostics import Position

MODULE = """
import os, json as j
from typing import ClassVar
from pydantic import BaseModel, Field
from . import sibling as sib

A = 1
B: int = 2
(C, [D, *E]) = (1, [2, 3])

def handle(event, ctx): ...
async def ahandle(event, ctx): ...
class Model(BaseModel):
    order_id: str
    note: str | None = None
    amount: float = Field(..., gt=0)
    currency: str = Field("EUR")
    items: list[str] = Field(default_factory=list)
    kind: str = Field(alias="event-type")
    registry: ClassVar[dict] = {}
    _private: int = 0

class Child(Model):
    extra: int

try:
    import fast as engine
except ImportError:
    engine = None
if os.name == "nt":
    def windows_only(): ...
"""


def test_top_level_names() -> None:
    names = top_level_names(MODULE)
    assert {"os", "j", "ClassVar", "A", "B", "C", "D", "E", "handle", "ahandle", "Model", "Child"} <= names
    assert {"engine", "windows_only", "sib"} <= names
    assert "order_id" not in names and "*" not in names
    assert "*" in top_level_names("from os.path import *\n")
    assert "*" in top_level_names("def __getattr__(name): ...\n")


def test_find_module_source(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("raise SystemExit('never run')\n")
    (tmp_path / "pkg" / "mod.py").write_text("")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("")
    (tmp_path / "ns" / "inner").mkdir(parents=True)
    (tmp_path / "ns" / "inner" / "h.py").write_text("")
    dirs = [str(tmp_path)]
    assert find_module_source("pkg.mod", dirs) == tmp_path / "pkg" / "mod.py"
    assert find_module_source("pkg.sub", dirs) == tmp_path / "pkg" / "sub" / "__init__.py"
    assert find_module_source("ns.inner.h", dirs) == tmp_path / "ns" / "inner" / "h.py"  # namespace packages
    assert find_module_source("ns", dirs) == ""  # exists, has no source of its own
    assert find_module_source("pkg.nope", dirs) is None
    assert find_module_source("../etc", dirs) is None
    assert isinstance(find_module_source("json", sys.path), Path)  # the standard library, found, not run


def test_static_model_fields(tmp_path: Path) -> None:
    (tmp_path / "events.py").write_text(MODULE)
    fields, required = static_model_fields("events:Model", [str(tmp_path)])
    assert fields == {"order_id", "note", "amount", "currency", "items", "event-type"}
    assert required == {"order_id", "amount", "event-type"}
    assert static_model_fields("events:Child", [str(tmp_path)]) is None  # inherited fields: can't tell
    assert static_model_fields("events:Nope", [str(tmp_path)]) is None


def _check(tmp_path: Path, target: str) -> list[str]:
    found = check_import_target(
        target,
        what="handler",
        position=Position("p.yaml", 3, 5),
        import_directories=[str(tmp_path)],
        code="c",
    )
    return [line for d in found for line in d.format_lines()]


def test_check_import_target(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "handlers.py").write_text("def process(event, ctx): ...\n")
    (tmp_path / "app" / "broken.py").write_text("def process(:\n")
    assert _check(tmp_path, "app.handlers:process") == []
    assert _check(tmp_path, "app.handlers:process.method") == []
    assert _check(tmp_path, "app.handlers:proces") == [
        "p.yaml:3:5: error: handler 'app.handlers:proces': module 'app.handlers' (app/handlers.py) defines no "
        "top-level 'proces'",
        "  hint: did you mean 'process'?",
    ]
    # The package is in the project, the module is not: an error. A package found nowhere: a warning.
    assert _check(tmp_path, "app.handler:process")[0].startswith(
        "p.yaml:3:5: error: handler 'app.handler:process': module 'app.handler' not found"
    )
    assert _check(tmp_path, "elsewhere.handlers:process")[0].startswith(
        "p.yaml:3:5: warning: handler 'elsewhere.handlers:process': module 'elsewhere.handlers' not found"
    )
    # A typo beside a real module is an error that names it, at whichever level the typo is.
    assert _check(tmp_path, "ap.handlers:process") == [
        "p.yaml:3:5: error: handler 'ap.handlers:process': module 'ap.handlers' not found",
        "  hint: did you mean 'app.handlers:process'? (looked for ap/handlers.py in . and the installed "
        "packages)",
    ]
    assert _check(tmp_path, "app.handler:process")[1].startswith(
        "  hint: did you mean 'app.handlers:process'?"
    )
    assert _check(tmp_path, "app.handlers:process") == []
    assert _check(tmp_path, "app.broken:process") == [
        "p.yaml:3:5: error: handler 'app.broken:process': module 'app.broken' has a syntax error at line 1: "
        "invalid syntax"
    ]


def test_key_field_is_checked_against_a_model_without_importing_it(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    (tmp_path / "events.py").write_text(
        f"open({str(marker)!r}, 'w')\nfrom pydantic import BaseModel\n\nclass E(BaseModel):\n"
        "    order_id: str\n    note: str | None = None\n"
    )
    (tmp_path / "p.yaml").write_text(
        "schemas:\n  E: {model: 'events:E'}\n"
        "topics:\n  a: {partitions: 1, schema: E, key: orderid}\n  b: {partitions: 1, schema: E, key: note}\n"
    )
    static = inspect_project([tmp_path], root=tmp_path)
    assert not marker.exists()
    imported = inspect_project([tmp_path], root=tmp_path, import_code=True)
    assert marker.exists()
    assert [d.format() for d in static.diagnostics] == [d.format() for d in imported.diagnostics]
    assert [d.code for d in static.diagnostics] == ["unknown-key-field", "optional-key-field"]


def test_a_misspelt_package_beside_the_real_one_is_an_error_with_a_did_you_mean(
    tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """The newcomer's `payment_app.handlers:check_fraud` next to `payments_app/`: not a CI-lacks-packages warning."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "payments_app").mkdir()
    (tmp_path / "payments_app" / "__init__.py").write_text("")
    (tmp_path / "payments_app" / "handlers.py").write_text("def check_fraud(event, ctx): ...\n")
    [line, hint] = _check(tmp_path, "payment_app.handlers:check_fraud")
    assert line == (
        "p.yaml:3:5: error: handler 'payment_app.handlers:check_fraud': module 'payment_app.handlers' not found"
    )
    assert hint.startswith("  hint: did you mean 'payments_app.handlers:check_fraud'?")
    assert _check(tmp_path, "payments_app.handlers:check_fruad") == [
        "p.yaml:3:5: error: handler 'payments_app.handlers:check_fruad': module 'payments_app.handlers' "
        "(payments_app/handlers.py) defines no top-level 'check_fruad'",
        "  hint: did you mean 'check_fraud'?",
    ]

"""The package tree is the pipeline: load → model → schemas → check → compilation → topics → runtime → local →
observe/export → service → api/cli. Each package declares in its `__init__` docstring what it may import, and
each top-level module in its own docstring, on a line such as

    Imports: kpipe.model, kpipe.loading, kpipe.errors.

(`kpipe` alone is the root package itself, e.g. for `__version__`; "nothing of kpipe" declares none.) This test
reads those lines and holds every import to them: `import kpipe.x`, `from kpipe.x import y`, `from kpipe import
x`, `import kpipe`, and relative imports (`from . import x`, `from ..x import y`). A module may always import
from its own package. Imports under `if TYPE_CHECKING:` do not run and are not counted.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "runner" / "kpipe"
ROOT = "kpipe"


def _stage_of_path(path: Path) -> str:
    """The unit that declares imports: `kpipe.<package>` for a module in a package, `kpipe.<module>` for a
    top-level module, `kpipe` for the root package's __init__."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts == ("__init__",):
        return ROOT
    return f"{ROOT}.{parts[0]}"


def _stage_of_module(module: str) -> str:
    parts = module.split(".")
    assert parts[0] == ROOT, module
    return ROOT if len(parts) == 1 else f"{ROOT}.{parts[1]}"


def _declaring_file(stage: str) -> Path:
    if stage == ROOT:
        return PACKAGE / "__init__.py"
    name = stage.split(".")[1]
    package = PACKAGE / name / "__init__.py"
    return package if package.exists() else PACKAGE / f"{name}.py"


def declared_imports(path: Path) -> set[str] | None:
    """The stages the `Imports:` line of `path`'s docstring names (continuation lines indented), or None when
    it has no such line."""
    docstring = ast.get_docstring(ast.parse(path.read_text(), str(path))) or ""
    match = re.search(r"^Imports:(.*(?:\n[ \t]+\S.*)*)", docstring, re.MULTILINE)
    if match is None:
        return None
    text = re.sub(r"\([^)]*\)", "", " ".join(match.group(1).split())).strip().rstrip(".")
    if text == "nothing of kpipe":
        return set()
    return {name.strip() for name in text.split(",") if name.strip()}


def _is_module(dotted: str) -> bool:
    relative = Path(*dotted.split(".")[1:])
    return (PACKAGE / relative).is_dir() or (PACKAGE / relative).with_suffix(".py").is_file()


def imports_of(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """(line, module) for every kpipe module `path` (or `source`, placed at `path`) imports at run time,
    relative imports resolved."""
    tree = ast.parse(path.read_text() if source is None else source, str(path))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                skipped |= {id(sub) for sub in ast.walk(inner)}
    own = [ROOT, *path.relative_to(PACKAGE).with_suffix("").parts]
    package = own[:-1]  # a module's package; for an __init__, its own package
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == ROOT]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if module.split(".")[0] != ROOT:
                continue
            # `from kpipe.x import y`: y may be a submodule (kpipe.x.y) or a name defined in kpipe.x.
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                found.append((node.lineno, submodule if _is_module(submodule) else module))
    return found


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _stages() -> list[str]:
    return sorted({_stage_of_path(p) for p in _modules()})


@pytest.mark.parametrize("stage", _stages())
def test_every_package_declares_its_imports(stage: str) -> None:
    path = _declaring_file(stage)
    declared = declared_imports(path)
    assert declared is not None, f"{path.relative_to(PACKAGE)}: its docstring has no 'Imports:' line"
    unknown = sorted(name for name in declared if name != ROOT and not _is_module(name))
    assert not unknown, f"{path.relative_to(PACKAGE)} declares imports of no such module: {unknown}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_are_the_declared_ones(path: Path) -> None:
    stage = _stage_of_path(path)
    allowed = (declared_imports(_declaring_file(stage)) or set()) | {stage}
    wrong = [
        f"{path.relative_to(PACKAGE)}:{line}: imports {target} ({_stage_of_module(target)} is not in the "
        f"'Imports:' line of {_declaring_file(stage).relative_to(PACKAGE)})"
        for line, target in imports_of(path)
        if _stage_of_module(target) not in allowed
    ]
    assert not wrong, "an import the package does not declare:\n" + "\n".join(wrong)


def test_nothing_imports_the_cli() -> None:
    importers = [
        str(path.relative_to(PACKAGE))
        for path in _modules()
        if _stage_of_path(path) not in ("kpipe.cli", "kpipe.__main__")
        and any(_stage_of_module(target) == "kpipe.cli" for _, target in imports_of(path))
    ]
    assert not importers


def test_export_never_imports_what_runs() -> None:
    # What export's docstring promises, in words, holds in its Imports line too.
    declared = declared_imports(_declaring_file("kpipe.export")) or set()
    assert not declared & {"kpipe.runtime", "kpipe.local", "kpipe.observe", "kpipe.topics", "kpipe.cli"}


# -- the rule itself ---------------------------------------------------------------------------------------------


def _fake_module(relative: str, source: str) -> tuple[Path, str]:
    """Source placed as if it were runner/kpipe/<relative>, so relative imports resolve as they would there."""
    return PACKAGE / relative, source


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from kpipe.runtime.worker import GroupWorker\n", "kpipe.runtime.worker"),
        ("import kpipe.runtime.producer\n", "kpipe.runtime.producer"),
        ("from kpipe import runtime\n", "kpipe.runtime"),
        ("import kpipe\n", "kpipe"),
        ("from kpipe import load\n", "kpipe"),
        ("from ..runtime import producer\n", "kpipe.runtime.producer"),
        ("from ..runtime.producer import Producer\n", "kpipe.runtime.producer"),
        ("from . import graph\n", "kpipe.export.graph"),
        ("def f():\n    from kpipe.local.state import resolve\n", "kpipe.local.state"),
    ],
)
def test_the_rule_sees_every_form_of_import(source: str, expected: str) -> None:
    assert [target for _, target in imports_of(*_fake_module("export/bad.py", source))] == [expected]


def test_the_rule_catches_export_importing_runtime() -> None:
    module = _fake_module("export/bad.py", "from ..runtime import producer\n")
    allowed = declared_imports(_declaring_file("kpipe.export")) or set()
    assert [_stage_of_module(t) for _, t in imports_of(*module)] == ["kpipe.runtime"]
    assert "kpipe.runtime" not in allowed


def test_type_checking_imports_are_not_counted() -> None:
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from kpipe.runtime import producer\n"
    assert imports_of(*_fake_module("export/bad.py", source)) == []


def test_the_imports_line_is_read_across_lines(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text('"""Doc.\n\nImports: kpipe (for x), kpipe.model,\n    kpipe.loading.\n"""\n')
    assert declared_imports(path) == {"kpipe", "kpipe.model", "kpipe.loading"}
    path.write_text('"""Doc.\n\nImports: nothing of kpipe.\n"""\n')
    assert declared_imports(path) == set()

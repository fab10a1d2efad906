"""The package tree is the pipeline: load → model → schemas → check → compilation → topics → runtime → local →
observe/export → cli. A module may import only from its own stage or a lower one. Imports under
`if TYPE_CHECKING:` do not run and are not counted."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "runner" / "kpipe"

# Lower number = lower layer. Top-level modules not listed here are the base (rank 0) unless named below.
RANKS = {
    "errors": 0,
    "diagnostics": 0,
    "logs": 0,
    "redaction": 0,
    "loading": 1,
    "model": 2,
    "schemas": 3,
    "check": 4,
    "compilation": 5,
    "topics": 6,
    "runtime": 7,
    "local": 8,
    "operate": 8,  # tail, dlq, offsets: read and repair data through topics and runtime
    "testing": 8,  # kpipe.testing: the runtime's workers on an in-memory cluster
    "observe": 9,
    "export": 9,
    "api": 10,
    "cli": 11,
    "__init__": 11,
    "__main__": 11,
}


# Upward imports still being removed (issue 10). Each entry is "module -> imported"; the test fails when one is
# gone, so this list only shrinks.
KNOWN_UPWARD: set[str] = set()


def _stage(module: str) -> str:
    parts = module.split(".")
    assert parts[0] == "kpipe"
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                for sub in ast.walk(inner):
                    skipped.add(id(sub))
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "kpipe":
                found += [(node.lineno, f"kpipe.{a.name}") for a in node.names if a.name != "__version__"]
            elif node.module.startswith("kpipe."):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("kpipe.")]
    return found


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_stage_has_a_rank() -> None:
    stages = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in _modules()}
    assert stages <= set(RANKS), f"give these a rank in RANKS: {sorted(stages - set(RANKS))}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    own = "kpipe." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    own_rank = RANKS[_stage(own)]
    upward = [
        f"{path.relative_to(PACKAGE)}:{line}: imports {target} (stage {_stage(target)!r})"
        for line, target in _imports(path)
        if RANKS.get(_stage(target), 99) > own_rank and f"{own} -> {target}" not in KNOWN_UPWARD
    ]
    assert not upward, "a lower stage imports a higher one:\n" + "\n".join(upward)


def test_known_upward_imports_still_exist() -> None:
    present = set()
    for path in _modules():
        own = "kpipe." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        present |= {f"{own} -> {target}" for _, target in _imports(path)}
    assert not (KNOWN_UPWARD - present), f"remove from KNOWN_UPWARD: {sorted(KNOWN_UPWARD - present)}"


def test_the_rule_catches_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from kpipe.runtime.worker import GroupWorker\n")
    assert _imports(module) == [(1, "kpipe.runtime.worker")]
    assert RANKS[_stage("kpipe.runtime.worker")] > RANKS[_stage("kpipe.model.pipeline")]

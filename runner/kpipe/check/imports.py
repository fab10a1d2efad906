"""Handlers and pydantic-model schemas checked without running them: does `module:name` point at something?

Plain `kpipe validate` runs no project code (the files may come from an untrusted pull request), so instead of
importing, it finds the module's source file the way Python's import system would, and reads it with `ast`:

- the module is looked up in the import directories (the pipeline files' directories, then the project root)
  and then on sys.path (installed packages), package by package: `a/b.py` or `a/b/__init__.py`, with `a/` a
  regular or namespace package. Nothing is executed, not even a package's `__init__.py`;
- a module found nowhere is a warning (CI may validate without the application's packages installed), unless
  a module of a close name exists (a typo): then it is an error naming that module;
- the name must be defined at the module's top level (else an error): a `def`, a `class`, an assignment, or an import (also
  inside a top-level `if`/`try`). A module with `from x import *` or a module-level `__getattr__` may define
  anything, so it passes; so does a compiled extension module, whose names can't be read.

`--import-code` (kpipe.check.handlers) does the real import and checks what this cannot: that the module
imports, that the handler is callable and the model is a pydantic model.
"""

from __future__ import annotations

import ast
import importlib.machinery
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from kpipe.diagnostics import Diagnostic, Position, did_you_mean, error, warning
from kpipe.loading.files import ProjectFiles

_EXTENSION_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES) + (".pyc",)
_ANY_NAME = "*"


def find_module_source(module: str, directories: Sequence[str]) -> Path | None | str:
    """The source file of `module` (a Path), "" when it exists without readable source, None when not found."""
    parts = module.split(".")
    if not all(p.isidentifier() for p in parts):
        return None
    for base in directories:
        found = _find_in(Path(base or "."), parts)
        if found is not None:
            return found
    return None


def _find_in(base: Path, parts: list[str]) -> Path | str | None:
    directory = base
    for package in parts[:-1]:
        directory = directory / package
        if not directory.is_dir():
            return None
    last = directory / parts[-1]
    if (last / "__init__.py").is_file():
        return last / "__init__.py"
    if (last.parent / (parts[-1] + ".py")).is_file():
        return last.parent / (parts[-1] + ".py")
    if any((last.parent / (parts[-1] + suffix)).is_file() for suffix in _EXTENSION_SUFFIXES):
        return ""
    if last.is_dir():  # a namespace package: it has no names of its own
        return ""
    return None


def _parse_module(source: Path, position: Position) -> ast.Module | None:
    """The module's syntax tree; None when it can't be read. Regular files only, size-capped (a FIFO named
    handlers.py must not hang validate). SyntaxError passes through."""
    raw, _ = ProjectFiles(Path("/")).read_bytes_of(source, str(source), position)
    if raw is None:
        return None
    return ast.parse(raw.decode("utf-8", errors="replace"))


def static_model_fields(
    target: str, import_directories: Sequence[str]
) -> tuple[frozenset[str], frozenset[str]] | None:
    """(field names, required field names) of a pydantic model read from its source, or None when that can't
    be told without running it (not found, not a direct BaseModel subclass, a field it can't read).

    A field is its alias when `Field(alias="...")` gives one; it is required when it has no default."""
    module, _, attr = target.partition(":")
    source = find_module_source(module, search_path(import_directories))
    if not isinstance(source, Path) or "." in attr:
        return None
    try:
        tree = _parse_module(source, Position(str(source)))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    cls = next(
        (n for n in (tree.body if tree else ()) if isinstance(n, ast.ClassDef) and n.name == attr), None
    )
    if cls is None or not cls.bases or not all(_dotted(b).split(".")[-1] == "BaseModel" for b in cls.bases):
        return None
    fields: set[str] = set()
    required: set[str] = set()
    for node in cls.body:
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        name = node.target.id
        annotation = node.annotation
        base = annotation.value if isinstance(annotation, ast.Subscript) else annotation
        if name.startswith("_") or _dotted(base).split(".")[-1] == "ClassVar":
            continue
        has_default = node.value is not None
        if isinstance(node.value, ast.Call) and _dotted(node.value.func).split(".")[-1] == "Field":
            call = node.value
            keywords = {k.arg: k.value for k in call.keywords if k.arg}
            positional = call.args[0] if call.args else None
            has_default = (
                positional is not None
                and not (isinstance(positional, ast.Constant) and positional.value is ...)
            ) or bool({"default", "default_factory"} & set(keywords))
            alias = keywords.get("alias") or keywords.get("validation_alias")
            if alias is not None:
                if not (isinstance(alias, ast.Constant) and isinstance(alias.value, str)):
                    return None
                name = alias.value
        fields.add(name)
        if not has_default:
            required.add(name)
    return frozenset(fields), frozenset(required)


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def top_level_names(source: str) -> set[str]:
    """Names a module defines at its top level; contains "*" when it may define any name."""
    tree = ast.parse(source)
    names: set[str] = set()
    _collect(tree.body, names)
    return names


def _collect(body: Iterable[ast.stmt], names: set[str]) -> None:
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
            if node.name == "__getattr__":
                names.add(_ANY_NAME)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names.update(_targets(target))
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            names.update(_targets(node.target))
        elif isinstance(node, ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                names.add(_ANY_NAME if alias.name == "*" else alias.asname or alias.name)
        elif isinstance(node, ast.If | ast.Try | ast.With | ast.For | ast.While):
            for block in ("body", "orelse", "finalbody"):
                _collect(getattr(node, block, ()), names)
            for handler in getattr(node, "handlers", ()):
                _collect(handler.body, names)
        elif type(node).__name__ == "TypeAlias":  # `type X = ...` (Python 3.12+)
            names.update(_targets(node.name))  # type: ignore[attr-defined]


def _targets(target: ast.expr) -> set[str]:
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, ast.Tuple | ast.List):
        return set().union(*(_targets(t) for t in target.elts)) if target.elts else set()
    if isinstance(target, ast.Starred):
        return _targets(target.value)
    return set()


def search_path(import_directories: Sequence[str]) -> list[str]:
    """Where a project's modules are looked for: its own directories first, then the installed packages."""
    return list(dict.fromkeys([*import_directories, *(p for p in sys.path if p and os.path.isdir(p))]))


def check_import_target(
    target: str,
    *,
    what: str,
    position: Position,
    import_directories: Sequence[str],
    code: str,
    root: str | None = None,
) -> list[Diagnostic]:
    """Diagnostics for a `module:name` reference that cannot resolve; [] when it looks right (or can't be told)."""
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        return []  # the spec layer already reports the form
    path = search_path(import_directories)
    source = find_module_source(module, path)
    if source is None:
        return _module_not_found(target, what, position, import_directories, path, code, root)
    if source == "":
        return []
    try:
        tree = _parse_module(source, position)
        if tree is None:
            return []
        names = set()
        _collect(tree.body, names)
    except SyntaxError as exc:
        return [
            error(
                f"{what} '{target}': module '{module}' has a syntax error at line {exc.lineno}: {exc.msg}",
                position,
                code=code,
            )
        ]
    except (ValueError, RecursionError, MemoryError):
        return []
    first = attr.split(".")[0]
    if first in names or _ANY_NAME in names:
        return []
    hint = did_you_mean(first, [n for n in names if not n.startswith("_")])
    return [
        error(
            f"{what} '{target}': module '{module}' ({_show(str(source))}) defines no top-level '{first}'",
            position,
            code=code,
            hint=hint or f"define '{first}' at the top level of {_show(str(source))}",
        )
    ]


def near_module(module: str, project_directories: Sequence[str], path: Sequence[str]) -> str | None:
    """The module a misspelt `module` probably meant, read from the directories alone (nothing imported): each
    dotted part that is not there is replaced by the closest name beside it, the top-level one only from the
    project's own directories (not from every installed package). None when nothing close exists."""
    parts = module.split(".")
    if not all(p.isidentifier() for p in parts):
        return None
    fixed: list[str] = []
    bases = [Path(d or ".") for d in project_directories]
    for index, part in enumerate(parts):
        if index == 1:
            # Below the top level, look inside the package wherever it is (the project or installed).
            bases = [Path(d or ".") / fixed[0] for d in path if (Path(d or ".") / fixed[0]).is_dir()]
        elif index > 1:
            bases = [b / fixed[-1] for b in bases if (b / fixed[-1]).is_dir()]
        last = index == len(parts) - 1
        names = _module_names(bases, packages_only=not last)
        fixed.append(part if part in names else _closest(part, names) or "")
        if not fixed[-1]:
            return None
    near = ".".join(fixed)
    return near if near != module and find_module_source(near, list(path)) is not None else None


def _module_names(directories: Iterable[Path], *, packages_only: bool) -> set[str]:
    """Importable names directly in `directories`: packages (directories), and modules unless packages_only."""
    names: set[str] = set()
    for directory in directories:
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries[:10_000]:
            stem = entry.name[:-3] if entry.name.endswith(".py") else entry.name
            if not stem.isidentifier():
                continue
            if entry.is_dir(follow_symlinks=False):
                names.add(stem)
            elif not packages_only and entry.name.endswith(".py"):
                names.add(stem)
    return names


def _closest(name: str, candidates: set[str]) -> str | None:
    hint = did_you_mean(name, candidates)
    return hint.split("'")[1] if hint else None


def _module_not_found(
    target: str,
    what: str,
    position: Position,
    import_directories: Sequence[str],
    path: Sequence[str],
    code: str,
    root: str | None,
) -> list[Diagnostic]:
    """A module found nowhere: an error when a module of a close name exists or its package is there, else a
    warning (CI may validate without the application's packages installed)."""
    module, _, attr = target.partition(":")
    shown = ", ".join(
        f"the project root ({_show(d)})" if root is not None and d == root else _show(d)
        for d in import_directories
    )
    relative = module.replace(".", "/") + ".py"
    package = module.split(".")[0]
    hint = f"looked for {relative} in {shown} and the installed packages"
    near = near_module(module, import_directories, path)
    if near is not None:
        # A module that is not there beside one that is, by a letter or two: a typo, whatever CI installs.
        return [
            error(
                f"{what} '{target}': module '{module}' not found",
                position,
                code=code,
                hint=f"did you mean '{near}:{attr}'? ({hint})",
            )
        ]
    if "." in module and find_module_source(package, path) is not None:
        # The package is there, the module in it is not: a mistake, not a package CI lacks.
        return [error(f"{what} '{target}': module '{module}' not found", position, code=code, hint=hint)]
    # A warning, not an error: CI may validate without the application's packages installed.
    return [
        warning(
            f"{what} '{target}': module '{module}' not found",
            position,
            code=code,
            hint=f"{hint}; create it there or install the package that holds it",
        )
    ]


def _show(path: str) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative

"""Earlier versions of schema files, from a git ref or from a directory, for `kpipe validate --against REF`.

The only I/O around schema_compat: read files, run `git show` / `git log` (no shell), parse YAML (JSON is YAML).
Failures the user can fix — not a git repository, an unknown ref, an unparsable old file — raise UsageError.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kpipe.diagnostics import Position
from kpipe.errors import GitFailed, UsageError
from kpipe.loading.files import MAX_FILE_BYTES, ProjectFiles
from kpipe.loading.yaml_source import parse_yaml


def history_documents(path: Path, against: str, repo_root: Path) -> list[Mapping]:
    """Every committed version of one schema file up to `against`, oldest → newest (for *_TRANSITIVE modes).

    A directory `against` holds only one version. Commits where the file was deleted are skipped, and consecutive
    commits that left the document unchanged count once.
    """
    rel = _relative(path, repo_root)
    base = Path(against)
    if base.is_dir():
        doc = _read_dir(base, rel)
        return [doc] if doc is not None else []
    ref = _verify_ref(against, repo_root)
    commits = git(["log", "--format=%H", ref, "--", rel.as_posix()], repo_root).split()
    versions: list[Mapping] = []
    for commit in reversed(commits):
        doc = _show(commit, rel, repo_root, label=f"{against} ({commit[:12]})")
        if doc is not None and (not versions or versions[-1] != doc):
            versions.append(doc)
    return versions


def _relative(path: Path, repo_root: Path) -> Path:
    if not path.is_absolute():
        return path
    try:
        return path.relative_to(repo_root)
    except ValueError:
        raise UsageError(f"{path} is not inside {repo_root}") from None


def _read_dir(base: Path, rel: Path) -> Mapping | None:
    file = base / rel
    if not file.is_file():
        return None
    # The same rules as the project's own files: inside the directory, a regular file, size-capped.
    raw, problems = ProjectFiles(base).read_bytes_of(file, str(file), Position(str(file)))
    if raw is None:
        raise UsageError(problems[0].format())
    return _parse(raw.decode("utf-8", errors="replace"), str(file))


def _verify_ref(ref: str, repo_root: Path) -> str:
    """The commit id `ref` names; UsageError when repo_root is not in a git repository or the ref is unknown."""
    try:
        git(["rev-parse", "--show-toplevel"], repo_root)
    except GitFailed:
        raise UsageError(
            f"--against {ref}: {repo_root} is not in a git repository (nor is '{ref}' a directory)"
        ) from None
    try:
        return git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], repo_root).strip()
    except GitFailed:
        raise UsageError(f"--against {ref}: unknown git ref '{ref}' (nor is it a directory)") from None


def _show(commit: str, rel: Path, repo_root: Path, *, label: str) -> Mapping | None:
    # "./" makes the path relative to repo_root rather than to the top of the git work tree.
    spec = f"{commit}:./{rel.as_posix()}"
    try:
        git(["cat-file", "-e", spec], repo_root)
    except GitFailed:
        return None  # not in that commit: a new schema, nothing to compare against
    return _parse(git(["show", spec], repo_root), f"{rel.as_posix()} at {label}")


def _parse(text: str, where: str) -> Mapping:
    # Old versions come from the same untrusted history as the new ones: size-capped, alias-bomb-safe parsing.
    if len(text) > MAX_FILE_BYTES:
        raise UsageError(f"{where} is larger than {MAX_FILE_BYTES // 1024 // 1024} MiB")
    doc, _, problems = parse_yaml(text, where)
    errors = [d for d in problems if d.is_error]
    if errors:
        raise UsageError(f"cannot parse {errors[0].format()}")
    if not isinstance(doc, Mapping):
        raise UsageError(f"{where} is not a JSON Schema object")
    return doc


def git(args: list[str], cwd: Path, *, binary: bool = False) -> Any:
    """Run git without a shell; its stdout (bytes when `binary`). GitFailed when git says no, UsageError when
    there is no git at all."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=not binary, check=False)
    except FileNotFoundError:
        raise UsageError("--against needs git, which is not installed (or pass a directory)") from None
    except NotADirectoryError:
        raise UsageError(f"{cwd} is not a directory") from None
    if done.returncode != 0:
        raise GitFailed(done.stderr.strip() if not binary else done.stderr.decode(errors="replace").strip())
    return done.stdout

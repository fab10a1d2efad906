"""Reading earlier schema versions from git refs and from directories."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from kpipe.errors import UsageError
from kpipe.schemas.history import history_documents

SCHEMA = Path("schemas/order.schema.yaml")
NEW_SCHEMA = Path("schemas/refund.schema.json")

GIT_ENV = os.environ | {
    "GIT_AUTHOR_NAME": "kpipe",
    "GIT_AUTHOR_EMAIL": "kpipe@example.invalid",
    "GIT_COMMITTER_NAME": "kpipe",
    "GIT_COMMITTER_EMAIL": "kpipe@example.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, check=True, capture_output=True)


def commit(repo: Path, files: dict[Path, str], message: str) -> None:
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    git(repo, "add", "--", *(str(rel) for rel in files))
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    commit(root, {SCHEMA: "type: object\nproperties:\n  id: {type: string}\n"}, "v1")
    commit(root, {SCHEMA: "type: object\nproperties:\n  id: {type: string}\n  note: {type: string}\n"}, "v2")
    # The working tree's current version, plus a schema that exists in no commit.
    (root / SCHEMA).write_text("type: object\nproperties:\n  id: {type: integer}\n")
    (root / NEW_SCHEMA).write_text('{"type": "object"}')
    return root


def test_versions_up_to_a_git_ref(repo: Path) -> None:
    assert history_documents(SCHEMA, "HEAD~1", repo) == [
        {"type": "object", "properties": {"id": {"type": "string"}}}
    ]
    assert set(history_documents(SCHEMA, "HEAD", repo)[-1]["properties"]) == {"id", "note"}
    assert history_documents(NEW_SCHEMA, "HEAD~1", repo) == []


def test_absolute_paths_are_taken_relative_to_the_repo(repo: Path) -> None:
    assert history_documents(repo / SCHEMA, "main", repo) == history_documents(SCHEMA, "main", repo)
    assert len(history_documents(repo / SCHEMA, "main", repo)) == 2


def test_repo_root_below_the_git_top_level(tmp_path: Path) -> None:
    top = tmp_path / "mono"
    top.mkdir()
    git(top, "init", "-q")
    commit(top, {Path("kpipe") / SCHEMA: "type: string\n"}, "v1")
    assert history_documents(SCHEMA, "HEAD", top / "kpipe") == [{"type": "string"}]


def test_history_is_oldest_first_and_skips_deletions(repo: Path) -> None:
    git(repo, "rm", "-q", "-f", str(SCHEMA))
    git(repo, "commit", "-q", "-m", "drop")
    commit(repo, {SCHEMA: "type: object\nproperties:\n  id: {type: number}\n"}, "v3")
    commit(repo, {Path("README"): "unrelated\n"}, "unrelated")
    history = history_documents(SCHEMA, "HEAD", repo)
    assert [sorted(d["properties"]) for d in history] == [["id"], ["id", "note"], ["id"]]
    assert history[-1]["properties"]["id"] == {"type": "number"}
    assert len(history_documents(SCHEMA, "HEAD~3", repo)) == 2
    assert history_documents(NEW_SCHEMA, "HEAD", repo) == []


def test_directory_instead_of_a_ref(tmp_path: Path, repo: Path) -> None:
    old = tmp_path / "released"
    (old / "schemas").mkdir(parents=True)
    (old / SCHEMA).write_text('{"type": "object", "required": ["id"]}')  # JSON is YAML
    assert history_documents(SCHEMA, str(old), repo) == [{"type": "object", "required": ["id"]}]
    assert history_documents(NEW_SCHEMA, str(old), repo) == []


def test_unknown_ref_is_a_usage_error(repo: Path) -> None:
    with pytest.raises(UsageError, match="unknown git ref 'no-such-branch'"):
        history_documents(SCHEMA, "no-such-branch", repo)
    with pytest.raises(UsageError, match="unknown git ref"):
        history_documents(SCHEMA, "HEAD~99", repo)


def test_not_a_git_repository_is_a_usage_error(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(UsageError, match="not in a git repository"):
        history_documents(SCHEMA, "HEAD~1", plain)


def test_unparsable_old_version_is_a_usage_error(tmp_path: Path) -> None:
    old = tmp_path / "old"
    (old / "schemas").mkdir(parents=True)
    (old / SCHEMA).write_text("type: [unclosed\n")
    with pytest.raises(UsageError, match=r"cannot parse .*order\.schema\.yaml:\d+:\d+"):
        history_documents(SCHEMA, str(old), tmp_path)

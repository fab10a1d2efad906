"""kpipe is installed from its repository, never by its name: `kpipe` on PyPI is an unrelated project, so a
hint saying `pip install kpipe` or `pip install "kpipe[local]"` installs someone else's code."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# `pip install kpipe`, `pip install -U 'kpipe[local]'`, `pip install "kpipe>=0.1"`, ... but not a path, a wheel
# file, or a direct reference (`kpipe @ git+https://...`).
BARE = re.compile(
    r"""pip3?\s+install\s+(?:-{1,2}[\w-]+\s+)*["']?kpipe(?:\[[\w,]+\])?(?:[<>=!~][^"'\s]*)?["']?(?=\s|$|[)"'`;,.])(?!\s*@)"""
)


def _texts() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "Dockerfile", *sorted((ROOT / "docs").glob("*.md"))]
    files += sorted((ROOT / "pipelines").rglob("*.yaml"))
    files += sorted((ROOT / "runner" / "kpipe").rglob("*.py"))
    return [f for f in files if f.is_file()]


def test_the_pattern_finds_a_bare_install() -> None:
    for text in ("pip install kpipe", "run: pip install kpipe\n", "pip install 'kpipe[local]'",
                 'pip install "kpipe[local]".', "pip install -U kpipe==0.1"):  # fmt: skip
        assert BARE.search(text), text
    for text in ('pip install -e ".[local]"', "pip install kpipe @ git+https://x/kpipe",
                 "pip install /tmp/wheels/kpipe-0.1.0-py3-none-any.whl", "pip install kpipe-other"):  # fmt: skip
        assert not BARE.search(text), text


def test_no_readme_doc_or_hint_installs_kpipe_by_its_bare_name() -> None:
    found = []
    for path in _texts():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if BARE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert found == [], "install kpipe from its repository, not by name:\n" + "\n".join(found)

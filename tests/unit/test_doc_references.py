"""Comments and docs cite files in this repository (docs/broker.md, benchmarks/RESULTS.md), never notes that only
exist on someone's machine."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CITED = re.compile(r"[A-Za-z0-9_./-]+\.md\b")
# Published documents of other projects, cited by name.
UPSTREAM = {"CONFIGURATION.md"}  # librdkafka's configuration reference


def _sources() -> list[Path]:
    files = [p for d in ("runner", "tests", "benchmarks") for p in (ROOT / d).rglob("*.py")]
    files += [p for p in ROOT.rglob("*.md") if ".venv" not in p.parts and ".git" not in p.parts]
    return sorted(p for p in files if "__pycache__" not in p.parts)


def test_every_cited_markdown_file_is_in_the_repository() -> None:
    names = {p.name for p in ROOT.rglob("*.md") if ".venv" not in p.parts}
    missing = []
    for path in _sources():
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for cited in CITED.findall(line):
                if cited.startswith("/tmp/"):  # an example output path, not a citation
                    continue
                if "/work/" in cited or "TEST-BROKER" in cited:
                    missing.append(f"{path.relative_to(ROOT)}:{lineno}: {cited}")
                elif Path(cited).name not in names | UPSTREAM:
                    missing.append(f"{path.relative_to(ROOT)}:{lineno}: {cited}")
    assert not missing, "cites a file outside the repository (write it into docs/ instead):\n" + "\n".join(
        missing
    )

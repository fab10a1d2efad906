"""RESULTS.md sections written by one benchmark each (many_groups.py, apply_cli.py): one way to rewrite them."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, heading: str, text: str) -> None:
    """Replace the section under the line `heading` (up to the next "## " heading) with `text`, in place, or
    add `text` at the end when there is none. Only a whole heading line matches, not a longer heading that
    starts with the same words."""
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    lines = current.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip("\n") == heading), None)
    if start is None:
        path.write_text(current.rstrip("\n") + "\n\n" + text.strip("\n") + "\n", encoding="utf-8")
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    tail = "".join(lines[end:])
    new = "".join(lines[:start]) + text.strip("\n") + "\n" + ("\n" + tail if tail else "")
    path.write_text(new, encoding="utf-8")

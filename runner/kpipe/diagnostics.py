"""Diagnostics: one problem found in the user's files, with its position, and how to print many of them.

A Diagnostic is plain data. Every layer that inspects user input (loader, spec, check, schema compiler)
returns a list of them rather than raising on the first, so `kpipe validate` can report everything at once.

Imports: kpipe.redaction.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from kpipe.redaction import escape_line, redact, redact_optional, safe_text


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class Position:
    """A place in a source file. line and column are 1-based; 0 means "the whole file"."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Diagnostic:
    message: str
    position: Position | None = None
    severity: Severity = Severity.ERROR
    hint: str | None = None
    # A short stable identifier of the rule, for JSON output and for tests (e.g. "unknown-reference").
    code: str = "invalid"
    notes: tuple[str, ...] = field(default=())

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def sort_key(self) -> tuple:
        p = self.position or Position("")
        return (p.file, p.line, p.column, self.severity != Severity.ERROR, self.message)

    def format(self) -> str:
        where = f"{self.position}: " if self.position else ""
        return f"{where}{self.severity.value}: {self.message}"

    def format_lines(self) -> list[str]:
        """The lines printed for people (kpipe.redaction.safe_text): env() tokens shown as env('NAME'), every
        control character escaped (a newline in a quoted name cannot start a line of its own)."""
        lines = [self.format()]
        lines.extend(f"  note: {n}" for n in self.notes)
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return [safe_text(line) for line in lines]

    def to_json(self) -> dict:
        p = self.position
        # json.dumps escapes control characters itself; secrets are masked here.
        return {
            "severity": self.severity.value,
            "code": self.code,
            "message": redact(self.message),
            "file": redact(p.file) if p else None,
            "line": p.line if p else None,
            "column": p.column if p else None,
            "hint": redact_optional(self.hint),
        }


def error(
    message: str, position: Position | None = None, *, hint: str | None = None, code: str = "invalid"
) -> Diagnostic:
    return Diagnostic(message, position, Severity.ERROR, hint, code)


def warning(
    message: str, position: Position | None = None, *, hint: str | None = None, code: str = "warning"
) -> Diagnostic:
    return Diagnostic(message, position, Severity.WARNING, hint, code)


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """`did you mean 'orders'?` for the closest candidate, or None when nothing is close."""
    pool = sorted(set(candidates))
    matches = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    if not matches:
        # Case-only or separator-only differences ("Orders", "order_events" vs "order-events").
        folded = {c.lower().replace("_", "-").replace(".", "-"): c for c in pool}
        hit = folded.get(name.lower().replace("_", "-").replace(".", "-"))
        matches = [hit] if hit else []
    return f"did you mean '{matches[0]}'?" if matches else None


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    unique = list(dict.fromkeys(diagnostics))
    return sorted(unique, key=Diagnostic.sort_key)


def summary_line(diagnostics: Sequence[Diagnostic], files_checked: int | None = None) -> str:
    n_err = sum(1 for d in diagnostics if d.is_error)
    n_warn = len(diagnostics) - n_err

    def plural(n: int, word: str) -> str:
        return f"{n} {word}{'' if n == 1 else 's'}"

    checked = f" in {plural(files_checked, 'file')}" if files_checked is not None else ""
    return f"{plural(n_err, 'error')}, {plural(n_warn, 'warning')}{checked}"


def render_text(diagnostics: Sequence[Diagnostic]) -> str:
    return "\n".join(line for d in diagnostics for line in d.format_lines())


def render_json(diagnostics: Sequence[Diagnostic], files_checked: int | None = None) -> str:
    return json.dumps(
        {
            "valid": not any(d.is_error for d in diagnostics),
            "files": files_checked,
            "errors": sum(1 for d in diagnostics if d.is_error),
            "warnings": sum(1 for d in diagnostics if not d.is_error),
            "diagnostics": [d.to_json() for d in diagnostics],
        },
        indent=2,
    )


def _github_escape(text: str, *, prop: bool = False) -> str:
    """The one rule for text inside a GitHub Actions annotation: tokens shown as env('NAME'), every control
    character escaped as text (so no newline, encoded or not, reaches the runner), then GitHub's own
    encoding of `%` (and of `:` and `,` in a property)."""
    text = escape_line(redact(text)).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def render_github(diagnostics: Sequence[Diagnostic]) -> str:
    """GitHub Actions workflow commands: each diagnostic becomes an annotation on the file and line."""
    out = []
    for d in diagnostics:
        kind = "error" if d.is_error else "warning"
        props = []
        if d.position:
            props.append(f"file={_github_escape(d.position.file, prop=True)}")
            if d.position.line:
                props.append(f"line={d.position.line}")
                props.append(f"col={d.position.column}")
        msg = d.message + (f" ({d.hint})" if d.hint else "")
        out.append(f"::{kind} {','.join(props)}::{_github_escape(msg)}".replace(" ::", "::"))
    return "\n".join(out)

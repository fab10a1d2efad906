"""The last line of defence of kpipe's standard output and error: no line starts a GitHub Actions command.

GitHub Actions reads every line a step prints, and runs one that starts (after blanks) with `::` or `##[` as a
workflow command: an annotation on any file, a masked value, `stop-commands`. Text from the files reaches many
writers (diagnostics, plan, status, export, logs); each escapes what it quotes (kpipe.redaction), and
`guarded_output` makes it true for every line whatever wrote it: while it is in place, a line that would start
a command is written with its first character escaped (`\\x3a:error`), unless kpipe itself marked the line as
an annotation (`annotation_lines`, with a marker made for this process that the guard removes). The blanks
before a command are any Unicode blanks (the runner's trim removes U+00A0, U+3000, ...), and the legacy
`##[command]`, which the runner runs wherever it is in a line, is written `\\u0023#[` anywhere.
"""

from __future__ import annotations

import contextlib
import secrets
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from kpipe.redaction import COMMAND_STARTS as _STARTS
from kpipe.redaction import LEGACY_COMMAND as _LEGACY

_permit: str | None = None


def annotation_lines(text: str) -> str:
    """`text` (GitHub annotations kpipe wrote) marked so the guard lets each line through; unchanged when no
    guard is in place."""
    if _permit is None or not text:
        return text
    return "\n".join(_permit + line for line in text.split("\n"))


class _LineGuard:
    """A text stream in front of another one that escapes a command at the start of any line."""

    def __init__(self, stream: TextIO, permit: str):
        self._stream = stream
        self._permit = permit
        self._held = ""  # the start of a line not yet known to be safe (blanks, ':' or '#')
        self._line_start = True

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # as a text stream does: click tells text from binary streams so
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._stream.write(self._guard(text))
        return len(text)

    def _guard(self, text: str) -> str:
        out: list[str] = []
        for piece in text.splitlines(keepends=True):
            piece, self._held = self._held + piece, ""
            ends_line = piece[-1].splitlines() == [""]
            if self._line_start and piece.startswith(self._permit):
                piece = piece[len(self._permit) :]
            else:
                if self._line_start:
                    # GitHub trims every Unicode blank (U+00A0, U+3000, ...) before it looks for `::`.
                    stripped = piece.lstrip()
                    blank = piece[: len(piece) - len(stripped)]
                    if stripped.startswith(_STARTS):
                        piece = f"{blank}\\x{ord(stripped[0]):02x}{stripped[1:]}"
                    elif not ends_line and any(s.startswith(stripped) for s in (*_STARTS, self._permit)):
                        self._held = piece  # could still become a command: wait for what follows
                        continue
                # The legacy `##[command]` runs wherever it is in a line. `\\u0023` is `#` in a JSON string and
                # in a double-quoted YAML scalar too, so JSON and YAML printed keep their values.
                piece = piece.replace(_LEGACY, "\\u0023#[")
                if not ends_line:  # a '#' at the end of a write could start `##[` with the next one
                    tail = min(2, len(piece) - len(piece.rstrip("#")))
                    if tail:
                        piece, self._held = piece[:-tail], piece[-tail:]
            out.append(piece)
            self._line_start = ends_line
        return "".join(out)

    def flush(self) -> None:
        if self._held:
            held, self._held = self._held, ""
            self._stream.write(held)
            self._line_start = False
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:  # encoding, errors, isatty, fileno, ...
        return getattr(self._stream, name)


@contextlib.contextmanager
def guarded_output() -> Iterator[None]:
    """For the duration of a command: sys.stdout and sys.stderr go through the line guard."""
    global _permit
    saved = sys.stdout, sys.stderr, _permit
    _permit = "\x00kpipe-annotation-" + secrets.token_hex(8) + "\x00"
    sys.stdout = _LineGuard(sys.stdout, _permit)  # type: ignore[assignment]
    sys.stderr = _LineGuard(sys.stderr, _permit)  # type: ignore[assignment]
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        sys.stdout, sys.stderr, _permit = saved

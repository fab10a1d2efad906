"""No secret reaches any output: the one place that knows which strings are secret and masks them.

Two kinds of values are secret:

- a value that came from the environment through `env('NAME')` in a template (tokens, passwords and hosts a
  CI job holds): it is shown as `env('NAME')`;
- the value of a key the librdkafka table marks secret (`sasl.password`, `ssl.key.pem`, ...), wherever it was
  written: it is shown as `*****`.

Templating and loading `remember` them as they are seen; everything that prints (diagnostics in every format,
`explain`, `render`, log lines, dead-letter headers, one-line CLI errors) passes its text through `redact`.
Masking exact strings rather than fields means a secret is caught wherever it travels: inside an error message
that quotes a value, a rendered file, a log line. `render --show-secrets` prints the raw text (it never calls
`redact`).

Values shorter than MIN_SECRET_LENGTH are not masked: env('PARTITIONS') = "3" is not a secret, and masking
every "3" in every message would make them unreadable.

Imports: nothing of kpipe.
"""

from __future__ import annotations

import re
import threading

REDACTED = "*****"
MIN_SECRET_LENGTH = 4

_lock = threading.Lock()
_secrets: dict[str, str] = {}  # secret text -> what is shown instead
_pattern: re.Pattern[str] | None = None


def remember(value: object, label: str = REDACTED) -> None:
    """Mask `value` as `label` in everything `redact` sees from now on (this process)."""
    global _pattern
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return
    text = str(value)
    if len(text) < MIN_SECRET_LENGTH:
        return
    with _lock:
        if _secrets.get(text) == REDACTED and label != REDACTED:
            return  # a secret key's value stays fully masked even when it also came from env()
        if _secrets.get(text) != label:
            _secrets[text] = label
            _pattern = None


def remember_env(name: str, value: object) -> None:
    remember(value, f"env('{name}')")


def forget_all() -> None:
    """For tests: start again with no known secret."""
    global _pattern
    with _lock:
        _secrets.clear()
        _pattern = None


def redact(text: str) -> str:
    """`text` with every known secret replaced by its label."""
    global _pattern
    if not _secrets or not text:
        return text
    with _lock:
        if _pattern is None:
            # Longest first, so a secret that contains another one is replaced whole.
            ordered = sorted(_secrets, key=len, reverse=True)
            _pattern = re.compile("|".join(re.escape(s) for s in ordered))
        pattern, secrets = _pattern, dict(_secrets)
    return pattern.sub(lambda m: secrets[m.group(0)], text)


def redact_optional(text: str | None) -> str | None:
    return None if text is None else redact(text)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """Control characters (ANSI escapes, carriage returns, line separators) shown as escapes, so a name in
    a file cannot rewrite the terminal or forge a line of output. Tabs and newlines are kept."""
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)


def safe_text(text: str) -> str:
    """What every printed line goes through: secrets masked, control characters escaped."""
    return escape_controls(redact(text))

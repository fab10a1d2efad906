"""What may reach an output. Environment values never do, because no text kpipe shows ever holds one.

**Environment values are tokens.** In a template, `env('NAME')` does not return the variable's value: it
returns an opaque token, `⟦env-<32 hex digits>⟧`, derived from NAME and a random key made for this
run (kept in the process environment as KPIPE_ENV_TOKEN_KEY, so the worker processes of a run derive the same
tokens). The token holds nothing of the value, so no template transformation (slice, reverse, upper, join,
replace, format, `~`, ...) can bring any of it out: a transformed token is only a different string of hex
digits. A template cannot compare a value with anything either (`env('X') == 'a'` compares the token).

Every text kpipe shows (diagnostics in every format, `render`, `explain`, plan, status, exports, log lines,
dead-letter headers) is made from that tokenised form; `shown` turns a whole token into `env('NAME')`. The real
value is substituted only where it is consumed:

- `reveal`: a client configuration handed to librdkafka (kpipe.compilation.compiled.ClientConfig.as_dict),
  topic configs handed to the admin client, and `render --show-secrets` (a command-line flag, never a file
  setting);
- `typed_value`: a field whose value is parsed as a number, a boolean or one of a fixed set of choices, when
  the whole value is one `env()` call (`partitions: "{{ env('N') }}"`). A diagnostic about such a field names
  the token (`env('N')`), never the value (kpipe.model.assemble).

**The library boundary.** librdkafka echoes what it was given (a broker address in a connection error). The
values `reveal` handed out are remembered, and `redact` shows them as `env('NAME')` in text that comes back.
This is a backstop for text kpipe did not write, not the boundary: nothing kpipe writes is built from them.

**Secret settings.** The value of a key the librdkafka table marks secret (`sasl.password`, ...) is shown as
`*****` by `kpipe explain` (by key, kpipe.compilation.explain).

**Control characters.** Text quoted from the files may hold any character. `safe_text` is the one rule for a
line of text output: every control character (newline and carriage return included) is shown as an escape,
and a line cannot start a GitHub Actions workflow command (`::` or `##[`). `safe_block` is the same for text
that is several lines by design (`render`, a traceback under --debug). GitHub annotations and JSON have their
own rule (kpipe.diagnostics).

Imports: nothing of kpipe.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading
from typing import Any

REDACTED = "*****"
TOKEN_KEY_VARIABLE = "KPIPE_ENV_TOKEN_KEY"
# Printable, so repr() and YAML keep a token as it is; not `:`, so a token is a valid host of host:port.
_OPEN, _CLOSE = "\u27e6", "\u27e7"
TOKEN = re.compile(_OPEN + r"env-[0-9a-f]{32}" + _CLOSE)
# A token inside JSON written with ensure_ascii.
_JSON_TOKEN = re.compile(r"\\u27e6(env-[0-9a-f]{32})\\u27e7")
# Values shorter than this are not looked for in text that comes back from librdkafka ("1" is everywhere).
_MIN_ECHO_LENGTH = 4

_lock = threading.Lock()
_names: dict[str, str] = {}  # token -> variable name, for the variables of this process's environment
_echoes: dict[str, str] = {}  # a value `reveal` handed to a library -> env('NAME')
_echo_pattern: re.Pattern[str] | None = None
_key_secrets: dict[str, str] = {}  # the value of a secret setting written in a file -> *****
_key_pattern: re.Pattern[str] | None = None


def _key() -> bytes:
    key = os.environ.get(TOKEN_KEY_VARIABLE)
    if not key:
        key = secrets.token_hex(16)
        os.environ[TOKEN_KEY_VARIABLE] = key  # inherited by the worker processes of this run
    return key.encode()


def env_token(name: str) -> str:
    """The token that stands for environment variable `name` in this run."""
    digest = hmac.new(_key(), name.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:32]
    token = f"{_OPEN}env-{digest}{_CLOSE}"
    with _lock:
        _names[token] = name
    return token


def _name_of(token: str) -> str | None:
    with _lock:
        name = _names.get(token)
    if name is None:  # a token made by another process of the run: derive the tokens of this environment
        for candidate in list(os.environ):
            if env_token(candidate) == token:
                return candidate
    return name


def is_token(value: object) -> bool:
    return isinstance(value, str) and TOKEN.fullmatch(value.strip()) is not None


def has_token(value: object) -> bool:
    return isinstance(value, str) and _OPEN in value and TOKEN.search(value) is not None


def token_label(token: str) -> str:
    name = _name_of(token)
    return f"env('{name}')" if name is not None else "env(?)"


def shown(text: str) -> str:
    """`text` with every whole token written as `env('NAME')`. A transformed token stays as it is: it holds
    nothing of the value."""
    if "\\u27e6env-" in text:
        text = _JSON_TOKEN.sub(lambda m: token_label(_OPEN + m.group(1) + _CLOSE), text)
    if _OPEN not in text:
        return text
    return TOKEN.sub(lambda m: token_label(m.group(0)), text)


def reveal(text: str, *, remember: bool = True) -> str:
    """`text` with every whole token replaced by its variable's value: only where a value is consumed (or
    checked, with `remember=False`, when the check's message names the token instead)."""
    if not isinstance(text, str) or _OPEN not in text:
        return text

    def value_of(match: re.Match[str]) -> str:
        name = _name_of(match.group(0))
        if name is None or name not in os.environ:
            return match.group(0)
        value = os.environ[name]
        if remember:
            _remember_echo(value, f"env('{name}')")
        return value

    return TOKEN.sub(value_of, text)


def typed_value(value: object) -> object:
    """The value behind a whole token, for a field that parses it as a number, boolean or choice: the real
    text, read as YAML would read a scalar (`6` -> 6, `true` -> True). Anything else is returned unchanged."""
    if not is_token(value):
        return value
    assert isinstance(value, str)
    name = _name_of(value.strip())
    if name is None or name not in os.environ:
        return value
    text = os.environ[name].strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if re.fullmatch(r"[-+]?\d{1,18}", text):
        return int(text)
    if re.fullmatch(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d{1,3})?", text) and len(text) <= 40:
        return float(text)
    return os.environ[name]


def _remember_echo(value: str, label: str) -> None:
    global _echo_pattern
    if len(value) < _MIN_ECHO_LENGTH:
        return
    with _lock:
        if _echoes.get(value) != label:
            _echoes[value] = label
            _echo_pattern = None


def remember(value: object, label: str = REDACTED) -> None:
    """Show the value of a secret setting written in a file (`sasl.password: hunter2`) as *****."""
    global _key_pattern
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return
    text = str(value)
    if len(text) < _MIN_ECHO_LENGTH or has_token(text):
        return
    with _lock:
        if _key_secrets.get(text) != label:
            _key_secrets[text] = label
            _key_pattern = None


def forget_all() -> None:
    """For tests: start again with no remembered value."""
    global _echo_pattern, _key_pattern
    with _lock:
        _echoes.clear()
        _key_secrets.clear()
        _echo_pattern = _key_pattern = None


def _substitute(text: str, table: dict[str, str], pattern: re.Pattern[str] | None) -> tuple[str, Any]:
    if not table:
        return text, pattern
    if pattern is None:
        ordered = sorted(table, key=len, reverse=True)  # a value that holds another is replaced whole
        pattern = re.compile("|".join(re.escape(s) for s in ordered))
    return pattern.sub(lambda m: table[m.group(0)], text), pattern


def redact(text: str) -> str:
    """`text` as it may be shown: tokens as `env('NAME')`, values echoed back by a library as `env('NAME')`,
    secret settings' values as *****."""
    global _echo_pattern, _key_pattern
    if not text:
        return text
    text = shown(text)
    with _lock:
        text, _echo_pattern = _substitute(text, dict(_echoes), _echo_pattern)
        text, _key_pattern = _substitute(text, dict(_key_secrets), _key_pattern)
    return text


def redact_optional(text: str | None) -> str | None:
    return None if text is None else redact(text)


# -- control characters and workflow commands ----------------------------------------------------------------

# C0 and C1 controls, DEL, the Unicode line and paragraph separators, and lone surrogates (an event's JSON may
# hold "\ud800": no UTF-8 output can be given it, so writing it would fail).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff\ud800-\udfff]")
_BLOCK_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff\ud800-\udfff]")
# GitHub Actions runs a line as a command when, once trimmed, it starts with `::`; its trim (.NET's TrimStart)
# removes every Unicode blank (U+00A0, U+2003, U+3000, ...), not only spaces and tabs. Its legacy parser runs
# `##[command]` found anywhere in a line (actions/runner, ActionCommand.TryParse: IndexOf("##[")).
_COMMAND_START = re.compile(r"^([^\S\n]*)::", re.MULTILINE)
LEGACY_COMMAND = "##["
# What a line starts with, once trimmed, to be run as a command: every writer that escapes commands checks these.
COMMAND_STARTS = ("::", LEGACY_COMMAND)


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char) or char.encode("unicode_escape").decode("ascii")


def no_command(text: str) -> str:
    """No line of `text` is a GitHub Actions workflow command: a leading `::` (after any blanks) is written
    `\\x3a:`, and `##[` anywhere is written `\\x23#[`."""
    text = text.replace(LEGACY_COMMAND, "\\x23#[")
    return _COMMAND_START.sub(lambda m: f"{m.group(1)}\\x3a:", text)


def escape_line(text: str) -> str:
    """One line of text output: every control character escaped (newline included), no workflow command."""
    return no_command(_CONTROL.sub(_escape, text))


def escape_controls(text: str) -> str:
    """Text that is several lines by design: control characters escaped except newline and tab, and no line
    starts a workflow command."""
    return no_command(_BLOCK_CONTROL.sub(_escape, text))


def safe_text(text: str) -> str:
    """What every printed line goes through: tokens shown as env('NAME'), control characters escaped."""
    return escape_line(redact(text))


def safe_block(text: str) -> str:
    return escape_controls(redact(text))

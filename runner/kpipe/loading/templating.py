"""Jinja2 rendering of pipeline files: sandboxed, strict about undefined names.

A pipeline file is rendered as text before it is parsed as YAML, so `{% for %}` and `{% if %}` can shape the
document. Templates see:

- `env('NAME')` / `env('NAME', default)`: an environment variable (missing without default is an error);
- every template variable from `--values` files and `--var key=value` (later wins), as top-level names and
  under `vars`.

The sandbox blocks attribute access to Python internals (`__class__`, `__globals__`, ...), and StrictUndefined
makes a misspelt variable an error at its line instead of an empty string.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from kpipe.diagnostics import Diagnostic, Position, did_you_mean, error

_MISSING = object()


class _EnvMissing(Exception):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def _env(name: str, default: Any = _MISSING) -> Any:
    value = os.environ.get(name)
    if value is not None:
        return value
    if default is _MISSING:
        raise _EnvMissing(name)
    return default


def _make_environment() -> SandboxedEnvironment:
    environment = SandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    environment.globals["env"] = _env
    return environment


_ENVIRONMENT: SandboxedEnvironment | None = None


def needs_rendering(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


def render(text: str, file: str, variables: Mapping[str, Any]) -> tuple[str | None, list[Diagnostic]]:
    """Render one file's text. Returns (rendered text, diagnostics); text is None on error."""
    global _ENVIRONMENT
    if not needs_rendering(text):
        return text, []
    if _ENVIRONMENT is None:
        _ENVIRONMENT = _make_environment()
    context = dict(variables)
    context["vars"] = dict(variables)
    try:
        template = _ENVIRONMENT.from_string(text)
        template.name = template.filename = file
        return template.render(context), []
    except jinja2.TemplateSyntaxError as exc:
        # At the end of the template Jinja's line is wherever the text stopped, not the unclosed tag.
        at_end = (exc.message or "").startswith("Unexpected end of template")
        return None, [
            error(
                f"template syntax error: {exc.message}",
                Position(file, exc.lineno or 0, 1) if at_end else _where(text, file, exc.lineno or 0, None),
                code="template-syntax",
            )
        ]
    except _EnvMissing as exc:
        # Report every unset variable of the file at once, not one per run.
        names = _unset_env_names(text, context) or [exc.name]
        return None, [
            error(
                f"environment variable '{name}' is not set",
                _env_position(text, file, name) or _where(text, file, _template_line(exc, file), name),
                code="template-env",
                hint=f"set {name}, or give a default: env('{name}', '...')",
            )
            for name in names
        ]
    except jinja2.UndefinedError as exc:
        name = _undefined_name(exc)
        hint = did_you_mean(name, variables) if name else None
        if hint is None and name:
            hint = f"pass it with --var {name}=... or in a --values file"
        return None, [
            error(
                f"template error: {exc.message}",
                _where(text, file, _template_line(exc, file), name),
                code="template-undefined",
                hint=hint,
            )
        ]
    except SecurityError as exc:
        attribute = re.search(r"attribute '([^']+)'", str(exc))
        return None, [
            error(
                f"template error: not allowed in the sandbox: {str(exc).rstrip('.')}",
                _where(text, file, _template_line(exc, file), attribute.group(1) if attribute else None),
                code="template-sandbox",
            )
        ]
    except Exception as exc:  # a filter raising on bad input, a division by zero, ...
        return None, [
            error(
                f"template error: {type(exc).__name__}: {exc}",
                _where(text, file, _template_line(exc, file), None),
                code="template-error",
            )
        ]


def _unset_env_names(text: str, context: Mapping[str, Any]) -> list[str]:
    """Render again with an env() that records unset variables instead of stopping at the first."""
    unset: list[str] = []

    def collect(name: str, default: Any = _MISSING) -> Any:
        value = os.environ.get(name)
        if value is not None:
            return value
        if default is _MISSING:
            if name not in unset:
                unset.append(name)
            return ""
        return default

    environment = _make_environment()
    environment.globals["env"] = collect
    with contextlib.suppress(Exception):  # anything else wrong is reported once the variables are set
        environment.from_string(text).render(context)
    return unset


def _env_position(text: str, file: str, name: str) -> Position | None:
    call = re.compile(r"env\(\s*['\"]" + re.escape(name) + r"['\"]")
    found = None
    for tag in re.finditer(r"\{\{.*?\}\}|\{%.*?%\}", text, re.DOTALL):  # not a mention in a comment
        found = call.search(text, tag.start(), tag.end())
        if found is not None:
            break
    if found is None:
        return None
    line = text.count("\n", 0, found.start()) + 1
    column = found.start() - (text.rfind("\n", 0, found.start()) + 1)
    source = text.splitlines()[line - 1]
    # Point at the name, as the first-error path does.
    return Position(file, line, source.index(name, column) + 1)


def _where(text: str, file: str, line: int, needle: str | None) -> Position:
    """Point at the first mention of `needle` on the failing line, else at the line's first template tag."""
    lines = text.splitlines()
    if not 0 < line <= len(lines):
        return Position(file, line, 1 if line else 0)
    source = lines[line - 1]
    for probe in (needle, "{{", "{%"):
        if probe and probe in source:
            return Position(file, line, source.index(probe) + 1)
    return Position(file, line, 1)


def _template_line(exc: BaseException, file: str) -> int:
    """Jinja rewrites tracebacks so template frames carry the template's file name and line."""
    line = 0
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == file:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _undefined_name(exc: jinja2.UndefinedError) -> str | None:
    message = exc.message or ""
    if message.startswith("'") and "' is undefined" in message:
        return message[1 : message.index("' is undefined")]
    return None

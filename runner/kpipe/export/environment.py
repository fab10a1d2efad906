"""Which environment variables a project reads: static analysis of its Jinja templates, not a render.

Every `env('NAME')` / `env('NAME', default)` call is found in the parsed template (jinja2's AST), with its
file and line. A variable is a secret when the YAML key on its line is a secret librdkafka property
(sasl.password, ssl.key.password, ...) or its own name looks like one (…PASSWORD, …SECRET): a deployment
takes those from a Secret, never from a ConfigMap or the command line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import jinja2
from jinja2 import nodes

from kpipe.diagnostics import Position
from kpipe.errors import UsageError
from kpipe.loading.files import ProjectFiles
from kpipe.loading.loader import read_text
from kpipe.model import librdkafka as props

# `  sasl.password: "{{ env('KAFKA_PASSWORD') }}"` → sasl.password (quotes, a list dash and a comment mark
# allowed: a commented-out secret key still makes its variable a secret).
_KEY_ON_LINE = re.compile(r"""^\s*(?:#\s*)?(?:-\s+)?["']?([A-Za-z0-9_.\-]+)["']?\s*:""")


@dataclass(frozen=True)
class EnvVar:
    """One environment variable the files read, where, and whether it must come from a Secret."""

    name: str
    secret: bool
    has_default: bool
    positions: tuple[Position, ...]
    # The YAML key the value feeds, when the call sits on a `key: value` line (e.g. "sasl.password").
    keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Call:
    name: str
    has_default: bool
    position: Position
    key: str | None
    commented: bool


def _calls(text: str, display: str) -> list[_Call]:
    try:
        tree = jinja2.Environment().parse(text)
    except jinja2.TemplateSyntaxError:
        return []  # validate reports it; a project that loaded has none
    lines = text.splitlines()
    out = []
    for call in tree.find_all(nodes.Call):
        if not (isinstance(call.node, nodes.Name) and call.node.name == "env"):
            continue
        line = lines[call.lineno - 1] if 0 < call.lineno <= len(lines) else ""
        column = line.find("env(") + 1 if "env(" in line else 1
        where = Position(display, call.lineno, column)
        if (
            not call.args
            or not isinstance(call.args[0], nodes.Const)
            or not isinstance(call.args[0].value, str)
        ):
            raise UsageError(
                f"{where}: env() with a computed name: the export cannot tell which variable it "
                "reads; write the name as a quoted string"
            )
        key = _KEY_ON_LINE.match(line)
        out.append(
            _Call(
                name=call.args[0].value,
                has_default=len(call.args) > 1 or bool(call.kwargs),
                position=where,
                key=key.group(1) if key else None,
                commented=line.lstrip().startswith("#"),
            )
        )
    return out


def env_vars(files: Iterable[tuple[Path, str]], reader: ProjectFiles) -> list[EnvVar]:
    """The variables read by `(path, display name)` files, sorted by name. The files are read as loading
    reads them, through `reader` (inside the project root, regular files, size caps); one that cannot be
    read is skipped (loading reports it).

    A call on a YAML comment line is rendered but its value is thrown away: it counts only when it has no
    default (rendering fails without the variable).
    """
    found: dict[str, list[_Call]] = {}
    for path, display in files:
        text, _ = read_text(path, display, reader)
        if text is None:
            continue
        for call in _calls(text, display):
            if call.commented and call.has_default:
                continue
            found.setdefault(call.name, []).append(call)
    out = []
    for name, calls in sorted(found.items()):
        keys = tuple(dict.fromkeys(c.key for c in calls if c.key))
        secret = props.is_secret(name) or any(props.is_secret(k) for k in keys)
        out.append(
            EnvVar(
                name=name,
                secret=secret,
                has_default=all(c.has_default for c in calls),
                positions=tuple(c.position for c in calls),
                keys=keys,
            )
        )
    return out

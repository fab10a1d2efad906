"""YAML and JSON as the exports write them, each through one function (dump_yaml, dump_json): nothing else in
the exports serializes either format, so a name from the files is always a quoted or escaped scalar, never
structure. YAML: keys in the order built, multi-line text as literal blocks, and no anchors or
aliases (`&id001` / `*id001` where one object is shared): readers such as catalogues and code generators
do not all resolve them, and a reader of the file should see every value where it applies."""

from __future__ import annotations

import json
from typing import Any

import yaml

from kpipe.redaction import COMMAND_STARTS as _COMMAND_STARTS
from kpipe.redaction import LEGACY_COMMAND as _LEGACY_COMMAND


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: object) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # A file's content stays readable (and diffable) as a `|` block; PyYAML falls back to quoting by itself
    # where a block cannot hold the text exactly.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


# A line that starts (after blanks) with one of COMMAND_STARTS is a GitHub Actions workflow command when a CI
# step prints it; no line of YAML kpipe writes starts with one (kpipe.cli.output_guard would otherwise have to
# escape it, changing the value).
class _QuotingDumper(_Dumper):
    """Text that holds a command start is one double-quoted line, so no physical line can start with it."""


def _quoted_if_command(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if any(start in value for start in _COMMAND_STARTS):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return _text(dumper, value)


_QuotingDumper.add_representer(str, _quoted_if_command)


# GitHub's legacy parser runs `##[command]` wherever it is in a line; `\x23` is `#` in a double-quoted YAML
# scalar and `\u0023` in a JSON string, so the value written is the value read.


def dump_yaml(data: Any) -> str:
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)
    if _LEGACY_COMMAND not in text and not any(
        line.lstrip().startswith(_COMMAND_STARTS) for line in text.splitlines()
    ):
        return text
    # Rare (a name or text from the files holding `::` or `##[`): unwrapped lines, such values double-quoted,
    # so every `##[` is inside a double-quoted scalar, where it can be written with an escape.
    text = yaml.dump(data, Dumper=_QuotingDumper, sort_keys=False, allow_unicode=True, width=float("inf"))
    return text.replace(_LEGACY_COMMAND, "\\x23#[")


def dump_yaml_stream(documents: list[Any]) -> str:
    return "".join("---\n" + dump_yaml(d) for d in documents)


def dump_json(data: Any) -> str:
    # Outside a string JSON has no `#`: every `##[` is in a string.
    return json.dumps(data, indent=2, ensure_ascii=False).replace(_LEGACY_COMMAND, "\\u0023#[") + "\n"

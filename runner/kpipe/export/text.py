"""YAML and JSON as the exports write them, each through one function (dump_yaml, dump_json): nothing else in
the exports serializes either format, so a name from the files is always a quoted or escaped scalar, never
structure. YAML: keys in the order built, multi-line text as literal blocks, and no anchors or
aliases (`&id001` / `*id001` where one object is shared): readers such as catalogues and code generators
do not all resolve them, and a reader of the file should see every value where it applies."""

from __future__ import annotations

import json
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: object) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # A file's content stays readable (and diffable) as a `|` block; PyYAML falls back to quoting by itself
    # where a block cannot hold the text exactly.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)


def dump_yaml_stream(documents: list[Any]) -> str:
    return "".join("---\n" + dump_yaml(d) for d in documents)


def dump_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

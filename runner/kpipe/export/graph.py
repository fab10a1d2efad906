"""`kpipe export graph`: the topology as producers → topics → consumer groups, in Mermaid or Graphviz DOT.

Groups are labelled with their commit strategy and instances, topics with their partitions and key; dead-letter
routes and declared emits are edges of their own. Names come from the files, so every label goes through the one
escaper of its language (mermaid_label, dot_label) and node ids are derived, never copied; every other piece of
the output is constant text.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from kpipe.export.topology import Edge, Topology, commit_label

MERMAID_ARROWS = {
    "send": "-->",
    "receive": "-->",
    "dead_letter": "-. dead letters .->",
    "emit": "-- emits -->",
}
DOT_EDGE_ATTRS = {
    "send": "",
    "receive": "",
    "dead_letter": ' [label="dead letters", style=dashed, color="#b03a2e"]',
    "emit": ' [label="emits"]',
}


class _Ids:
    """Stable, collision-free node ids ('topic_orders_dlq') for names that may hold any character."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], str] = {}
        self._taken: set[str] = set()

    def __call__(self, kind: str, name: str) -> str:
        found = self._ids.get((kind, name))
        if found is None:
            base = f"{kind}_" + (re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") or "x")
            found, n = base, 1
            while found in self._taken:
                n += 1
                found = f"{base}_{n}"
            self._ids[(kind, name)] = found
            self._taken.add(found)
        return found


def _topic_label(topology: Topology, name: str) -> list[str]:
    topic = topology.topic(name)
    if topic is None:
        return [name]
    detail = f"{topic.partitions} partition{'s' if topic.partitions != 1 else ''}"
    if topic.key_field:
        detail += f", key {topic.key_field}"
    return [name, detail]


def _nodes(topology: Topology) -> list[tuple[str, str, list[str]]]:
    """(kind, name, label lines) of every node, producers first, then topics, then groups."""
    nodes = [("producer", p.name, [p.name, "producer"]) for p in topology.producers]
    nodes += [("topic", t.name, _topic_label(topology, t.name)) for t in topology.topics]
    for group in topology.groups:
        instances = f"{group.instances} instance{'s' if group.instances != 1 else ''}"
        nodes.append(("group", group.group_id, [group.group_id, f"{commit_label(group)}, {instances}"]))
    return nodes


def _edge_ends(edge: Edge) -> tuple[tuple[str, str], tuple[str, str]]:
    if edge.kind == "receive":
        return ("topic", edge.source), ("group", edge.target)
    source_kind = "producer" if edge.kind == "send" else "group"
    return (source_kind, edge.source), ("topic", edge.target)


# Mermaid reads `#name;` / `#NN;` as a character inside a label: '#' itself first, so a name holding "#quot;"
# stays text, then the characters that could end or reshape a quoted label (quotes, brackets, markup, Markdown
# strings, link separators). Parentheses are left as they are: a quoted label holds them as text.
_MERMAID_CODES = {
    "#": "#35;",
    "&": "#amp;",
    '"': "#quot;",
    "<": "#lt;",
    ">": "#gt;",
    "`": "#96;",
    "[": "#91;",
    "]": "#93;",
    "{": "#123;",
    "}": "#125;",
    "|": "#124;",
}


def _one_line(text: str) -> str:
    """Every control character and line or paragraph separator as a space, runs of space as one: a label is
    one line of the file, whatever the name held."""
    return " ".join("".join(" " if _breaks(c) else c for c in text).split())


def _breaks(char: str) -> bool:
    return not char.isprintable()


def mermaid_label(text: str) -> str:
    """The one escaper of text inside a quoted Mermaid label: one line, no character Mermaid reads as syntax."""
    return "".join(_MERMAID_CODES.get(c, c) for c in _one_line(text))


def mermaid(topology: Topology) -> str:
    ids = _Ids()
    shapes = {"producer": ('["', '"]'), "topic": ('[("', '")]'), "group": ('(["', '"])')}
    lines = ["flowchart LR"]
    for kind, name, label in _nodes(topology):
        open_, close = shapes[kind]
        text = "<br/>".join(mermaid_label(part) for part in label)
        lines.append(f"    {ids(kind, name)}{open_}{text}{close}:::{kind}")
    for edge in topology.edges():
        (source_kind, source), (target_kind, target) = _edge_ends(edge)
        arrow = MERMAID_ARROWS[edge.kind]
        lines.append(f"    {ids(source_kind, source)} {arrow} {ids(target_kind, target)}")
    lines += [
        "    classDef producer fill:#e8f1fb,stroke:#3b6ea8",
        "    classDef topic fill:#fdf6e3,stroke:#a8873b",
        "    classDef group fill:#eaf7ea,stroke:#3b8a3b",
    ]
    return "\n".join(lines) + "\n"


def dot_label(text: str) -> str:
    """The one escaper of text inside a quoted DOT string: one line, backslash and quote escaped (a backslash
    would otherwise start one of DOT's own escapes, such as \\N for the node's name)."""
    return _one_line(text).replace("\\", "\\\\").replace('"', '\\"')


def dot(topology: Topology) -> str:
    ids = _Ids()
    shapes = {
        "producer": 'shape=box, style="rounded,filled", fillcolor="#e8f1fb"',
        "topic": 'shape=cylinder, style=filled, fillcolor="#fdf6e3"',
        "group": 'shape=box, style=filled, fillcolor="#eaf7ea"',
    }
    lines = ["digraph kpipe {", "    rankdir=LR;", '    node [fontname="Helvetica"];']
    for kind, name, label in _nodes(topology):
        text = "\\n".join(dot_label(part) for part in label)
        lines.append(f'    {ids(kind, name)} [label="{text}", {shapes[kind]}];')
    for edge in topology.edges():
        (source_kind, source), (target_kind, target) = _edge_ends(edge)
        attrs = DOT_EDGE_ATTRS[edge.kind]
        lines.append(f"    {ids(source_kind, source)} -> {ids(target_kind, target)}{attrs};")
    lines.append("}")
    return "\n".join(lines) + "\n"


FORMATS: dict[str, Callable[[Topology], str]] = {"mermaid": mermaid, "dot": dot}

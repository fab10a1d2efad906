"""`kpipe export graph`: the topology as producers → topics → consumer groups, in Mermaid or Graphviz DOT.

Groups are labelled with their commit strategy and instances, topics with their partitions and key; dead-letter
routes and declared emits are edges of their own. Names come from the files, so every label is escaped for the
target language and node ids are derived, never copied.
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


def _mermaid_text(text: str) -> str:
    # Inside a quoted Mermaid label only '"' ends the string; entity codes stand in for the characters
    # Mermaid would read as markup.
    for char, code in (("&", "#amp;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(char, code)
    return " ".join(text.split())


def mermaid(topology: Topology) -> str:
    ids = _Ids()
    shapes = {"producer": ('["', '"]'), "topic": ('[("', '")]'), "group": ('(["', '"])')}
    lines = ["flowchart LR"]
    for kind, name, label in _nodes(topology):
        open_, close = shapes[kind]
        text = "<br/>".join(_mermaid_text(part) for part in label)
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


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ").replace("\r", " ")


def dot(topology: Topology) -> str:
    ids = _Ids()
    shapes = {
        "producer": 'shape=box, style="rounded,filled", fillcolor="#e8f1fb"',
        "topic": 'shape=cylinder, style=filled, fillcolor="#fdf6e3"',
        "group": 'shape=box, style=filled, fillcolor="#eaf7ea"',
    }
    lines = ["digraph kpipe {", "    rankdir=LR;", '    node [fontname="Helvetica"];']
    for kind, name, label in _nodes(topology):
        text = "\\n".join(_dot_text(part) for part in label)
        lines.append(f'    {ids(kind, name)} [label="{text}", {shapes[kind]}];')
    for edge in topology.edges():
        (source_kind, source), (target_kind, target) = _edge_ends(edge)
        attrs = DOT_EDGE_ATTRS[edge.kind]
        lines.append(f"    {ids(source_kind, source)} -> {ids(target_kind, target)}{attrs};")
    lines.append("}")
    return "\n".join(lines) + "\n"


FORMATS: dict[str, Callable[[Topology], str]] = {"mermaid": mermaid, "dot": dot}

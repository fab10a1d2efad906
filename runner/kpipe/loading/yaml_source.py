"""Safe YAML parsing that remembers where every key and value came from.

PyYAML's safe loader forgets positions and silently keeps the last of two duplicate keys. This module composes
the node tree with the safe loader and builds plain Python data from it itself, so that:

- every mapping key and value has a 1-based (line, column), kept in a PositionMap keyed by path
  (e.g. ("topics", "orders", "partitions"));
- duplicate keys are reported (both places), not silently overwritten;
- only the standard YAML tags are accepted (no python/object tags: safe by construction);
- alias expansion is bounded, so a "billion laughs" document fails fast instead of eating memory.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from kpipe.diagnostics import Diagnostic, Position, error
from kpipe.errors import PipelineInvalid

PathKey = tuple[Any, ...]

# How many nodes one document may build a second time by following aliases. Real pipeline files reuse a
# few hundred at most; a billion-laughs document has 10^9.
MAX_EXPANDED_NODES = 200_000
# Pipeline and schema files nest a handful of levels; past this the document is not one of them.
MAX_DEPTH = 100
# Integers past this are no configuration, and past ~14,000 bits Python cannot write them in decimal.
MAX_INT_BITS = 4096
MAP_TAG = "tag:yaml.org,2002:map"
STR_TAG = "tag:yaml.org,2002:str"
SEQ_TAG = "tag:yaml.org,2002:seq"
INT_TAG = "tag:yaml.org,2002:int"
MERGE_TAG = "tag:yaml.org,2002:merge"
STANDARD_TAG_PREFIX = "tag:yaml.org,2002:"


@dataclass
class PositionMap:
    """Where each path of a parsed document sits in its file."""

    file: str
    keys: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    values: dict[PathKey, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: PathKey, *, prefer: str = "value") -> Position:
        """The position of `path`, falling back to its nearest ancestor, then to the file itself."""
        path = tuple(path)
        first, second = (self.values, self.keys) if prefer == "value" else (self.keys, self.values)
        while True:
            hit = first.get(path) or second.get(path)
            if hit:
                return Position(self.file, hit[0], hit[1])
            if not path:
                return Position(self.file)
            path = path[:-1]


def parse_yaml(text: str, file: str) -> tuple[Any, PositionMap, list[Diagnostic]]:
    """Parse one YAML document. Returns (data, positions, diagnostics); data is None when parsing failed."""
    positions = PositionMap(file)
    tab = _leading_tab(text)
    if tab is not None:
        line, col = tab
        return (
            None,
            positions,
            [
                error(
                    "tab character used for indentation; YAML allows only spaces",
                    Position(file, line, col),
                    code="yaml-tab",
                    hint="replace the tab with spaces",
                )
            ],
        )
    # libyaml composes the node tree (with the same marks) several times faster than pure Python; the pure
    # parser runs only when the text is invalid, for its more precise error messages.
    loader = None
    if _CLoader is not None:
        loader = _CLoader(text)
        try:
            node = loader.get_single_node()
        except (yaml.YAMLError, RecursionError):
            loader.dispose()
            loader = None
    if loader is None:
        loader, node, problem = _compose_pure(text, file)
        if problem is not None:
            return None, positions, [problem]
    if node is None:
        loader.dispose()
        return None, positions, []
    builder = _Builder(file, positions, loader, _Lines(text))
    try:
        data = builder.build(node, ())
    except PipelineInvalid as exc:  # raised by the builder: the document stops here
        return None, positions, exc.diagnostics
    except RecursionError:
        return None, positions, [_too_deep_at(text, file)]
    finally:
        loader.dispose()
    return data, positions, builder.diagnostics


def _lean_loader() -> type[yaml.SafeLoader] | None:
    """libyaml's safe loader with the tag resolution it calls back into Python for on every node made lean:
    the same implicit resolvers in the same order (PyYAML's table, built once), without the path-resolver
    machinery that the safe loader never uses. None when PyYAML was built without libyaml."""
    base = getattr(yaml, "CSafeLoader", None)
    if base is None:
        return None
    table = base.yaml_implicit_resolvers
    anywhere = tuple(table.get(None, ()))
    by_first = {first: (*resolvers, *anywhere) for first, resolvers in table.items() if first is not None}
    assert not base.yaml_path_resolvers  # what makes skipping them the same

    class LeanLoader(base):  # type: ignore[misc, valid-type]
        def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
            if kind is ScalarNode:
                if implicit[0]:
                    for tag, pattern in by_first.get(value[:1], anywhere):
                        if pattern.match(value):
                            return tag
                return STR_TAG
            return SEQ_TAG if kind is SequenceNode else MAP_TAG

        def descend_resolver(self, current_node: Any, current_index: Any) -> None:
            pass

        def ascend_resolver(self) -> None:
            pass

    return LeanLoader


_CLoader = _lean_loader()


def _compose_pure(text: str, file: str) -> tuple[Any, Node | None, Diagnostic | None]:
    loader = yaml.SafeLoader(text)
    try:
        return loader, loader.get_single_node(), None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        lines = _Lines(text)
        pos = Position(file, *lines.at(mark)) if mark else Position(file)
        problem = exc.problem or exc.context or "invalid YAML"
        if "expected a single document" in (exc.context or ""):
            problem = "a file holds one YAML document, found a second one (a '---' separator)"
        elif exc.context and exc.problem:
            context = exc.context
            # "while parsing a flow mapping" alone does not say which one: name the line it started on.
            started = exc.context_mark
            if started is not None and mark is not None and lines.at(started)[0] != pos.line:
                context = f"{context} that starts at line {lines.at(started)[0]}"
            problem = f"{problem} ({context})"
        explained = _indentation_problem(text, file, exc) if mark is not None else None
        if explained is not None:
            return loader, None, explained
        return loader, None, error(f"invalid YAML: {problem}", pos, code="yaml-syntax")
    except yaml.YAMLError as exc:
        return loader, None, error(f"invalid YAML: {exc}", Position(file), code="yaml-syntax")
    except RecursionError:
        # PyYAML composes nested collections recursively; thousands of levels exhaust Python's stack.
        return loader, None, _too_deep_at(text, file)


def _too_deep_at(text: str, file: str) -> Diagnostic:
    """The too-deep error at the bracket that went past MAX_DEPTH (flow style), else at the file."""
    depth, quote, comment = 0, "", False
    line, column = 1, 0
    previous = "\n"
    for char in text:
        column += 1
        if char == "\n":
            line, column, comment = line + 1, 0, False
        elif comment:
            pass
        elif quote:
            if char == quote:
                quote = ""
        elif char in "\"'" and previous in " \t\n[{,:":
            quote = char
        elif char == "#" and previous in " \t\n":
            comment = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return _too_deep(Position(file, line, column))
        elif char in "]}":
            depth = max(0, depth - 1)
        previous = char
    return _too_deep(Position(file))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _key_column(line: str) -> int:
    """Spaces before the line's key (`  - name: x` → 4: the key of a list item starts after the dash)."""
    stripped = line.lstrip(" ")
    return _indent(line) + (len(stripped) - len(stripped[1:].lstrip(" ")) if stripped.startswith("-") else 0)


def _indentation_problem(text: str, file: str, exc: yaml.MarkedYAMLError) -> Diagnostic | None:
    """PyYAML's two usual indentation errors, said as what probably happened, at the line that is off.

    "mapping values are not allowed here": a `key:` line indented under a line whose key already has a value
    (or a value holding ': '). "expected <block end>, but found ...": a key between two indentation levels.
    """
    mark = exc.problem_mark
    lines = text.splitlines()
    if mark is None or not 0 <= mark.line < len(lines):
        return None
    number = mark.line + 1
    line = lines[mark.line]
    before = [
        (i + 1, lines[i])
        for i in range(mark.line - 1, -1, -1)
        if lines[i].strip() and not lines[i].lstrip().startswith("#")
    ]
    at = Position(file, number, _indent(line) + 1)
    key = line.strip().split(":", 1)[0]
    if exc.problem == "mapping values are not allowed here":
        under = _under_a_value(number, line, key, before, at)
        if under is not None:
            return under
        if before and ":" not in before[0][1] and not before[0][1].lstrip().startswith(("-", "[", "{")):
            above, text_above = before[0]
            words = text_above.strip().split(None, 1)
            meant = (
                f"did you mean '{words[0]}: {words[1]}'?" if len(words) == 2 else "write it as 'key: value'"
            )
            return error(
                f"invalid YAML: line {above} ('{text_above.strip()}') has no ':', so YAML reads it and "
                f"line {number} as one piece of text",
                Position(file, above, _indent(text_above) + 1),
                code="yaml-indentation",
                hint=meant,
            )
        if line.count(": ") + line.rstrip().endswith(":") >= 2:
            value = line.split(": ", 1)[1].strip()
            return error(
                f"invalid YAML: the value of '{key}' on line {number} holds ': ', which YAML reads as "
                "the start of another key",
                Position(file, number, line.index(value) + 1),
                code="yaml-indentation",
                hint=f'quote the value: {key}: "{value}"',
            )
        return None
    if (exc.problem or "").startswith("expected <block end>") and "block mapping" in (exc.problem or ""):
        indent = _indent(line)
        deeper = next((t for _, t in before if _indent(t) > indent), None)
        outer = next(((n, t) for n, t in before if _indent(t) < indent), None)
        if deeper is None:
            return _under_a_value(number, line, key, before, at)
        if outer is None:
            return None
        siblings = _indent(deeper)
        parent_line, parent_text = outer
        parent = parent_text.strip().split(":", 1)[0]
        return error(
            f"invalid YAML: '{key}' on line {number} is indented {indent} spaces, between the keys above it "
            f"({siblings}) and '{parent}' on line {parent_line} ({_indent(parent_text)}); the keys of one "
            "mapping must start in the same column",
            at,
            code="yaml-indentation",
            hint=f"indent it {siblings} spaces to be one of the keys above, or {_indent(parent_text)} to be "
            f"beside '{parent}'",
        )
    return None


def _under_a_value(
    number: int, line: str, key: str, before: list[tuple[int, str]], at: Position
) -> Diagnostic | None:
    """A `key:` line indented deeper than the line above it, which already holds a value (`partitions: 3`,
    `orders: {partitions: 3}`) or is a list item (`- orders`): YAML reads the key as more of that value."""
    if not before or _indent(line) <= _indent(before[0][1]):
        return None
    above, text_above = before[0]
    item = text_above.strip()
    if item.startswith("- ") and ":" not in item:
        # The key that holds the list: the nearest line above ending in ':' at or left of the item.
        holder = next(
            ((n, t) for n, t in before if t.rstrip().endswith(":") and _indent(t) <= _indent(text_above)),
            None,
        )
        where = (
            f"by {_key_column(holder[1])} spaces, like '{holder[1].strip()[:-1]}' on line {holder[0]}, to make it "
            "a sibling of the list"
            if holder
            else "less deeply"
        )
        return error(
            f"invalid YAML: '{key}' on line {number} is indented under the list item '{item}' on line {above}, "
            "so YAML reads it as more of that item",
            at,
            code="yaml-indentation",
            hint=f"indent line {number} {where}",
        )
    parent, _, value = item.removeprefix("- ").partition(":")
    value = value.strip()
    if not value or value.startswith(("|", ">", "&", "!")):
        return None
    opener = _dedented_after(before)
    if opener is not None:
        # `refunds:` then `partitions: 3` in its column then `retention:` deeper: the key with the value is the
        # one out of place. Following the sibling hint would turn the fields into keys of the mapping above.
        return error(
            f"invalid YAML: '{parent}' on line {above} is in the column of '{opener[1].strip()[:-1]}' on line "
            f"{opener[0]}, but '{key}' on line {number} is deeper, so YAML reads line {number} as more of "
            f"the value of '{parent}' ({value})",
            Position(at.file, above, _indent(text_above) + 1),
            code="yaml-indentation",
            hint=f"indent line {above} by {_indent(line)} spaces, like '{key}' on line {number}, to make "
            f"'{parent}' a key of '{opener[1].strip()[:-1]}' on line {opener[0]}",
        )
    return error(
        f"invalid YAML: '{key}' on line {number} is indented deeper than '{parent}' on line {above}, "
        f"which already has a value ({value}), so YAML reads line {number} as more of that value",
        at,
        code="yaml-indentation",
        hint=f"indent line {number} by {_key_column(text_above)} spaces, like '{parent}' on line {above}, "
        f"to make it a sibling; or, for a nested key, end line {above} at '{parent}:'",
    )


def _dedented_after(before: list[tuple[int, str]]) -> tuple[int, str] | None:
    """The mapping key (`refunds:`) that the line above probably belongs under: the nearest key line before it
    in the same column, when that key ends in ':' (it opens a mapping, possibly still empty)."""
    column = _indent(before[0][1])
    for n, text in before[1:]:
        if _indent(text) < column:
            return None
        if _indent(text) == column:
            stripped = text.strip()
            return (n, text) if stripped.endswith(":") and not stripped.startswith("-") else None
    return None


def _too_deep(position: Position) -> Diagnostic:
    return error(f"document is nested more than {MAX_DEPTH} levels deep", position, code="yaml-too-deep")


def _leading_tab(text: str) -> tuple[int, int] | None:
    for lineno, line in enumerate(text.split("\n"), 1):
        stripped = line.lstrip(" ")
        if stripped.startswith("\t") and stripped.strip():
            return lineno, len(line) - len(stripped) + 1
    return None


def _show_tag(tag: str) -> str:
    """A tag as the user wrote it: 'tag:yaml.org,2002:python/object' is written '!!python/object'."""
    return "!!" + tag[len(STANDARD_TAG_PREFIX) :] if tag.startswith(STANDARD_TAG_PREFIX) else tag


# After these a YAML reader counts lines or columns otherwise than an editor (YAML 1.1 breaks lines at U+0085,
# U+2028 and U+2029 too, and at a lone carriage return; the pure reader gives U+FEFF no column).
_UNEVEN = ("\r", "\x85", "\u2028", "\u2029", "\ufeff")


class _Lines:
    """Positions as editors count them. Where the text holds a character that YAML counts otherwise (_UNEVEN),
    they are found from the marks' character index by counting only the newlines before it, so no later line
    number shifts; elsewhere a mark's own line and column are already the editor's."""

    def __init__(self, text: str):
        self.text = text
        self.starts = [0]
        if not any(char in text for char in _UNEVEN):
            # No search per node: a 1,000-topic file has some 6,000 of them.
            self.at = self._as_marked  # type: ignore[method-assign]
            return
        # Found by str.find, not a Python loop over every character: a 1,000-topic file has ~50,000 of them.
        at = text.find("\n")
        while at >= 0:
            self.starts.append(at + 1)
            at = text.find("\n", at + 1)

    @staticmethod
    def _as_marked(mark: Any) -> tuple[int, int]:
        return mark.line + 1, mark.column + 1

    def at(self, mark: Any) -> tuple[int, int]:
        index = getattr(mark, "index", None)
        if index is None or index > len(self.text):
            return mark.line + 1, mark.column + 1
        line = bisect.bisect_right(self.starts, index)
        return line, index - self.starts[line - 1] + 1


class _Builder:
    """Plain data from the node tree, with every position. It runs for each of the thousands of nodes of a
    large file, so the common cases (a string, a plain decimal integer) take the shortest way."""

    def __init__(self, file: str, positions: PositionMap, loader: yaml.SafeLoader, lines: _Lines):
        self.file = file
        self.lines = lines
        self.at = lines.at
        self.positions = positions
        self.loader = loader
        self.expanded = 0
        self.visited: set[int] = set()
        # The collections being built right now: meeting one again means an alias points into itself.
        self.building: set[int] = set()
        self.diagnostics: list[Diagnostic] = []

    def _pos(self, node: Node) -> tuple[int, int]:
        return self.at(node.start_mark)

    def build(self, node: Node, path: PathKey) -> Any:
        # Count only the nodes built a second time (reached through an alias): a long file without aliases
        # is bounded by the loader's size limit, not by this one.
        if id(node) in self.visited:
            self.expanded += 1
            if self.expanded > MAX_EXPANDED_NODES:
                line, col = self._pos(node)
                raise PipelineInvalid(
                    [
                        error(
                            f"aliases expand the document by more than {MAX_EXPANDED_NODES:,} nodes "
                            "(a 'billion laughs' alias bomb?)",
                            Position(self.file, line, col),
                            code="yaml-alias-bomb",
                        )
                    ]
                )
        else:
            self.visited.add(id(node))
        values = self.positions.values
        if path not in values:
            values[path] = self.at(node.start_mark)
        if isinstance(node, ScalarNode):
            return node.value if node.tag == STR_TAG else self._scalar(node)
        if len(path) >= MAX_DEPTH:
            raise PipelineInvalid([_too_deep(Position(self.file, *self._pos(node)))])
        if id(node) in self.building:
            raise PipelineInvalid(
                [
                    error(
                        "an alias refers to a collection that contains it (a recursive anchor)",
                        Position(self.file, *self._pos(node)),
                        code="yaml-recursive-alias",
                    )
                ]
            )
        self.building.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                self._check_tag(node, SEQ_TAG)
                return [self.build(child, path + (i,)) for i, child in enumerate(node.value)]
            if isinstance(node, MappingNode):
                self._check_tag(node, MAP_TAG)
                return self._mapping(node, path)
        finally:
            self.building.discard(id(node))
        raise PipelineInvalid([error("unsupported YAML node", Position(self.file, *self._pos(node)))])

    def _check_tag(self, node: Node, expected: str) -> None:
        if node.tag != expected:
            raise PipelineInvalid(
                [
                    error(
                        f"YAML tag '{_show_tag(node.tag)}' is not allowed",
                        Position(self.file, *self._pos(node)),
                        code="yaml-tag",
                    )
                ]
            )

    def _scalar(self, node: ScalarNode) -> Any:
        if node.tag == STR_TAG:
            # What the safe constructor makes of a string (construct_yaml_str returns the node's value), without
            # its per-node bookkeeping: most scalars of a pipeline file are names and keys.
            return node.value
        text = node.value
        try:
            if node.tag == INT_TAG and text.isascii() and text.isdigit() and (text[0] != "0" or text == "0"):
                value = int(text)  # a plain decimal integer, as the safe constructor reads it
            else:
                value = self.loader.construct_object(node, deep=True)
        except ValueError:  # a decimal integer past Python's 4,300 digits
            raise PipelineInvalid([self._too_big(node)]) from None
        except yaml.constructor.ConstructorError as exc:
            mark = exc.problem_mark or node.start_mark
            raise PipelineInvalid(
                [
                    error(
                        f"YAML tag '{_show_tag(node.tag)}' is not allowed"
                        if "tag" in str(exc.problem)
                        else f"{exc.problem}",
                        Position(self.file, *self.lines.at(mark)),
                        code="yaml-tag",
                    )
                ]
            ) from None
        # A hex or octal one converts, but could not be printed in decimal: the same bound for every base.
        if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
            raise PipelineInvalid([self._too_big(node)])
        return value

    def _too_big(self, node: ScalarNode) -> Diagnostic:
        return error(
            f"number too large ({len(str(node.value)):,} characters; integers are at most {MAX_INT_BITS} bits)",
            Position(self.file, *self._pos(node)),
            code="yaml-number",
            hint="write it as a string, in quotes, if it is not a number",
        )

    def _merge_sources(self, node: Node) -> Iterator[MappingNode]:
        if isinstance(node, MappingNode):
            yield node
        elif isinstance(node, SequenceNode):
            for child in node.value:
                yield from self._merge_sources(child)
        else:
            raise PipelineInvalid(
                [
                    error(
                        "a '<<' merge key needs a mapping or a list of mappings",
                        Position(self.file, *self._pos(node)),
                    )
                ]
            )

    def _mapping(self, node: MappingNode, path: PathKey) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        seen: dict[Any, tuple[int, int]] = {}
        merged: dict[Any, Any] = {}
        keys, at = self.positions.keys, self.at
        for key_node, value_node in node.value:
            tag = key_node.tag
            if tag == MERGE_TAG:
                for source in self._merge_sources(value_node):
                    for k, v in self._mapping(source, path).items():
                        merged.setdefault(k, v)
                continue
            if not isinstance(key_node, ScalarNode):
                raise PipelineInvalid(
                    [
                        error(
                            "mapping keys must be plain scalars",
                            Position(self.file, *self._pos(key_node)),
                            code="yaml-key",
                        )
                    ]
                )
            key = key_node.value if tag == STR_TAG else self._scalar(key_node)
            here = at(key_node.start_mark)
            if type(key) is not str:
                try:
                    hash(key)
                except TypeError:
                    raise PipelineInvalid(
                        [error("unhashable mapping key", Position(self.file, *here))]
                    ) from None
            if key in seen:
                first = seen[key]
                self.diagnostics.append(
                    error(
                        f"duplicate key '{key}' (first defined at line {first[0]}); YAML would silently keep the last",
                        Position(self.file, *here),
                        code="yaml-duplicate-key",
                    )
                )
                continue
            seen[key] = here
            child = path + (key,)
            keys[child] = here
            result[key] = self.build(value_node, child)
        for k, v in merged.items():
            result.setdefault(k, v)
        return result

"""yaml_source: safe parsing with a position for every key and value."""

from __future__ import annotations

import pytest
import yaml

from kpipe.diagnostics import Position
from kpipe.loading.yaml_source import MAX_DEPTH, MAX_EXPANDED_NODES, parse_yaml


def test_positions_of_keys_and_values() -> None:
    text = "topics:\n  orders:\n    partitions: 3\n    config: {retention.ms: 1000}\n"
    data, positions, diagnostics = parse_yaml(text, "p.yaml")
    assert diagnostics == []
    assert data == {"topics": {"orders": {"partitions": 3, "config": {"retention.ms": 1000}}}}
    assert positions.locate(("topics", "orders"), prefer="key") == Position("p.yaml", 2, 3)
    assert positions.locate(("topics", "orders", "partitions")) == Position("p.yaml", 3, 17)
    assert positions.locate(("topics", "orders", "partitions"), prefer="key") == Position("p.yaml", 3, 5)
    assert positions.locate(("topics", "orders", "config", "retention.ms"), prefer="key") == Position(
        "p.yaml", 4, 14
    )


def test_locate_falls_back_to_the_nearest_ancestor_then_the_file() -> None:
    _, positions, _ = parse_yaml("topics:\n  orders:\n    partitions: 3\n", "p.yaml")
    assert positions.locate(("topics", "orders", "missing", "deeper"), prefer="key") == Position(
        "p.yaml", 2, 3
    )
    assert positions.locate(("nothing",)) == Position("p.yaml", 1, 1)


def test_list_items_have_positions() -> None:
    _, positions, _ = parse_yaml("topics: [a, b]\n", "p.yaml")
    assert positions.locate(("topics", 1)) == Position("p.yaml", 1, 13)


def test_empty_and_comment_only_documents_are_none() -> None:
    assert parse_yaml("", "p.yaml")[0] is None
    assert parse_yaml("# nothing here\n", "p.yaml")[0] is None
    assert parse_yaml("# nothing here\n", "p.yaml")[2] == []


def test_duplicate_key_keeps_the_first_and_reports_the_second() -> None:
    data, _, diagnostics = parse_yaml("a: 1\nb: 2\na: 3\n", "p.yaml")
    assert data == {"a": 1, "b": 2}
    assert [d.format() for d in diagnostics] == [
        "p.yaml:3:1: error: duplicate key 'a' (first defined at line 1); YAML would silently keep the last"
    ]


def test_every_duplicate_is_reported() -> None:
    _, _, diagnostics = parse_yaml("a: 1\na: 2\nb: {c: 1, c: 2}\n", "p.yaml")
    assert [str(d.position) for d in diagnostics] == ["p.yaml:2:1", "p.yaml:3:11"]


def test_tab_indentation() -> None:
    data, _, diagnostics = parse_yaml("a:\n\tb: 1\n", "p.yaml")
    assert data is None
    assert (
        diagnostics[0].format()
        == "p.yaml:2:1: error: tab character used for indentation; YAML allows only spaces"
    )


def test_tab_inside_a_value_is_fine() -> None:
    data, _, diagnostics = parse_yaml('a: "x\\ty"\nb: "c\td"\n', "p.yaml")
    assert diagnostics == []
    assert data == {"a": "x\ty", "b": "c\td"}


def test_syntax_error_position_and_context() -> None:
    data, _, diagnostics = parse_yaml("a: [1, 2\nb: 3\n", "p.yaml")
    assert data is None
    assert diagnostics[0].format() == (
        "p.yaml:2:2: error: invalid YAML: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence that starts at line 1)"
    )


def test_a_second_document_is_an_error() -> None:
    _, _, diagnostics = parse_yaml("a: 1\n---\nb: 2\n", "p.yaml")
    assert diagnostics[0].format() == (
        "p.yaml:2:1: error: invalid YAML: a file holds one YAML document, found a second one (a '---' separator)"
    )


def test_python_tags_are_refused() -> None:
    for text, column in (
        ("a: !!python/object/apply:os.system ['true']\n", 4),
        ("a: !!python/name:os.system\n", 4),
        ("a: !!python/object:object {}\n", 4),
        ("a: !custom 1\n", 4),
    ):
        data, _, diagnostics = parse_yaml(text, "p.yaml")
        assert data is None
        assert diagnostics[0].code == "yaml-tag"
        assert diagnostics[0].position == Position("p.yaml", 1, column)
        assert diagnostics[0].message.startswith("YAML tag '!")


def test_standard_tags_still_work() -> None:
    data, _, diagnostics = parse_yaml("a: !!str 3\nb: !!int '4'\n", "p.yaml")
    assert diagnostics == []
    assert data == {"a": "3", "b": 4}


def test_anchors_aliases_and_merge_keys() -> None:
    text = "base: &base {partitions: 3, key: id}\nt1:\n  <<: *base\n  key: other\nt2: *base\n"
    data, _, diagnostics = parse_yaml(text, "p.yaml")
    assert diagnostics == []
    assert data["t1"] == {"partitions": 3, "key": "other"}
    assert data["t2"] == {"partitions": 3, "key": "id"}


def test_alias_bomb_fails_fast() -> None:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 9)]
    data, _, diagnostics = parse_yaml("\n".join(lines) + "\n", "p.yaml")
    assert data is None
    assert diagnostics[0].code == "yaml-alias-bomb"
    assert f"more than {MAX_EXPANDED_NODES:,} nodes" in diagnostics[0].message


def test_many_nodes_without_aliases_are_not_a_bomb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kpipe.loading.yaml_source.MAX_EXPANDED_NODES", 100)
    text = "topics:\n" + "".join(f"  t{i}: {{partitions: 3, key: id}}\n" for i in range(200))
    data, _, diagnostics = parse_yaml(text, "p.yaml")
    assert diagnostics == []
    assert len(data["topics"]) == 200
    reused = "base: &b {partitions: 3, key: id}\n" + "".join(f"t{i}: *b\n" for i in range(60))
    assert parse_yaml(reused, "p.yaml")[2][0].code == "yaml-alias-bomb"


def test_recursive_alias() -> None:
    data, _, diagnostics = parse_yaml("a: &a [1, *a]\n", "p.yaml")
    assert data is None
    assert diagnostics[0].format() == (
        "p.yaml:1:4: error: an alias refers to a collection that contains it (a recursive anchor)"
    )


def test_deep_nesting_is_an_error_not_a_recursion_error() -> None:
    for depth in (MAX_DEPTH + 5, 5000):
        data, _, diagnostics = parse_yaml("a: " + "[" * depth + "]" * depth + "\n", "p.yaml")
        assert data is None
        assert diagnostics[0].code == "yaml-too-deep"


def test_non_scalar_keys_are_refused() -> None:
    _, _, diagnostics = parse_yaml("? [a, b]\n: 1\n", "p.yaml")
    assert diagnostics[0].format() == "p.yaml:1:3: error: mapping keys must be plain scalars"


def test_every_kind_of_string_is_the_text_written() -> None:
    # Plain, quoted, block and tagged strings, as keys and as values, are the text PyYAML's safe loader makes.
    text = "a: plain text\n'b': '0042'\n\"c\": \"yes\"\nd: |\n  two\n  lines\ne: !!str 3\nf: ~\n7: 1.5\n"
    data, _, diagnostics = parse_yaml(text, "p.yaml")
    assert diagnostics == []
    assert data == yaml.safe_load(text)
    assert data == {
        "a": "plain text",
        "b": "0042",
        "c": "yes",
        "d": "two\nlines\n",
        "e": "3",
        "f": None,
        7: 1.5,
    }


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_positions_count_characters_as_an_editor_does(newline: str) -> None:
    # Multi-byte characters are one column each; a CRLF file has the same lines as an LF one; and a line break
    # only YAML knows (U+2028 inside a value) shifts nothing.
    lines = ["a: 'é😀'", "b: {'é😀': 1, 'ü': 2}", 'd: "x\u2028y"', "e: [1, 日本]"]
    data, positions, diagnostics = parse_yaml(newline.join(lines) + newline, "p.yaml")
    assert diagnostics == []
    assert data["b"] == {"é😀": 1, "ü": 2}
    assert positions.locate(("b", "ü"), prefer="key") == Position("p.yaml", 2, 14)
    assert positions.locate(("b", "ü")) == Position("p.yaml", 2, 19)
    assert positions.locate(("e", 1)) == Position("p.yaml", 4, 8)

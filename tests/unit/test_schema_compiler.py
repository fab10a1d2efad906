"""compile_schema: each supported keyword enforced; everything else reported with its position."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from kpipe.diagnostics import Position, Severity
from kpipe.errors import SchemaModelImportError
from kpipe.schemas.schema_models import compile_schema, import_model

UUID_TEXT = "5f0c6a2e-8b1d-4c1e-9a53-2f7d0b7f4e11"


class FakeLocator:
    """Gives each key path asked about its own line, and maps positions back to paths for assertions."""

    def __init__(self) -> None:
        self.lines: dict[tuple, int] = {}

    def __call__(self, path: tuple) -> Position:
        return Position("events.schema.yaml", self.lines.setdefault(path, len(self.lines) + 1), 3)

    def path_of(self, position: Position | None) -> tuple:
        assert position is not None and position.file == "events.schema.yaml"
        return next(p for p, line in self.lines.items() if line == position.line)


def obj(properties: dict[str, Any], **keywords: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, **keywords}


def compile_ok(document: dict[str, Any], **options: Any) -> type[BaseModel]:
    model, diagnostics = compile_schema(document, name="Event", file="events.schema.yaml", **options)
    assert [d.format() for d in diagnostics] == []
    assert model is not None
    return model


def accepts(model: type[BaseModel], payload: Any) -> bool:
    try:
        model.model_validate_json(json.dumps(payload))
    except ValidationError:
        return False
    return True


# (id, schema of the required property "v", values accepted, values rejected)
KEYWORD_CASES: list[tuple[str, dict[str, Any], list[Any], list[Any]]] = [
    ("string", {"type": "string"}, ["a", ""], [3, None, True, ["a"]]),
    ("integer", {"type": "integer"}, [3, -1, 3.0, "3"], [3.5, "x", None, {}]),
    ("number", {"type": "number"}, [1, 1.5, "1.5"], ["x", None, [1]]),
    ("boolean", {"type": "boolean"}, [True, False], [None, "maybe", 2]),
    ("null", {"type": "null"}, [None], [0, "", False]),
    (
        "array of integers",
        {"type": "array", "items": {"type": "integer"}},
        [[], [1, 2]],
        [[1, "x"], "a", None],
    ),
    ("array of anything", {"type": "array"}, [[1, "a", None]], ["a", {}]),
    ("minItems/maxItems", {"type": "array", "minItems": 1, "maxItems": 2}, [[1], [1, 2]], [[], [1, 2, 3]]),
    ("uniqueItems false", {"type": "array", "uniqueItems": False}, [[1, 1]], ["a"]),
    ("enum", {"type": "string", "enum": ["a", "b"]}, ["a", "b"], ["c", "A", None, 1]),
    ("enum mixed", {"enum": [1, "a", None]}, [1, "a", None], [2, "b", "1"]),
    ("enum null needs listing", {"type": ["string", "null"], "enum": ["a"]}, ["a"], [None, "b"]),
    ("enum with null", {"type": ["string", "null"], "enum": ["a", None]}, ["a", None], ["b"]),
    ("const", {"const": "user.created"}, ["user.created"], ["user.deleted", None]),
    ("pattern anchored", {"type": "string", "pattern": "^a"}, ["abc"], ["bab", ""]),
    ("pattern searches", {"type": "string", "pattern": "b"}, ["abc"], ["ac"]),
    ("minLength/maxLength", {"type": "string", "minLength": 2, "maxLength": 3}, ["ab", "abc"], ["a", "abcd"]),
    ("minimum/maximum", {"type": "integer", "minimum": 1, "maximum": 3}, [1, 3], [0, 4]),
    ("exclusive bounds", {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}, [0.5], [0, 1, -1]),
    ("multipleOf", {"type": "integer", "multipleOf": 5}, [0, 10], [3]),
    ("date-time", {"type": "string", "format": "date-time"}, ["2024-01-01T10:00:00+01:00"], ["soon", None]),
    ("date", {"type": "string", "format": "date"}, ["2024-02-29"], ["2023-02-29", "x"]),
    ("time", {"type": "string", "format": "time"}, ["10:20:30"], ["25:00:00"]),
    ("uuid", {"type": "string", "format": "uuid"}, [UUID_TEXT], ["not-a-uuid", 5]),
    ("email", {"type": "string", "format": "email"}, ["ann@example.com"], ["ann", "ann@", 5]),
    (
        "email maxLength",
        {"type": "string", "format": "email", "maxLength": 12},
        ["a@example.io"],
        ["ann@example.com"],
    ),
    ("nullable type list", {"type": ["string", "null"]}, ["a", None], [3]),
    ("nullable anyOf", {"anyOf": [{"type": "integer"}, {"type": "null"}]}, [1, None], ["x"]),
    (
        "nullable oneOf",
        {"oneOf": [{"type": "null"}, {"type": "string", "maxLength": 1}]},
        ["a", None],
        ["ab"],
    ),
    ("nullable keeps bounds", {"type": ["number", "null"], "minimum": 0}, [0, None], [-1]),
    ("anything", {}, [1, "a", None, [], {}], []),
    ("true schema", {"type": "array", "items": True}, [[1, "a"]], ["a"]),
    ("free-form object", {"type": "object"}, [{}, {"a": [1]}], ["x", [], None]),
    (
        "map of integers",
        {"type": "object", "additionalProperties": {"type": "integer"}},
        [{"a": 1}],
        [{"a": "x"}],
    ),
    (
        "annotations",
        {
            "type": "string",
            "title": "T",
            "description": "D",
            "examples": ["x"],
            "$comment": "c",
            "deprecated": True,
            "readOnly": True,
            "writeOnly": False,
        },
        ["x"],
        [1],
    ),
]


@pytest.mark.parametrize(
    ("schema", "good", "bad"), [c[1:] for c in KEYWORD_CASES], ids=[c[0] for c in KEYWORD_CASES]
)
def test_keyword_is_enforced(schema: dict[str, Any], good: list[Any], bad: list[Any]) -> None:
    model = compile_ok(obj({"v": schema}, required=["v"]))
    assert [v for v in good if not accepts(model, {"v": v})] == []
    assert [v for v in bad if accepts(model, {"v": v})] == []


# (id, strict?, schema, value, accepted)
STRICTNESS_CASES = [
    ("lax integer from string", False, {"type": "integer"}, "3", True),
    ("strict integer from string", True, {"type": "integer"}, "3", False),
    ("strict integer from float", True, {"type": "integer"}, 3.0, False),
    ("strict number from string", True, {"type": "number"}, "1.5", False),
    ("strict number from int", True, {"type": "number"}, 1, True),
    ("strict boolean from string", True, {"type": "boolean"}, "true", False),
    (
        "strict date-time from ISO string",
        True,
        {"type": "string", "format": "date-time"},
        "2024-01-01T00:00:00Z",
        True,
    ),
    ("strict uuid from string", True, {"type": "string", "format": "uuid"}, UUID_TEXT, True),
    ("strict nested", True, {"type": "object", "properties": {"n": {"type": "integer"}}}, {"n": "1"}, False),
]


@pytest.mark.parametrize(
    ("strict", "schema", "value", "accepted"),
    [c[1:] for c in STRICTNESS_CASES],
    ids=[c[0] for c in STRICTNESS_CASES],
)
def test_strictness(strict: bool, schema: dict[str, Any], value: Any, accepted: bool) -> None:
    model = compile_ok(obj({"v": schema}, required=["v"]), strict=strict)
    assert accepts(model, {"v": value}) is accepted


# (id, document, code, path of the diagnostic, words in the message)
PROBLEM_CASES: list[tuple[str, Any, str, tuple, str]] = [
    (
        "if",
        obj({"v": {"type": "string", "if": {}}}),
        "schema-unsupported-keyword",
        ("properties", "v", "if"),
        "'if'",
    ),
    (
        "patternProperties",
        obj({}, patternProperties={"^x": {}}),
        "schema-unsupported-keyword",
        ("patternProperties",),
        "'patternProperties' is not supported",
    ),
    (
        "allOf",
        obj({"v": {"allOf": [{"type": "string"}]}}),
        "schema-unsupported-keyword",
        ("properties", "v", "allOf"),
        "'allOf'",
    ),
    (
        "prefixItems",
        obj({"v": {"type": "array", "prefixItems": []}}),
        "schema-unsupported-keyword",
        ("properties", "v", "prefixItems"),
        "'prefixItems'",
    ),
    (
        "uniqueItems true",
        obj({"v": {"type": "array", "uniqueItems": True}}),
        "schema-unsupported-keyword",
        ("properties", "v", "uniqueItems"),
        "uniqueItems",
    ),
    (
        "tuple items",
        obj({"v": {"type": "array", "items": [{}]}}),
        "schema-unsupported-keyword",
        ("properties", "v", "items"),
        "tuple-form",
    ),
    (
        "format ipv4",
        obj({"v": {"type": "string", "format": "ipv4"}}),
        "schema-unsupported-keyword",
        ("properties", "v", "format"),
        "format 'ipv4' is not supported",
    ),
    (
        "typo keyword",
        obj({"v": {"type": "string", "maxlength": 3}}),
        "schema-unsupported-keyword",
        ("properties", "v", "maxlength"),
        "unknown JSON Schema keyword 'maxlength'",
    ),
    (
        "remote $ref",
        obj({"v": {"$ref": "other.yaml#/$defs/X"}}),
        "schema-unsupported-keyword",
        ("properties", "v", "$ref"),
        "another document",
    ),
    (
        "recursive $ref",
        obj({"v": {"$ref": "#/$defs/Node"}}, **{"$defs": {"Node": obj({"next": {"$ref": "#/$defs/Node"}})}}),
        "schema-unsupported-keyword",
        ("$defs", "Node", "properties", "next", "$ref"),
        "recursive",
    ),
    (
        "missing $ref target",
        obj({"v": {"$ref": "#/$defs/Adress"}}, **{"$defs": {"Address": obj({})}}),
        "schema-invalid",
        ("properties", "v", "$ref"),
        "'#/$defs/Adress' does not exist",
    ),
    (
        "$ref sibling",
        obj({"v": {"$ref": "#/$defs/A", "minimum": 1}}, **{"$defs": {"A": {"type": "integer"}}}),
        "schema-unsupported-keyword",
        ("properties", "v", "minimum"),
        "beside '$ref'",
    ),
    (
        "general anyOf",
        obj({"v": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}),
        "schema-unsupported-keyword",
        ("properties", "v", "anyOf"),
        "nullable",
    ),
    (
        "type union",
        obj({"v": {"type": ["string", "integer"]}}),
        "schema-unsupported-keyword",
        ("properties", "v", "type"),
        "union",
    ),
    (
        "unknown type",
        obj({"v": {"type": "str"}}),
        "schema-invalid",
        ("properties", "v", "type"),
        "unknown type 'str'",
    ),
    (
        "enum of objects",
        obj({"v": {"enum": [{"a": 1}]}}),
        "schema-unsupported-keyword",
        ("properties", "v", "enum"),
        "not a mapping",
    ),
    (
        "enum value of other type",
        obj({"v": {"type": "integer", "enum": [1, "2"]}}),
        "schema-invalid",
        ("properties", "v", "enum"),
        "'2' is not of type 'integer'",
    ),
    (
        "keyword for other type",
        obj({"v": {"type": "string", "minimum": 1}}),
        "schema-invalid",
        ("properties", "v", "minimum"),
        "does not apply to type 'string'",
    ),
    (
        "draft-4 exclusiveMinimum",
        obj({"v": {"type": "number", "minimum": 0, "exclusiveMinimum": True}}),
        "schema-invalid",
        ("properties", "v", "exclusiveMinimum"),
        "not a boolean (draft 4)",
    ),
    (
        "negative maxLength",
        obj({"v": {"type": "string", "maxLength": -1}}),
        "schema-invalid",
        ("properties", "v", "maxLength"),
        "non-negative integer",
    ),
    (
        "bad regex",
        obj({"v": {"type": "string", "pattern": "(a"}}),
        "schema-pattern",
        ("properties", "v", "pattern"),
        "'pattern' cannot be used: unclosed group",
    ),
    (
        # Linear-time matching only: a look-around would need Python's backtracking re (issue 11.5).
        "look-ahead pattern",
        obj({"v": {"type": "string", "pattern": "^(?=a)(a+)+$"}}),
        "schema-pattern",
        ("properties", "v", "pattern"),
        "'pattern' cannot be used: look-around, including look-ahead and look-behind, is not supported",
    ),
    (
        "backreference pattern",
        obj({"v": {"type": "string", "pattern": "(a)\\1"}}),
        "schema-pattern",
        ("properties", "v", "pattern"),
        "'pattern' cannot be used: backreferences are not supported",
    ),
    (
        "length on date-time",
        obj({"v": {"type": "string", "format": "date-time", "maxLength": 30}}),
        "schema-unsupported-keyword",
        ("properties", "v", "maxLength"),
        "cannot be combined with format 'date-time'",
    ),
    (
        "undeclared required",
        obj({"order_id": {"type": "string"}}, required=["orderid"]),
        "schema-invalid",
        ("required", 0),
        "'orderid' is not declared",
    ),
    (
        "bad default",
        obj({"v": {"type": "integer", "default": "one"}}),
        "schema-invalid",
        ("properties", "v", "default"),
        "default 'one' does not match",
    ),
    (
        "bad additionalProperties",
        obj({}, additionalProperties="no"),
        "schema-invalid",
        ("additionalProperties",),
        "true, false or a schema",
    ),
    ("false schema", obj({"v": False}), "schema-unsupported-keyword", ("properties", "v"), "`false`"),
    ("root not an object", {"type": "string"}, "schema-invalid", (), "must describe an object"),
    ("root a list", [], "schema-invalid", (), "must be a mapping"),
    (
        "broken unused definition",
        obj({}, **{"$defs": {"Unused": {"type": "string", "if": {}}}}),
        "schema-unsupported-keyword",
        ("$defs", "Unused", "if"),
        "'if'",
    ),
    (
        "nested object keyword",
        obj({"a": obj({"b": {"type": "integer", "not": {}}})}),
        "schema-unsupported-keyword",
        ("properties", "a", "properties", "b", "not"),
        "'not'",
    ),
]


@pytest.mark.parametrize(
    ("document", "code", "path", "words"), [c[1:] for c in PROBLEM_CASES], ids=[c[0] for c in PROBLEM_CASES]
)
def test_problem_is_reported_with_its_position(document: Any, code: str, path: tuple, words: str) -> None:
    locator = FakeLocator()
    model, diagnostics = compile_schema(document, name="Event", file="events.schema.yaml", locate=locator)
    assert model is None
    assert len(diagnostics) == 1, [d.format() for d in diagnostics]
    (found,) = diagnostics
    assert (found.code, locator.path_of(found.position), found.severity) == (code, path, Severity.ERROR)
    assert words in found.message


@pytest.mark.parametrize(
    ("document", "hint"),
    [
        (obj({"v": {"type": "string", "maxlength": 3}}), "did you mean 'maxLength'?"),
        (obj({"v": {"type": "strng"}}), "did you mean 'string'?"),
        (obj({"v": {"type": "string", "format": "datetime"}}), "did you mean 'date-time'?"),
        (
            obj({"v": {"$ref": "#/$defs/Adress"}}, **{"$defs": {"Address": obj({})}}),
            "did you mean '#/$defs/Address'?",
        ),
        (obj({"order_id": {}}, required=["orderid"]), "did you mean 'order_id'?"),
    ],
)
def test_problem_has_hint(document: dict[str, Any], hint: str) -> None:
    _, (found,) = compile_schema(document, name="Event", file="s.yaml")
    assert found.hint == hint


def test_every_problem_is_reported_not_just_the_first() -> None:
    document = obj(
        {
            "a": {"type": "string", "if": {}},
            "b": {"type": "integer", "minLength": 1},
            "c": {"format": "ipv4"},
        },
        uniqueItems=True,
    )
    locator = FakeLocator()
    model, diagnostics = compile_schema(document, name="Event", file="s.yaml", locate=locator)
    assert model is None
    assert sorted(locator.path_of(d.position) for d in diagnostics) == [
        ("properties", "a", "if"),
        ("properties", "b", "minLength"),
        ("properties", "c", "format"),
        ("uniqueItems",),
    ]


def test_every_broken_definition_is_reported() -> None:
    defs = {"A": {"type": "string", "if": {}}, "B": {"type": "integer", "not": {}}}
    locator = FakeLocator()
    model, diagnostics = compile_schema(obj({}, **{"$defs": defs}), name="E", file="s.yaml", locate=locator)
    assert model is None
    assert [locator.path_of(d.position) for d in diagnostics] == [("$defs", "A", "if"), ("$defs", "B", "not")]


def test_position_falls_back_to_the_file() -> None:
    document = obj({"v": {"if": {}}})
    for locate in (None, lambda path: None):
        _, (found,) = compile_schema(document, name="Event", file="s.yaml", locate=locate)
        assert found.position == Position("s.yaml")
        assert found.format() == "s.yaml: error: JSON Schema keyword 'if' is not supported"


def test_optional_property_may_be_absent_but_not_null() -> None:
    model = compile_ok(obj({"note": {"type": "string"}, "maybe": {"type": ["string", "null"]}}))
    absent = model.model_validate_json(b"{}")
    assert (absent.note, absent.maybe, absent.model_fields_set) == (None, None, set())
    assert not accepts(model, {"note": None})
    assert model.model_validate_json(b'{"maybe": null}').model_dump(exclude_unset=True) == {"maybe": None}


def test_default_fills_an_absent_property_and_is_parsed() -> None:
    document = obj(
        {
            "version": {"type": "integer", "default": 1},
            "at": {"type": "string", "format": "date-time", "default": "2024-01-01T00:00:00Z"},
            "tags": {"type": "array", "items": {"type": "string"}, "default": []},
        }
    )
    model = compile_ok(document)
    first, second = model.model_validate_json(b"{}"), model.model_validate_json(b"{}")
    assert first.model_dump(mode="json") == {"version": 1, "at": "2024-01-01T00:00:00Z", "tags": []}
    first.tags.append("x")
    assert second.tags == []


def test_default_on_required_property_is_a_warning() -> None:
    document = obj({"version": {"type": "integer", "default": 1}}, required=["version"])
    model, (found,) = compile_schema(document, name="Event", file="s.yaml")
    assert model is not None and not accepts(model, {})
    assert (found.severity, found.code) == (Severity.WARNING, "schema-default-ignored")


def test_nested_objects_become_nested_models() -> None:
    address = obj({"city": {"type": "string"}}, required=["city"], additionalProperties=False)
    model = compile_ok(obj({"shipping": address}, required=["shipping"]))
    nested = model.model_fields["shipping"].annotation
    assert issubclass(nested, BaseModel) and nested.__name__ == "EventShipping"
    assert model.model_validate_json(b'{"shipping": {"city": "Oslo"}}').shipping.city == "Oslo"
    with pytest.raises(ValidationError) as caught:
        model.model_validate_json(b'{"shipping": {"city": "Oslo", "zip": "1"}}')
    assert caught.value.errors()[0]["loc"] == ("shipping", "zip")


@pytest.mark.parametrize("defs_key", ["$defs", "definitions"])
def test_ref_to_a_definition_is_compiled_once(defs_key: str) -> None:
    money = obj({"amount": {"type": "number", "exclusiveMinimum": 0}}, required=["amount"])
    ref = {"$ref": f"#/{defs_key}/Money", "description": "annotations beside $ref are fine"}
    model = compile_ok(
        obj({"total": ref, "tax": {"$ref": f"#/{defs_key}/Money"}}, **{defs_key: {"Money": money}})
    )
    assert model.model_fields["total"].annotation is model.model_fields["tax"].annotation
    assert model.model_fields["total"].annotation.__name__ == "Money"
    assert accepts(model, {"total": {"amount": 5}})
    assert not accepts(model, {"total": {"amount": 0}})


def test_ref_with_escaped_pointer_and_nullable_ref() -> None:
    defs = {"a/b": {"type": "string", "maxLength": 2}}
    model = compile_ok(obj({"v": {"anyOf": [{"$ref": "#/$defs/a~1b"}, {"type": "null"}]}}, **{"$defs": defs}))
    assert accepts(model, {"v": "ab"}) and accepts(model, {"v": None}) and not accepts(model, {"v": "abc"})


@pytest.mark.parametrize(
    ("additional", "payload", "dumped"),
    [
        ("absent", {"a": 1, "x": "y"}, {"a": 1}),
        (True, {"a": 1, "x": "y"}, {"a": 1, "x": "y"}),
        (False, {"a": 1, "x": "y"}, None),
        ({"type": "string"}, {"a": 1, "x": "y"}, {"a": 1, "x": "y"}),
        ({"type": "string"}, {"a": 1, "x": 2}, None),
    ],
)
def test_additional_properties(
    additional: Any, payload: dict[str, Any], dumped: dict[str, Any] | None
) -> None:
    keywords = {} if additional == "absent" else {"additionalProperties": additional}
    model = compile_ok(obj({"a": {"type": "integer"}}, **keywords))
    try:
        result = model.model_validate_json(json.dumps(payload)).model_dump(mode="json")
    except ValidationError:
        result = None
    assert result == dumped


def test_property_names_that_are_not_identifiers_become_aliases() -> None:
    names = ["event-type", "class", "_id", "json", "model_version", "1st", "a-b", "a_b", "ok"]
    model = compile_ok(obj({n: {"type": "string"} for n in names}, required=names))
    assert all(f.isidentifier() and not f.startswith("_") for f in model.model_fields)
    assert len(model.model_fields) == len(names)
    payload = {n: n for n in names}
    event = model.model_validate_json(json.dumps(payload))
    assert event.model_dump() == payload
    assert json.loads(event.model_dump_json()) == payload
    assert (event.event_type, event.class_, event.ok) == ("event-type", "class", "ok")


def test_source_document_stays_on_the_model() -> None:
    document = obj({"a": {"type": "integer"}}, title="Event")
    model = compile_ok(document)
    assert model.__kpipe_json_schema__ == document
    document["title"] = "changed later"
    assert model.__kpipe_json_schema__["title"] == "Event"


# -- import_model --------------------------------------------------------------------------------------

MODULE = """
from pydantic import BaseModel

class OrderEvent(BaseModel):
    order_id: str

    class Line(BaseModel):
        sku: str

def order_event() -> None: ...
"""


@pytest.fixture
def events_module(tmp_path, monkeypatch) -> str:
    (tmp_path / "kpipe_test_events.py").write_text(MODULE)
    (tmp_path / "kpipe_test_broken.py").write_text("import kpipe_no_such_dependency\n")
    (tmp_path / "kpipe_test_raises.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "kpipe_test_events"


def test_import_model(events_module: str) -> None:
    assert import_model(f"{events_module}:OrderEvent").__name__ == "OrderEvent"
    assert import_model(f"{events_module}:OrderEvent.Line").__name__ == "Line"


@pytest.mark.parametrize(
    ("ref", "words"),
    [
        ("kpipe_test_events.OrderEvent", "must be written 'package.module:ClassName'"),
        ("kpipe_test_events:", "must be written"),
        ("kpipe_test_nowhere:OrderEvent", "module 'kpipe_test_nowhere' not found"),
        (
            "kpipe_test_broken:X",
            "importing 'kpipe_test_broken' failed: No module named 'kpipe_no_such_dependency'",
        ),
        ("kpipe_test_raises:X", "importing 'kpipe_test_raises' failed: RuntimeError: boom"),
        ("kpipe_test_events:OrderEvnt", "has no attribute 'OrderEvnt' (did you mean 'OrderEvent'?)"),
        ("kpipe_test_events:order_event", "is not a pydantic BaseModel subclass (it is a function)"),
    ],
)
def test_import_model_says_what_is_wrong(events_module: str, ref: str, words: str) -> None:
    with pytest.raises(SchemaModelImportError) as caught:
        import_model(ref)
    assert words in str(caught.value)

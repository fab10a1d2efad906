"""Event schemas: JSON Schema documents compiled into pydantic v2 models, and models imported by path.

`compile_schema` turns a parsed JSON Schema (draft 2020-12 subset) into a pydantic model built with
`create_model` and `Annotated[..., Field(...)]` only, so `Model.model_validate_json(raw)` runs entirely in
pydantic-core, as fast as a hand-written model. It is pure: no file I/O, no Kafka. Every problem in the
document is returned as a Diagnostic with its position; the model is None when any of them is an error.

Decisions:
- Strictness. By default the models use pydantic's lax mode, the mode a hand-written pydantic model has, so a
  schema translated from such a model accepts and rejects exactly what that model did (the seed OrderEvent:
  "99.99" for a number and "3" for an integer are accepted; 3.5 for an integer and 3 for a string are not).
  `strict=True` gives JSON Schema's own type rules (no string-to-number coercion); date-time, date, time and
  uuid still parse from JSON strings. `enum`/`const` match by value and type in both modes.
- Optional properties. A property not listed in `required` may be absent; then its attribute holds the
  schema's `default`, or None when there is none. When present it must match its schema: an explicit null is
  rejected unless the schema is nullable (`type: [X, "null"]`, or `anyOf`/`oneOf` of X and `{type: null}`).
  This works because pydantic does not validate defaults. `model_dump(exclude_unset=True)` gives back only
  the keys that were sent. A `default` on a required property has no effect (a warning says so); a default
  that does not match its property's schema is an error.
- additionalProperties: absent -> extra keys accepted and dropped (pydantic's default, as the hand-written
  model did); true -> accepted and kept; false -> rejected; a schema -> kept and validated against it.
- Property names that are not Python identifiers ("event-type", "class", "_id") get a safe field name and the
  property name as alias; models validate and serialize by alias, so JSON keys stay as written.
- Any keyword outside the supported set is an error naming the keyword and where it is, never ignored.
  Annotations ($schema, $id, title, description, examples, $comment, deprecated, readOnly, writeOnly) are
  accepted and ignored. Unsupported: allOf, not, if/then/else, general anyOf/oneOf unions, type lists of
  several non-null types, patternProperties, propertyNames, min/maxProperties, prefixItems and tuple
  `items`, contains, uniqueItems: true, unevaluated*, dependent*, remote and recursive $ref, formats other
  than date-time, date, time, uuid and email, enum/const values that are objects or arrays.
- `pattern` runs on pydantic-core's Rust regex engine only, which matches in linear time: a pattern it cannot
  compile (look-around, back-references, a compiled size over its limit) is an error, never a fallback to
  Python's backtracking `re` (one crafted event could pin a worker). It is not exactly ECMA-262, the dialect
  JSON Schema names.

The source document stays on the model as `__kpipe_json_schema__` for the schema-evolution checker.
"""

from __future__ import annotations

import copy
import importlib
import keyword
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Annotated, Any, Literal
from urllib.parse import unquote
from uuid import UUID

from pydantic import BaseModel, ConfigDict, EmailStr, Field, TypeAdapter, ValidationError, create_model
from pydantic_core import PydanticUndefined, SchemaError, SchemaValidator, core_schema

from kpipe.diagnostics import Diagnostic, Position, did_you_mean, error, warning
from kpipe.errors import SchemaModelImportError

Path = tuple[str | int, ...]
Locate = Callable[[Path], Position | None]

ANNOTATION_KEYWORDS = frozenset(
    {"$schema", "$id", "title", "description", "examples", "$comment", "deprecated", "readOnly", "writeOnly"}
)
_DEFS_KEYWORDS = ("$defs", "definitions")
_GENERIC_KEYWORDS = frozenset({"type", "enum", "const", "$ref", "anyOf", "oneOf", "default", *_DEFS_KEYWORDS})
_KEYWORDS_BY_TYPE: dict[str, frozenset[str]] = {
    "string": frozenset({"minLength", "maxLength", "pattern", "format"}),
    "integer": frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}),
    "number": frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}),
    "array": frozenset({"items", "minItems", "maxItems", "uniqueItems"}),
    "object": frozenset({"properties", "required", "additionalProperties"}),
    "boolean": frozenset(),
    "null": frozenset(),
}
_NUMBER_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
_TYPED_KEYWORDS = frozenset().union(*_KEYWORDS_BY_TYPE.values())
_ASSERTION_KEYWORDS = (_GENERIC_KEYWORDS | _TYPED_KEYWORDS) - set(_DEFS_KEYWORDS)
SUPPORTED_KEYWORDS = ANNOTATION_KEYWORDS | _GENERIC_KEYWORDS | _TYPED_KEYWORDS
# Keywords JSON Schema defines that kpipe does not compile; anything else is reported as unknown.
_KNOWN_UNSUPPORTED = frozenset(
    {
        "allOf", "not", "if", "then", "else", "patternProperties", "propertyNames", "minProperties",
        "maxProperties", "dependentRequired", "dependentSchemas", "dependencies", "prefixItems",
        "additionalItems", "contains", "minContains", "maxContains", "unevaluatedItems",
        "unevaluatedProperties", "$anchor", "$dynamicRef", "$dynamicAnchor", "$recursiveRef",
        "$recursiveAnchor", "$vocabulary", "contentEncoding", "contentMediaType", "contentSchema",
    }
)  # fmt: skip
_FORMATS: dict[str, Any] = {
    "date-time": datetime,
    "date": date,
    "time": time,
    "uuid": UUID,
    "email": EmailStr,
}
_CONSTRAINT_ARGS = {
    "minLength": "min_length", "maxLength": "max_length", "pattern": "pattern",
    "minimum": "ge", "maximum": "le", "exclusiveMinimum": "gt", "exclusiveMaximum": "lt",
    "multipleOf": "multiple_of", "minItems": "min_length", "maxItems": "max_length",
}  # fmt: skip
_SCALARS = (str, int, float, bool, type(None))
_EXTRA_BY_ADDITIONAL = {None: "ignore", True: "allow", False: "forbid"}


class _Failed:
    """Marks a schema that could not be compiled; its diagnostics are already recorded."""


FAILED = _Failed()


@dataclass
class _Base:
    document: Mapping[str, Any]
    file: str
    locate: Locate | None
    strict: bool
    diagnostics: list[Diagnostic] = field(default_factory=list)
    by_pointer: dict[Path, Any] = field(default_factory=dict)
    resolving: set[Path] = field(default_factory=set)

    def position(self, path: Path) -> Position:
        found = self.locate(path) if self.locate else None
        return found or Position(self.file)

    def error(
        self, path: Path, message: str, *, code: str = "schema-invalid", hint: str | None = None
    ) -> _Failed:
        self.diagnostics.append(error(message, self.position(path), hint=hint, code=code))
        return FAILED

    def node(self, schema: Any, path: Path, name: str, *, root: bool = False) -> Any:
        """The annotation for `schema` at `path`, or FAILED (the compiler's dispatch)."""
        raise NotImplementedError


class _References(_Base):
    """`$ref` within the document and its `$defs`/`definitions`, each compiled once."""

    def compile_defs(self, schema: Mapping[str, Any], path: Path, defs_key: str) -> bool:
        """Compile every definition, referenced or not, so a broken one is reported either way."""
        defs = schema.get(defs_key)
        if defs is None:
            return True
        if not isinstance(defs, Mapping):
            self.error(path + (defs_key,), f"'{defs_key}' must be a mapping of names to schemas")
            return False
        compiled = [self.pointer(path + (defs_key, def_name)) for def_name in defs]
        return FAILED not in compiled

    def ref(self, schema: Mapping[str, Any], path: Path) -> Any:
        # Unknown keywords are already reported by check_keywords.
        siblings = sorted(set(schema) & _ASSERTION_KEYWORDS - {"$ref", "default"})
        if siblings:
            return self.error(
                path + (siblings[0],), f"'{siblings[0]}' beside '$ref' is not supported", code=_UNSUPPORTED
            )
        ref = schema["$ref"]
        if not isinstance(ref, str):
            return self.error(path + ("$ref",), "'$ref' must be a string")
        if not ref.startswith("#"):
            return self.error(
                path + ("$ref",),
                f"'$ref' to another document ('{ref}') is not supported",
                code=_UNSUPPORTED,
                hint="put the definition under '$defs' in this file and use '#/$defs/Name'",
            )
        target: Path = tuple(
            unquote(part).replace("~1", "/").replace("~0", "~") for part in ref[1:].split("/") if part
        )
        if ref[1:2] not in ("", "/") or not self.exists(target):
            return self.error(
                path + ("$ref",), f"'$ref' target '{ref}' does not exist", hint=self.ref_hint(ref)
            )
        if target in self.resolving:
            return self.error(
                path + ("$ref",), f"recursive '$ref' ('{ref}') is not supported", code=_UNSUPPORTED
            )
        return self.pointer(target)

    def exists(self, target: Path) -> bool:
        value: Any = self.document
        for part in target:
            if not isinstance(value, Mapping) or part not in value:
                return False
            value = value[part]
        return True

    def ref_hint(self, ref: str) -> str | None:
        candidates = [f"#/{k}/{name}" for k in _DEFS_KEYWORDS for name in self.document.get(k) or {}]
        return did_you_mean(ref, candidates)

    def pointer(self, target: Path) -> Any:
        """The compiled schema at a path of the document, compiled once however often it is referenced."""
        if target not in self.by_pointer:
            value: Any = self.document
            for part in target:
                value = value[part]
            self.resolving.add(target)
            name = _pascal(str(target[-1])) if target else "Root"
            self.by_pointer[target] = self.node(value, target, name)
            self.resolving.discard(target)
        return self.by_pointer[target]


class _Scalars(_Base):
    """const/enum literals, strings and their formats, and constrained scalars."""

    def literal(self, schema: Mapping[str, Any], path: Path, json_type: str | None, nullable: bool) -> Any:
        if "enum" in schema and "const" in schema:
            return self.error(path + ("const",), "use either 'enum' or 'const', not both")
        key = "enum" if "enum" in schema else "const"
        values = schema["enum"] if key == "enum" else [schema["const"]]
        if key == "enum" and (not isinstance(values, list) or not values):
            return self.error(path + (key,), "'enum' must be a non-empty list")
        typed = sorted(set(schema) & _KEYWORDS_BY_TYPE.get(json_type or "", frozenset()))
        if typed:
            return self.error(
                path + (typed[0],), f"'{typed[0]}' cannot be combined with '{key}'", code=_UNSUPPORTED
            )
        for value in values:
            if not isinstance(value, _SCALARS):
                return self.error(
                    path + (key,),
                    f"'{key}' values must be strings, numbers, booleans or null, not {_kind(value)}",
                    code=_UNSUPPORTED,
                )
            if json_type and not _matches_type(value, json_type) and not (value is None and nullable):
                return self.error(path + (key,), f"'{key}' value {value!r} is not of type '{json_type}'")
        return Literal[tuple(values)]

    def string(self, schema: Mapping[str, Any], path: Path) -> Any:
        fmt = schema.get("format")
        if fmt is None:
            return self.constrained(str, schema, path, ("minLength", "maxLength", "pattern"))
        if fmt not in _FORMATS:
            return self.error(
                path + ("format",),
                f"format {fmt!r} is not supported",
                code=_UNSUPPORTED,
                hint=did_you_mean(str(fmt), _FORMATS) or f"supported formats: {', '.join(_FORMATS)}",
            )
        if fmt == "email":
            return self.constrained(EmailStr, schema, path, ("minLength", "maxLength", "pattern"))
        extra = sorted(set(schema) & {"minLength", "maxLength", "pattern"})
        if extra:
            message = f"'{extra[0]}' cannot be combined with format '{fmt}'"
            return self.error(path + (extra[0],), message, code=_UNSUPPORTED)
        return _FORMATS[fmt]

    def constrained(self, base: Any, schema: Mapping[str, Any], path: Path, keys: tuple[str, ...]) -> Any:
        constraints: dict[str, Any] = {}
        for key in keys:
            if key not in schema:
                continue
            value = schema[key]
            problem = _constraint_problem(key, value)
            if problem:
                self.error(path + (key,), f"'{key}' {problem}")
                continue
            if key == "pattern" and not self.pattern_compiles(value, path + (key,)):
                continue
            constraints[_CONSTRAINT_ARGS[key]] = value
        if len(constraints) < len([k for k in keys if k in schema]):
            return FAILED
        return Annotated[base, Field(**constraints)] if constraints else base

    def pattern_compiles(self, pattern: str, path: Path) -> bool:
        """Whether pydantic-core's Rust regex engine (linear time) compiles `pattern`; else one error saying why.

        There is no fallback to Python's `re`: a backtracking engine lets one crafted value pin a worker.
        """
        reason = rust_regex_problem(pattern)
        if reason is None:
            return True
        hint = None
        if "look-around" in reason or "backreference" in reason:
            hint = (
                "patterns run on a linear-time engine without look-around or backreferences, so no event can "
                "make validation slow; rewrite it without them"
            )
        self.error(path, f"'pattern' cannot be used: {reason}", code="schema-pattern", hint=hint)
        return False


class _Compiler(_References, _Scalars):
    """A JSON Schema document compiled into pydantic annotations and models, collecting diagnostics."""

    # -- one schema node -------------------------------------------------------------------------------

    def node(self, schema: Any, path: Path, name: str, *, root: bool = False) -> Any:
        """The annotation for `schema` at `path`, or FAILED. `name` names any model built for it."""
        if schema is True:
            return Any
        if schema is False:
            return self.error(
                path, "the schema `false` (nothing is valid) is not supported", code=_UNSUPPORTED
            )
        if not isinstance(schema, Mapping):
            return self.error(path, f"a schema must be a mapping, not {_kind(schema)}")
        ok = self.check_keywords(schema, path)
        for defs_key in _DEFS_KEYWORDS:
            ok &= self.compile_defs(schema, path, defs_key)
        if "$ref" in schema:
            result = self.ref(schema, path)
        elif "anyOf" in schema or "oneOf" in schema:
            result = self.nullable_union(schema, path, name)
        else:
            result = self.typed(schema, path, name, root=root)
        return result if ok else FAILED

    def check_keywords(self, schema: Mapping[str, Any], path: Path) -> bool:
        ok = True
        for key in schema:
            if key in SUPPORTED_KEYWORDS:
                continue
            ok = False
            if key in _KNOWN_UNSUPPORTED:
                self.error(path + (key,), f"JSON Schema keyword '{key}' is not supported", code=_UNSUPPORTED)
            else:
                self.error(
                    path + (key,),
                    f"unknown JSON Schema keyword '{key}'",
                    code=_UNSUPPORTED,
                    hint=did_you_mean(str(key), SUPPORTED_KEYWORDS),
                )
        return ok

    def nullable_union(self, schema: Mapping[str, Any], path: Path, name: str) -> Any:
        kind = "anyOf" if "anyOf" in schema else "oneOf"
        extra = sorted(set(schema) & _ASSERTION_KEYWORDS - {kind, "default"})
        if extra:
            return self.error(
                path + (extra[0],), f"'{extra[0]}' beside '{kind}' is not supported", code=_UNSUPPORTED
            )
        branches = schema[kind]
        nulls = [i for i, b in enumerate(branches or ()) if isinstance(b, Mapping) and _is_null_schema(b)]
        if not isinstance(branches, list) or len(branches) != 2 or len(nulls) != 1:
            return self.error(
                path + (kind,),
                f"'{kind}' is supported only for a nullable value: [{{...}}, {{type: 'null'}}]",
                code=_UNSUPPORTED,
            )
        other = 1 - nulls[0]
        inner = self.node(branches[other], path + (kind, other), name)
        return FAILED if inner is FAILED else inner | None

    def typed(self, schema: Mapping[str, Any], path: Path, name: str, *, root: bool) -> Any:
        types = schema.get("type")
        type_list = types if isinstance(types, list) else [types] if types is not None else []
        for t in type_list:
            if not isinstance(t, str) or t not in _KEYWORDS_BY_TYPE:
                return self.error(
                    path + ("type",), f"unknown type {t!r}", hint=did_you_mean(str(t), _KEYWORDS_BY_TYPE)
                )
        nullable = "null" in type_list
        non_null = [t for t in type_list if t != "null"]
        if len(non_null) > 1:
            return self.error(
                path + ("type",),
                f"a union of types {non_null} is not supported; only [X, 'null']",
                code=_UNSUPPORTED,
            )
        if non_null:
            json_type: str | None = non_null[0]
        elif nullable:
            json_type = "null"
        elif set(schema) & _KEYWORDS_BY_TYPE["object"]:
            json_type = "object"
        else:
            json_type = None
        allowed = _KEYWORDS_BY_TYPE.get(json_type or "", frozenset())
        misplaced = [k for k in schema if k in _TYPED_KEYWORDS and k not in allowed]
        for key in misplaced:
            where = f"type '{json_type}'" if json_type else "a schema without 'type'"
            hint = None if json_type else "add the 'type' it is meant for"
            self.error(path + (key,), f"'{key}' does not apply to {where}", hint=hint)
        if root and json_type != "object":
            return self.error(path, "an event schema must describe an object (type: object)")

        if "enum" in schema or "const" in schema:
            # The listed values decide, null included: `type: [string, "null"]` with `enum: [a]` rejects null.
            result = self.literal(schema, path, json_type, nullable)
            return FAILED if misplaced else result
        if json_type == "string":
            result = self.string(schema, path)
        elif json_type in ("integer", "number"):
            base = int if json_type == "integer" else float
            result = self.constrained(base, schema, path, _NUMBER_KEYWORDS)
        elif json_type == "boolean":
            result = bool
        elif json_type == "null":
            result = None
        elif json_type == "array":
            result = self.array(schema, path, name)
        elif json_type == "object":
            result = self.object(schema, path, name, root=root)
        else:
            result = Any
        if misplaced:
            return FAILED
        if result is FAILED or not nullable or result is None:
            return result
        return result | None

    def array(self, schema: Mapping[str, Any], path: Path, name: str) -> Any:
        if schema.get("uniqueItems", False) is not False:
            return self.error(
                path + ("uniqueItems",), "'uniqueItems: true' is not supported", code=_UNSUPPORTED
            )
        items = schema.get("items", True)
        if isinstance(items, list):
            return self.error(
                path + ("items",), "tuple-form 'items' (a list) is not supported", code=_UNSUPPORTED
            )
        item_type = self.node(items, path + ("items",), name + "Item")
        if item_type is FAILED:
            return FAILED
        return self.constrained(list[item_type], schema, path, ("minItems", "maxItems"))

    def object(self, schema: Mapping[str, Any], path: Path, name: str, *, root: bool) -> Any:
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        additional = schema.get("additionalProperties")
        if not isinstance(properties, Mapping):
            return self.error(path + ("properties",), "'properties' must be a mapping of names to schemas")
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            return self.error(path + ("required",), "'required' must be a list of property names")
        ok = True
        for index, req in enumerate(required):
            if req not in properties:
                ok = False
                self.error(
                    path + ("required", index),
                    f"required property '{req}' is not declared in 'properties'",
                    hint=did_you_mean(req, [str(p) for p in properties]),
                )
        extra_type: Any = None
        if isinstance(additional, Mapping):
            extra_type = self.node(additional, path + ("additionalProperties",), name + "Extra")
            ok &= extra_type is not FAILED
        elif additional not in _EXTRA_BY_ADDITIONAL:
            return self.error(
                path + ("additionalProperties",), "'additionalProperties' must be true, false or a schema"
            )
        if not properties and not root and additional is not False:
            # A free-form map: keep it a dict rather than a model without fields.
            return FAILED if not ok else dict[str, Any if extra_type is None else extra_type]

        fields = self.fields(properties, required, path, name)
        ok &= fields is not None
        if not ok:
            return FAILED
        assert fields is not None
        if extra_type is not None:
            fields["__pydantic_extra__"] = (dict[str, extra_type], None)
        config = ConfigDict(
            extra="allow" if extra_type is not None else _EXTRA_BY_ADDITIONAL[additional],
            strict=self.strict,
            validate_by_alias=True,
            validate_by_name=False,
            serialize_by_alias=True,
            protected_namespaces=(),
            regex_engine="rust-regex",  # linear time; patterns were checked to compile with it
            # NaN and Infinity are not JSON: a peer in another language cannot read them, and pydantic would
            # write them as null, which the same schema then refuses. An event holding one is invalid.
            allow_inf_nan=False,
            title=schema["title"] if isinstance(schema.get("title"), str) else None,
        )
        model_name = _pascal(name)
        model = create_model(model_name, __config__=config, **fields)
        model.__kpipe_json_schema__ = copy.deepcopy(dict(schema))
        return model

    def fields(
        self, properties: Mapping[str, Any], required: list[str], path: Path, name: str
    ) -> dict[str, Any] | None:
        """The model fields of an object's properties; None when any of them failed (reported)."""
        ok = True
        fields: dict[str, Any] = {}
        used: set[str] = set()
        for prop, prop_schema in properties.items():
            prop_path = path + ("properties", prop)
            if not isinstance(prop, str):
                self.error(prop_path, f"property name {prop!r} must be a string")
                ok = False
                continue
            annotation = self.node(prop_schema, prop_path, name + _pascal(prop))
            if annotation is FAILED:
                ok = False
                continue
            default = self.default(prop_schema, prop_path, annotation, required=prop in required)
            if default is FAILED:
                ok = False
                continue
            field_name = _field_name(prop, used)
            field_args: dict[str, Any] = {"alias": prop} if field_name != prop else {}
            if isinstance(prop_schema, Mapping) and isinstance(prop_schema.get("description"), str):
                field_args["description"] = prop_schema["description"]
            fields[field_name] = (Annotated[annotation, Field(**field_args)], default)
        return fields if ok else None

    def default(self, schema: Any, path: Path, annotation: Any, *, required: bool) -> Any:
        has_default = isinstance(schema, Mapping) and "default" in schema
        if required:
            if has_default:
                self.diagnostics.append(
                    warning(
                        "'default' has no effect on a required property",
                        self.position(path + ("default",)),
                        code="schema-default-ignored",
                    )
                )
            return PydanticUndefined
        if not has_default:
            # Absent -> None. pydantic does not validate defaults, so an explicit null still fails
            # unless the schema is nullable.
            return None
        try:
            adapter = TypeAdapter(annotation, config=ConfigDict(regex_engine="rust-regex"))
            return adapter.validate_python(schema["default"])
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"]
            return self.error(
                path + ("default",), f"default {schema['default']!r} does not match the schema: {reason}"
            )


_UNSUPPORTED = "schema-unsupported-keyword"


def compile_schema(
    document: Mapping[str, Any],
    *,
    name: str,
    file: str,
    locate: Locate | None = None,
    strict: bool = False,
) -> tuple[type[BaseModel] | None, list[Diagnostic]]:
    """Compile a JSON Schema into a pydantic model named `name`; return (model or None, every diagnostic)."""
    compiler = _Compiler(document, file, locate, strict)
    if not isinstance(document, Mapping):
        compiler.error((), f"a schema document must be a mapping, not {_kind(document)}")
        return None, compiler.diagnostics
    compiler.resolving.add(())
    model = compiler.node(document, (), name, root=True)
    if model is not FAILED and not (isinstance(model, type) and issubclass(model, BaseModel)):
        model = compiler.error((), "an event schema must describe an object (type: object)")
    if model is FAILED or any(d.is_error for d in compiler.diagnostics):
        return None, compiler.diagnostics
    model.__kpipe_json_schema__ = copy.deepcopy(dict(document))
    return model, compiler.diagnostics


def import_model(ref: str) -> type[BaseModel]:
    """The pydantic model named by `"package.module:ClassName"`; SchemaModelImportError says what is wrong."""
    module_name, _, attr_path = ref.partition(":")
    if not module_name or not attr_path:
        raise SchemaModelImportError(f"schema model '{ref}' must be written 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise SchemaModelImportError(f"schema model '{ref}': module '{module_name}' not found") from exc
        raise SchemaModelImportError(
            f"schema model '{ref}': importing '{module_name}' failed: {exc}"
        ) from exc
    except Exception as exc:
        raise SchemaModelImportError(
            f"schema model '{ref}': importing '{module_name}' failed: {type(exc).__name__}: {exc}"
        ) from exc
    target: Any = module
    for part in attr_path.split("."):
        if not hasattr(target, part):
            owner = getattr(target, "__name__", module_name)
            hint = did_you_mean(part, [n for n in dir(target) if not n.startswith("_")])
            raise SchemaModelImportError(
                f"schema model '{ref}': '{owner}' has no attribute '{part}'" + (f" ({hint})" if hint else "")
            )
        target = getattr(target, part)
    if not (isinstance(target, type) and issubclass(target, BaseModel)):
        raise SchemaModelImportError(
            f"schema model '{ref}' is not a pydantic BaseModel subclass (it is {_kind(target)})"
        )
    return target


def rust_regex_problem(pattern: str) -> str | None:
    """Why pydantic-core's Rust regex engine cannot compile `pattern` (one line), or None when it can."""
    try:
        SchemaValidator(core_schema.str_schema(pattern=pattern, regex_engine="rust-regex"))
    except SchemaError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reasons = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
        if reasons:
            return reasons[-1]
        return lines[-1].removeprefix("SchemaError: ") if lines else "not a valid regular expression"
    return None


def _is_null_schema(schema: Mapping[str, Any]) -> bool:
    return schema.get("type") == "null" and not (set(schema) - ANNOTATION_KEYWORDS - {"type"})


def _matches_type(value: Any, json_type: str) -> bool:
    if json_type == "string":
        return isinstance(value, str)
    if json_type == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if json_type == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if json_type == "number":
        return isinstance(value, int | float)
    return json_type == "null" and value is None


def _constraint_problem(key: str, value: Any) -> str | None:
    if key == "pattern":
        return None if isinstance(value, str) else "must be a string"
    if isinstance(value, bool):
        if key.startswith("exclusive"):
            return "must be a number (draft 2020-12), not a boolean (draft 4)"
        return "must be a number, not a boolean"
    if key in ("minLength", "maxLength", "minItems", "maxItems"):
        return None if isinstance(value, int) and value >= 0 else "must be a non-negative integer"
    if not isinstance(value, int | float):
        return "must be a number"
    if key == "multipleOf" and value <= 0:
        return "must be greater than 0"
    return None


def _field_name(prop: str, used: set[str]) -> str:
    """A valid, unshadowing Python identifier for a property name, unique within its model."""
    base = re.sub(r"\W", "_", prop).lstrip("_") or "field"
    if base[0].isdigit():
        base = "f_" + base
    if keyword.iskeyword(base) or hasattr(BaseModel, base) or base.startswith("model_"):
        base += "_"
    candidate, n = base, 2
    while candidate in used:
        candidate, n = f"{base}{n}", n + 1
    used.add(candidate)
    return candidate


def _pascal(text: str) -> str:
    words = re.split(r"[^0-9A-Za-z]+", text)
    joined = "".join(w[:1].upper() + w[1:] for w in words if w)
    return joined if joined and not joined[0].isdigit() else "M" + joined


def _kind(value: Any) -> str:
    kinds = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    for cls, text in kinds.items():
        if isinstance(value, cls):
            return text
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, Mapping):
        return "a mapping"
    return f"a {type(value).__name__}"

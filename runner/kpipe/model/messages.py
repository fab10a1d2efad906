"""Turn pydantic ValidationErrors on a pipeline file into one-line diagnostics at the right file:line:col.

pydantic reports a `loc` such as ('consumers', 'billing', 'commit', 'batch', 'batch_siz'). The 'batch' there is
a union tag, not a key in the file, so locations are resolved by walking the parsed data alongside the loc and
skipping elements that are not in it.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from pydantic import BaseModel, ValidationError

from kpipe.diagnostics import Diagnostic, did_you_mean, error
from kpipe.loading.yaml_source import PositionMap
from kpipe.model import pipeline as spec
from kpipe.model.aliases import json_names

SECTION_NOUN = {
    "topics": "topic",
    "producers": "producer",
    "consumers": "consumer group",
    "schemas": "schema",
}


COMMIT_VARIANTS: dict[str, type[BaseModel]] = {
    "auto": spec.AutoCommit,
    "per_message": spec.PerMessageCommit,
    "batch": spec.BatchCommit,
}


def data_path(data: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The part of `loc` that names real keys/indices in `data` (union tags and type names dropped)."""
    path: list[Any] = []
    current = data
    for i, element in enumerate(loc):
        following = loc[i + 1] if i + 1 < len(loc) else None
        if (
            isinstance(current, dict)
            and element in current
            and following in current
            and not (isinstance(current[element], dict) and following in current[element])
        ):
            continue  # a union tag that is also a key beside the real one: `file` in {file: ..., compatibility: ...}
        if isinstance(current, dict) and element in current:
            current = current[element]
            path.append(element)
        elif isinstance(current, list) and isinstance(element, int) and 0 <= element < len(current):
            current = current[element]
            path.append(element)
    return tuple(path)


def model_at(data: Any, path: tuple[Any, ...]) -> type[BaseModel] | None:
    """Which spec model describes the mapping at `path` (for listing its valid keys)."""
    if path == ():
        return spec.PipelineFile
    head, rest = path[0], path[1:]
    if head == "cluster" and rest == ():
        return spec.ClusterSpec
    if head == "metrics" and rest == ():
        return spec.MetricsSpec
    if len(rest) == 1:
        if head == "topics":
            return spec.TopicSpec
        if head == "producers":
            return spec.ProducerSpec
        if head == "consumers":
            return spec.ConsumerGroupSpec
        if head == "schemas":
            value = _get(data, path)
            return spec.SchemaModel if isinstance(value, dict) and "model" in value else spec.SchemaFile
    if head == "consumers" and len(rest) == 2:
        if rest[1] == "on_error":
            return spec.OnErrorSpec
        if rest[1] == "commit":
            strategy = (
                (_get(data, path) or {}).get("strategy") if isinstance(_get(data, path), dict) else None
            )
            return COMMIT_VARIANTS.get(strategy, spec.BatchCommit)
    return None


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for element in path:
        try:
            data = data[element]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def field_names(model: type[BaseModel]) -> list[str]:
    return list(json_names(model))


def subject(path: tuple[Any, ...]) -> str:
    """Who the error is about: "topic 'orders'", "consumer group 'billing'", "the file"."""
    if len(path) >= 2 and path[0] in SECTION_NOUN:
        return f"{SECTION_NOUN[path[0]]} '{path[1]}'"
    if path and path[0] in ("cluster", "metrics"):
        return path[0]
    return "file"


def _field_label(path: tuple[Any, ...]) -> str:
    rest = (
        path[2:]
        if len(path) >= 2 and path[0] in SECTION_NOUN
        else path[1:]
        if path and path[0] in ("cluster", "metrics")
        else path
    )
    return ".".join(str(p) for p in rest)


def _yaml_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"


def _config_entry(path: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The path of the `config:` entry an error is in or below, or None when it is not in a config map."""
    if len(path) >= 3 and path[0] == "cluster" and path[1] == "config":
        return path[:3]
    if len(path) >= 4 and path[0] in SECTION_NOUN and path[2] == "config":
        return path[:4]
    return None


def _value_at(data: Any, path: tuple[Any, ...]) -> Any:
    for element in path:
        data = data[element]
    return data


def _describe_input(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _misspelt(errors: list[dict], data: Any) -> set[tuple[Any, ...]]:
    """Paths of required keys that are missing only because an unknown key beside them misspells them."""
    out = set()
    for err in errors:
        if err["type"] != "extra_forbidden":
            continue
        loc = tuple(err["loc"])
        path = data_path(data, loc)
        parent = path[:-1] if path and path[-1] == loc[-1] else path
        model = model_at(data, parent)
        if model is not None:
            close = difflib.get_close_matches(str(loc[-1]), field_names(model), n=1, cutoff=0.6)
            out.update(parent + (c,) for c in close)
    return out


def _variant_hint(key: str, data: Any, parent: tuple[Any, ...]) -> str | None:
    """For a key of another commit strategy: which strategy it belongs to."""
    if not (len(parent) == 3 and parent[0] == "consumers" and parent[2] == "commit"):
        return None
    owners = [m for m in COMMIT_VARIANTS if key in field_names(COMMIT_VARIANTS[m])]
    if not owners:
        return None
    chosen = (_get(data, parent) or {}).get("strategy")
    return (
        f"'{key}' applies only to commit strategy "
        + " or ".join(f"'{o}'" for o in owners)
        + (f", not '{chosen}'" if chosen else "")
    )


def translate(exc: ValidationError, data: Any, positions: PositionMap) -> list[Diagnostic]:
    diagnostics: list[Diagnostic] = []
    errors = exc.errors(include_url=False)
    misspelt = _misspelt(errors, data)
    union_reported: set[tuple[Any, ...]] = set()
    for err in errors:
        loc = tuple(err["loc"])
        kind = err["type"]
        path = data_path(data, loc)
        who = subject(path)
        label = _field_label(path)
        hint = None
        if "[key]" in loc:
            diagnostics.append(_name_not_a_string(loc[0], err.get("input"), positions))
            continue
        config_at = _config_entry(path)
        if config_at is not None and kind not in ("extra_forbidden", "missing"):
            # A config value matches none of the union's types: pydantic reports each branch; say it once.
            path = config_at
            label = _field_label(path)
            if path not in union_reported:
                union_reported.add(path)
                lead = f"{who}: " if who != "file" else ""
                got = _describe_input(_value_at(data, path))
                diagnostics.append(
                    error(
                        f"{lead}'{label}' must be a string, number, boolean or list of strings (got {got})",
                        positions.locate(path, prefer="value"),
                        code="invalid-value",
                    )
                )
            continue
        if kind == "extra_forbidden":
            diagnostics.append(_unknown_key(loc[-1], path, data, positions))
            continue
        if kind == "missing":
            missing = loc[-1]
            if path + (missing,) in misspelt:
                continue  # the unknown key beside it is reported with a did-you-mean
            message = f"{who} is missing required key '{missing}'"
            position = positions.locate(path, prefer="key")
            diagnostics.append(error(message, position, code="missing-key"))
            continue
        message = _message(kind, err, label)
        if kind == "literal_error":
            hint = _choice_hint(err)
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            position = positions.locate(path + ("strategy",), prefer="value")
        else:
            position = positions.locate(path, prefer="value")
        lead = f"{who}: " if who != "file" else ""
        diagnostics.append(error(f"{lead}{message}", position, hint=hint, code="invalid-value"))
    return diagnostics


def _name_not_a_string(section: Any, key: Any, positions: PositionMap) -> Diagnostic:
    """A name YAML did not read as a string: `yes:`, `null:`, `123:`."""
    noun = SECTION_NOUN.get(str(section), "name")
    if isinstance(key, bool) or key is None:  # (1 == True: look bools up only as bools)
        shown = {True: "yes/true", False: "no/false", None: "null"}[key]
    else:
        shown = str(key)
    return error(
        f"{noun} name {shown} is read by YAML as {_yaml_kind(key)}, not a name",
        positions.locate((section, key), prefer="key"),
        hint="quote it, e.g. 'yes': or '123':",
        code="invalid-name",
    )


def _unknown_key(key: Any, path: tuple, data: Any, positions: PositionMap) -> Diagnostic:
    """A key the model does not have, with the closest valid one (or the list of them)."""
    who = subject(path)
    label = _field_label(path)
    parent = path[:-1] if path and path[-1] == key else path
    model = model_at(data, parent)
    allowed = field_names(model) if model else []
    hint = did_you_mean(str(key), allowed) or _variant_hint(str(key), data, parent)
    if hint is None and allowed:
        hint = "valid keys: " + ", ".join(allowed)
    where = f"in {who}" if who != "file" else "at the top level"
    # Below the object itself (commit, on_error), name the key by its dotted path, like other errors.
    shown = label if label and path and path[-1] == key else str(key)
    if parent == ():
        hint = hint or "valid sections: " + ", ".join(spec.SECTION_NAMES)
    position = positions.locate(path, prefer="key")
    return error(f"unknown key '{shown}' {where}", position, hint=hint, code="unknown-key")


def _choice_hint(err: dict) -> str | None:
    """For a value outside a fixed set: the right case of it, or the closest choice."""
    choices = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
    given = err.get("input")
    if not isinstance(given, str) or not choices:
        return None
    for choice in choices:
        if choice.lower() == given.lower():
            return f"values are case-sensitive: write '{choice}'"
    return did_you_mean(given, choices) or did_you_mean(given.upper(), choices)


def _message(kind: str, err: dict, label: str) -> str:
    ctx = err.get("ctx") or {}
    got = _describe_input(err.get("input"))
    name = f"'{label}'" if label else "value"
    if kind == "greater_than_equal":
        return f"{name} must be at least {ctx.get('ge')} (got {got})"
    if kind == "less_than_equal":
        return f"{name} must be at most {ctx.get('le')} (got {got})"
    if kind in ("greater_than", "less_than"):
        bound = ctx.get("gt", ctx.get("lt"))
        return f"{name} must be {'greater' if kind == 'greater_than' else 'less'} than {bound} (got {got})"
    if kind == "string_pattern_mismatch" and label.endswith(("handler", "model")):
        target = "function" if label.endswith("handler") else "ClassName"
        return f"{name} must be an import path 'package.module:{target}' (got {got})"
    if kind == "union_tag_invalid":
        return f"unknown commit strategy '{ctx.get('tag')}'; expected one of {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return f"{name} needs a 'strategy' (auto, per_message or batch)"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"{name} must be a whole number (got {got})"
    if kind in ("bool_type", "bool_parsing"):
        return f"{name} must be true or false (got {got})"
    if kind in ("string_type",):
        return f"{name} must be a string (got {got})"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"{name} must be a mapping (got {got})"
    if kind == "list_type":
        return f"{name} must be a list (got {got})"
    if kind == "too_short":
        return f"{name} must not be empty"
    if kind == "literal_error":
        return f"{name} must be {ctx.get('expected')} (got {got})"
    text = err["msg"]
    if text.startswith("Value error, "):
        text = text[len("Value error, ") :]
    text = text.replace("Input should be", "must be")
    return f"{name}: {text}" if label else text

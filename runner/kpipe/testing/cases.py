"""Test case files for `kpipe test`: what users write, read and checked like pipeline files.

    cases:
      - name: a failing order goes to the dead-letter topic
        groups: [order-processors]            # optional; default: every group
        given:                                # sent in order
          - {topic: orders, event: {...}}     # validated and keyed as kpipe's producer does
          - {topic: orders, raw: "not json", key: cust-1}
        expect:
          handled: {order-processors: 1}
          topics: {orders.dlq: [{order_id: o-2}]}
          dead_letters: {orders.dlq: [{error_type: handler}]}

A typo in a field, an unknown topic or group: a positioned diagnostic (file:line:col), every one at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kpipe.compilation.project import CompiledProject
from kpipe.diagnostics import Diagnostic, Position, did_you_mean, error
from kpipe.loading.files import ProjectFiles
from kpipe.loading.yaml_source import PathKey, PositionMap, parse_yaml
from kpipe.model.messages import data_path

CASE_SUFFIXES = (".yaml", ".yml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GivenSpec(_Strict):
    """One event sent before the groups run: `event` (validated against the topic's schema) or `raw` bytes."""

    topic: str
    event: Any = None
    raw: str | None = None
    key: str | None = None
    headers: dict[str, str] | None = None

    @model_validator(mode="after")
    def _one_payload(self) -> GivenSpec:
        given = [name for name in ("event", "raw") if name in self.model_fields_set]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'event' (checked against the schema) or 'raw' (bytes as text)"
            )
        return self


class DeadLetterMatch(_Strict):
    """What one dead letter must match: each field given is compared, the others are not."""

    error_type: str | None = None
    error_message: str | None = None  # a part of the message
    key: str | None = None
    value: Any = None  # a subset of the dead letter's value


class ExpectSpec(_Strict):
    handled: dict[str, int] | None = None
    skipped: dict[str, int] | None = None
    stopped: list[str] | None = None
    topics: dict[str, list[Any]] | None = None
    dead_letters: dict[str, list[DeadLetterMatch]] | None = None


class CaseSpec(_Strict):
    name: str = Field(min_length=1)
    groups: list[str] | None = None
    given: list[GivenSpec] = Field(default_factory=list)
    expect: ExpectSpec


class CaseFileSpec(_Strict):
    """A case file's top level. Its cases are validated one by one (CaseSpec), so that one case's typo does not
    hide another case's problems."""

    cases: list[Any]


@dataclass(frozen=True)
class Case:
    """A checked case, with where each of its parts is written."""

    spec: CaseSpec
    file: str
    index: int
    positions: PositionMap

    @property
    def name(self) -> str:
        return self.spec.name

    def at(self, *path: Any) -> Position:
        return self.positions.locate(("cases", self.index, *path))


def find_case_files(paths: list[Path]) -> list[Path]:
    """The case files among `paths`: files as given, directories searched for *.yaml / *.yml (sorted)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix in CASE_SUFFIXES and p.is_file())
        else:
            found.append(path)
    return found


def load_cases(
    paths: list[Path], project: CompiledProject, files: ProjectFiles
) -> tuple[list[Case], list[Diagnostic]]:
    """Read, parse and check every case file; every problem as a diagnostic."""
    cases: list[Case] = []
    problems: list[Diagnostic] = []
    for path in find_case_files(paths):
        written = str(path)
        raw, found = files.read_bytes_of(path, written, Position(written))
        problems += found
        if raw is None:
            continue
        loaded, found = parse_cases(raw.decode("utf-8", errors="replace"), written, project)
        cases += loaded
        problems += found
    if not cases and not problems:
        problems.append(
            error("no test cases found", Position(", ".join(map(str, paths)) or "."), code="no-cases")
        )
    return cases, problems


def parse_cases(text: str, file: str, project: CompiledProject) -> tuple[list[Case], list[Diagnostic]]:
    try:
        data, positions, problems = parse_yaml(text, file)
    except yaml.YAMLError as exc:  # the reader refuses some characters before parsing starts
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = Position(file, mark.line + 1, mark.column + 1) if mark is not None else Position(file)
        reason = getattr(exc, "reason", None) or str(exc).splitlines()[0]
        return [], [error(f"not a YAML file: {reason}", where, code="yaml-invalid")]
    if problems or data is None:
        return [], problems or [
            error("the file is empty; expected a 'cases:' list", Position(file), code="no-cases")
        ]
    if not isinstance(data, dict):
        return [], [
            error("a case file is a mapping with a 'cases:' list", positions.locate(()), code="no-cases")
        ]
    try:
        CaseFileSpec.model_validate(data)
    except ValidationError as exc:
        return [], _translate(exc, data, positions)
    items = data["cases"]
    if not items:
        return [], [
            error(
                "'cases' must be a list of at least one case", positions.locate(("cases",)), code="no-cases"
            )
        ]
    # Each case on its own, so that one case's typo does not hide another case's unknown topic.
    cases: list[Case] = []
    diagnostics: list[Diagnostic] = []
    for i, item in enumerate(items):
        try:
            spec = CaseSpec.model_validate(item)
        except ValidationError as exc:
            diagnostics += _translate(exc, data, positions, prefix=("cases", i))
            continue
        case = Case(spec, file, i, positions)
        cases.append(case)
        diagnostics += check_case(case, project)
    seen: dict[str, Case] = {}
    for case in cases:
        if case.name in seen:
            first = seen[case.name].at("name")
            diagnostics.append(
                error(
                    f"a case named '{case.name}' is already defined at {first}",
                    case.at("name"),
                    code="duplicate-case",
                )  # fmt: skip
            )
        seen.setdefault(case.name, case)
    return cases, diagnostics


def check_case(case: Case, project: CompiledProject) -> list[Diagnostic]:
    """Every name a case uses must be declared: its groups, the topics it sends to and expects on."""
    topics = {t.name for t in project.topic_settings()}
    all_groups = project.consumer_group_names()
    spec = case.spec
    out: list[Diagnostic] = []

    def unknown(kind: str, name: str, known: Any, where: Position, extra: str = "") -> None:
        out.append(error(f"case '{case.name}': unknown {kind} '{name}'{extra}", where,
                         hint=did_you_mean(name, known), code="unknown-reference"))  # fmt: skip

    for i, name in enumerate(spec.groups or ()):
        if name not in all_groups:
            unknown("consumer group", name, all_groups, case.at("groups", i))
    running = set(spec.groups) if spec.groups is not None else set(all_groups)
    for i, given in enumerate(spec.given):
        if given.topic not in topics:
            unknown("topic", given.topic, topics, case.at("given", i, "topic"))
    expect = spec.expect
    for section in ("handled", "skipped"):
        for name in getattr(expect, section) or {}:
            where = case.positions.locate(("cases", case.index, "expect", section, name), prefer="key")
            if name not in all_groups:
                unknown("consumer group", name, all_groups, where)
            elif name not in running:
                out.append(error(f"case '{case.name}': consumer group '{name}' is not among the case's groups",
                                 where, code="group-not-running"))  # fmt: skip
    for i, name in enumerate(expect.stopped or ()):
        if name not in all_groups:
            unknown("consumer group", name, all_groups, case.at("expect", "stopped", i))
    for section in ("topics", "dead_letters"):
        for name in getattr(expect, section) or {}:
            if name not in topics:
                where = case.positions.locate(("cases", case.index, "expect", section, name), prefer="key")
                unknown("topic", name, topics, where)
    return out


def _translate(
    exc: ValidationError, data: Any, positions: PositionMap, prefix: tuple[Any, ...] = ()
) -> list[Diagnostic]:
    """pydantic's errors on a case file (or on the part of it at `prefix`), each at the place it names."""
    out: list[Diagnostic] = []
    for err in exc.errors(include_url=False):
        loc = prefix + tuple(err["loc"])
        path: PathKey = data_path(data, loc)
        kind = err["type"]
        label = ".".join(str(p) for p in loc) or "file"
        if kind == "extra_forbidden":
            field = str(loc[-1])
            allowed = _allowed_fields(data, loc)
            out.append(error(f"unknown field '{field}'", positions.locate(path, prefer="key"),
                             hint=did_you_mean(field, allowed) or (f"expected one of: {', '.join(allowed)}"
                                                                   if allowed else None),
                             code="unknown-key"))  # fmt: skip
        elif kind == "missing":
            out.append(error(f"missing required field '{loc[-1]}'", positions.locate(path, prefer="key"),
                             code="missing-key"))  # fmt: skip
        else:
            message = err["msg"].removeprefix("Value error, ")
            out.append(error(f"{label}: {message}", positions.locate(path), code="invalid-value"))
    return out


_FIELDS_BY_DEPTH: dict[tuple[str, ...], type[BaseModel]] = {
    (): CaseFileSpec,
    ("cases",): CaseSpec,
    ("cases", "given"): GivenSpec,
    ("cases", "expect"): ExpectSpec,
    ("cases", "expect", "dead_letters"): DeadLetterMatch,
}


def _allowed_fields(data: Any, loc: tuple[Any, ...]) -> list[str]:
    """The fields the model at `loc`'s parent takes (for the did-you-mean of an unknown one)."""
    names = tuple(p for p in loc[:-1] if isinstance(p, str))
    if names[:3] == ("cases", "expect", "dead_letters"):
        names = names[:3]  # the topic name key is not a level of its own
    model = _FIELDS_BY_DEPTH.get(names)
    return sorted(model.model_fields) if model is not None else []

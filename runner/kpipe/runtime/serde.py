"""Event encoding shared by the producer API, handler emits and the worker: JSON bytes, keys, error summaries.

Models are serialised with pydantic's own serializer straight to bytes (datetimes as ISO-8601), dicts with the
standard json module. Keys are read from the declared key field and sent as UTF-8 text.
No confluent_kafka here: this is pure data handling and is unit-tested without a broker.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from kpipe.errors import EventInvalid
from kpipe.model.aliases import attribute_of

# Dead-letter headers name the failure in one line; long messages are cut so a header stays small.
MAX_ERROR_TEXT = 500


def to_json_bytes(event: Any) -> bytes:
    """Encode an event for the wire: a model via its JSON serializer, bytes/str as given, anything else as JSON."""
    if isinstance(event, BaseModel):
        # Only what was set: an optional field the producer left out must stay absent, because a JSON Schema
        # property that is not nullable rejects an explicit null (the consumer fills in the same defaults).
        return model_json(event, event.__pydantic_serializer__.to_json)
    if isinstance(event, bytes | bytearray):
        return bytes(event)
    if isinstance(event, str):
        try:
            return event.encode()
        except UnicodeEncodeError as exc:
            raise EventInvalid(unserialisable(exc)) from None
    try:
        return json.dumps(
            event, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
        ).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise EventInvalid(unserialisable(exc)) from None


# Integers past this many digits are no event field, and Python refuses to read more than 4,300.
MAX_INT_DIGITS = 4300
# What a JSON line holds outside its strings, to find where a refused number is.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|-?Infinity|NaN|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?')


class EventNotJson(EventInvalid):
    """An event line that is not standard JSON; `column` is where (1-based), when known."""

    def __init__(self, message: str, column: int | None = None):
        super().__init__(message)
        self.column = column


def parse_json_event(text: str) -> Any:
    """One event written as JSON text, read as every Kafka peer reads JSON: NaN, Infinity and -Infinity
    (which Python's json accepts and no standard parser does) and integers past MAX_INT_DIGITS digits are
    refused with their column (EventNotJson), and so is JSON nested past what the parser can read. Invalid JSON
    raises json.JSONDecodeError, as json.loads does."""

    def refuse_constant(name: str) -> Any:
        raise EventNotJson(
            f"{name} is not JSON (events are read by every Kafka client: write a number or null)",
            _column_of(text, lambda token: token == name),
        )

    def bounded_int(digits: str) -> int:
        if len(digits.lstrip("-")) > MAX_INT_DIGITS:
            raise EventNotJson(
                f"a number with {len(digits.lstrip('-')):,} digits is past what events may hold "
                f"({MAX_INT_DIGITS:,} digits)",
                _column_of(text, lambda token: len(token.lstrip("-")) > MAX_INT_DIGITS),
            )
        return int(digits)

    def finite_float(digits: str) -> float:
        value = float(digits)
        if math.isinf(value):
            raise EventNotJson(
                f"the number {digits[:20]}{'...' if len(digits) > 20 else ''} is too large for a "
                "double-precision float",
                _column_of(text, lambda token: token == digits),
            )
        return value

    try:
        return json.loads(
            text, parse_constant=refuse_constant, parse_int=bounded_int, parse_float=finite_float
        )
    except RecursionError:
        raise EventNotJson(
            "arrays or objects nested too deeply to be read (past the JSON parser's depth)"
        ) from None


def _column_of(text: str, wanted: Callable[[str], bool]) -> int | None:
    for match in _JSON_TOKEN.finditer(text):
        token = match.group(0)
        if not token.startswith('"') and wanted(token):
            return match.start() + 1
    return None


def non_finite_at(value: Any, path: str = "") -> str | None:
    """Where `value` (an event: mappings, lists, models, numbers) holds NaN or an infinity, else None."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return where or "event"
        elif isinstance(item, BaseModel):
            stack.extend((v, f"{where}.{k}" if where else k) for k, v in item.__dict__.items())
            extra = item.__pydantic_extra__ or {}
            stack.extend((v, f"{where}.{k}" if where else str(k)) for k, v in extra.items())
        elif isinstance(item, Mapping):
            stack.extend((v, f"{where}.{k}" if where else str(k)) for k, v in item.items())
        elif isinstance(item, list | tuple):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
    return None


def require_finite(value: Any, what: str) -> None:
    """EventInvalid when `value` holds NaN or an infinity: JSON cannot carry them (pydantic would write
    null, which the same schema then refuses on the consumer's side)."""
    where = non_finite_at(value)
    if where is not None:
        raise EventInvalid(
            f"{what}: field '{where}' is NaN or infinite, which JSON cannot carry; send a number or null"
        )


_LONG_DIGITS = re.compile(rb"[0-9]{%d}" % (MAX_INT_DIGITS + 1))


def require_readable_numbers(encoded: bytes, what: str) -> None:
    """EventInvalid when the JSON `encoded` holds an integer past MAX_INT_DIGITS digits, which peers (and
    kpipe's own consumers) cannot read. Costs nothing for an event too short to hold one."""
    if len(encoded) <= MAX_INT_DIGITS or _LONG_DIGITS.search(encoded) is None:
        return
    try:
        parse_json_event(encoded.decode("utf-8"))
    except EventNotJson as exc:
        raise EventInvalid(f"{what}: {exc}") from None
    except ValueError:
        pass


def _json_default(value: Any) -> Any:
    # datetimes, dates, UUIDs, Decimals: the same text pydantic would write for them.
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def validated(model: type[BaseModel], event: Any, where: str) -> BaseModel:
    """`event` as an instance of `model`: a dict, JSON text/bytes or the model itself; EventInvalid otherwise.

    `where` names the destination in the message, e.g. "emit to 'payments' (schema 'Payment')".
    """
    if type(event) is model:
        return event
    try:
        if isinstance(event, BaseModel):
            if isinstance(event, model):
                return event
            # Another model with the same fields is accepted by value; a mismatch names its fields.
            return model.model_validate(event.model_dump(mode="json", by_alias=True, exclude_unset=True))
        if isinstance(event, bytes | bytearray | str):
            return model.model_validate_json(event)  # generated models refuse NaN (allow_inf_nan=False)
        if isinstance(event, Mapping):
            return model.model_validate(event)
    except ValidationError as exc:
        raise EventInvalid(f"invalid event for {where}: {describe_validation_error(exc)}") from None
    raise EventInvalid(
        f"{where}: an event must be a dict or a '{model.__name__}', got {type(event).__name__}"
    )


def model_json(event: BaseModel, to_json: Callable[..., bytes]) -> bytes:
    """A model's JSON bytes (only the fields that were set); EventInvalid when a value cannot be written, e.g. a
    string holding a lone surrogate (what json.loads makes of "\\ud800")."""
    try:
        return to_json(event, exclude_unset=True)
    except PydanticSerializationError as exc:
        raise EventInvalid(unserialisable(exc)) from None


def unserialisable(exc: BaseException) -> str:
    """Why an event cannot be written, with any character UTF-8 cannot write escaped."""
    text = str(exc).encode("utf-8", "backslashreplace").decode("utf-8")
    return f"event cannot be serialised to JSON: {text}"


def key_of(event: Any, key_field: str) -> str:
    """The message key taken from `key_field` of a model or mapping; EventInvalid when absent or None."""
    if isinstance(event, Mapping):
        value = event.get(key_field)
    else:
        value = getattr(event, key_field, None)
        if value is None and isinstance(event, BaseModel):
            # Named as in JSON: the model may hold it under another attribute (an alias).
            attr = attribute_of(type(event), key_field)
            value = getattr(event, attr) if attr else None
    if value is None:
        raise EventInvalid(f"event has no value for key field '{key_field}' (pass key=... to send it anyway)")
    return key_text(value)


def key_text(value: Any) -> str | bytes:
    """A key as the producer sends it: str and bytes unchanged, enums by value, anything else by str()."""
    if type(value) is str or type(value) is bytes:
        return value
    # Enums (StrEnum included, whose str() is "Class.MEMBER" before Python 3.11's StrEnum) go by value.
    enum_value = getattr(value, "value", None)
    if enum_value is not None and isinstance(enum_value, str | int):
        return str(enum_value)
    return str(value)


def describe_validation_error(exc: ValidationError, *, limit: int = 3) -> str:
    """One line naming the fields that failed: "field 'total_amount': Input should be greater than 0; ..."."""
    parts = []
    errors = exc.errors(include_url=False, include_input=False)
    for err in errors[:limit]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        where = f"field '{loc}'" if loc else "event"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return "; ".join(parts) + more


def truncate(text: str, limit: int = MAX_ERROR_TEXT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""JSON names of pydantic fields. A field is named in JSON (and YAML) by its alias when it has one: an event
property "customer-id" is the attribute `customer_id` with that alias, the pipeline key `schema` is `schema_`."""

from __future__ import annotations

from pydantic import BaseModel


def json_names(model: type[BaseModel]) -> dict[str, str]:
    """JSON name → attribute name of every field of `model`, in declaration order."""
    return {info.alias or name: name for name, info in model.model_fields.items()}


def attribute_of(model: type[BaseModel], json_name: str) -> str | None:
    """The attribute that holds the field named `json_name` in JSON, or None when `model` has no such field."""
    return json_names(model).get(json_name)

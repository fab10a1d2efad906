"""schemas/order_event.schema.yaml accepts and rejects exactly what the seed's hand-written model does, except
for one deliberate difference: the schema is closed (additionalProperties: false), so an event with a property it
does not declare is rejected where the seed's model dropped it. Closing it is what lets a new version add an
optional property under BACKWARD compatibility (docs/pipeline-format.md, "Evolving schemas")."""

from __future__ import annotations

import json
from datetime import datetime
from enum import Enum
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, Field, ValidationError

from kpipe.schemas.schema_models import compile_schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schemas" / "order_event.schema.yaml"


# Verbatim from the seed, including str+Enum (not StrEnum).
class OrderStatus(str, Enum):  # noqa: UP042
    CREATED = "created"
    PAID = "paid"
    SHIPPED = "shipped"
    DELIVERED = "delivered"


class OrderEvent(BaseModel):
    event_type: str = Field(..., pattern="^order\\.")
    order_id: str
    customer_id: str
    status: OrderStatus
    total_amount: float = Field(..., gt=0)
    timestamp: datetime
    version: int = 1


VALID = {
    "event_type": "order.created",
    "order_id": "o-1",
    "customer_id": "c-1",
    "status": "created",
    "total_amount": 99.99,
    "timestamp": "2024-05-01T12:00:00Z",
    "version": 1,
}


def changed(**fields: object) -> dict:
    return {**VALID, **fields}


def without(*names: str) -> dict:
    return {k: v for k, v in VALID.items() if k not in names}


PAYLOADS: dict[str, object] = {
    "valid": VALID,
    "missing version": without("version"),
    "version 2": changed(version=2),
    "extra field": changed(channel="web"),
    "nested extra field": changed(meta={"a": [1, 2]}),
    "total int for float": changed(total_amount=100),
    "total as string": changed(total_amount="99.99"),
    "total zero": changed(total_amount=0),
    "total negative": changed(total_amount=-5.5),
    "total tiny positive": changed(total_amount=1e-9),
    "total null": changed(total_amount=None),
    "total bool": changed(total_amount=True),
    "total not a number string": changed(total_amount="lots"),
    "event_type orders.x": changed(event_type="orders.x"),
    "event_type xorder.": changed(event_type="xorder."),
    "event_type order. only": changed(event_type="order."),
    "event_type order without dot": changed(event_type="order"),
    "event_type int": changed(event_type=3),
    "order_id int": changed(order_id=3),
    "order_id empty": changed(order_id=""),
    "customer_id null": changed(customer_id=None),
    "status paid": changed(status="paid"),
    "status delivered": changed(status="delivered"),
    "status bad": changed(status="cancelled"),
    "status upper case": changed(status="CREATED"),
    "status int": changed(status=1),
    "timestamp with offset": changed(timestamp="2024-05-01T12:00:00+02:00"),
    "timestamp without zone": changed(timestamp="2024-05-01T12:00:00"),
    "timestamp date only": changed(timestamp="2024-05-01"),
    "timestamp with fraction": changed(timestamp="2024-05-01T12:00:00.123456Z"),
    "timestamp space separator": changed(timestamp="2024-05-01 12:00:00Z"),
    "timestamp unix int": changed(timestamp=1714564800),
    "timestamp garbage": changed(timestamp="yesterday"),
    "timestamp null": changed(timestamp=None),
    "version as string": changed(version="2"),
    "version float integral": changed(version=2.0),
    "version float fractional": changed(version=2.5),
    "version null": changed(version=None),
    "version bool": changed(version=True),
    "missing order_id": without("order_id"),
    "missing timestamp": without("timestamp"),
    "missing every field": {},
    "not an object": [VALID],
    "a string": "order.created",
}


@pytest.fixture(scope="module")
def compiled() -> type[BaseModel]:
    document = yaml.safe_load(SCHEMA_FILE.read_text())
    model, diagnostics = compile_schema(document, name="OrderEvent", file=str(SCHEMA_FILE))
    assert diagnostics == []
    assert model is not None
    return model


def outcome(model: type[BaseModel], raw: bytes) -> dict | None:
    try:
        return model.model_validate_json(raw).model_dump(mode="json")
    except ValidationError:
        return None


def test_corpus_covers_both_outcomes() -> None:
    outcomes = [outcome(OrderEvent, json.dumps(p).encode()) is not None for p in PAYLOADS.values()]
    assert len(PAYLOADS) >= 30
    assert sum(outcomes) >= 10 and outcomes.count(False) >= 15


# Payloads with a property the schema does not declare: the seed's model drops it, the closed schema refuses it.
CLOSED_DIFFERS = {"extra field", "nested extra field"}


@pytest.mark.parametrize("name", PAYLOADS.keys())
def test_compiled_schema_matches_seed_model(compiled: type[BaseModel], name: str) -> None:
    raw = json.dumps(PAYLOADS[name]).encode()
    if name in CLOSED_DIFFERS:
        assert outcome(OrderEvent, raw) is not None and outcome(compiled, raw) is None
    else:
        assert outcome(compiled, raw) == outcome(OrderEvent, raw)


def test_compiled_schema_keeps_source_document(compiled: type[BaseModel]) -> None:
    assert compiled.__kpipe_json_schema__["title"] == "OrderEvent"
    assert compiled.__kpipe_json_schema__["properties"]["total_amount"] == {
        "description": "The order's total, in the order's currency; always positive.",
        "type": "number",
        "exclusiveMinimum": 0,
    }

"""Handlers for the example pipelines. A handler takes the validated event and a context.

The event is an instance of the topic's schema model (here compiled from schemas/*.schema.yaml); raising an
exception makes kpipe retry the event and then apply the group's on_error policy.
"""

from __future__ import annotations

import logging
from collections import Counter

log = logging.getLogger("example_app")

revenue_by_status: Counter[str] = Counter()


def process_order(event, ctx) -> None:
    """Order processing: a real service would reserve stock, charge, ship..."""
    if event.customer_id == "cust-fail":
        # A deterministic failure, to show retries and the dead-letter topic.
        raise RuntimeError(f"payment provider refused order {event.order_id}")
    log.debug(
        "order %s is %s (partition %s, offset %s)",
        event.order_id,
        event.status.value if hasattr(event.status, "value") else event.status,
        ctx.partition,
        ctx.offset,
    )


def record_analytics(event, ctx) -> None:
    status = event.status.value if hasattr(event.status, "value") else str(event.status)
    revenue_by_status[status] += event.total_amount


def send_welcome(event, ctx) -> None:
    log.info("welcome mail to %s", event.email)

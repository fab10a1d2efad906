"""Session-wide fixtures: one Kafka-protocol broker per test session, unique names, fast group settings.

By default the embedded Tansu broker is started once on a free port and stopped at the end. Set
KPIPE_TEST_BOOTSTRAP=host:port to run against an external cluster (Apache Kafka) instead; tests marked
`apache_kafka` run only then.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

# `from helpers import wait_for` works from every test directory.
sys.path.insert(0, str(Path(__file__).parent))

# An offline selection (`-m "not integration"`) fails if any test starts a broker.
from offline_guard import pytest_collection_finish, pytest_sessionfinish  # noqa: E402, F401

EXTERNAL_BOOTSTRAP_ENV = "KPIPE_TEST_BOOTSTRAP"
APACHE_KAFKA_SKIP_REASON = f"needs Apache Kafka: set {EXTERNAL_BOOTSTRAP_ENV}"


def _external_bootstrap() -> str | None:
    return os.environ.get(EXTERNAL_BOOTSTRAP_ENV) or None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = None if _external_bootstrap() else pytest.mark.skip(reason=APACHE_KAFKA_SKIP_REASON)
    for item in items:
        # Anything that needs the session broker is an integration test, so `-m "not integration"` stays offline
        # (modules that start brokers of their own say so with pytestmark; offline_guard checks both).
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
        if skip is not None and "apache_kafka" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """Secrets remembered for redaction (env() values, secret settings) are per process: per test here."""
    yield
    from kpipe.redaction import forget_all

    forget_all()


@pytest.fixture(scope="session")
def is_tansu() -> bool:
    """True when the tests run against the embedded Tansu broker (no external cluster given)."""
    return _external_bootstrap() is None


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """bootstrap.servers of the broker for this session: KPIPE_TEST_BOOTSTRAP, or an embedded Tansu."""
    external = _external_bootstrap()
    if external:
        yield external
        return
    from kpipe.local.broker import start_local_broker

    broker = start_local_broker()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def unique_name() -> Callable[..., str]:
    """A factory of names no other test uses: unique_name("orders") -> "orders-1a2b3c4d"."""

    def make(prefix: str = "kpipe-test") -> str:
        return f"{prefix}-{uuid4().hex[:8]}"

    return make


@pytest.fixture
def fast_group_config() -> dict[str, str | int]:
    """Consumer settings that make group joins and fetches fast on Tansu (see docs/broker.md)."""
    return {
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
        "fetch.wait.max.ms": 50,
        "fetch.queue.backoff.ms": 10,
    }


@pytest.fixture
def admin(kafka_bootstrap: str) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": kafka_bootstrap})


@pytest.fixture
def make_topics(admin: Any) -> Iterator[Callable[..., None]]:
    """make_topics(*names, partitions=1) creates topics on the session broker for this test and
    deletes them after it (Tansu keeps every topic in memory for the whole session)."""
    from confluent_kafka.admin import NewTopic

    created: list[str] = []

    def make(*names: str, partitions: int = 1) -> None:
        for future in admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
            future.result(10)
        created.extend(names)

    yield make
    if created:
        for future in admin.delete_topics(created).values():
            future.exception(10)


@pytest.fixture
def prefix(unique_name: Callable[..., str], kafka_bootstrap: str) -> Iterator[str]:
    """A topic-name prefix for this test; every topic under it is deleted afterwards (Tansu keeps all in memory)."""
    from confluent_kafka.admin import AdminClient

    name = unique_name("kpipe-topics")
    yield name
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(name)]
    if mine:
        for future in admin.delete_topics(mine, operation_timeout=30).values():
            future.result()

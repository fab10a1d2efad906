"""Fixtures of the integration tests: topics created for a test and deleted after it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import AdminClient, NewTopic


@pytest.fixture
def admin(kafka_bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


@pytest.fixture
def make_topics(admin: AdminClient) -> Iterator[Callable[..., None]]:
    created: list[str] = []

    def make(*names: str, partitions: int = 1) -> None:
        for future in admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
            future.result(10)
        created.extend(names)

    yield make
    if created:
        for future in admin.delete_topics(created).values():
            future.exception(10)

"""The embedded broker: starts on a free port, answers Kafka requests, and stops without leaving a process."""

from __future__ import annotations

import socket

import pytest
from confluent_kafka.admin import AdminClient

from helpers import process_exists, returns_within
from kpipe.errors import LocalBrokerError
from kpipe.local.broker import api_versions_ok, start_local_broker

pytestmark = pytest.mark.integration  # starts and stops embedded brokers


def test_start_answers_metadata_and_stop_leaves_no_process() -> None:
    broker = start_local_broker()  # fails by itself when the broker does not answer within its ready_timeout
    try:
        assert broker.bootstrap == f"127.0.0.1:{broker.port}"
        assert api_versions_ok("127.0.0.1", broker.port)
        metadata = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=5)
        assert [b.port for b in metadata.brokers.values()] == [broker.port]
    finally:
        broker.stop()
    assert not process_exists(broker.pid)  # stop() waited: not even a zombie is left
    assert not api_versions_ok("127.0.0.1", broker.port, timeout=0.2)
    broker.stop()  # a second stop is harmless


def test_context_manager_stops_the_broker() -> None:
    with start_local_broker() as broker:
        pid = broker.pid
        assert api_versions_ok("127.0.0.1", broker.port)
    assert not process_exists(pid)


def test_port_taken_by_a_listener_is_refused_before_starting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(LocalBrokerError, match=f"port {port} on 127.0.0.1 is already in use"):
            start_local_broker(port=port)


def test_broker_dying_at_startup_is_reported_quickly() -> None:
    # Bound but not listening: the pre-check cannot see it, so the broker itself fails to bind and exits.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        # A ready timeout of 10 minutes: reported within the 60 s bound only if the exit is noticed at once.
        with pytest.raises(LocalBrokerError, match="exited with code .* before it was ready"):
            returns_within(60, lambda: start_local_broker(port=port, ready_timeout=600), "start_local_broker")


def test_explicit_port_is_used() -> None:
    from kpipe.local.broker import free_port

    port = free_port()
    with start_local_broker(port=port) as broker:
        assert broker.bootstrap == f"127.0.0.1:{port}"


def test_session_broker_fixture_answers(kafka_bootstrap: str) -> None:
    metadata = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=5)
    assert metadata.brokers

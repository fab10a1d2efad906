"""Issue 20.7: the metrics and health server holds under abuse (idle connections, slow requests, huge heads).

Bounded loops on 127.0.0.1 only. The server runs in this process, as it runs in the supervisor's.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from helpers import wait_for
from kpipe.observe.http_server import MAX_CONNECTIONS, MetricsServer


class QuietSupervisor:
    """A supervisor with no worker whose loop turns: /healthz says ok."""

    def snapshot(self) -> dict:
        return {}

    def seconds_since_loop(self) -> float | None:
        return 0.1


@contextlib.contextmanager
def server(**options: object) -> Iterator[MetricsServer]:
    running = MetricsServer(QuietSupervisor(), "127.0.0.1", 0, {}, **options)  # type: ignore[arg-type]
    try:
        yield running
    finally:
        running.close()


@contextlib.contextmanager
def idle_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections that send half a request line and then nothing."""
    opened = []
    try:
        for _ in range(count):
            conn = socket.create_connection(("127.0.0.1", port), timeout=10)
            conn.sendall(b"GET /metr")
            opened.append(conn)
        yield opened
    finally:
        for conn in opened:
            conn.close()


def healthz_seconds(url: str) -> float:
    started = time.monotonic()
    with urllib.request.urlopen(url + "/healthz", timeout=30) as response:
        assert response.status == 200
        assert json.loads(response.read()) == {"status": "ok"}
    return time.monotonic() - started


def test_healthz_answers_at_once_with_500_idle_connections_and_threads_stay_few() -> None:
    before = threading.active_count()
    # Idle connections that would hold the server for 10 minutes: a server that waited for them (one at a time,
    # or until their read timeout) could not answer within the 30 s bound, however loaded the machine.
    with server(read_timeout=600) as running, idle_connections(running.port, 500):
        wait_for(lambda: running.open_connections >= MAX_CONNECTIONS, timeout=30)
        for _ in range(3):
            assert healthz_seconds(running.url) < 30
        # One loop thread and a fixed pool of answer threads, whatever the number of connections.
        assert threading.active_count() <= before + 4
        # The cap holds: the oldest idle connections were closed to let new ones in.
        assert running.open_connections <= MAX_CONNECTIONS + 1


def closed_by_the_server(conn: socket.socket) -> bool:
    conn.settimeout(30)
    try:
        return conn.recv(100) == b""  # closed, without an answer
    except ConnectionResetError:  # closed with our half request unread
        return True


def test_an_idle_connection_is_closed_after_the_read_timeout() -> None:
    with server(read_timeout=0.5) as running, idle_connections(running.port, 3) as opened:
        for conn in opened:
            assert closed_by_the_server(conn)
        wait_for(lambda: running.open_connections == 0, timeout=30)


def test_the_cap_closes_the_oldest_waiting_connection() -> None:
    with server(max_connections=10) as running, idle_connections(running.port, 11) as opened:
        assert closed_by_the_server(opened[0])
        assert healthz_seconds(running.url) < 30


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n",  # a head past the limit
        b"POST /healthz HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",  # another method
        b"\x00\x01\x02\r\n\r\n",  # not HTTP
    ],
)
def test_bad_requests_get_an_error_and_the_server_keeps_answering(request_bytes: bytes) -> None:
    with server() as running:
        answer = b""
        with socket.create_connection(("127.0.0.1", running.port), timeout=30) as conn:
            try:
                conn.sendall(request_bytes)
                while chunk := conn.recv(65536):
                    answer += chunk
            except ConnectionResetError:
                answer = answer or b"HTTP/1.1 4xx (reset while sending the rest)"
        assert answer.startswith(b"HTTP/1.1 4"), answer[:100]
        assert healthz_seconds(running.url) < 30

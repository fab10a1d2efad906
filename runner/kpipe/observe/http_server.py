"""The HTTP server of `kpipe run --metrics-port`: /metrics, /healthz and /readyz, bounded under abuse.

Anyone who reaches the port can open connections, so the server's cost is bounded whatever they do:

- one thread runs every connection (an asyncio loop), and answers are built on a pool of RESPONSE_WORKERS
  threads: the supervisor's thread count does not grow with connections;
- a connection has READ_TIMEOUT seconds to send its request and WRITE_TIMEOUT to take the answer, and the
  request head is at most MAX_REQUEST_BYTES; one request per connection (`Connection: close`);
- at most MAX_CONNECTIONS are open at once: a new one past the cap closes the oldest one that has not
  finished sending its request, so idle connections can never lock a health check out.

Which answer each path gives (the liveness and readiness rules) is kpipe.observe.health's.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client.exposition import choose_encoder

from kpipe.errors import UsageError
from kpipe.observe.health import Supervised, health, readiness
from kpipe.observe.metrics import make_registry

READ_TIMEOUT = 10.0
WRITE_TIMEOUT = 10.0
MAX_REQUEST_BYTES = 16 * 1024
MAX_CONNECTIONS = 256
RESPONSE_WORKERS = 2
PATHS = ("/metrics", "/healthz", "/readyz")

Answer = tuple[int, bytes, str]


class MetricsServer:
    """The /metrics, /healthz and /readyz server, on one daemon thread. `close()` stops it."""

    def __init__(
        self,
        supervisor: Supervised,
        host: str,
        port: int,
        partitions: Mapping[str, int],
        *,
        max_connections: int = MAX_CONNECTIONS,
        read_timeout: float = READ_TIMEOUT,
    ):
        self.registry = make_registry(supervisor.snapshot)
        self._answer = _answers(self.registry, supervisor, dict(partitions))
        self.max_connections = max_connections
        self.read_timeout = read_timeout
        try:
            self._socket = socket.create_server((host, port), reuse_port=False, backlog=128)
        except OSError as exc:
            why = "the port is in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise UsageError(
                f"cannot serve metrics on {host}:{port}: {why}; choose another --metrics-port or metrics.port"
            ) from None
        self.host, self.port = self._socket.getsockname()[:2]
        self._pool = ThreadPoolExecutor(RESPONSE_WORKERS, thread_name_prefix="kpipe-metrics-answer")
        # Connections not yet past their request, oldest first: the ones to close when the cap is reached.
        self._waiting: OrderedDict[int, asyncio.StreamWriter] = OrderedDict()
        self._open = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._serve, name="kpipe-metrics", daemon=True)
        self._thread.start()
        self._started.wait(10)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def open_connections(self) -> int:
        return self._open

    def close(self) -> None:
        if self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- the loop thread ---------------------------------------------------------------------------------

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._connection, sock=self._socket, limit=MAX_REQUEST_BYTES)
        self._started.set()
        async with server:
            await self._stop.wait()
            server.close()
            for writer in list(self._waiting.values()):
                writer.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        key = id(writer)
        self._open += 1
        self._waiting[key] = writer
        if len(self._waiting) > self.max_connections:
            _, oldest = self._waiting.popitem(last=False)
            oldest.close()  # its read fails and its task ends
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.read_timeout)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return
            except asyncio.LimitOverrunError:
                await self._write(
                    writer, (431, b'{"status": "request header too large"}\n', "application/json")
                )
                return
            finally:
                self._waiting.pop(key, None)
            answer = await self._loop.run_in_executor(self._pool, self._answer, *_request_of(head))
            await self._write(writer, answer)
        except (Exception, asyncio.CancelledError):  # noqa: BLE001 (nor does closing the server log anything)
            pass
        finally:
            self._open -= 1
            self._waiting.pop(key, None)
            writer.close()

    async def _write(self, writer: asyncio.StreamWriter, answer: Answer) -> None:
        code, body, content_type = answer
        reason = {
            200: "OK",
            404: "Not Found",
            405: "Method Not Allowed",
            431: "Too Large",
            503: "Unavailable",
        }
        head = (
            f"HTTP/1.1 {code} {reason.get(code, 'Error')}\r\nServer: kpipe\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode("ascii")
        writer.write(head + body)
        with contextlib.suppress(TimeoutError, ConnectionError):
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)


def _request_of(head: bytes) -> tuple[str | None, str]:
    """The path of a GET request's head (None for another method, or no request line) and its Accept."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    accept = next((v for k, _, v in (h.partition(":") for h in lines[1:]) if k.lower() == "accept"), "")
    if len(parts) != 3 or parts[0] != "GET":
        return None, accept
    return parts[1].split("?", 1)[0], accept.strip()


def _answers(
    registry: Any, supervisor: Supervised, partitions: dict[str, int]
) -> Callable[[str | None, str], Answer]:
    def verdict(ok: bool, reasons: list[str]) -> Answer:
        body = {"status": "ok"} if ok else {"status": "unavailable", "reasons": reasons}
        return 200 if ok else 503, (json.dumps(body) + "\n").encode(), "application/json"

    def answer(path: str | None, accept: str) -> Answer:
        if path is None:
            return 405, b'{"status": "only GET"}\n', "application/json"
        if path == "/metrics":
            encoder, content_type = choose_encoder(accept)
            return 200, encoder(registry), content_type
        if path == "/healthz":
            return verdict(*health(supervisor))
        if path == "/readyz":
            return verdict(*readiness(supervisor.snapshot(), partitions))
        return (
            404,
            (json.dumps({"status": "not found", "paths": list(PATHS)}) + "\n").encode(),
            "application/json",
        )

    return answer

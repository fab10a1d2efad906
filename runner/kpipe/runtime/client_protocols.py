"""What the runtime needs from the outside: its librdkafka clients, and time.

    ConsumerClient, ProducerClient   exactly the part of confluent_kafka's Consumer and Producer the runtime
                                     calls (typing.Protocol): the real classes satisfy them, and so does any
                                     in-memory stand-in (tests/fakes.py; an in-memory test harness)
    ConsumerFactory, ProducerFactory build a client from its final librdkafka config (callbacks included)
    Clock, SYSTEM_CLOCK              now / monotonic / wait: the parts that wait (retry backoff, commit intervals,
                                     hung-handler checks) take a Clock, so a harness can run them on a virtual one

Keep the protocols minimal: a method is listed here only once the runtime calls it. Imports nothing of kpipe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ConsumerClient(Protocol):
    """The confluent_kafka.Consumer surface the runtime uses."""

    def subscribe(self, topics: list[str], **callbacks: Any) -> None: ...

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]: ...

    def store_offsets(self, message: Any = None, offsets: Sequence[Any] | None = None) -> None: ...

    def commit(
        self, message: Any = None, offsets: Sequence[Any] | None = None, asynchronous: bool = True
    ) -> Any: ...

    def assignment(self) -> list[Any]: ...

    def pause(self, partitions: list[Any]) -> None: ...

    def resume(self, partitions: list[Any]) -> None: ...

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any: ...

    def close(self) -> None: ...


@runtime_checkable
class ProducerClient(Protocol):
    """The confluent_kafka.Producer surface the runtime uses."""

    def produce(self, topic: str, value: Any = None, key: Any = None, **kwargs: Any) -> None: ...

    def poll(self, timeout: float = -1) -> int: ...

    def flush(self, timeout: float = -1) -> int: ...

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None: ...

    def __len__(self) -> int:
        """Events produced and not yet acknowledged."""
        ...


ConsumerFactory = Callable[[dict[str, Any]], ConsumerClient]
ProducerFactory = Callable[[dict[str, Any]], ProducerClient]


class Clock(Protocol):
    """Time as the engine sees it."""

    def now(self) -> float:
        """Wall-clock seconds (time.time): commit timestamps in statuses."""
        ...

    def monotonic(self) -> float:
        """Seconds for durations and deadlines (time.monotonic)."""
        ...

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Wait up to `seconds` for `event` (a stop request); True when it was set."""
        ...


class SystemClock:
    """The real clock."""

    now = staticmethod(time.time)
    monotonic = staticmethod(time.monotonic)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(seconds)


SYSTEM_CLOCK: Clock = SystemClock()

"""Producing while librdkafka's local queue is full: one place for the retry-on-BufferError loop.

produce() raises BufferError when the client's queue (queue.buffering.max.messages/kbytes) is full. Serving
delivery reports with poll() frees room. Every caller makes its first produce() inline, where a try/except
costs nothing, and calls `produce_when_room` only after a BufferError.
"""

from __future__ import annotations

from typing import Any

# How long each poll waits for delivery reports to free room.
ROOM_WAIT = 0.1


def produce_when_room(client: Any, topic: str, value: Any, key: Any = None, **kwargs: Any) -> None:
    """Serve delivery reports until `client.produce(topic, value, key, **kwargs)` is accepted."""
    while True:
        client.poll(ROOM_WAIT)
        try:
            client.produce(topic, value, key, **kwargs)
            return
        except BufferError:
            continue

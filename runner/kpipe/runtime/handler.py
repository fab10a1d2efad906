"""Consumer-group handlers: importing `module:function`, and the context each call receives.

A handler is `def handle(event, ctx) -> None` or `async def handle(event, ctx) -> None`. `event` is the
validated pydantic model instance (or the raw value bytes when the topic has no schema); `ctx` is a
HandlerContext. Returning means the event is processed and its offset may be committed; raising means it failed
(retried, then dead-lettered, skipped or the worker stops, per the group's on_error policy).

The sequential worker reuses one HandlerContext for every message; the concurrent one (concurrency > 1, or an
async handler) gives each event its own (kpipe.runtime.concurrent.executor.EventContext). Either way, read what
you need from it during the call and do not keep the object (call `ctx.snapshot()` for a detached copy).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from kpipe.diagnostics import did_you_mean
from kpipe.errors import UndeclaredEmit
from kpipe.loading.code import load_handler as load_handler  # the worker imports it from here
from kpipe.runtime.backpressure import produce_when_room
from kpipe.runtime.serde import key_of, key_text, to_json_bytes, validated

Handler = Callable[[Any, "HandlerContext"], Any]


class HandlerContext:
    """Where the current event came from, and `emit()` to send new events on. Reused across messages."""

    __slots__ = ("_msg", "group", "_emitter")

    def __init__(self, group: str, emitter: Emitter | None = None):
        self._msg: Any = None
        self.group = group
        self._emitter = emitter

    @property
    def topic(self) -> str:
        return self._msg.topic()

    @property
    def partition(self) -> int:
        return self._msg.partition()

    @property
    def offset(self) -> int:
        return self._msg.offset()

    @property
    def key(self) -> str | None:
        """The message key as text (UTF-8, undecodable bytes replaced); `raw_key` has the bytes."""
        raw = self._msg.key()
        return raw.decode(errors="replace") if isinstance(raw, bytes) else raw

    @property
    def raw_key(self) -> bytes | None:
        return self._msg.key()

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        return self._msg.headers() or []

    @property
    def timestamp(self) -> int | None:
        """Milliseconds since the epoch as the broker or producer stamped it, or None."""
        kind, value = self._msg.timestamp()
        return value if kind else None

    @property
    def value(self) -> bytes | None:
        """The raw message value as received."""
        return self._msg.value()

    def emit(self, target: Any, event: Any, key: Any = None, headers: Any = None) -> None:
        """Send `event` to a topic (by name) or through a kpipe Producer.

        Events emitted while handling a message are delivered before that message's offset is committed.
        """
        if self._emitter is None:
            raise RuntimeError("this consumer group has no producer configured for emit()")
        self._emitter.emit(target, event, key, headers)

    def snapshot(self) -> ContextSnapshot:
        return ContextSnapshot(
            self.topic, self.partition, self.offset, self.key, self.headers, self.timestamp, self.group
        )

    def __repr__(self) -> str:
        if self._msg is None:
            return f"HandlerContext(group={self.group!r})"
        return f"HandlerContext({self.topic}[{self.partition}]@{self.offset}, group={self.group!r})"


@dataclass(frozen=True)
class ContextSnapshot:
    topic: str
    partition: int
    offset: int
    key: str | None
    headers: list[tuple[str, bytes]]
    timestamp: int | None
    group: str


@dataclass(frozen=True)
class Unsettled:
    """Emits taken to settle: each kpipe Producer emitted through, with its failure count before the first."""

    producers: tuple[tuple[Any, int], ...]


class Emitter:
    """Handler emits: by topic name through the group's librdkafka producer, or through a kpipe Producer (its
    own client). Keys come from the target topic's key field.

    `kafka_producer` is a confluent_kafka.Producer built by the worker (this module does not import the
    client), or None for a group that has none (no dead letters, no `emits`): it emits only through kpipe
    Producers. `emits` are the topics the group declared (`emits:`): an emit by name to any other topic raises
    UndeclaredEmit, so the handler fails like on any other error (None: unrestricted, for tests that build an
    Emitter by hand; without a producer, nothing is declared). `models` holds each topic's schema model: an
    event emitted to a topic with a schema is validated against it before it is sent, as the producer API does.
    Deliveries are tracked: `unsettled` says events were emitted since the worker last took them to settle
    (take_unsettled), and `failures` lists deliveries that failed; the worker flushes before committing the
    offsets of messages whose handlers emitted, and stops without committing if an emitted event was not
    delivered. Handler threads of the concurrent loop emit while the worker settles: the flag, the kpipe
    Producers to wait for and the count change under one lock, so an emit is either in what a settle took or
    left marked for the next one.
    """

    def __init__(
        self,
        kafka_producer: Any | None,
        key_fields: Mapping[str, str | None] | None = None,
        *,
        emits: Collection[str] | None = None,
        models: Mapping[str, Any] | None = None,
        group: str = "",
    ):
        if kafka_producer is None:
            if emits:
                raise ValueError(f"emits {sorted(emits)} need a producer to send them with")
            emits = ()
        self._producer = kafka_producer
        self._key_fields = dict(key_fields or {})
        self._emits = None if emits is None else frozenset(emits)
        self._models = {topic: model for topic, model in (models or {}).items() if model is not None}
        self._group = group
        self.unsettled = False
        self.emitted = 0
        self.failures: list[str] = []
        # kpipe Producers handlers emitted through, with their failure count before: settled before commits.
        self._external: dict[int, tuple[Any, int]] = {}
        self._lock = threading.Lock()

    def emit(self, target: Any, event: Any, key: Any, headers: Any, on_delivery: Any = None) -> None:
        """Send an event. With `on_delivery(err, msg)` the caller tracks this delivery itself (concurrent
        workers track each event's emits); otherwise it counts towards `unsettled`/`failures`."""
        if not isinstance(target, str):
            # A kpipe Producer: it validates against its own schema and counts its own deliveries; the worker
            # waits for them (settle_external) before committing, as for events emitted by topic name. Noted
            # after the send, so a settle that takes the notes in between leaves this event to the next one.
            failed_before = target.failed
            target.send(event, key=key, headers=headers)
            with self._lock:
                self._external.setdefault(id(target), (target, failed_before))
                self.unsettled = True
                self.emitted += 1
            return
        if self._emits is not None and target not in self._emits:
            raise UndeclaredEmit(self._undeclared(target))
        model = self._models.get(target)
        if model is not None:
            event = validated(model, event, f"emit to '{target}' (schema '{model.__name__}')")
        if key is None:
            key_field = self._key_fields.get(target)
            if key_field is not None:
                key = key_of(event, key_field)
        elif type(key) is not str:
            key = key_text(key)
        value = to_json_bytes(event)
        callback = on_delivery or self._on_delivery
        try:
            self._producer.produce(target, value, key, headers=headers, on_delivery=callback)
        except BufferError:
            produce_when_room(self._producer, target, value, key, headers=headers, on_delivery=callback)
        with self._lock:
            if on_delivery is None:
                self.unsettled = True
            self.emitted += 1

    def _undeclared(self, target: str) -> str:
        group = f"consumer group '{self._group}'" if self._group else "this consumer group"
        declared = ", ".join(sorted(self._emits or ())) or "none"
        hint = did_you_mean(target, self._emits or ()) or f"add '{target}' to the group's emits"
        return f"{group} emits to '{target}', which it does not declare (emits: {declared}); {hint}"

    def take_unsettled(self) -> Unsettled | None:
        """What a settle waits for: the kpipe Producers emitted through since the last take (None: nothing was
        emitted that is not tracked per event). Clears `unsettled`; an emit from now on marks it again."""
        with self._lock:
            if not self.unsettled:
                return None
            self.unsettled = False
            external, self._external = self._external, {}
        return Unsettled(tuple(external.values()))

    def settle_external(self, taken: Unsettled, timeout: float) -> None:
        """Wait for the events sent through the kpipe Producers taken; record a failure for each one not
        delivered."""
        for producer, failed_before in taken.producers:
            summary = producer.flush(timeout)
            if summary.failed > failed_before or summary.pending:
                lost = summary.failed - failed_before + summary.pending
                last = f": {summary.errors[-1].reason}" if summary.errors else ""
                self.failures.append(
                    f"emit through producer '{producer.settings.name}': {lost} not delivered{last}"
                )

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failures.append(f"emit to '{msg.topic()}' failed: {err.name()}: {err.str()}")

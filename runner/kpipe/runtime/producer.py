"""The producer API: send schema-checked, keyed JSON events through a declared producer.

    with project.producer("order-api") as producer:
        producer.send({"order_id": "o-1", ...})        # validated, keyed by the topic's key field
    # leaving the block flushes; undelivered events raise ClusterError

send() validates the event (a dict through the schema model, or an instance of that model), takes the key from
the declared key field, serialises to JSON and hands it to librdkafka asynchronously. Delivery failures are
never swallowed: they are counted, the last few are kept with their keys, and `close()` raises ClusterError
naming them. When no per-event `on_delivery` callback is given, librdkafka reports only failures
(`delivery.report.only.error`), which keeps successful sends free of Python callbacks; `delivered` is then
sent − failed − still in flight.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import Producer as _KafkaProducer
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from kpipe.compilation.compiled import ProducerSettings
from kpipe.errors import BrokerUnreachable, ClusterError
from kpipe.logs import RATE_LIMIT_INTERVAL, RateLimitedLog
from kpipe.model.aliases import attribute_of
from kpipe.runtime import tracing
from kpipe.runtime.backpressure import produce_when_room
from kpipe.runtime.serde import (
    MAX_INT_DIGITS,
    EventInvalid,
    describe_validation_error,
    key_of,
    key_text,
    require_finite,
    require_readable_numbers,
    to_json_bytes,
    unserialisable,
)

if TYPE_CHECKING:
    from kpipe.compilation.project import CompiledProject

__all__ = ["DeliveryError", "DeliverySummary", "EventInvalid", "Producer", "open_producer"]

log = logging.getLogger("kpipe.runtime.producer")

# Serve delivery callbacks every this many sends (librdkafka queues reports until poll()).
POLL_EVERY = 1000
# How many failed deliveries are kept for the error message.
KEEP_ERRORS = 20
DEFAULT_CLOSE_TIMEOUT = 30.0
# After a purge, how long to wait for the purged events' failure reports.
DROP_REPORT_WAIT = 2.0


@dataclass(frozen=True)
class DeliveryError:
    key: str | None
    code: str
    reason: str


@dataclass(frozen=True)
class DeliverySummary:
    """What became of the events sent so far."""

    producer: str
    topic: str
    sent: int
    delivered: int
    failed: int
    pending: int
    errors: tuple[DeliveryError, ...] = ()

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.pending == 0

    def describe(self) -> str:
        head = f"producer '{self.producer}': "
        parts = []
        if self.failed:
            parts.append(f"{self.failed} of {self.sent} events to '{self.topic}' were not delivered")
        if self.pending:
            parts.append(f"{self.pending} events still undelivered")
        if not parts:
            return head + f"{self.delivered} events delivered to '{self.topic}'"
        text = head + ", ".join(parts)
        if self.errors:
            last = self.errors[-1]
            key = f" (key {last.key!r})" if last.key is not None else ""
            text += f"; last error: {last.code}: {last.reason}{key}"
        return text


class LibrdkafkaLog:
    """librdkafka's own log lines (passed as the `logger` config) into Python logging, at most one line per
    facility and client every `interval` seconds, so an unreachable broker does not flood stderr."""

    _LEVELS = {0: 50, 1: 50, 2: 50, 3: 40, 4: 30, 5: 20, 6: 20, 7: 10}

    def __init__(self, name: str = "kpipe.librdkafka", interval: float = RATE_LIMIT_INTERVAL):
        self._log = logging.getLogger(name)
        self._limited = RateLimitedLog(self._log, interval)

    def log(self, level: int, fmt: str, *args: Any) -> None:
        # confluent-kafka hands over Python logging levels; raw syslog levels (0-7) are mapped just in case.
        py_level = level if level >= logging.DEBUG else self._LEVELS.get(level, logging.INFO)
        if not self._log.isEnabledFor(py_level):
            return
        key = (str(args[0]) if args else "", str(args[1]) if len(args) > 1 else "")
        self._limited(py_level, key, "%s", fmt % args)


class Producer:
    """Send events to one declared topic. Use as a context manager, or call close() yourself."""

    def __init__(
        self,
        settings: ProducerSettings,
        model: type[BaseModel] | None,
        *,
        on_delivery: Callable[[KafkaError | None, Any], None] | None = None,
        config_overrides: Mapping[str, Any] | None = None,
        client_factory: Callable[[dict[str, Any]], Any] = _KafkaProducer,
        traced_by: tracing.Tracing | None = None,
    ):
        """client_factory builds the librdkafka producer from its final config (tests pass a fake).
        traced_by: the tracing its sends go through (None: this process's, kpipe.runtime.tracing.current())."""
        self.settings = settings
        self.topic = settings.topic
        self._model = model
        self._key_field = settings.key_field
        # The key field is named as it appears in JSON; a model may hold it under another attribute name
        # (a property such as "customer-id" becomes the field customer_id with that alias).
        self._key_attr = _attribute_of(model, settings.key_field) if model is not None else settings.key_field
        # Models compiled from a JSON Schema refuse NaN and Infinity in their fields; a user's pydantic model
        # may not, and pydantic would then write null on the wire: check its events whole. Extra fields (a
        # schema's additionalProperties) are not validated: check those.
        config = model.model_config if model is not None else {}
        self._check_finite = model is not None and config.get("allow_inf_nan", True) is not False
        self._check_extra = model is not None and config.get("extra") == "allow"
        # What send() does per event, looked up once: the model's own validator (what model_validate calls,
        # without its Python wrapper) and the text that names this producer in a refusal.
        self._validate = model.__pydantic_validator__.validate_python if model is not None else None
        self._to_json = model.__pydantic_serializer__.to_json if model is not None else None
        self._check_values = self._check_finite or self._check_extra
        self._what = f"producer '{settings.name}' (topic '{settings.topic}')"
        self._user_on_delivery = on_delivery
        self.sent = 0
        self.failed = 0
        self._errors: deque[DeliveryError] = deque(maxlen=KEEP_ERRORS)
        self._broker_error: KafkaError | None = None
        self._closed = False

        config: dict[str, Any] = dict(settings.client.as_dict())
        config.update(config_overrides or {})
        config["error_cb"] = self._on_client_error
        config.setdefault("logger", LibrdkafkaLog())
        config["on_delivery"] = self._on_delivery
        if on_delivery is None:
            # Only failures need Python: successful deliveries are counted as sent - failed - in flight.
            config["delivery.report.only.error"] = True
        elif isinstance(config.get("delivery.report.only.error"), str):
            # confluent-kafka handles this key in Python and wants a bool; from YAML it arrives as "true".
            config["delivery.report.only.error"] = config["delivery.report.only.error"].lower() == "true"
        traced_by = traced_by if traced_by is not None else tracing.current()
        client_factory = traced_by.producer_factory(client_factory)  # tracing hook: send spans
        try:
            self._producer = client_factory(config)
        except KafkaException as exc:
            raise ClusterError(
                f"producer '{settings.name}': {exc.args[0].str()}", code=exc.args[0].name()
            ) from None
        self._produce = self._producer.produce
        self._poll = self._producer.poll

    # -- counters ---------------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Events handed to librdkafka whose delivery is not yet known."""
        if self._closed:
            return 0
        # len() also counts client events waiting to be served (errors and log lines, many a second while no
        # broker answers): serve them first, so that what remains are messages.
        self._poll(0)
        # Served events can arrive again at any moment: never count more than could still be in flight.
        return max(0, min(len(self._producer), self.sent - self.failed))

    @property
    def delivered(self) -> int:
        return self.sent - self.failed - self.pending

    @property
    def errors(self) -> tuple[DeliveryError, ...]:
        return tuple(self._errors)

    # -- sending ----------------------------------------------------------------------------------------

    def send(self, event: Any, *, key: Any = None, headers: Mapping[str, Any] | list | None = None) -> None:
        """Validate, key and serialise one event and queue it for delivery. Raises EventInvalid."""
        if self._closed:
            raise RuntimeError(f"producer '{self.settings.name}' is closed")
        model = self._model
        if model is not None:
            if type(event) is dict:
                # The common case, kept free of isinstance checks (pydantic's metaclass makes them slow).
                try:
                    event = self._validate(event)
                except ValidationError as exc:
                    raise EventInvalid(self._invalid(exc)) from None
                to_json = self._to_json
            else:
                if type(event) is not model:
                    event = self._coerce(model, event)  # an instance of the model or of a subclass
                to_json = event.__pydantic_serializer__.to_json
            if key is None and self._key_attr is not None:
                key = getattr(event, self._key_attr)
                if key is None:
                    raise EventInvalid(self._no_key())
            if self._check_values:
                self._check_numbers(event)
            try:
                value = to_json(event, exclude_unset=True)  # serde.model_json, inlined on the hot path
            except PydanticSerializationError as exc:  # e.g. a str holding a lone surrogate
                raise EventInvalid(unserialisable(exc)) from None
            if len(value) > MAX_INT_DIGITS:  # shorter JSON cannot hold a refused integer
                require_readable_numbers(value, self._what)
        else:
            if key is None and self._key_field is not None:
                if not isinstance(event, Mapping | BaseModel):
                    raise EventInvalid(self._no_key())
                key = key_of(event, self._key_field)
            value = to_json_bytes(event)
        if key is not None and type(key) is not str:
            key = key_text(key)
        # Counted before it is queued and uncounted if queuing fails, so that an interruption (Ctrl-C inside
        # produce or while waiting for room) can never leave a queued event out of the counters.
        sent = self.sent = self.sent + 1
        try:
            if headers is None:
                self._produce(self.topic, value, key)
            else:
                self._produce(self.topic, value, key, headers=headers)
        except BufferError:
            kwargs = {} if headers is None else {"headers": headers}
            try:
                produce_when_room(self._producer, self.topic, value, key, **kwargs)
            except BaseException:
                self.sent -= 1
                raise
        except KafkaException as exc:
            self.sent -= 1
            err = exc.args[0]
            raise ClusterError(
                f"producer '{self.settings.name}': cannot send to '{self.topic}': {err.str()}",
                code=err.name(),
            ) from None
        except BaseException:
            self.sent -= 1
            raise
        if not sent % POLL_EVERY:
            self._poll(0)

    def _check_numbers(self, event: BaseModel) -> None:
        """NaN and Infinity refused in the whole event, or only in its extra fields (see __init__)."""
        if self._check_finite:
            require_finite(event, self._what)
        elif event.__pydantic_extra__:
            require_finite(event.__pydantic_extra__, self._what)

    def _coerce(self, model: type[BaseModel], event: Any) -> BaseModel:
        if isinstance(event, model):
            return event
        if isinstance(event, BaseModel):
            raise EventInvalid(
                f"producer '{self.settings.name}' sends '{model.__name__}' events to '{self.topic}', "
                f"got a '{type(event).__name__}'"
            )
        if isinstance(event, bytes | bytearray | str):
            try:
                return model.model_validate_json(event)
            except ValidationError as exc:
                raise EventInvalid(self._invalid(exc)) from None
        if not isinstance(event, Mapping):
            raise EventInvalid(
                f"producer '{self.settings.name}': an event must be a dict or a '{model.__name__}', "
                f"got {type(event).__name__}"
            )
        try:
            return model.model_validate(event)
        except ValidationError as exc:
            raise EventInvalid(self._invalid(exc)) from None

    def _invalid(self, exc: ValidationError) -> str:
        return (
            f"invalid event for producer '{self.settings.name}' (topic '{self.topic}'): "
            f"{describe_validation_error(exc)}"
        )

    def _no_key(self) -> str:
        return (
            f"event for producer '{self.settings.name}' has no value for key field '{self._key_field}' "
            "(pass key=... to send it anyway)"
        )

    # -- delivery ---------------------------------------------------------------------------------------

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self.failed += 1
            raw_key = msg.key() if msg is not None else None
            key = raw_key.decode(errors="replace") if isinstance(raw_key, bytes) else raw_key
            self._errors.append(DeliveryError(key, err.name(), err.str()))
        if self._user_on_delivery is not None:
            self._user_on_delivery(err, msg)

    def _on_client_error(self, err: KafkaError) -> None:
        # librdkafka retries connections by itself; remember the cause for the error message on close.
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE):
            self._broker_error = err
        log.debug("producer '%s': %s", self.settings.name, err.str())

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery reports; returns how many were served."""
        return self._poll(timeout)

    def flush(self, timeout: float = DEFAULT_CLOSE_TIMEOUT) -> DeliverySummary:
        """Wait up to `timeout` seconds for every queued event; return what became of them all."""
        if not self._closed:
            self._producer.flush(timeout)
        return self.summary()

    def summary(self) -> DeliverySummary:
        pending = self.pending
        return DeliverySummary(
            producer=self.settings.name,
            topic=self.topic,
            sent=self.sent,
            delivered=self.sent - self.failed - pending,
            failed=self.failed,
            pending=pending,
            errors=tuple(self._errors),
        )

    def close(
        self, timeout: float | None = None, *, abandon: Callable[[], bool] | None = None
    ) -> DeliverySummary:
        """Flush, then raise ClusterError if any event failed or is still undelivered after `timeout`.

        `abandon` is asked between short waits: once it returns True (the user interrupted again), what is
        still queued is dropped and counted as failed at once. An exception while waiting drops it too.
        """
        if self._closed:
            return self.summary()
        if timeout is None:
            timeout = _close_timeout(self.settings)
        deadline = time.monotonic() + timeout
        abandoned = False
        try:
            while len(self._producer) and time.monotonic() < deadline:
                if abandon is not None and abandon():
                    abandoned = True
                    break
                self._producer.flush(min(0.2, max(0.0, deadline - time.monotonic())))
        except BaseException:
            self._drop_pending()
            raise
        summary = self.summary()
        if summary.pending:
            self._drop_pending()
        self._closed = True
        if summary.ok:
            return summary
        text = summary.describe()
        if summary.pending:
            text += " (abandoned)" if abandoned else f" after {timeout:g} s"
        if self._broker_error is not None:
            text += f"; broker: {self._broker_error.str()}"
            raise BrokerUnreachable(text, code=self._broker_error.name(), retriable=True)
        code = summary.errors[-1].code if summary.errors else None
        raise ClusterError(text, code=code, retriable=True)

    def _drop_pending(self) -> None:
        """Purge what librdkafka still holds so the client can be torn down now rather than after
        message.timeout.ms. Each purged event gets a failed delivery report; one whose report does not arrive
        within a moment is counted as failed too, so that sent = delivered + failed holds after close."""
        self._closed = True
        self._producer.purge()
        deadline = time.monotonic() + DROP_REPORT_WAIT
        while len(self._producer) and time.monotonic() < deadline:
            self._producer.poll(0.05)
        unreported = max(0, min(len(self._producer), self.sent - self.failed))
        if unreported:
            self.failed += unreported
            self._errors.append(DeliveryError(None, "_PURGE_QUEUE", f"{unreported} events dropped on close"))

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
            return
        # The block already failed: report delivery problems in the log rather than masking its exception.
        try:
            self.close()
        except ClusterError as close_error:
            log.error("%s", close_error)

    def __repr__(self) -> str:
        return (
            f"Producer({self.settings.name!r}, topic={self.topic!r}, sent={self.sent}, failed={self.failed})"
        )


def open_producer(project: CompiledProject, name: str, **kwargs: Any) -> Producer:
    """Open the project's declared producer `name` (an unknown name: UsageError with a did-you-mean)."""
    settings = project.producer_settings(name)
    model = project.schema_model(settings.schema_name) if settings.schema_name else None
    return Producer(settings, model, **kwargs)


def _close_timeout(settings: ProducerSettings) -> float:
    """Long enough for librdkafka to settle every message one way or the other (message.timeout.ms + slack)."""
    raw = settings.client.get("message.timeout.ms") or settings.client.get("delivery.timeout.ms")
    try:
        return int(raw) / 1000.0 + 5.0 if raw else DEFAULT_CLOSE_TIMEOUT
    except ValueError:
        return DEFAULT_CLOSE_TIMEOUT


def _attribute_of(model: type[BaseModel], json_name: str | None) -> str | None:
    if json_name is None:
        return None
    return attribute_of(model, json_name) or json_name

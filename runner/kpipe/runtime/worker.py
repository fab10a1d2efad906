"""The consumer worker: run one consumer-group member, at least once, under the group's commit and error policy.

    GroupWorker(settings, models, handler).run() -> exit code      (in-process; tests drive it in a thread)
    worker_main(spec, status_queue) -> exit code                    (the supervisor's spawned-process entry)

Messages arrive in batches from `consume(max_poll_records, poll_timeout)`; each is decoded and validated with
its topic's schema model (`model_validate_json`; raw bytes when the topic has none) and passed to
`handler(event, ctx)`. Only a message whose handler returned (or that was dead-lettered or skipped) is
"processed", and only processed offsets are ever committed:

    auto         librdkafka commits every interval_ms (enable.auto.commit=true) from the offset store, and the
                 worker stores an offset (enable.auto.offset.store=false + store_offsets) only once processed.
    per_message  a synchronous commit after each processed message.
    batch        a synchronous commit of the processed offsets (explicit TopicPartition(topic, p, offset + 1)
                 per partition, never "current positions") after batch_size messages or interval_ms.

In every policy the processed offsets are also committed when partitions are revoked and on shutdown. Events
a handler emitted are delivered before the offset of the message that emitted them is committed/stored.

Errors: an event that fails schema validation cannot succeed on retry, so it goes straight to the dead-letter
topic (or, with no dead-letter topic, to the on_error action). A handler exception is retried `retries` times
with exponential backoff (backoff_ms doubling up to max_backoff_ms, ±20 % jitter); then `dead_letter` writes
the original message to the dead-letter topic with kpipe.* headers and waits for the broker's ack before the
offset counts as processed (a failed write stops the worker without committing it, exit code CLUSTER);
`skip` logs and counts it; `stop` halts the worker without committing it (exit code HALT). Long waits are
sliced so stop() is prompt, and when a wait approaches max.poll.interval.ms the assigned partitions are
paused and the consumer is polled, so the member keeps its place in the group.

Consumer defaults the worker enforces itself (whatever the compiled config says): the commit-policy keys above
and `group.id`. It also sets `fetch.queue.backoff.ms=10` unless configured: librdkafka's default of 1000 ms
stalls a consumer for a second whenever its local queue fills (see TEST-BROKER.md; the compile step sets the
same default, so `kpipe explain` shows it); and `queued.max.messages.kbytes=8192` unless configured, which
bounds the prefetch queue (librdkafka's 64 MB default keeps a worker's peak RSS above 100 MB on a backlog).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka import Producer as KafkaProducer
from pydantic import BaseModel, ValidationError

from kpipe.compilation.compiled import ConsumerGroupSettings, ErrorPolicy
from kpipe.redaction import redact
from kpipe.runtime.handler import Emitter, Handler, HandlerContext
from kpipe.runtime.producer import LibrdkafkaLog
from kpipe.runtime.protocol import (
    WORKER_EXIT_CLUSTER,
    WORKER_EXIT_CRASH,
    WORKER_EXIT_HALT,
    WORKER_EXIT_OK,
    WorkerSpec,
    WorkerStatus,
)
from kpipe.runtime.serde import describe_validation_error, truncate

log = logging.getLogger("kpipe.runtime.worker")

DEFAULT_POLL_TIMEOUT = 0.1
DEFAULT_CLUSTER_TIMEOUT = 60.0
FETCH_QUEUE_BACKOFF_MS = "10"
# librdkafka prefetches up to 64 MB of messages per consumer by default; a worker that keeps up needs far less.
# Measured on a 200k x 200-byte run: peak RSS 105-117 MB at the default, ~82 MB at 8 MB, same throughput.
QUEUED_MAX_MESSAGES_KBYTES = "8192"
STATUS_INTERVAL = 1.0
# How long a commit waits for events a handler sent through a kpipe Producer.
EMIT_SETTLE_TIMEOUT = 30.0
# Waits (retry backoff, dead-letter acks) are cut into slices this long so stop() takes effect promptly.
WAIT_SLICE = 0.1
# How often, while every broker is down, the worker asks for metadata to learn that one is back.
CLUSTER_PROBE_INTERVAL = 5.0
# The same client error is logged at most once per this many seconds.
ERROR_LOG_INTERVAL = 10.0
SHUTDOWN_SETTLE_TIMEOUT = 10.0

# Dead-letter headers (values are UTF-8 text).
H_SOURCE_TOPIC = "kpipe.source.topic"
H_SOURCE_PARTITION = "kpipe.source.partition"
H_SOURCE_OFFSET = "kpipe.source.offset"
H_ERROR_TYPE = "kpipe.error.type"
H_ERROR_MESSAGE = "kpipe.error.message"
H_GROUP = "kpipe.group"

_REJECTED = object()  # the event failed validation and was dealt with by the error policy

# Outcomes of the slow paths (a message that failed): count it as processed, drop it, or stop the batch.
DONE, DROP, HALT = 0, 1, 2

_AUTO, _PER_MESSAGE, _BATCH = "auto", "per_message", "batch"


# --- pure helpers (unit-tested) ---------------------------------------------------------------------------


def consumer_config(
    settings: ConsumerGroupSettings, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The final librdkafka consumer config: compiled settings, overrides, then the commit-policy invariants."""
    config: dict[str, Any] = dict(settings.client.as_dict())
    config.update(overrides or {})
    config["group.id"] = settings.group_id
    config.setdefault("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
    config.setdefault("queued.max.messages.kbytes", QUEUED_MAX_MESSAGES_KBYTES)
    config.setdefault("auto.offset.reset", "earliest")
    # The worker stores offsets itself, and only for processed messages, in every policy.
    config["enable.auto.offset.store"] = "false"
    if settings.commit.strategy == _AUTO:
        config["enable.auto.commit"] = "true"
        config["auto.commit.interval.ms"] = str(settings.commit.interval_ms)
    else:
        config["enable.auto.commit"] = "false"
    return config


def producer_config(
    settings: ConsumerGroupSettings,
    consumer_conf: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Config of the producer for dead letters and emits; derived from the consumer's connection if absent."""
    if settings.producer_client is not None:
        config: dict[str, Any] = dict(settings.producer_client.as_dict())
    else:
        config = {
            k: v
            for k, v in consumer_conf.items()
            if k == "bootstrap.servers" or k.startswith(("security.", "sasl.", "ssl.")) or k == "client.id"
        }
        config.setdefault("acks", "all")
    config.update(overrides or {})
    return config


def backoff_delays(policy: ErrorPolicy, rng: Callable[[], float] = random.random) -> list[float]:
    """Seconds to wait before each retry: backoff_ms doubling, capped at max_backoff_ms, with ±20 % jitter."""
    delays = []
    for attempt in range(policy.retries):
        base = min(policy.max_backoff_ms, policy.backoff_ms * (2**attempt))
        jittered = min(policy.max_backoff_ms, base * (0.8 + 0.4 * rng()))
        delays.append(jittered / 1000.0)
    return delays


def dead_letter_headers(
    topic: str,
    partition: int,
    offset: int,
    error_type: str,
    error_message: str,
    group: str,
    original: Iterable[tuple[str, Any]] | None = None,
) -> list[tuple[str, bytes]]:
    """The source message's own headers, then where it came from and why it failed."""
    headers = [(k, v) for k, v in (original or ()) if not k.startswith("kpipe.")]
    headers += [
        (H_SOURCE_TOPIC, topic.encode()),
        (H_SOURCE_PARTITION, str(partition).encode()),
        (H_SOURCE_OFFSET, str(offset).encode()),
        (H_ERROR_TYPE, error_type.encode()),
        (H_ERROR_MESSAGE, truncate(redact(error_message)).encode()),  # no secret leaves in a header
        (H_GROUP, group.encode()),
    ]
    return headers


def commit_list(
    processed: Mapping[tuple[str, int], int], only: Iterable[tuple[str, int]] | None = None
) -> list:
    """TopicPartitions to commit for processed offsets: the next offset to read, last processed + 1."""
    keys = processed.keys() if only is None else [k for k in only if k in processed]
    return [TopicPartition(t, p, processed[(t, p)] + 1) for t, p in keys]


class _RateLimitedLog:
    """One line per key per interval, saying how many similar lines were held back."""

    def __init__(self, interval: float = ERROR_LOG_INTERVAL):
        self._interval = interval
        self._last: dict[Any, tuple[float, int]] = {}

    def __call__(self, level: int, key: Any, text: str, *args: Any) -> None:
        now = time.monotonic()
        last, held = self._last.get(key, (0.0, 0))
        if now - last < self._interval and last:
            self._last[key] = (last, held + 1)
            return
        suffix = f" ({held} similar suppressed)" if held else ""
        self._last[key] = (now, 0)
        log.log(level, text + suffix, *args)


class _NoEmitter:
    """Stands in for the Emitter when the group has no producer, so the hot path needs no None check."""

    unsettled = False
    failures: tuple[str, ...] = ()


# --- the worker -------------------------------------------------------------------------------------------


class GroupWorker:
    """One member of a consumer group. `run()` blocks until stop() or a fatal condition; returns an exit code."""

    def __init__(
        self,
        settings: ConsumerGroupSettings,
        models: Mapping[str, type[BaseModel] | None],
        handler: Handler,
        *,
        status_callback: Callable[[WorkerStatus], None] | None = None,
        instance: int = 0,
        config_overrides: Mapping[str, Any] | None = None,
        producer_overrides: Mapping[str, Any] | None = None,
        emit_key_fields: Mapping[str, str | None] | None = None,
        poll_timeout: float = DEFAULT_POLL_TIMEOUT,
        cluster_timeout: float = DEFAULT_CLUSTER_TIMEOUT,
        rng: Callable[[], float] = random.random,
        on_stuck: Callable[[str], None] | None = None,
    ):
        self.settings = settings
        self.group = settings.group_id
        self.instance = instance
        self._handler = handler
        self._status_callback = status_callback
        self._poll_timeout = poll_timeout
        self._cluster_timeout = cluster_timeout
        self._rng = rng
        self._strategy = settings.commit.strategy
        self._policy = settings.on_error
        self._consumer_conf = consumer_config(settings, config_overrides)
        self._producer_conf = producer_config(settings, self._consumer_conf, producer_overrides)
        self._emit_key_fields = emit_key_fields
        self._max_poll_interval = int(self._consumer_conf.get("max.poll.interval.ms", 300_000)) / 1000.0

        topic_models: dict[str, type[BaseModel] | None] = {t: models.get(t) for t in settings.topics}
        topic_models.update(models)
        self._validators = {
            t: (m.model_validate_json if m is not None else None) for t, m in topic_models.items()
        }
        distinct = set(topic_models.values())
        # One model (or none) for every topic, the usual case: no per-message lookup.
        self._one_model = len(distinct) == 1
        only = next(iter(distinct)) if self._one_model else None
        self._single_validator = only.model_validate_json if only is not None else None

        # Counters (read by status snapshots and tests).
        self.handled = 0
        self.dead_lettered = 0
        self.skipped = 0
        self.commits = 0
        self.last_commit_at: float | None = None
        self.assigned: set[tuple[str, int]] = set()
        self.state = "starting"
        self.error: str | None = None
        self.exit_code: int | None = None

        self._stop_requested = False
        self._stop_event = threading.Event()
        self._stop_requested_at: float | None = None
        self._consumer: Any = None
        self._producer: Any = None
        self._emitter: Any = _NoEmitter()
        self._ctx = HandlerContext(self.group, None)
        # Processed, not yet committed offsets per partition (batch and per_message).
        self._processed: dict[tuple[str, int], int] = {}
        # auto: processed messages whose store waits for their emitted events to be acknowledged.
        self._deferred: list[Any] = []
        self._carry: list[Any] = []
        self._paused: list[TopicPartition] = []
        self._revoked_in_batch: set[tuple[str, int]] = set()
        self._in_batch = False
        self._polling = False
        self._last_poll = time.monotonic()
        self._commit_deadline = 0.0
        self._next_status = 0.0
        self._all_down_since: float | None = None
        self._next_probe = 0.0
        self._limited = _RateLimitedLog()
        # A synchronous commit blocks inside librdkafka, out of reach of stop() and signal handlers, and with
        # the broker gone it can block for minutes. A watchdog thread notices a call blocked for longer than
        # the cluster timeout and calls on_stuck (worker_main: exit for a restart, committing nothing more).
        self._on_stuck = on_stuck
        self._blocked_since: float | None = None
        self._blocked_what = ""
        self._watchdog_done = threading.Event()

    # -- control --------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to finish the message in hand, commit what it processed, and close. Thread-safe."""
        if not self._stop_requested:
            self._stop_requested_at = time.monotonic()
        self._stop_requested = True
        self._stop_event.set()

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    def _halt(self, code: int, reason: str) -> None:
        if self.exit_code is None or self.exit_code == WORKER_EXIT_OK:
            self.exit_code = code
            self.error = reason
        if self._stop_requested_at is None:
            self._stop_requested_at = time.monotonic()
        self._stop_requested = True
        self._stop_event.set()

    # -- lifecycle --------------------------------------------------------------------------------------------

    def run(self) -> int:
        """Consume until stopped; returns a worker exit code (kpipe.runtime.protocol)."""
        try:
            self._open()
        except KafkaException as exc:
            err = exc.args[0]
            reason = f"consumer group '{self.group}': invalid client configuration: {err.str()}"
            log.error("%s", reason)
            self.state, self.error = "failed", reason
            self._report(force=True)
            return WORKER_EXIT_HALT
        self.state = "running"
        self._report(force=True)
        watchdog = threading.Thread(target=self._watch_blocked_calls, name="kpipe-watchdog", daemon=True)
        watchdog.start()
        try:
            self._loop()
        except Exception as exc:  # a bug or an unexpected client failure: say so, keep what was processed
            log.exception("consumer group '%s': worker failed", self.group)
            self._halt(WORKER_EXIT_CRASH, f"{type(exc).__name__}: {exc}")
        finally:
            try:
                self._shutdown()
            finally:
                self._watchdog_done.set()
        code = self.exit_code = self.exit_code if self.exit_code is not None else WORKER_EXIT_OK
        self.state = "stopped" if code == WORKER_EXIT_OK else "failed"
        self._report(force=True)
        return code

    def _watch_blocked_calls(self) -> None:
        limit = self._cluster_timeout
        reported = None
        while not self._watchdog_done.wait(0.5):
            since = self._blocked_since
            if since is None or time.monotonic() - since < limit or since == reported:
                continue
            reported = since
            reason = (
                f"a {self._blocked_what} has been blocked for over {limit:g} s: the cluster is unreachable; "
                "nothing more is committed (unprocessed and uncommitted events will be delivered again)"
            )
            log.error("consumer group '%s': %s", self.group, reason)
            if self._on_stuck is not None:
                self._on_stuck(reason)

    def _open(self) -> None:
        conf = dict(self._consumer_conf)
        conf["error_cb"] = self._on_client_error
        conf.setdefault("logger", LibrdkafkaLog())
        self._consumer = Consumer(conf)
        needs_producer = (
            self._policy.dead_letter_topic is not None or self.settings.producer_client is not None
        )
        if needs_producer:
            pconf = dict(self._producer_conf)
            pconf["error_cb"] = self._on_producer_error
            pconf.setdefault("logger", LibrdkafkaLog())
            self._producer = KafkaProducer(pconf)
            self._emitter = Emitter(self._producer, self._emit_key_fields)
            self._ctx = HandlerContext(self.group, self._emitter)
        self._consumer.subscribe(
            list(self.settings.topics),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info(
            "consumer group '%s' instance %d: subscribed to %s (commit: %s, on_error: %s)",
            self.group,
            self.instance,
            ", ".join(self.settings.topics),
            self._strategy,
            self._policy.action,
        )
        self._commit_deadline = time.monotonic() + self.settings.commit.interval_ms / 1000.0

    def _loop(self) -> None:
        consume = self._consumer.consume
        max_records = self.settings.max_poll_records
        timeout = self._poll_timeout
        monotonic = time.monotonic
        batch = self._strategy == _BATCH
        while not self._stop_requested:
            if self._carry:
                msgs, self._carry = self._carry, []
            else:
                msgs = consume(max_records, timeout)
                self._last_poll = monotonic()
            if msgs:
                self._all_down_since = None
                self._in_batch = True
                try:
                    self._process(msgs)
                finally:
                    self._in_batch = False
                    self._revoked_in_batch.clear()
            now = monotonic()
            if batch and self._processed and now >= self._commit_deadline:
                self._commit_processed()
            if now >= self._next_status:
                self._housekeeping(now)
            # Whatever paused the partitions to keep the group membership during a long wait (a retry's
            # backoff, emitted events settling before a commit, between batches too) is over: read again.
            if self._paused:
                self._resume()

    def _process(self, msgs: list[Any]) -> None:
        """The hot path: keep per-message work to a few attribute reads and one call into the handler."""
        handler = self._handler
        ctx = self._ctx
        strategy = self._strategy
        auto = strategy == _AUTO
        batch = strategy == _BATCH
        one_model = self._one_model
        validate = self._single_validator
        validators = self._validators
        store = self._consumer.store_offsets
        processed = self._processed
        emitter = self._emitter
        deferred = self._deferred
        revoked = self._revoked_in_batch
        batch_size = self.settings.commit.batch_size
        monotonic = time.monotonic
        commit_deadline = self._commit_deadline
        since_commit = 0
        handled = 0
        try:
            for msg in msgs:
                if self._stop_requested:
                    break
                if msg.error() is not None:
                    self._message_error(msg)
                    continue
                if revoked and (msg.topic(), msg.partition()) in revoked:
                    continue  # revoked while a retry waited: its new owner reads it from the committed offset
                if not one_model:
                    validate = validators.get(msg.topic())
                event = _REJECTED
                if validate is None:
                    event = msg.value()
                else:
                    try:
                        event = validate(msg.value())
                    except ValidationError as exc:
                        outcome = self._failed(msg, "schema", describe_validation_error(exc))
                        if outcome == HALT:
                            break
                        if outcome == DROP:
                            continue
                if event is not _REJECTED:
                    ctx._msg = msg
                    try:
                        handler(event, ctx)
                    except Exception as exc:
                        outcome = self._retry(msg, event, exc)
                        if outcome == HALT:
                            break
                        if outcome == DROP:
                            continue
                    else:
                        handled += 1
                # The message is processed: make its offset committable.
                if auto:
                    if deferred or emitter.unsettled:
                        deferred.append(msg)
                    else:
                        store(msg)
                else:
                    processed[(msg.topic(), msg.partition())] = msg.offset()
                    if batch:
                        since_commit += 1
                        if since_commit >= batch_size or monotonic() >= commit_deadline:
                            self._commit_processed()
                            since_commit = 0
                            commit_deadline = self._commit_deadline
                    else:
                        self._commit_processed()
        finally:
            self.handled += handled
            if deferred:
                self._store_deferred()

    # -- failures -------------------------------------------------------------------------------------------

    def _retry(self, msg: Any, event: Any, exc: Exception) -> int:
        """A handler raised: retry with backoff, then apply the on_error action. Returns DONE, DROP or HALT."""
        delays = backoff_delays(self._policy, self._rng)
        tp = (msg.topic(), msg.partition())
        for attempt, delay in enumerate(delays, start=1):
            log.debug(
                "handler failed for %s[%d]@%d (%s: %s); retry %d/%d in %.2f s",
                tp[0], tp[1], msg.offset(), type(exc).__name__, exc, attempt, len(delays), delay,
            )  # fmt: skip
            if not self._wait(delay, tp):
                return DROP
            self._ctx._msg = msg
            try:
                self._handler(event, self._ctx)
            except Exception as again:
                exc = again
            else:
                self.handled += 1
                return DONE
        attempts = f" after {len(delays) + 1} attempts" if delays else ""
        return self._failed(msg, "handler", f"{type(exc).__name__}: {exc}", attempts)

    def _failed(self, msg: Any, error_type: str, text: str, attempts: str = "") -> int:
        """Apply the error policy to a message that cannot be processed. Returns DONE, DROP or HALT."""
        where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
        what = "schema-invalid event" if error_type == "schema" else "handler failed"
        action = self._policy.action
        if error_type == "schema" and self._policy.dead_letter_topic:
            action = "dead_letter"
        if action == "dead_letter" and self._policy.dead_letter_topic:
            ok = self._dead_letter(msg, error_type, text)
            if ok is None:
                return DROP
            if ok:
                self.dead_lettered += 1
                log.warning(
                    "%s %s%s: %s; dead-lettered to '%s'",
                    what, where, attempts, truncate(text, 300), self._policy.dead_letter_topic,
                )  # fmt: skip
                return DONE
            reason = (
                f"{what} {where}; writing it to dead-letter topic '{self._policy.dead_letter_topic}' failed"
            )
            log.error("%s: %s; stopping without committing it", reason, self._dlq_error)
            self._halt(WORKER_EXIT_CLUSTER, f"{reason}: {self._dlq_error}")
            return HALT
        if action == "skip":
            self.skipped += 1
            log.warning("%s %s%s: %s; skipped (on_error: skip)", what, where, attempts, truncate(text, 300))
            return DONE
        reason = f"{what} {where}{attempts}: {truncate(text, 300)}"
        log.error("%s; stopping (on_error: %s), offset %d not committed", reason, action, msg.offset())
        self._halt(WORKER_EXIT_HALT, reason)
        return HALT

    _dlq_error: str = ""

    def _dead_letter(self, msg: Any, error_type: str, text: str) -> bool | None:
        """Write the message to the dead-letter topic and wait for the ack: True delivered, False failed,
        None when the partition was revoked or shutdown gave up waiting (the message stays uncommitted)."""
        topic = self._policy.dead_letter_topic
        assert topic is not None and self._producer is not None
        headers = dead_letter_headers(
            msg.topic(), msg.partition(), msg.offset(), error_type, text, self.group, msg.headers()
        )
        result: list[KafkaError | None] = []
        try:
            self._produce(topic, msg.value(), msg.key(), headers, lambda err, _m: result.append(err))
        except KafkaException as exc:
            self._dlq_error = exc.args[0].str()
            return False
        tp = (msg.topic(), msg.partition())
        while not result:
            self._producer.poll(WAIT_SLICE)
            self._keep_membership()
            if tp in self._revoked_in_batch:
                return None
            if (
                self._stop_requested
                and time.monotonic() - (self._stop_requested_at or 0) > SHUTDOWN_SETTLE_TIMEOUT
            ):
                self._dlq_error = "no acknowledgement before shutdown"
                return None
        if result[0] is not None:
            self._dlq_error = f"{result[0].name()}: {result[0].str()}"
            return False
        return True

    def _produce(self, topic: str, value: Any, key: Any, headers: Any, callback: Callable[..., None]) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, headers=headers, on_delivery=callback)
                return
            except BufferError:
                self._producer.poll(WAIT_SLICE)

    def _wait(self, seconds: float, tp: tuple[str, int]) -> bool:
        """Sleep for a retry backoff in short slices; False when stopping or `tp` was revoked meanwhile."""
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            if self._stop_event.wait(min(WAIT_SLICE, remaining)):
                return False
            self._keep_membership()
            if tp in self._revoked_in_batch:
                return False

    def _keep_membership(self) -> None:
        """Poll the consumer (partitions paused) before max.poll.interval.ms runs out, so the group keeps us."""
        if self._polling or time.monotonic() - self._last_poll < self._max_poll_interval / 3:
            return
        consumer = self._consumer
        if not self._paused:
            self._paused = list(consumer.assignment())
            if self._paused:
                consumer.pause(self._paused)
        # Serves rebalance callbacks; paused partitions deliver nothing, newly assigned ones are kept for later.
        self._polling = True  # rebalance callbacks may commit, and a commit may wait: no nested polls
        try:
            msgs = consumer.consume(self.settings.max_poll_records, 0)
        finally:
            self._polling = False
        self._last_poll = time.monotonic()
        if msgs:
            self._carry.extend(msgs)

    def _resume(self) -> None:
        still = [tp for tp in self._paused if (tp.topic, tp.partition) in self.assigned]
        self._paused = []
        if still:
            try:
                self._consumer.resume(still)
            except KafkaException as exc:
                log.warning("could not resume %s: %s", _tps(still), exc.args[0].str())

    def _message_error(self, msg: Any) -> None:
        err = msg.error()
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.fatal():
            self._halt(WORKER_EXIT_CLUSTER, f"fatal consumer error: {err.str()}")
        self._limited(logging.WARNING, ("msg", err.code()), "consumer error: %s", err.str())

    # -- committing -----------------------------------------------------------------------------------------

    def _settle_emits(self) -> bool:
        """Wait until the events handlers emitted are acknowledged. On failure the worker stops: which message
        emitted the lost event is unknown, so no further offset may be committed."""
        emitter = self._emitter
        if emitter.unsettled:
            emitter.settle_external(EMIT_SETTLE_TIMEOUT)
            producer = self._producer
            while len(producer) and not emitter.failures:
                producer.flush(WAIT_SLICE)
                self._keep_membership()
                if (
                    self._stop_requested
                    and time.monotonic() - (self._stop_requested_at or 0) > SHUTDOWN_SETTLE_TIMEOUT
                ):
                    break
            producer.poll(0)
            emitter.unsettled = len(producer) > 0
        if emitter.failures or emitter.unsettled:
            reason = "; ".join(emitter.failures[-3:]) or f"{len(self._producer)} still in flight"
            self._halt(WORKER_EXIT_CLUSTER, f"events emitted by the handler were not delivered: {reason}")
            log.error("%s; offsets after the last commit stay uncommitted", self.error)
            return False
        return True

    def _store_deferred(self) -> None:
        # auto: messages processed after an emit are stored once the emitted events are acknowledged.
        if not self._settle_emits():
            self._deferred.clear()
            return
        store = self._consumer.store_offsets
        for msg in self._deferred:
            if (msg.topic(), msg.partition()) in self.assigned:
                store(msg)
        self._deferred.clear()

    def _commit_processed(self, only: Iterable[tuple[str, int]] | None = None, *, reason: str = "") -> bool:
        """Synchronously commit processed offsets (all, or those of `only`); keep them on failure."""
        self._commit_deadline = time.monotonic() + self.settings.commit.interval_ms / 1000.0
        if not self._settle_emits():
            return False
        offsets = commit_list(self._processed, only)
        if not offsets:
            return True
        try:
            self._blocked_what, self._blocked_since = "commit", time.monotonic()
            results = self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            err = exc.args[0]
            self._limited(
                logging.WARNING, ("commit", err.code()), "commit of %s failed: %s", _tps(offsets), err.str()
            )
            return False
        finally:
            self._blocked_since = None
        failed = [tp for tp in results or () if tp.error is not None]
        for tp in offsets:
            key = (tp.topic, tp.partition)
            if self._processed.get(key) == tp.offset - 1 and not any(
                f.topic == tp.topic and f.partition == tp.partition for f in failed
            ):
                del self._processed[key]
        if failed:
            self._limited(logging.WARNING, ("commit", "partial"), "commit failed for %s: %s",
                          _tps(failed), failed[0].error.str())  # fmt: skip
        self.commits += 1
        self.last_commit_at = time.time()
        if reason:
            log.info("committed %s (%s)", _tps(offsets), reason)
        else:
            log.debug("committed %s", _tps(offsets))
        return not failed

    def _commit_auto(self, reason: str) -> None:
        """auto: commit the offset store now (revocation, shutdown) rather than at the next interval."""
        try:
            self._blocked_what, self._blocked_since = "commit", time.monotonic()
            results = self._consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("commit on %s failed: %s", reason, exc.args[0].str())
            return
        finally:
            self._blocked_since = None
        self.commits += 1
        self.last_commit_at = time.time()
        log.info("committed %s (%s)", _tps(results or ()), reason)

    def _commit_all(self, reason: str, only: Iterable[tuple[str, int]] | None = None) -> None:
        if self._strategy == _AUTO:
            if self._deferred:
                self._store_deferred()
            self._commit_auto(reason)
        else:
            self._commit_processed(only, reason=reason)

    # -- rebalance callbacks (run inside consume()) -------------------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._all_down_since = None
        self.assigned.update((tp.topic, tp.partition) for tp in partitions)
        log.info("assigned %s", _tps(partitions) or "no partitions")
        self._report(force=True)

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        try:
            self._commit_all("partitions revoked", keys)
        except Exception:  # an exception here would escape from consume(); log it and carry on
            log.exception("commit on revocation failed")
        self._forget(keys)
        log.info("revoked %s", _tps(partitions) or "no partitions")

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        # Lost (not revoked): another member may own them already, so committing would be wrong.
        keys = [(tp.topic, tp.partition) for tp in partitions]
        self._forget(keys)
        log.warning(
            "lost %s (session timed out?); their uncommitted offsets will be re-read", _tps(partitions)
        )

    def _forget(self, keys: list[tuple[str, int]]) -> None:
        for key in keys:
            self._processed.pop(key, None)
            self.assigned.discard(key)
        if self._in_batch:
            self._revoked_in_batch.update(keys)
        self._paused = [tp for tp in self._paused if (tp.topic, tp.partition) not in keys]
        self._report(force=True)

    # -- client errors, cluster loss, status ------------------------------------------------------------------

    def _on_client_error(self, err: KafkaError) -> None:
        code = err.code()
        if code == KafkaError._ALL_BROKERS_DOWN:
            if self._all_down_since is None:
                self._all_down_since = time.monotonic()
            # librdkafka's own text ("0/2 brokers are down") can miscount; say what it means and what follows.
            self._limited(
                logging.WARNING, ("client", code),
                "no broker reachable at %s; retrying, and exiting for a restart if none answers within %g s",
                self._consumer_conf.get("bootstrap.servers"), self._cluster_timeout,
            )  # fmt: skip
            return
        if err.fatal():
            self._halt(WORKER_EXIT_CLUSTER, f"fatal client error: {err.str()}")
        self._limited(logging.WARNING, ("client", code), "kafka: %s", err.str())

    def _on_producer_error(self, err: KafkaError) -> None:
        self._limited(logging.WARNING, ("producer", err.code()), "kafka (producer): %s", err.str())

    def _housekeeping(self, now: float) -> None:
        self._next_status = now + STATUS_INTERVAL
        if self._all_down_since is not None:
            down_for = now - self._all_down_since
            if now >= self._next_probe:
                self._next_probe = now + CLUSTER_PROBE_INTERVAL
                if self._cluster_reachable():
                    self._all_down_since = None
                    log.info("brokers reachable again")
            if self._all_down_since is not None and down_for >= self._cluster_timeout:
                bootstrap = self._consumer_conf.get("bootstrap.servers")
                reason = f"no broker reachable at {bootstrap} for {down_for:.0f} s"
                log.error("%s; exiting so the supervisor can restart the worker", reason)
                self._halt(WORKER_EXIT_CLUSTER, reason)
        self._report()

    def _cluster_reachable(self) -> bool:
        try:
            self._consumer.list_topics(timeout=1.0)
            return True
        except KafkaException:
            return False

    def status(self) -> WorkerStatus:
        return WorkerStatus(
            group=self.group,
            instance=self.instance,
            pid=os.getpid(),
            handled=self.handled,
            dead_lettered=self.dead_lettered,
            skipped=self.skipped,
            committed=self.commits,
            last_commit_at=self.last_commit_at,
            assigned=tuple(sorted(self.assigned)),
            state=self.state,
            error=self.error,
        )

    def _report(self, force: bool = False) -> None:
        if self._status_callback is None:
            return
        if not force:
            self._next_status = time.monotonic() + STATUS_INTERVAL
        try:
            self._status_callback(self.status())
        except Exception:  # a status reader's problem must never stop consumption
            log.debug("status callback failed", exc_info=True)

    # -- shutdown ---------------------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        self.state = "stopping"
        self._report(force=True)
        consumer = self._consumer
        if consumer is None:
            return
        try:
            self._commit_all("shutdown")
        except Exception:
            log.exception("final commit failed")
        try:
            consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("closing the consumer: %s", exc)
        if self._producer is not None:
            left = self._producer.flush(SHUTDOWN_SETTLE_TIMEOUT)
            if left:
                log.warning("%d dead-letter/emitted events undelivered at shutdown", left)
        log.info("consumer group '%s' instance %d stopped", self.group, self.instance)


def _tps(partitions: Iterable[Any]) -> str:
    parts = []
    for tp in partitions:
        offset = getattr(tp, "offset", None)
        text = f"{tp.topic}[{tp.partition}]"
        if offset is not None and offset >= 0:
            text += f"@{offset}"
        parts.append(text)
    return ", ".join(parts)


# --- the process entry point ----------------------------------------------------------------------------------


def worker_main(spec: WorkerSpec, status_queue: Any = None) -> int:
    """Run one consumer-group instance in this (spawned) process until SIGTERM/SIGINT; return its exit code."""
    from kpipe.compilation.project import load_project
    from kpipe.errors import KpipeError
    from kpipe.logs import configure_logging
    from kpipe.runtime.handler import load_handler

    configure_logging(spec.log_format, context={"group": spec.group, "instance": spec.instance})
    status_put = _status_sender(status_queue)
    try:
        project = load_project(
            list(spec.project_paths),
            variables=dict(spec.variables),
            values_files=list(spec.values_files),
            bootstrap_override=spec.bootstrap_override,
            root=spec.project_root,
        )
        settings = project.consumer_group(spec.group)
        models = {
            topic: (project.schema_model(name) if name else None)
            for topic, name in settings.topic_schemas.items()
        }
        handler = load_handler(settings.handler, settings.import_paths)
        key_fields = {t.name: t.key_field for t in project.topic_specs()}
    except KpipeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.error("cannot start consumer group '%s': %s", spec.group, first)
        _send_failed(status_put, spec, first)
        return WORKER_EXIT_HALT

    overrides: dict[str, Any] = dict(spec.extra_consumer_config)
    producer_overrides: dict[str, Any] = {}
    if spec.bootstrap_override:
        overrides["bootstrap.servers"] = spec.bootstrap_override
        producer_overrides["bootstrap.servers"] = spec.bootstrap_override
    # One client.id per instance, so broker logs and metrics tell the group's processes apart.
    overrides.setdefault(
        "client.id", f"{settings.client.get('client.id') or 'kpipe-' + spec.group}-{spec.instance}"
    )

    worker = GroupWorker(
        settings,
        models,
        handler,
        status_callback=status_put,
        instance=spec.instance,
        config_overrides=overrides,
        producer_overrides=producer_overrides,
        emit_key_fields=key_fields,
        on_stuck=_exit_stuck,
    )

    def on_signal(signum: int, frame: Any) -> None:
        if not worker.stopping:
            log.info(
                "%s received: finishing the current message, committing, closing", signal.Signals(signum).name
            )
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # A closed terminal (kpipe dev, kpipe run in a shell) hangs up the whole process group: stop the same way.
    signal.signal(signal.SIGHUP, on_signal)
    settle_heap()
    return worker.run()


def _exit_stuck(reason: str) -> None:
    """The worker process is wedged in a librdkafka call: leave now so the supervisor restarts it (backoff).

    Exiting without closing the consumer commits nothing more, which keeps delivery at-least-once.
    """
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    os._exit(WORKER_EXIT_CLUSTER)


def settle_heap() -> None:
    """Move everything start-up allocated (pydantic, Jinja2, the compiled project) out of the garbage
    collector's sight before consuming.

    The consume loop allocates enough to trigger full collections, and each one walked those ~37k long-lived
    objects: about 10 % of throughput on small events (benchmarks/RESULTS.md). Frozen objects are never
    collected, which is what start-up state of a worker process is anyway.
    """
    gc.collect()
    gc.freeze()


def _status_sender(queue: Any) -> Callable[[WorkerStatus], None] | None:
    if queue is None:
        return None

    def put(status: WorkerStatus) -> None:
        # Full or closed: a missed snapshot is replaced by the next one.
        with contextlib.suppress(Exception):
            queue.put_nowait(status)

    return put


def _send_failed(put: Callable[[WorkerStatus], None] | None, spec: WorkerSpec, error: str) -> None:
    if put is not None:
        put(WorkerStatus(spec.group, spec.instance, os.getpid(), state="failed", error=error))

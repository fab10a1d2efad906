"""The consume engine: one loop for every concurrency, stepping fetch → dispatch → settle → commit hook, with
two thin specialisations that say only how events are dispatched and completed.

    ConsumeLoop        the base: the turns of the loop (below), the rebalance hooks' defaults, the parts
    SequentialLoop     sequential.py: concurrency 1 with a plain function; each event is validated, handled and
                       settled inline, in the batch, and made committable at once (the hot path)
    ConcurrentLoop     concurrent.py: up to `concurrency` events in flight, in order per key; events complete
                       later, as completions, and the finished prefix of each partition becomes committable

One turn, on the consumer thread:

    fetch     what the rebalance carried over, else consume() (the specialisation says how much, how long)
    dispatch  validate each event with its topic's schema model (Validators) and hand it to the handler:
              inline, or to the executor
    settle    complete what finished; a failed event's next step is decided by the one FailurePolicy
              (failures.py) and carried out inline (sequential_failures.py) or on timers and completions
              (event_failures.py)
    commit    processed messages go to the group's CommitStrategy's per-message hook; then its tick
    status    about once a second: the worker's housekeeping (cluster health, rebalance, status report)
    resume    partitions paused to keep the group membership during a long wait are read again
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from kpipe.runtime.client_protocols import SYSTEM_CLOCK, Clock
from kpipe.runtime.handler import Handler, HandlerContext
from kpipe.runtime.meter import WorkerMeter
from kpipe.runtime.worker.cluster_health import ClusterHealth
from kpipe.runtime.worker.commit import CommitStrategy
from kpipe.runtime.worker.control import Control, Counters
from kpipe.runtime.worker.failures import FailurePolicy
from kpipe.runtime.worker.membership import Membership, Partition

# How often status is reported and the cluster's health checked.
STATUS_INTERVAL = 1.0


class Validators:
    """The validator of each topic's schema model; one shared validator (or none) in the usual case."""

    def __init__(self, topics: Iterable[str], models: Mapping[str, type[BaseModel] | None]):
        topic_models: dict[str, type[BaseModel] | None] = {t: models.get(t) for t in topics}
        topic_models.update(models)
        self.by_topic = {
            t: (m.model_validate_json if m is not None else None) for t, m in topic_models.items()
        }
        distinct = set(topic_models.values())
        # One model (or none) for every topic: no per-message lookup.
        self.single = len(distinct) == 1
        only = next(iter(distinct)) if self.single else None
        self.only = only.model_validate_json if only is not None else None

    def event_of(self, msg: Any) -> Any:
        """The message's event: validated with its topic's model (raises pydantic's ValidationError), or its raw
        bytes. The sequential hot path inlines the same three lines."""
        validate = self.only if self.single else self.by_topic.get(msg.topic())
        return msg.value() if validate is None else validate(msg.value())


class ConsumeLoop:
    """The consume engine's base, as GroupWorker builds it: the turns of the loop (run), and the parts both
    specialisations work with. A specialisation overrides _fetch, _dispatch and _settle (and the hooks below
    them that it needs)."""

    def __init__(
        self,
        *,
        consumer: Any,
        handler: Handler,
        validators: Validators,
        strategy: CommitStrategy,
        policy: FailurePolicy,
        producer: Any,
        membership: Membership,
        health: ClusterHealth,
        control: Control,
        counters: Counters,
        max_records: int,
        poll_timeout: float,
        housekeeping: Callable[[float], None],
        meter: WorkerMeter | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ):
        self._consumer = consumer
        self._handler = handler
        self._validators = validators
        self._strategy = strategy
        self._policy = policy
        self._producer = producer
        self._membership = membership
        self._health = health
        self._control = control
        self._counters = counters
        self._max_records = max_records
        self._poll_timeout = poll_timeout
        self._housekeeping = housekeeping
        self._meter = meter
        self._clock = clock
        self._timed = meter.timed(handler, _message_of) if meter is not None else handler

    def describe(self) -> str:
        return ""

    def run(self) -> None:
        """Consume until stopped, then finish what is in flight (bounded)."""
        try:
            self._turns()
            self._finish_in_flight()
        finally:
            self._close()

    def _turns(self) -> None:
        monotonic = self._clock.monotonic
        control = self._control
        membership = self._membership
        strategy = self._strategy
        fetch, dispatch, settle = self._fetch, self._dispatch, self._settle
        next_status = 0.0
        while not control.requested:
            msgs = membership.take_carry() if membership.carry else fetch()
            if msgs:
                dispatch(msgs)
            settle(bool(msgs))
            now = monotonic()
            strategy.tick(now)
            if now >= next_status:
                next_status = now + STATUS_INTERVAL
                self._housekeeping(now)
                self._every_status(now)
            # Whatever paused the partitions to keep the group membership during a long wait (a retry's
            # backoff, emitted events settling before a commit, between batches too) is over: read again.
            if membership.paused and self._may_resume():
                membership.resume()

    # -- what a specialisation says -------------------------------------------------------------------------

    def _fetch(self) -> Any:
        """The next messages from consume() (possibly none)."""
        raise NotImplementedError

    def _dispatch(self, msgs: list[Any]) -> None:
        """Validate the messages' events and hand them to the handler."""
        raise NotImplementedError

    def _settle(self, fetched: bool) -> None:
        """Complete what finished since the last turn and hand what became committable to the strategy."""

    def _every_status(self, now: float) -> None:
        """Checks made about once a second, after the worker's housekeeping."""

    def _may_resume(self) -> bool:
        """Whether partitions paused for the membership may be read again now."""
        return True

    def _finish_in_flight(self) -> None:
        """Stopping: the events still in flight finish (bounded) before the worker's final commit."""

    def _close(self) -> None:
        """Release what the loop holds (the concurrent loop's executor)."""

    # -- the rebalance path (Rebalance calls these from inside consume()) --------------------------------------

    def on_assign(self, keys: Iterable[Partition]) -> None:
        """Partitions were assigned."""

    def before_revoke(self, keys: Iterable[Partition]) -> None:
        """Partitions are being revoked; the strategy's commit on revocation follows."""

    def on_lost(self, keys: Iterable[Partition]) -> None:
        """Partitions were lost: nothing of theirs is committed."""

    def metrics(self) -> dict[str, Any]:
        """The loop's own WorkerStatus fields (in_flight, queued, ...)."""
        return {}


def _message_of(ctx: HandlerContext) -> Any:
    return ctx._msg

"""Emit settling: the events handlers emitted are acknowledged before any later offset is committed."""

from __future__ import annotations

import logging
from typing import Any

from kpipe.runtime.protocol import WORKER_EXIT_CLUSTER
from kpipe.runtime.worker.control import Control
from kpipe.runtime.worker.membership import Membership

log = logging.getLogger("kpipe.runtime.worker")

# How long a commit waits for events a handler sent through a kpipe Producer.
EMIT_SETTLE_TIMEOUT = 30.0
# Waits are cut into slices this long so stop() and the group membership are served meanwhile.
WAIT_SLICE = 0.1


class EmitSettler:
    """Waits for the emitter's events (kpipe.runtime.handler.Emitter) before an offset is committed or stored:
    those sent through kpipe Producers, then those the group's own producer holds (None: it has none).

    When one is lost, `settle()` halts the worker and returns False: which message emitted the lost event is
    unknown, so no further offset may be committed.
    """

    def __init__(self, emitter: Any, producer: Any | None, membership: Membership, control: Control):
        self.emitter = emitter
        self._producer = producer
        self._membership = membership
        self._control = control
        # True while a settle waits for the group's producer: its keep-alive polls may serve a revocation, whose
        # commit settles inside this wait and must wait for the same events (taken already, so not marked).
        self._flushing = False

    def settle(self) -> bool:
        emitter = self.emitter
        in_flight = 0
        # A handler thread of the concurrent loop may emit meanwhile, for an event not yet finished whose offset
        # this commit does not cover: that emit stays marked for the next settle.
        taken = emitter.take_unsettled()
        if taken is not None or self._flushing:
            if taken is not None:
                emitter.settle_external(taken, EMIT_SETTLE_TIMEOUT)
            in_flight = self._flush()
            if in_flight:
                emitter.unsettled = True  # still not delivered: no later settle may pass over them
        if emitter.failures or in_flight:
            reason = "; ".join(emitter.failures[-3:]) or f"{in_flight} still in flight"
            control = self._control
            control.halt(WORKER_EXIT_CLUSTER, f"events emitted by the handler were not delivered: {reason}")
            log.error("%s; offsets after the last commit stay uncommitted", control.error)
            return False
        return True

    def _flush(self) -> int:
        """Wait for what the group's own producer holds (events emitted by topic name) until it is delivered,
        one fails, or the worker gives up; how many are still in flight."""
        producer = self._producer
        if producer is None:
            return 0
        flushing, self._flushing = self._flushing, True
        try:
            while len(producer) and not self.emitter.failures:
                producer.flush(WAIT_SLICE)
                self._membership.keep_alive()
                if self._control.gave_up():
                    break
        finally:
            self._flushing = flushing
        producer.poll(0)
        return len(producer)

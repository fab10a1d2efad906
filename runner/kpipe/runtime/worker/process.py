"""The worker process: start-up from a WorkerStart (compiled settings; no project file read), signals, status reports, and leaving when wedged.

worker_main(spec, status_queue) -> exit code      (the entry of a worker process the supervisor started)
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from kpipe.runtime import tracing
from kpipe.runtime.protocol import (
    WORKER_EXIT_CLUSTER,
    WORKER_EXIT_HALT,
    ModelSource,
    WorkerStart,
    WorkerStatus,
)
from kpipe.runtime.worker.core import EmitTargets, GroupWorker, Hooks, Limits, Outside

log = logging.getLogger("kpipe.runtime.worker")


def worker_main(start: WorkerStart, status_queue: Any = None) -> int:
    """Run one consumer-group instance in this worker process until SIGTERM/SIGINT; return its exit code."""
    from kpipe.errors import KpipeError
    from kpipe.logs import configure_logging

    configure_logging(start.log_format, context={"group": start.group, "instance": start.instance})
    status_put = status_sender(status_queue)
    try:
        worker = build_worker(
            start, hooks=Hooks(status=status_put, on_stuck=exit_stuck, exit_process=_exit_now),
            limits=Limits(shutdown=start.shutdown_timeout), metrics=start.metrics, state_dir=start.state_dir,
        )  # fmt: skip
    except KpipeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.error("cannot start consumer group '%s': %s", start.group, first)
        if status_put is not None:
            status_put(WorkerStatus(start.group, start.instance, os.getpid(), state="failed", error=first))
        return WORKER_EXIT_HALT

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
    code = worker.run()
    tracing.current().shutdown()  # tracing hook: spans exported before the process ends
    if worker.left_without_close:
        # Stopped mid-join: the consumer was deliberately not closed, and destroying it at interpreter exit
        # would close it (sending the LeaveGroup after all). Leave as a killed process would.
        _exit_now(code)
    return code


def build_worker(start: WorkerStart, **options: Any) -> GroupWorker:
    """Build the worker of a WorkerStart (options: GroupWorker's keywords, e.g. `outside`): its models are
    rebuilt from what the start carries and its handler imported; no project file is read. Raises KpipeError
    when a model or the handler cannot be rebuilt."""
    from kpipe.runtime.handler import load_handler

    settings = start.settings
    built = {source.name: rebuild_model(source, settings.import_paths) for source in start.models}
    models = {topic: (built[name] if name else None) for topic, name in settings.topic_schemas.items()}
    emit_models = {topic: (built[name] if name else None) for topic, name in start.emit_schemas}
    # Tracing hooks: on as the environment says (kpipe run put the files' block there), before the handler
    # module is imported (its own producers are traced too); dead letters and emits get send spans.
    traced = tracing.start(None, os.environ)
    if traced.on:
        outside = options.get("outside", Outside())
        options["outside"] = dataclasses.replace(outside, producer=traced.producer_factory(outside.producer))
    handler = traced.handler(load_handler(settings.handler, settings.import_paths), start.group)
    return GroupWorker(
        settings,
        models,
        handler,
        instance=start.instance,
        emit_targets=EmitTargets(dict(start.emit_key_fields), emit_models),
        **options,
    )


def rebuild_model(source: ModelSource, import_directories: tuple[str, ...]) -> type[BaseModel]:
    """A schema model as the supervisor compiled it: its JSON Schema compiled again, or its class imported."""
    from kpipe.errors import UsageError
    from kpipe.loading.code import import_paths
    from kpipe.schemas.schema_models import compile_schema, import_model

    if source.import_target is not None:
        with import_paths(import_directories):
            return import_model(source.import_target)
    assert source.document is not None
    model, problems = compile_schema(
        json.loads(source.document), name=source.name, file=f"schema '{source.name}'"
    )
    if model is None:
        raise UsageError(f"schema '{source.name}' did not compile: {problems[0] if problems else 'unknown'}")
    return model


def exit_stuck(reason: str) -> None:
    """The worker process is wedged in a librdkafka call: leave now so the supervisor restarts it (backoff).

    Exiting without closing the consumer commits nothing more, which keeps delivery at-least-once.
    """
    _exit_now(WORKER_EXIT_CLUSTER)


def _exit_now(code: int) -> None:
    """End the process at once (no interpreter teardown, no client destruction), logs and spans flushed."""
    with contextlib.suppress(Exception):
        tracing.current().flush()
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    os._exit(code)


def settle_heap() -> None:
    """Move everything start-up allocated (pydantic, Jinja2, the compiled project) out of the garbage
    collector's sight before consuming.

    The consume loop allocates enough to trigger full collections, and each one walked those ~37k long-lived
    objects: about 10 % of throughput on small events (benchmarks/RESULTS.md). Frozen objects are never
    collected, which is what start-up state of a worker process is anyway.
    """
    gc.collect()
    gc.freeze()


def status_sender(queue: Any) -> Callable[[WorkerStatus], None] | None:
    """A status callback that puts snapshots on the supervisor's queue without ever blocking."""
    if queue is None:
        return None

    def put(status: WorkerStatus) -> None:
        # Full or closed: a missed snapshot is replaced by the next one.
        with contextlib.suppress(Exception):
            queue.put_nowait(status)

    return put

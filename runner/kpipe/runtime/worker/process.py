"""The worker process: start-up from a WorkerSpec, signals, status reports, and leaving when wedged.

worker_main(spec, status_queue) -> exit code      (the supervisor's spawned-process entry)
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from kpipe.runtime import tracing
from kpipe.runtime.protocol import WORKER_EXIT_CLUSTER, WORKER_EXIT_HALT, WorkerSpec, WorkerStatus
from kpipe.runtime.worker.core import GroupWorker

log = logging.getLogger("kpipe.runtime.worker")


def worker_main(spec: WorkerSpec, status_queue: Any = None) -> int:
    """Run one consumer-group instance in this (spawned) process until SIGTERM/SIGINT; return its exit code."""
    from kpipe.errors import KpipeError
    from kpipe.logs import configure_logging

    configure_logging(spec.log_format, context={"group": spec.group, "instance": spec.instance})
    status_put = status_sender(status_queue)
    try:
        worker = build_worker(
            spec, status_callback=status_put, on_stuck=exit_stuck, metrics=spec.metrics,
            shutdown_timeout=spec.shutdown_timeout, state_dir=spec.state_dir, exit_process=_exit_now,
        )  # fmt: skip
    except KpipeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.error("cannot start consumer group '%s': %s", spec.group, first)
        if status_put is not None:
            status_put(WorkerStatus(spec.group, spec.instance, os.getpid(), state="failed", error=first))
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


def build_worker(spec: WorkerSpec, **options: Any) -> GroupWorker:
    """Load and compile the spec's project and build its group's worker (options: GroupWorker's keywords,
    e.g. client factories). The bootstrap override and -X settings are compiled in, as `kpipe explain` shows
    them. Raises KpipeError when the project, the handler or the broker address is unusable."""
    from confluent_kafka import Producer as KafkaProducer

    from kpipe.compilation.project import load_project
    from kpipe.errors import LocalBrokerError
    from kpipe.runtime.handler import load_handler

    project = load_project(
        list(spec.project_paths),
        variables=dict(spec.variables),
        values_files=list(spec.values_files),
        bootstrap_override=spec.bootstrap_override,
        consumer_overrides=dict(spec.extra_consumer_config),
        root=spec.project_root,
        embedded_broker=spec.embedded_broker,
    )
    if project.uses_local_broker:
        # `local` is resolved where the workers are started (kpipe run, kpipe dev), never in a worker.
        raise LocalBrokerError(
            "bootstrap servers are `local`, but the worker was not given the local broker's address"
        )
    settings = project.consumer_group(spec.group)
    # Tracing hooks: on as the environment says (kpipe run put the files' block there), before the handler
    # module is imported (its own producers are traced too).
    traced = tracing.start(None, os.environ)
    if traced.on:
        options["producer_factory"] = traced.producer_factory(options.get("producer_factory", KafkaProducer))
    models = {
        topic: (project.schema_model(name) if name else None)
        for topic, name in settings.topic_schemas.items()
    }
    handler = traced.handler(load_handler(settings.handler, settings.import_paths), spec.group)
    key_fields = {t.name: t.key_field for t in project.topic_settings()}
    emit_models = {topic: project.topic_model(topic) for topic in settings.emits}
    return GroupWorker(
        settings,
        models,
        handler,
        instance=spec.instance,
        emit_key_fields=key_fields,
        emit_models=emit_models,
        **options,
    )


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

"""The consumer worker: one consumer-group member, at least once, under the group's commit and error policy.

    GroupWorker(settings, models, handler, outside=Outside(consumer=..., producer=...)).run() -> exit code
    worker_main(start, status_queue) -> exit code           (the supervisor's spawned-process entry)

Only a message whose handler returned (or that was dead-lettered or skipped) is "processed", and only processed
offsets are ever committed, after the events its handler emitted were acknowledged. The parts:

    core.py            GroupWorker: its options grouped (Outside: client factories, executors, clock, rng;
                       Limits; Hooks; EmitTargets); run() builds the clients, then each part whole (_Engine)
    loop.py            the consume engine: ConsumeLoop runs the turns (fetch, dispatch, settle, commit hook) for
                       both of its thin specialisations
    sequential.py      SequentialLoop: concurrency 1 with a plain function; the per-message hot path
    concurrent.py      ConcurrentLoop (concurrency > 1 or async handlers): per-key order, commits of the finished
                       prefix (its pure parts: kpipe.runtime.concurrent)
    commit.py          CommitStrategy: AutoCommit, PerMessageCommit, BatchCommit (a new strategy is a new class)
    failures.py        FailurePolicy, the one failure policy: for a failed event and attempt, what follows, as an
                       Outcome: retry after a backoff (not for NOT_RETRYABLE errors), dead letter (shrunk to
                       fit), skip, stop; timeouts too
    sequential_failures.py  the policy's decisions carried out inline (the sequential loop)
    event_failures.py  the same decisions carried out on the concurrent loop's timers and completions, and sync
                       calls past their timeout abandoned
    membership.py      assigned partitions, whether a join is in flight; pause and poll during long waits to keep
                       the group membership
    rebalance.py       the rebalance callbacks (assigned, revoked, lost), one path for both loops (each loop's
                       on_assign/before_revoke/on_lost), and the join in flight
    shutdown.py        the final commit and closing the clients, at the end of run() or, when a handler hangs,
                       from the monitor thread; whichever comes first closes
    emits.py           waiting for emitted events before a commit
    cluster_health.py  client errors, and exiting for a restart when no broker answers (or no commit succeeds)
                       for too long, also while busy
    hangs.py           hung handlers: a call running too long is reported, and past on_error.timeout_ms the
                       worker leaves (HangWatch); an instance holding events it does not finish (StallWatch)
    monitor.py         the thread that notices a blocked librdkafka call and runs the checks above mid-batch
    control.py         stop/halt control and counters shared by the parts (and their part of a status report)
    process.py         the worker process: start-up from a WorkerStart (no project file read), signals, statuses

The consumer's librdkafka config is compiled (kpipe.compilation.compiler), per instance, and passed to the
consumer factory as it is, plus callbacks: what `kpipe explain` shows is what runs. All parts log to
"kpipe.runtime.worker". May import: compilation, runtime (client_protocols, handler, producer, protocol, serde), base
modules.
"""

from kpipe.runtime.worker.commit import (
    STRATEGIES,
    AutoCommit,
    BatchCommit,
    CommitStrategy,
    PerMessageCommit,
    commit_list,
)
from kpipe.runtime.worker.core import EmitTargets, GroupWorker, Hooks, Limits, Outside, is_concurrent
from kpipe.runtime.worker.failures import Outcome, backoff_delays, dead_letter_headers
from kpipe.runtime.worker.process import build_worker, settle_heap, worker_main

__all__ = [
    "STRATEGIES",
    "AutoCommit",
    "BatchCommit",
    "CommitStrategy",
    "EmitTargets",
    "GroupWorker",
    "Hooks",
    "Limits",
    "Outside",
    "Outcome",
    "PerMessageCommit",
    "backoff_delays",
    "build_worker",
    "commit_list",
    "dead_letter_headers",
    "is_concurrent",
    "settle_heap",
    "worker_main",
]

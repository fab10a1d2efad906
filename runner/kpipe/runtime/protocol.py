"""What passes between the supervisor and its worker processes: small, picklable, import-light.

The supervisor spawns one process per consumer-group instance with a WorkerSpec; the worker loads the project
itself (so nothing heavy is pickled), runs the group, reports WorkerStatus snapshots on a queue, and ends with
one of the exit codes below, which tell the supervisor whether a restart can help.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Worker process exit codes.
WORKER_EXIT_OK = 0  # stopped on request (SIGTERM/SIGINT), offsets committed
WORKER_EXIT_CRASH = 1  # unexpected error: restart with backoff
WORKER_EXIT_CLUSTER = (
    3  # broker unreachable for longer than the worker's bounded retries: restart with backoff
)
WORKER_EXIT_DEAD_LETTER = (
    4  # a dead letter could not be written even without its payload: restart with backoff
)
WORKER_EXIT_HUNG = (
    5  # a handler call outlived on_error.timeout_ms: restart (the hang is counted, see HangBook)
)
WORKER_EXIT_HALT = 78  # do not restart: invalid project, handler import failed, or on_error: stop was hit


@dataclass(frozen=True)
class WorkerSpec:
    project_paths: tuple[str, ...]
    group: str
    instance: int
    variables: tuple[tuple[str, str], ...] = ()
    values_files: tuple[str, ...] = ()
    bootstrap_override: str | None = None
    log_format: str = "text"  # "text" | "json"
    # Extra librdkafka consumer settings layered last (tests use it for fast group joins).
    extra_consumer_config: tuple[tuple[str, str], ...] = ()
    # Set by the supervisor: a directory for this run's shared worker state (hung-handler counts), and how
    # long a worker has between SIGTERM and SIGKILL.
    state_dir: str | None = None
    shutdown_timeout: float = 30.0
    # bootstrap_override is kpipe's embedded broker (`local`, resolved): compile its consumer defaults in.
    embedded_broker: bool = False


@dataclass(frozen=True)
class WorkerStatus:
    """A snapshot a worker sends about once a second (and on assignment, commit and exit)."""

    group: str
    instance: int
    pid: int
    handled: int = 0
    dead_lettered: int = 0
    skipped: int = 0
    committed: int = 0  # number of commits done
    last_commit_at: float | None = None  # time.time()
    assigned: tuple[tuple[str, int], ...] = field(default=())
    state: str = "starting"  # starting | running | stopping | stopped | failed
    error: str | None = None
    # A handler call running for long: "orders[0]@42 for 35 s" (the supervisor names it if it must kill).
    busy: str | None = None


def worker_specs(
    groups: Iterable[tuple[str, int]],
    *,
    project_paths: Iterable[str],
    variables: Mapping[str, str] | None = None,
    values_files: Iterable[str] = (),
    bootstrap_override: str | None = None,
    log_format: str = "text",
    extra_consumer_config: Iterable[tuple[str, str]] = (),
    embedded_broker: bool = False,
) -> list[WorkerSpec]:
    """One WorkerSpec per instance of each (group id, instances) pair, all loading the same project."""
    common = {
        "project_paths": tuple(str(p) for p in project_paths),
        "variables": tuple((variables or {}).items()),
        "values_files": tuple(str(v) for v in values_files),
        "bootstrap_override": bootstrap_override,
        "log_format": log_format,
        "extra_consumer_config": tuple(extra_consumer_config),
        "embedded_broker": embedded_broker,
    }
    return [
        WorkerSpec(group=group, instance=i, **common) for group, instances in groups for i in range(instances)
    ]

"""The kpipe exception tree and the exit code each kind of failure maps to.

    KpipeError                      exit 1 unless a subclass says otherwise
    ├── PipelineInvalid             exit 1  the files are wrong; carries every Diagnostic
    ├── UsageError                  exit 2  the command line is wrong
    ├── ClusterError                exit 3  the broker said no, or could not be reached
    │   └── BrokerUnreachable       exit 3
    ├── EventInvalid                exit 1  an event does not match its schema, has no key, or cannot be encoded
    ├── HandlerError                exit 1  a consumer group's handler cannot be imported or called
    ├── UndeclaredEmit              exit 1  a handler emitted to a topic its group does not declare (`emits`)
    ├── SchemaModelImportError      exit 1  a schema named as `module:Class` cannot be imported
    ├── GitFailed                   exit 2  git refused a command (`validate --against`); callers reword it
    ├── UnsafePlanRefused           exit 4  the plan holds changes kpipe will not make unasked
    ├── LagExceeded                 exit 2  `status --max-lag`: a group is further behind than allowed
    └── LocalBrokerError            exit 3  the embedded broker could not be started

Library errors (confluent_kafka.KafkaException, pydantic.ValidationError, yaml errors) are translated into
this tree where they enter kpipe: the cluster boundary, the loader, the spec layer. Anything else that escapes is
an internal error and keeps its traceback. Every error type lives here; the one exception is a private signal
that never leaves its module (templating's `_EnvMissing`, turned into a diagnostic where it is raised).

Imports: nothing of kpipe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kpipe.diagnostics import Diagnostic

# Exit codes: README "Commands" says what each means. Two names may share a number (2): a code means one thing
# per command, and the name says which: EXIT_USAGE from any command, EXIT_CHANGES_PENDING only from
# `plan --detailed-exitcode`.
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it
EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_CLUSTER = 3
EXIT_UNSAFE = 4
# `plan --detailed-exitcode` borrows Terraform's convention: 2 means "changes pending".
EXIT_CHANGES_PENDING = 2
# `status --max-lag N`: a selected group's total lag is above N (for cron and CI alerts).
EXIT_LAG_EXCEEDED = 2


class KpipeError(Exception):
    """Base of every error kpipe reports to a user as one line, without a traceback."""

    exit_code: int = EXIT_INVALID


class PipelineInvalid(KpipeError):
    """The pipeline files do not load, parse or validate. Holds every diagnostic found, not just the first."""

    exit_code = EXIT_INVALID

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        errors = [d for d in diagnostics if d.is_error]
        first = errors[0].format() if errors else "invalid pipeline"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(first + more)


class UsageError(KpipeError):
    exit_code = EXIT_USAGE


class ClusterError(KpipeError):
    """The cluster refused or failed a request. `code` is the librdkafka/Kafka error code name when known."""

    exit_code = EXIT_CLUSTER

    def __init__(self, message: str, *, code: str | None = None, retriable: bool = False):
        super().__init__(message)
        self.code = code
        self.retriable = retriable


class BrokerUnreachable(ClusterError):
    """No broker answered within the connect timeout."""


class UnsafePlanRefused(KpipeError):
    exit_code = EXIT_UNSAFE


class LagExceeded(KpipeError):
    """`kpipe status --max-lag N`: at least one selected consumer group is more than N events behind."""

    exit_code = EXIT_LAG_EXCEEDED


class LocalBrokerError(KpipeError):
    """The embedded local broker is missing, could not start, or its port is taken."""

    exit_code = EXIT_CLUSTER


class EventInvalid(KpipeError):
    """An event handed to a producer does not match its schema, has no key, or cannot be serialised."""


class SchemaModelImportError(KpipeError):
    """A schema given as `package.module:ClassName` could not be imported or is not a pydantic model."""

    exit_code = EXIT_INVALID


class GitFailed(KpipeError):
    """git exited non-zero; the message is its stderr. Callers turn it into a UsageError that says what was meant."""

    exit_code = EXIT_USAGE


class HandlerError(KpipeError):
    """A consumer group's handler could not be imported or is not callable."""

    exit_code = EXIT_INVALID


class UndeclaredEmit(KpipeError):
    """A handler called ctx.emit with a topic its consumer group does not declare under `emits`."""

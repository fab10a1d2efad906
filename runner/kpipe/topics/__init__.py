"""Stage 5, topics: desired vs live state as a typed plan (`plan`), applying it (`apply`), and the cluster
boundary (`cluster`) — the only admin I/O, and the one place Kafka admin errors are translated.

May import: kpipe.compilation and everything below it.

Imports: kpipe.compilation, kpipe.check, kpipe.schemas, kpipe.model, kpipe.loading, kpipe.errors,
    kpipe.diagnostics, kpipe.logs, kpipe.redaction.
"""

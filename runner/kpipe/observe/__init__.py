"""Stage 9, observe: what operators look at while pipelines run. `status` (consumer groups' state, members and
lag, and whether declared topics match the cluster), `metrics` (the Prometheus collectors over the supervisor's
worker snapshots) and `health` (the HTTP server for /metrics, /healthz and /readyz).

May import: kpipe.local and everything below it.

Imports: kpipe.local, kpipe.runtime, kpipe.topics, kpipe.compilation, kpipe.check, kpipe.schemas, kpipe.model,
    kpipe.loading, kpipe.errors, kpipe.diagnostics, kpipe.logs, kpipe.redaction.
"""

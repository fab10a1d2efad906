"""Stage 9, observe: what operators look at while pipelines run. `status` (consumer groups' state, members and
lag, and whether declared topics match the cluster), `metrics` (the Prometheus collectors over the supervisor's
worker snapshots) and `health` (the HTTP server for /metrics, /healthz and /readyz).

May import: kpipe.local and everything below it.
"""

# The metrics port the Kubernetes export gives `kpipe run --metrics-port` and declares for scraping. Metrics are
# off unless a port is given (flag or the files' `metrics.port`).
DEFAULT_METRICS_PORT = 9464

"""Stage 6, runtime: consumer-group workers, their supervisor, the producer, handlers and serialisation, and
what a worker measures for metrics (`meter`).
The only stage (with topics.cluster and local) that imports confluent_kafka.

May import: kpipe.topics and everything below it.

Imports: kpipe.topics, kpipe.compilation, kpipe.check, kpipe.schemas, kpipe.model, kpipe.loading,
    kpipe.errors, kpipe.diagnostics, kpipe.logs, kpipe.redaction.
"""

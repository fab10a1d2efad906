"""Local development: the embedded Kafka-protocol broker (`broker`), how `local` resolves to it (`state`),
the sessions `kpipe broker` and `kpipe dev` run (`session`), and the dev loop's live table and supervision
(`devloop`). docs/broker.md says how the embedded broker differs from Apache Kafka.

May import: kpipe.runtime and everything below it.

Imports: kpipe.runtime, kpipe.topics, kpipe.compilation, kpipe.check, kpipe.schemas, kpipe.model,
    kpipe.loading, kpipe.errors, kpipe.diagnostics, kpipe.logs, kpipe.redaction.
"""

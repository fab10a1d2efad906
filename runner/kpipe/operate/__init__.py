"""Stage 8, operate: looking at and repairing the data on the cluster, for the commands an operator runs while
pipelines are live.

    positions   `--from` / `--to` / `--since` values (earliest, latest, OFFSET, DATETIME, -N) as small classes
    events      a record as people and tools see it: decoded, checked against its topic's schema, dead-letter
                headers read (`kpipe tail`)
    tail        stream a topic's events from a position, bounded in memory
    dlq         what a dead-letter topic holds: counts by error type and source, times, samples (`kpipe dlq`)
    replay      send dead letters back to their source topic, once (`kpipe dlq replay`)
    offsets     a consumer group's offset reset as a plan, refused while the group is active (`kpipe offsets`)

Kafka is reached only through the cluster boundary (kpipe.topics.cluster, kpipe.topics.group_offsets) and the
runtime's record clients (kpipe.runtime.records); what is decided here (positions, plans, selections) is pure
and unit-tested without a broker.

May import: kpipe.runtime, kpipe.topics and everything below them.

Imports: kpipe.runtime, kpipe.topics, kpipe.compilation, kpipe.check, kpipe.schemas, kpipe.model,
    kpipe.loading, kpipe.errors, kpipe.diagnostics, kpipe.logs, kpipe.redaction.
"""

"""Stage 4, compile: the checked spec becomes frozen, comparable objects — topic specs and the final
librdkafka config of every client (`compiled`, `compiler`) — gathered in a Project (`project`); `explain` shows
where every setting came from.

May import: kpipe.check and everything below it. No Kafka clients, no network.

Imports: kpipe.check, kpipe.schemas, kpipe.model, kpipe.loading, kpipe.errors, kpipe.diagnostics, kpipe.logs,
    kpipe.redaction.
"""

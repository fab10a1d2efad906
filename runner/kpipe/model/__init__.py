"""Stage 2, model: pydantic models of exactly what users write (`pipeline`), how pydantic errors become
positioned diagnostics (`messages`), the assembled project spec (`assemble`) and librdkafka's property table
(`librdkafka`). Pure: no I/O, no Kafka.

May import: kpipe.loading and the base modules (errors, diagnostics, logs).

Words: a "spec" is what the files say, validated but not yet compiled: the `*Spec` models of `pipeline`,
`Declared.spec` (one named object with its position) and `Declarations` (every file merged). What compile makes of
it lives in kpipe.compilation.compiled (`*Settings`, `ClientConfig`, and `TopicSettings`, the topic as apply sees
it); the runtime's `WorkerSpec` describes one worker process.

Imports: kpipe.loading, kpipe.errors, kpipe.diagnostics, kpipe.logs, kpipe.redaction.
"""

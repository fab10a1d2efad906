"""Stage 2, model: pydantic models of exactly what users write (`pipeline`), how pydantic errors become
positioned diagnostics (`messages`), the assembled project spec (`assemble`) and librdkafka's property table
(`librdkafka`). Pure: no I/O, no Kafka.

May import: kpipe.loading and the base modules (errors, diagnostics, logs).
"""

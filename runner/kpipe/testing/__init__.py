"""kpipe.testing: run a pipeline project's consumer groups in memory, with no broker, for tests.

    from kpipe.testing import run_pipeline

    with run_pipeline("pipelines/") as p:
        p.send("orders", {...})
        p.drain()
        p.topic("orders.dlq"), p.handled("order-processors"), p.dead_letters("orders.dlq"), p.committed(...)

The workers are those of `kpipe run` (compiled settings, failure policy, handler invocation, dead-letter writer),
given in-memory clients instead of librdkafka's: only the broker is replaced. `kpipe test` runs YAML test cases
on top of this (kpipe.testing.cases).

Imports: kpipe.service, kpipe.runtime, kpipe.topics, kpipe.compilation, kpipe.check, kpipe.schemas, kpipe.model,
    kpipe.loading, kpipe.errors, kpipe.diagnostics, kpipe.logs, kpipe.redaction.
"""

from kpipe.testing.engine import DrainTimeout
from kpipe.testing.harness import DeadLetter, PipelineRun, TopicRecord, run_pipeline

__all__ = ["DeadLetter", "DrainTimeout", "PipelineRun", "TopicRecord", "run_pipeline"]

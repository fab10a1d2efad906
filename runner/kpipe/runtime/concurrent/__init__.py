"""Concurrent processing of one consumer-group member: handlers run in parallel, order holds per key.

    offset_tracker.OffsetTracker  per partition, the committable offset: the lowest offset not yet finished
    scheduler.KeyScheduler    which buffered events may start now (one at a time per key / partition / none),
                              how many are in flight, and when to pause or resume fetching
    executor                  where handlers run: sync ones on a bounded thread pool, async ones on one
                              asyncio event loop thread

offset_tracker and scheduler are pure (no clients, no threads) and are driven from the worker's consumer thread only;
executor threads report back through one thread-safe queue. The loop that drives them is a part of the worker:
kpipe.runtime.worker.concurrent.

May import: kpipe.runtime.handler and everything below kpipe.runtime (no confluent_kafka here).
"""

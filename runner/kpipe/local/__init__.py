"""Local development: the embedded Kafka-protocol broker (`broker`), how `local` resolves to it (`state`),
and the `kpipe dev` loop (`devloop`).

May import: kpipe.runtime and everything below it.
"""

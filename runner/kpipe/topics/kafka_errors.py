"""Kafka errors as kpipe's: the one place a confluent_kafka KafkaError becomes a ClusterError or
BrokerUnreachable, chosen by `KafkaError.code()`, never by its text. Used by the admin and group clients of
the cluster boundary (kpipe.topics.cluster, kpipe.topics.group_reads)."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

from kpipe.errors import BrokerUnreachable, ClusterError

UNREACHABLE = {
    KafkaError._TRANSPORT,
    KafkaError._TIMED_OUT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._RESOLVE,
    KafkaError._DESTROY,
    KafkaError.REQUEST_TIMED_OUT,
}
ALREADY_EXISTS = {KafkaError.TOPIC_ALREADY_EXISTS}


def translate(
    error: KafkaError, context: str, bootstrap: str = "", timeout: float | None = None
) -> ClusterError:
    """A KafkaError as kpipe's exception, chosen by its code."""
    code = error.code()
    name = error.name()
    if code in UNREACHABLE:
        within = f" within {timeout:g} s" if timeout is not None else ""
        return BrokerUnreachable(
            f"cannot reach Kafka at {bootstrap}{within} ({context}: {name})", code=name, retriable=True
        )
    return ClusterError(f"{context}: {error.str()} ({name})", code=name, retriable=error.retriable())


def error_of(exc: BaseException) -> KafkaError | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None

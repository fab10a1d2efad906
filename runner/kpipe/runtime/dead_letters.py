"""Dead letters that always fit: smaller versions of a dead letter the broker refused as too large.

A dead letter carries the failed event as it was read. An event can be larger than what the dead-letter topic
accepts (the producer's message.max.bytes, the broker's message.max.bytes or the topic's max.message.bytes):
a 5 MB schema-invalid event is exactly the kind of event that ends up there. Refusing it would stop the group
and hold every event behind it, so the worker writes ever smaller versions until one is accepted:

    1. the event as read, with the source's own headers (dead_letter_headers)
    2. the payload cut to its first PREVIEW_BYTES bytes, the source's headers dropped
    3. no payload at all

Versions 2 and 3 say what was cut in headers: kpipe.payload (truncated | omitted), kpipe.payload.size and
kpipe.payload.sha256 of the original, kpipe.headers.dropped (how many of the source's headers were left out),
and, when the key was too long to keep, kpipe.key.size and kpipe.key.sha256. The source coordinates
(kpipe.source.topic/partition/offset), the group and the error always stay, so the original can be found and
re-read from the source topic while its retention lasts. Pure data: no client here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

H_PAYLOAD = "kpipe.payload"
H_PAYLOAD_SIZE = "kpipe.payload.size"
H_PAYLOAD_SHA256 = "kpipe.payload.sha256"
H_HEADERS_DROPPED = "kpipe.headers.dropped"
H_KEY_SIZE = "kpipe.key.size"
H_KEY_SHA256 = "kpipe.key.sha256"

# How much of a refused payload the truncated version keeps: enough to recognise the event.
PREVIEW_BYTES = 16 * 1024
# A longer key is replaced by its size and hash in the smaller versions.
MAX_KEY_BYTES = 1024

# librdkafka's error names for "too large", raised by produce() at once or reported on delivery.
TOO_LARGE = frozenset({"MSG_SIZE_TOO_LARGE", "RECORD_LIST_TOO_LARGE", "INVALID_MSG_SIZE"})

Headers = list[tuple[str, bytes]]


def smaller_dead_letters(
    value: bytes | None, key: bytes | None, headers: Sequence[tuple[str, Any]]
) -> Iterator[tuple[bytes | None, bytes | None, Headers]]:
    """The smaller versions (2 and 3 above) of a dead letter (value, key, headers) that was refused as too large."""
    payload = value or b""
    ours: Headers = [(k, _bytes(v)) for k, v in headers if k.startswith("kpipe.")]
    dropped = len(headers) - len(ours)
    facts: Headers = [
        (H_PAYLOAD_SIZE, str(len(payload)).encode()),
        (H_PAYLOAD_SHA256, hashlib.sha256(payload).hexdigest().encode()),
        (H_HEADERS_DROPPED, str(dropped).encode()),
    ]
    short_key = key
    if key is not None and len(key) > MAX_KEY_BYTES:
        short_key = None
        facts += [
            (H_KEY_SIZE, str(len(key)).encode()),
            (H_KEY_SHA256, hashlib.sha256(key).hexdigest().encode()),
        ]
    if len(payload) > PREVIEW_BYTES:
        yield payload[:PREVIEW_BYTES], short_key, [*ours, (H_PAYLOAD, b"truncated"), *facts]
    yield None, short_key, [*ours, (H_PAYLOAD, b"omitted"), *facts]


class DeadLetter:
    """One dead letter as it is to be sent (value, key, headers), made smaller by `shrink()` each time the
    broker or client refuses it as too large; `fit` says what was cut ("" | "truncated" | "omitted"), `about`
    and `why` what failed and why, for the log lines."""

    def __init__(
        self, value: bytes | None, key: bytes | None, headers: Headers, about: str = "", why: str = ""
    ):
        self.value, self.key, self.headers = value, key, headers
        self.about, self.why = about, why
        self.fit = ""
        self._smaller: Iterator[tuple[bytes | None, bytes | None, Headers]] | None = None

    def shrink(self, error_code: str) -> bool:
        """After a refusal with `error_code`: switch to the next smaller version; False when the refusal was not
        for size, or no smaller version is left."""
        if error_code not in TOO_LARGE:
            return False
        if self._smaller is None:
            self._smaller = smaller_dead_letters(self.value, self.key, self.headers)
        version = next(self._smaller, None)
        if version is None:
            return False
        self.value, self.key, self.headers = version
        self.fit = dict(self.headers)[H_PAYLOAD].decode()
        return True


def _bytes(value: Any) -> bytes:
    if value is None:
        return b""
    return value if isinstance(value, bytes) else str(value).encode()

"""Smaller dead letters for an event the dead-letter topic refused as too large."""

from __future__ import annotations

import hashlib

from kpipe.runtime.dead_letters import MAX_KEY_BYTES, PREVIEW_BYTES, smaller_dead_letters

SOURCE = [("trace-id", b"abc"), ("kpipe.source.topic", b"orders"), ("kpipe.source.offset", b"7")]


def test_a_large_payload_is_truncated_then_omitted_keeping_coordinates_and_hash() -> None:
    payload = b"x" * (5 * 1024 * 1024)
    versions = list(smaller_dead_letters(payload, b"k1", SOURCE))
    assert len(versions) == 2
    (value, key, headers), (last_value, last_key, last_headers) = versions
    assert value == payload[:PREVIEW_BYTES] and key == b"k1"
    facts = dict(headers)
    assert facts["kpipe.payload"] == b"truncated"
    assert facts["kpipe.payload.size"] == str(len(payload)).encode()
    assert facts["kpipe.payload.sha256"] == hashlib.sha256(payload).hexdigest().encode()
    assert facts["kpipe.headers.dropped"] == b"1"
    assert facts["kpipe.source.topic"] == b"orders" and facts["kpipe.source.offset"] == b"7"
    assert "trace-id" not in facts
    assert last_value is None and last_key == b"k1"
    assert dict(last_headers)["kpipe.payload"] == b"omitted"
    assert dict(last_headers)["kpipe.payload.sha256"] == facts["kpipe.payload.sha256"]


def test_a_small_payload_refused_for_its_headers_goes_straight_to_omitted() -> None:
    # The payload is small, so the source's headers made it too large: one version, headers dropped.
    huge_headers = [("big", b"h" * 2_000_000), *SOURCE]
    versions = list(smaller_dead_letters(b'{"id": 1}', None, huge_headers))
    assert [dict(h)["kpipe.payload"] for _, _, h in versions] == [b"omitted"]
    assert dict(versions[0][2])["kpipe.headers.dropped"] == b"2"


def test_a_long_key_is_replaced_by_its_size_and_hash() -> None:
    key = b"k" * (MAX_KEY_BYTES + 1)
    (_, short, headers), *_ = smaller_dead_letters(b"v" * (PREVIEW_BYTES + 1), key, SOURCE)
    assert short is None
    assert dict(headers)["kpipe.key.size"] == str(len(key)).encode()
    assert dict(headers)["kpipe.key.sha256"] == hashlib.sha256(key).hexdigest().encode()

"""Time-ordered UUIDs (version 7, RFC 9562).

UUIDv7 keys sort by creation time, which keeps B-tree inserts local on every backend and
makes keyset pagination by id follow creation order. The standard library gains ``uuid7``
only in Python 3.14; this is the RFC's layout with a monotonic counter in ``rand_a`` so that
ids made within one millisecond by this process still sort in creation order.
"""

from __future__ import annotations

import os
import threading
import time
from uuid import UUID

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def uuid7() -> UUID:
    """A new UUIDv7: 48-bit Unix milliseconds, 12-bit monotonic counter, 62 random bits."""
    global _last_ms, _counter
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms > _last_ms:
            _last_ms = now_ms
            _counter = int.from_bytes(os.urandom(2), "big") & 0x3FF  # leave room to count up
        else:
            _counter += 1
            if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                _last_ms += 1
                _counter = 0
        ms, counter = _last_ms, _counter
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
    return UUID(int=value)


__all__ = ["uuid7"]

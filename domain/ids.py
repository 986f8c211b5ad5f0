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
from uuid import UUID, SafeUUID

_lock = threading.Lock()
_last_ms = 0
_counter = 0


_UNKNOWN_SAFETY = SafeUUID.unknown  # enum member lookups are slow; ids are made by the thousand
_RAND_B = (1 << 62) - 1
_MS = (1 << 48) - 1


def _next_stamp() -> tuple[int, int]:
    """The next (millisecond, counter) pair; call with ``_lock`` held."""
    global _last_ms, _counter
    now_ms = time.time_ns() // 1_000_000
    if now_ms > _last_ms:
        _last_ms = now_ms
        _counter = int.from_bytes(os.urandom(2), "big") & 0x3FF  # leave room to count up
    else:
        _counter += 1
        if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
            _last_ms += 1
            _counter = 0
    return _last_ms, _counter


def _assemble(ms: int, counter: int, random_bits: int) -> UUID:
    # The value is in range by construction, so skip UUID.__init__'s parsing and checks
    # (it is most of the cost of making an id, and batches make thousands).
    value = UUID.__new__(UUID)
    object.__setattr__(
        value, "int", (ms & _MS) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | (random_bits & _RAND_B)
    )
    object.__setattr__(value, "is_safe", _UNKNOWN_SAFETY)
    return value


def uuid7() -> UUID:
    """A new UUIDv7: 48-bit Unix milliseconds, 12-bit monotonic counter, 62 random bits."""
    with _lock:
        ms, counter = _next_stamp()
    return _assemble(ms, counter, int.from_bytes(os.urandom(8), "big"))


def uuid7_many(n: int) -> list[UUID]:
    """``n`` new UUIDv7s in ascending order, with one lock and one read of the OS's randomness."""
    if n == 1:  # the common append of one message: no slicing or list of stamps
        return [uuid7()]
    randomness = os.urandom(8 * n)
    with _lock:
        stamps = [_next_stamp() for _ in range(n)]
    return [
        _assemble(ms, counter, int.from_bytes(randomness[8 * i : 8 * i + 8], "big"))
        for i, (ms, counter) in enumerate(stamps)
    ]


__all__ = ["uuid7", "uuid7_many"]

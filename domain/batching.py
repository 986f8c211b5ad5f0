"""Building large batches of objects without the cyclic garbage collector's overhead."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

PAUSE_GC_FROM = 64
"""Messages from which building a batch pauses the collector: a few messages allocate too
little to trigger a collection, and pausing and resuming costs more than building one
message does (issue 15)."""


_NO_PAUSE = nullcontext()


def paused_gc(count: int | None = None) -> AbstractContextManager[None]:
    """Pause the cyclic garbage collector while a batch of ``count`` messages is built
    (from :data:`PAUSE_GC_FROM` of them; always when ``count`` is not given).

    Validating and converting a thousand messages allocates tens of thousands of small
    containers, none of which form reference cycles; the collector then runs over and over
    and, measured, more than doubles the CPU per message (``benchmarks/``). Reference
    counting still frees everything; the collector resumes (if it was on) at the end of
    the block, which lasts milliseconds. Below the threshold a shared no-op context
    manager is returned: entering a generator-based one costs more than a message.
    """
    return _NO_PAUSE if count is not None and count < PAUSE_GC_FROM else _paused()


@contextmanager
def _paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()

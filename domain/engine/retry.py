"""Transactions that lost a race, run again.

A transaction fails with ``ConcurrencyError`` when a concurrent writer got there first (an
optimistic revision check, or a MongoDB write conflict at commit; some servers, such as the
wire-protocol server the tests use, fail a commit after *any* concurrent write). The whole
transaction is then run again, after a jittered, growing pause so that the writers that
collided do not collide again in step.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from qmcp_agents.domain.errors import ConcurrencyError

T = TypeVar("T")
ATTEMPTS = 12


async def retried(work: Callable[[], Awaitable[T]], attempts: int = ATTEMPTS) -> T:
    for attempt in range(attempts):
        try:
            return await work()
        except ConcurrencyError:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(random.uniform(0.0, min(0.25, 0.005 * 2**attempt)))
    raise AssertionError("unreachable")  # pragma: no cover


__all__ = ["retried"]

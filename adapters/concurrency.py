"""Transactions shared by concurrent tasks, and clean-ups that a cancellation cannot cut short.

**Frames.** ``store.transaction()`` is bound to a context variable, so tasks started inside
it (``asyncio.gather``, ``Engine.run``) inherit it. Each open transaction, and each nested
one, is a :class:`Frame` with a lock: a repository call takes the lock of the frame it runs
in, and a nested ``transaction()`` holds its parent frame's lock for its whole body. So the
tasks sharing a transaction take turns on its connection (an asyncpg or aiosqlite
connection serves one operation at a time), and a nested block that rolls back restores
only its own work: no sibling can write inside it meanwhile. A task that outlives its
transaction gets :class:`~qmcp_agents.domain.errors.TransactionClosed` instead of writing
outside it.

**Settling.** A cancelled ``await`` stops at once, but opening a connection, committing and
rolling back must finish, or a pooled connection is left checked out inside
``BEGIN IMMEDIATE`` and holds SQLite's write lock until a garbage collection. :func:`settle`
runs such a step to its end and delivers the cancellation afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from qmcp_agents.domain.errors import TransactionClosed

T = TypeVar("T")
C = TypeVar("C")


@dataclass(eq=False)
class Frame(Generic[C]):
    """One open transaction (or nested transaction) and the lock its users take turns on."""

    handle: C
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    open: bool = True

    def check_open(self) -> None:
        if not self.open:
            raise TransactionClosed(
                "this call was made from a task started inside a store.transaction() that has "
                "already ended; await such tasks before the transaction block exits"
            )


async def wait_out(task: asyncio.Future[T]) -> bool:
    """Wait until ``task`` is done, even if the caller is cancelled meanwhile.

    Returns whether the caller was cancelled (it must then raise ``CancelledError`` itself,
    after cleaning up).
    """
    interrupted = False
    while not task.done():
        try:
            await asyncio.wait((task,))
        except asyncio.CancelledError:
            interrupted = True
    return interrupted


async def settle(step: Awaitable[T]) -> T:
    """Run ``step`` to its end; a cancellation that arrives meanwhile is raised afterwards."""
    task = asyncio.ensure_future(step)
    interrupted = await wait_out(task)
    result = task.result()  # the step's own error comes first
    if interrupted:
        raise asyncio.CancelledError
    return result


__all__ = ["Frame", "settle", "wait_out"]

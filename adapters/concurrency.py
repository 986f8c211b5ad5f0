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
import contextvars
import functools
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, TypeVar

from qmcp_agents.domain.errors import TransactionClosed, TransactionRolledBack

T = TypeVar("T")
C = TypeVar("C")
P = ParamSpec("P")


@dataclass(eq=False)
class Frame(Generic[C]):
    """One open transaction (or nested transaction) and the lock its users take turns on."""

    handle: C
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    open: bool = True
    failed: bool = False  # a nested block failed (MongoDB: no savepoints, so the whole is doomed)
    spoiled: BaseException | None = None
    """A call without per-call protection (the body of a ``whole`` transaction, SQL: no
    savepoint) failed, maybe half-way: the transaction may only be rolled back."""

    def check_open(self) -> None:
        if not self.open:
            raise TransactionClosed(
                "this call was made from a task started inside a store.transaction() that has "
                "already ended; await such tasks before the transaction block exits"
            )
        self.check_unspoiled()

    def spoil(self, error: BaseException) -> None:
        """Mark the transaction as one that may only be rolled back, after a call without
        per-call protection failed in it (a cancellation too: it may have cut the call short)."""
        if self.spoiled is None:
            self.spoiled = error

    def check_unspoiled(self) -> None:
        """Refuse to go on (a call, or the commit) after an unprotected call failed."""
        if self.spoiled is not None:
            raise TransactionRolledBack(
                f"a store call failed inside a whole transaction ({type(self.spoiled).__name__}: "
                f"{self.spoiled}) and the block went on; it may have written half of its work, so "
                "the transaction is rolled back as a whole (let such errors leave a "
                "domain.transactions.whole block, or catch them under domain.transactions.guarded())"
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
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if task.done():  # the step itself was cancelled (or the caller, just as it ended)
            raise
    await wait_out(task)
    task.result()  # the step's own error comes first
    raise asyncio.CancelledError


_settling: contextvars.ContextVar[bool] = contextvars.ContextVar("qmcp-settling", default=False)


def in_settled_call() -> bool:
    """Whether the running task is a settled call's own task, which nobody cancels (its
    caller's cancellation waits for it): steps inside need no settling of their own."""
    return _settling.get()


def settled(method: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Make a repository call run to its end, the caller's cancellation delivered afterwards.

    A cancellation thrown into SQLAlchemy while a statement runs makes it drop the
    connection without closing the driver's (aiosqlite's) connection, which then holds
    SQLite's write lock until a garbage collection. So each SQL call is atomic with respect
    to cancellation: it commits or rolls back whole, then the caller sees ``CancelledError``.
    Calls made by a settled call run directly.
    """

    @functools.wraps(method)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        if _settling.get():
            return await method(*args, **kwargs)

        async def inner() -> T:
            _settling.set(True)  # in the task's own copy of the context
            return await method(*args, **kwargs)

        return await settle(inner())

    return run


_holding: contextvars.ContextVar[object | None] = contextvars.ContextVar("qmcp-holding", default=None)


def taking_turns(method: Callable[..., Awaitable[T]]) -> Callable[..., Coroutine[Any, Any, T]]:
    """Make a repository call take its turn on the open transaction's frame (the store's
    ``current_frame()``), for stores whose repositories take no lock of their own (MongoDB:
    two tasks using one session at once conflict with each other). A call made by a call
    that holds the turn runs directly."""

    @functools.wraps(method)
    async def run(self: Any, *args: Any, **kwargs: Any) -> T:
        frame = self._store.current_frame()
        if frame is None or _holding.get() is frame:
            return await method(self, *args, **kwargs)
        frame.check_open()
        async with frame.lock:
            token = _holding.set(frame)
            try:
                return await method(self, *args, **kwargs)
            finally:
                _holding.reset(token)

    return run


VERBS = (
    "add",
    "add_many",
    "restore_many",
    "get",
    "find",
    "get_by_name",
    "find_by_name",
    "update",
    "delete",
    "list",
    "count",
    "purge",
    "append",
    "last",
)
"""The public repository verbs (see ``domain/ports.py``)."""


def wrap_verbs(wrapper: Callable[[Any], Any], *repositories: type) -> None:
    """Replace each public verb of ``repositories`` by ``wrapper(verb)``."""
    for repository in repositories:
        for verb in VERBS:
            method = getattr(repository, verb, None)
            if method is not None:
                setattr(repository, verb, wrapper(method))


__all__ = ["VERBS", "Frame", "settle", "settled", "taking_turns", "wait_out", "wrap_verbs"]

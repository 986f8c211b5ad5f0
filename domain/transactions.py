"""Transactions whose body never goes on after a failed store call.

Inside ``store.transaction()`` a store keeps each call's failure from spoiling the rest of
the transaction (the SQL store runs every call in a savepoint), because a caller may catch
a refusal and go on writing. A body that never does so, where any error leaves the block
and undoes the whole transaction, needs none of that: :func:`whole` says so to the store,
which may then skip the per-call protection (two statements a call on SQL). The engine's
own transactions are such bodies; code they call that may catch and go on (capability
hooks) runs :func:`guarded`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator, Iterator

from .ports import Store

_WHOLE: contextvars.ContextVar[bool] = contextvars.ContextVar("qmcp-whole-transaction", default=False)


@contextlib.asynccontextmanager
async def whole(store: Store) -> AsyncIterator[None]:
    """``store.transaction()`` for a body in which every error leaves the block: the
    transaction is then undone as a whole, so no call needs undoing on its own."""
    async with store.transaction():
        token = _WHOLE.set(True)
        try:
            yield
        finally:
            _WHOLE.reset(token)


@contextlib.contextmanager
def guarded() -> Iterator[None]:
    """Inside a :func:`whole` transaction, code that may catch a store call's failure and
    go on (a capability hook): its calls get the store's per-call protection again."""
    token = _WHOLE.set(False)
    try:
        yield
    finally:
        _WHOLE.reset(token)


def undone_whole() -> bool:
    """Whether the running code is the body of a :func:`whole` transaction (for stores)."""
    return _WHOLE.get()


__all__ = ["guarded", "undone_whole", "whole"]

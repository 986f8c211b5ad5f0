"""``with store.transaction():`` in synchronous code.

The async store's ``transaction()`` is entered and exited by one task on the private loop
(the *owner*), which waits in between; the stores bind the open transaction to a context
variable, so the owner takes a snapshot of its context once inside. Every call made inside
the ``with`` block runs as a new task in a copy of that snapshot, exactly like a task an
async caller starts inside ``async with store.transaction()``: it belongs to the
transaction, takes its turn on the transaction's connection or session, and is refused
(``TransactionClosed``) if it comes after the transaction ended.

Which transaction a synchronous call belongs to is kept, on the caller's side, in a context
variable too: per thread in plain threaded code, per task when the caller is async code.
A nested ``with store.transaction():`` is owned by a task started in the outer one, as in
async code, so it is a savepoint where the backend has them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from qmcp_agents.domain.ports import Store

from .loop import Call, StoreClosedError

if TYPE_CHECKING:
    from .store import SyncStore

ExcInfo = tuple[type[BaseException] | None, BaseException | None, TracebackType | None]


@dataclass(eq=False)
class _Owned:
    """What the owner task shares with the caller's side."""

    entered: concurrent.futures.Future[None] = field(default_factory=concurrent.futures.Future)
    exit: asyncio.Future[ExcInfo] | None = None
    snapshot: contextvars.Context | None = None

    async def own(self, store: Store) -> bool:
        """The owner task: open the async transaction, wait for the block's end, close it."""
        manager = store.transaction()
        await manager.__aenter__()
        self.exit = asyncio.get_running_loop().create_future()
        self.snapshot = contextvars.copy_context()
        self.entered.set_result(None)
        try:
            exc_type, exc, tb = await self.exit
        except BaseException as error:  # cancelled: the store is closing, or the caller was interrupted
            if not await manager.__aexit__(type(error), error, error.__traceback__):
                raise
            return False
        return bool(await manager.__aexit__(exc_type, exc, tb))


class SyncTransaction:
    """One ``store.transaction()`` block of synchronous code (nested ones included).

    Use it with ``with``. Async code that drives the sync layer from its own tasks (the
    conformance adapter in the tests) calls :meth:`begin` and :meth:`end` off its loop
    (``asyncio.to_thread``) and holds :meth:`bound` in its own task around the block.
    """

    def __init__(self, store: SyncStore, parent: SyncTransaction | None) -> None:
        self._store = store
        self.parent = parent
        self._owner: Call[bool] | None = None
        self._state = _Owned()
        self._token: contextvars.Token[SyncTransaction | None] | None = None

    @property
    def begun(self) -> bool:
        return self._state.snapshot is not None

    def context(self) -> contextvars.Context:
        """A fresh copy of the transaction's context, for one call to run in."""
        assert self._state.snapshot is not None, "the transaction has not begun"
        return self._state.snapshot.copy()

    def begin(self) -> None:
        """Enter the async transaction on the private loop and wait until it is open."""
        if self._owner is not None:
            raise RuntimeError("a store.transaction() block can be entered only once")
        context = self.parent.context() if self.parent is not None else contextvars.copy_context()
        state, store = self._state, self._store.async_store
        # The owner task holds the state and the async store, never the SyncStore, so a
        # store dropped with a transaction open can still be collected (and closed).
        self._owner = self._store.runner.submit(lambda: state.own(store), context)
        waited: list[concurrent.futures.Future[Any]] = [state.entered, self._owner.future]
        try:
            concurrent.futures.wait(waited, return_when=concurrent.futures.FIRST_COMPLETED)
        except BaseException:  # interrupted while opening: never leave it open behind us
            self._owner.cancel()
            concurrent.futures.wait([self._owner.future])
            raise
        if not state.entered.done():
            self._owner.wait()  # the transaction could not be opened: its error
            raise AssertionError("the transaction's owner ended before it was open")  # pragma: no cover

    def end(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        """Leave the transaction (commit, or roll back on ``exc``); True if it swallowed ``exc``."""
        assert self._owner is not None, "the transaction has not begun"
        assert self._state.exit is not None, "the transaction has not begun"
        exit_future = self._state.exit

        def release() -> None:
            if not exit_future.done():
                exit_future.set_result((exc_type, exc, tb))

        runner = self._store.runner
        try:
            if runner.stopped:
                raise RuntimeError("closed")
            runner.loop.call_soon_threadsafe(release)
        except RuntimeError:  # closed inside the block: closing cancelled the owner, which rolled back
            if exc is not None:
                return False  # the block's own error says more
            raise StoreClosedError(
                "the store was closed inside this transaction block; its writes were rolled back"
            ) from None
        return self._owner.wait()

    @contextmanager
    def bound(self) -> Iterator[None]:
        """Make this the calling thread's (or task's) open transaction for the block."""
        token = self._store.current.set(self)
        try:
            yield
        finally:
            self._store.current.reset(token)

    def __enter__(self) -> None:
        self.begin()
        self._token = self._store.current.set(self)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        assert self._token is not None
        self._store.current.reset(self._token)
        return self.end(exc_type, exc, tb)


__all__ = ["SyncTransaction"]

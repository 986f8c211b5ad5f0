"""The synchronous store: the async store of any backend, driven on a private event loop.

    with open_store_sync("sqlite:///agents.db") as store:
        store.create_schema()
        with store.transaction():
            planner = store.agent_types.add(AgentType(name="planner", ...))
        page = store.executions.list(status=ExecutionStatus.RUNNING, limit=50)

Every method is the port's (``domain/ports.py``) without ``async``: same arguments, same
results, same errors, because each one runs the async store's own method. Nothing about
any backend is implemented twice (API.md §9).
"""

from __future__ import annotations

import contextvars
import itertools
import weakref
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

from qmcp_agents.adapters import open_store
from qmcp_agents.domain.ports import Capabilities, Store

from .loop import LoopThread
from .repositories import (
    SyncAgentInstanceRepository,
    SyncAgentTypeRepository,
    SyncExecutionRepository,
    SyncLeaseRepository,
    SyncMessageRepository,
    SyncResultRepository,
    SyncTopologyRepository,
)
from .transaction import SyncTransaction

T = TypeVar("T")
_numbers = itertools.count(1)


class SyncStore:
    """A :class:`~qmcp_agents.domain.ports.Store` for synchronous code.

    ``opener`` returns what yields the async store when entered (a store itself, or a
    context manager that prepares one); it is entered on the private loop when the sync
    store is made and exited by :meth:`close`. Use :func:`open_store_sync` for a URL.
    Safe to share between threads; each thread (or task) has its own open transaction.
    """

    def __init__(self, opener: Callable[[], AbstractAsyncContextManager[Store]]) -> None:
        number = next(_numbers)
        self.runner = LoopThread(f"qmcp-sync-store-{number}")
        self.current: contextvars.ContextVar[SyncTransaction | None] = contextvars.ContextVar(
            f"qmcp-sync-transaction-{number}", default=None
        )
        held = self._held = _Held(self.runner)

        async def enter() -> Store:
            held.manager = opener()
            return await held.manager.__aenter__()

        try:
            self._store = self.runner.run(enter, contextvars.Context())
        except BaseException:
            self.runner.stop()
            raise
        # Dropped without close() (a notebook cell run again): close it all the same.
        self._finalizer = weakref.finalize(self, self.runner.abandon, held.leave)
        self._agent_types = SyncAgentTypeRepository(self)
        self._topologies = SyncTopologyRepository(self)
        self._agent_instances = SyncAgentInstanceRepository(self)
        self._executions = SyncExecutionRepository(self)
        self._messages = SyncMessageRepository(self)
        self._results = SyncResultRepository(self)
        self._leases = SyncLeaseRepository(self)

    @property
    def async_store(self) -> Store:
        """The async store underneath; use it only from coroutines running on this store's
        own loop (agents and hooks of the engine), never from another event loop."""
        return self._store

    def run(self, work: Callable[[Store], Awaitable[T]]) -> T:
        """Run ``work(async_store)`` on the store's loop and return its result: the way to
        use any async helper of the library (``copy_store``, ``all_pages``, ...) from
        synchronous code. Inside ``with store.transaction():`` it belongs to the transaction."""
        transaction = self.current.get()
        context = transaction.context() if transaction is not None else contextvars.copy_context()
        store = self._store
        return self.runner.run(lambda: work(store), context)

    @property
    def agent_types(self) -> SyncAgentTypeRepository:
        return self._agent_types

    @property
    def topologies(self) -> SyncTopologyRepository:
        return self._topologies

    @property
    def agent_instances(self) -> SyncAgentInstanceRepository:
        return self._agent_instances

    @property
    def executions(self) -> SyncExecutionRepository:
        return self._executions

    @property
    def messages(self) -> SyncMessageRepository:
        return self._messages

    @property
    def results(self) -> SyncResultRepository:
        return self._results

    @property
    def leases(self) -> SyncLeaseRepository:
        return self._leases

    @property
    def capabilities(self) -> Capabilities:
        return self._store.capabilities

    def transaction(self) -> SyncTransaction:
        """All-or-nothing unit of work over every repository (see ``capabilities``);
        ``with store.transaction():``. Nested blocks are savepoints where the backend has them."""
        return SyncTransaction(self, self.current.get())

    def create_schema(self) -> None:
        """Create (or migrate to the current version) everything the store needs. Idempotent."""
        self.run(lambda store: store.create_schema())

    def drop_schema(self) -> None:
        """Remove this library's tables or collections, and nothing else."""
        self.run(lambda store: store.drop_schema())

    def close(self) -> None:
        """Close the async store (leaving it as its ``async with`` would), then stop the
        loop and join its thread. Idempotent."""
        self._exit(None, None, None)

    def _exit(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._finalizer.alive:
            return
        self.runner.check_caller()
        self._finalizer.detach()
        held = self._held
        try:
            self.runner.run(lambda: held.leave(exc_type, exc, tb), contextvars.Context())
        finally:
            self.runner.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit(exc_type, exc, tb)


@dataclass(eq=False)
class _Held:
    """What closing needs, apart from the store object (so a finalizer can hold it)."""

    runner: LoopThread
    manager: AbstractAsyncContextManager[Store] | None = None

    async def leave(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        """Roll back what is left open, then leave the async store as ``async with`` would."""
        await self.runner.cancel_calls()
        if self.manager is not None:
            await self.manager.__aexit__(exc_type, exc, tb)


def open_store_sync(url: str, **options: Any) -> SyncStore:
    """A synchronous store for ``url`` (the URLs of :func:`qmcp_agents.adapters.open_store`);
    use it as ``with open_store_sync(url) as store`` or call ``close()``. It is connected
    (the async store entered) before this returns, so a bad URL fails here."""
    return SyncStore(lambda: open_store(url, **options))


__all__ = ["SyncStore", "open_store_sync"]

"""The async Store port over a :class:`SyncStore`, so that the conformance suite runs,
unchanged, through every synchronous verb and ``with store.transaction():``.

Each call is made from a worker thread in a copy of the calling task's context (so a task
inside the adapter's ``transaction()`` makes its sync calls inside the sync transaction),
and runs to its end even if the task is cancelled meanwhile, the cancellation delivered
afterwards -- as a cancelled thread would see it: a sync call cannot be cut short.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, Self, TypeVar, cast

from qmcp_agents.adapters.concurrency import settle
from qmcp_agents.domain.ports import (
    AgentInstanceRepository,
    AgentTypeRepository,
    Capabilities,
    ExecutionRepository,
    LeaseRepository,
    MessageRepository,
    ResultRepository,
    Store,
    TopologyRepository,
)
from qmcp_agents.sync import SyncStore

T = TypeVar("T")

# Enough threads that tasks waiting on a transaction's lock never starve the task holding it.
_THREADS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="async-over-sync")

#: Every sync verb the adapter called, as ``repository.verb`` (checked after the suite).
CALLED: set[str] = set()


async def in_thread(call: Callable[[], T]) -> T:
    context = contextvars.copy_context()
    return await settle(asyncio.get_running_loop().run_in_executor(_THREADS, context.run, call))


class _Verbs:
    """A repository whose every verb is the sync repository's, called from a thread."""

    def __init__(self, name: str, sync_repository: object) -> None:
        self._name = name
        self._sync = sync_repository

    def __getattr__(self, verb: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._sync, verb)
        CALLED.add(f"{self._name}.{verb}")

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await in_thread(functools.partial(method, *args, **kwargs))

        return call


class AsyncOverSync:
    """A :class:`~qmcp_agents.domain.ports.Store` whose every call goes through ``sync``."""

    def __init__(self, sync: SyncStore) -> None:
        self.sync = sync
        self.agent_types = cast(AgentTypeRepository, _Verbs("agent_types", sync.agent_types))
        self.topologies = cast(TopologyRepository, _Verbs("topologies", sync.topologies))
        self.agent_instances = cast(AgentInstanceRepository, _Verbs("agent_instances", sync.agent_instances))
        self.executions = cast(ExecutionRepository, _Verbs("executions", sync.executions))
        self.messages = cast(MessageRepository, _Verbs("messages", sync.messages))
        self.results = cast(ResultRepository, _Verbs("results", sync.results))
        self.leases = cast(LeaseRepository, _Verbs("leases", sync.leases))

    @property
    def capabilities(self) -> Capabilities:
        return self.sync.capabilities

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        transaction = self.sync.transaction()  # nested in the task's open one, if any
        try:
            await in_thread(transaction.begin)
        except asyncio.CancelledError as cancelled:
            if transaction.begun:  # opened after all: close it before the cancellation goes on
                await in_thread(functools.partial(transaction.end, type(cancelled), cancelled, None))
            raise
        CALLED.add("store.transaction")
        try:
            with transaction.bound():
                yield
        except BaseException as error:
            end = functools.partial(transaction.end, type(error), error, error.__traceback__)
            if not await in_thread(end):
                raise
        else:
            await in_thread(functools.partial(transaction.end, None, None, None))

    async def create_schema(self) -> None:
        await in_thread(self.sync.create_schema)

    async def drop_schema(self) -> None:
        CALLED.add("store.drop_schema")
        await in_thread(self.sync.drop_schema)

    async def close(self) -> None:
        await in_thread(self.sync.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


@asynccontextmanager
async def through_sync(opener: Callable[[], AbstractAsyncContextManager[Store]]) -> AsyncIterator[Store]:
    """The store ``opener`` yields, opened by a :class:`SyncStore` on its own loop and seen
    through the adapter; closed (loop and thread included) afterwards."""
    sync = await asyncio.to_thread(SyncStore, opener)
    try:
        yield AsyncOverSync(sync)
    finally:
        await asyncio.to_thread(sync.close)


__all__ = ["CALLED", "AsyncOverSync", "in_thread", "through_sync"]

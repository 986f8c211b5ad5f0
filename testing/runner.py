"""Run store coroutines from synchronous code (Hypothesis drives tests synchronously).

Each call gets a private event loop in the calling thread; the async tests hand the work
to a worker thread so the test's own loop is never re-entered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

from qmcp_agents.domain.ports import Store

T = TypeVar("T")
StoreFactory = Callable[[], AbstractAsyncContextManager[Store]]


class StoreSession:
    """A store opened on a private event loop; ``run(coro)`` drives one coroutine."""

    def __init__(self, make_store: StoreFactory) -> None:
        self.loop = asyncio.new_event_loop()
        self._context = make_store()
        self.store: Store = self.loop.run_until_complete(self._context.__aenter__())

    def run(self, awaitable: Awaitable[T]) -> T:
        return self.loop.run_until_complete(awaitable)

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self._context.__aexit__(None, None, None))
        finally:
            self.loop.close()


def with_store_session(make_store: StoreFactory, body: Callable[[StoreSession], None]) -> None:
    session = StoreSession(make_store)
    try:
        body(session)
    finally:
        session.close()

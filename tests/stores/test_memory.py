"""The conformance suite on the in-memory store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from qmcp_agents.adapters import open_store
from qmcp_agents.domain.ports import Store
from qmcp_agents.testing import StoreConformance


class TestMemoryStore(StoreConformance):
    hypothesis_examples = 100

    @asynccontextmanager
    async def make_store(self) -> AsyncIterator[Store]:
        async with open_store("memory://") as store:
            await store.create_schema()
            yield store

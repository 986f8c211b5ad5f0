"""The conformance suite on MongoDB over a real wire connection, with PyMongo's async
client and again with a Motor client."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient

from qmcp_agents.adapters import open_store
from qmcp_agents.adapters.mongo import MongoStore
from qmcp_agents.domain.ports import Store
from qmcp_agents.testing import StoreConformance

from .servers import MONGODB_URL, prepared_mongo, with_database


class TestMongoStore(StoreConformance):
    # The test server inserts a few hundred documents a second; keep the property and
    # stateful tests meaningful but bounded.
    hypothesis_examples = 15

    @asynccontextmanager
    async def make_store(self) -> AsyncIterator[Store]:
        url = with_database(MONGODB_URL, f"qmcp_test_{uuid.uuid4().hex[:10]}")
        store = open_store(url, server_selection_timeout_ms=5000)
        assert isinstance(store, MongoStore)
        async with prepared_mongo(store) as prepared:
            yield prepared


class TestMotorStore(StoreConformance):
    hypothesis_examples = 10

    @asynccontextmanager
    async def make_store(self) -> AsyncIterator[Store]:
        client: AsyncIOMotorClient[dict[str, Any]]
        client = AsyncIOMotorClient(MONGODB_URL, serverSelectionTimeoutMS=5000)
        database = client[f"qmcp_test_{uuid.uuid4().hex[:10]}"]
        try:
            async with prepared_mongo(MongoStore.from_database(database)) as prepared:
                yield prepared
        finally:
            client.close()

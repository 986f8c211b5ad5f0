"""The conformance suite, unchanged, through the synchronous API on every backend.

Each test's store is a :class:`SyncStore` (its async store on a private loop and thread)
seen through :class:`~.adapter.AsyncOverSync`, which makes every repository call and every
``transaction()`` a synchronous one, from a thread.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from qmcp_agents.adapters import open_store
from qmcp_agents.adapters.mongo import MongoStore
from qmcp_agents.domain.ports import Store
from qmcp_agents.testing import StoreConformance
from tests.stores.servers import MONGODB_URL, postgres_store, prepared_mongo, with_database

from .adapter import through_sync


@asynccontextmanager
async def _with_schema(url: str) -> AsyncIterator[Store]:
    async with open_store(url) as store:
        await store.create_schema()
        yield store


class TestSyncMemoryStore(StoreConformance):
    hypothesis_examples = 30

    def make_store(self) -> AbstractAsyncContextManager[Store]:
        return through_sync(lambda: _with_schema("memory://"))


class TestSyncSqliteStore(StoreConformance):
    hypothesis_examples = 10

    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path: Path) -> None:
        self.folder = tmp_path

    def make_store(self) -> AbstractAsyncContextManager[Store]:
        path = self.folder / f"store-{uuid.uuid4().hex}.db"
        return through_sync(lambda: _with_schema(f"sqlite:///{path}"))


class TestSyncPostgresStore(StoreConformance):
    hypothesis_examples = 8

    def make_store(self) -> AbstractAsyncContextManager[Store]:
        return through_sync(postgres_store)


def _mongo() -> AbstractAsyncContextManager[Store]:
    url = with_database(MONGODB_URL, f"qmcp_test_{uuid.uuid4().hex[:10]}")
    store = open_store(url, server_selection_timeout_ms=5000)
    assert isinstance(store, MongoStore)
    return prepared_mongo(store)


class TestSyncMongoStore(StoreConformance):
    hypothesis_examples = 8

    def make_store(self) -> AbstractAsyncContextManager[Store]:
        return through_sync(_mongo)

"""The conformance suite on SQLite (file and memory) and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from qmcp_agents.adapters import open_store
from qmcp_agents.adapters.sql import SqlStore
from qmcp_agents.adapters.sql.schema import ALL_TABLES
from qmcp_agents.domain.ports import Store
from qmcp_agents.testing import StoreConformance

from .servers import postgres_store


async def empty_tables(store: SqlStore) -> None:
    async with store.engine.begin() as conn:
        for table in reversed(ALL_TABLES):
            await conn.execute(table.delete())


class TestSqliteFileStore(StoreConformance):
    hypothesis_examples = 25

    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path: Path) -> None:
        self.folder = tmp_path

    @asynccontextmanager
    async def make_store(self) -> AsyncIterator[Store]:
        path = self.folder / f"store-{uuid.uuid4().hex}.db"
        async with open_store(f"sqlite:///{path}") as store:
            await store.create_schema()
            yield store


class TestSqliteMemoryStore(StoreConformance):
    hypothesis_examples = 25

    @asynccontextmanager
    async def make_store(self) -> AsyncIterator[Store]:
        async with open_store("sqlite://") as store:
            await store.create_schema()
            yield store


class TestPostgresStore(StoreConformance):
    hypothesis_examples = 20

    def make_store(self) -> AbstractAsyncContextManager[Store]:
        """A schema of its own for every store, dropped afterwards."""
        return postgres_store()

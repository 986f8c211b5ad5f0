"""The conformance suite, unchanged, through the synchronous API on every backend.

Each test's store is a :class:`SyncStore` (its async store on a private loop and thread)
seen through :class:`~.adapter.AsyncOverSync`, which makes every repository call and every
``transaction()`` a synchronous one, from a thread.

The whole suite runs through it on the in-memory store. On SQLite, PostgreSQL and MongoDB
it runs the parts where the sync layer meets the backend's own connection, session or
transaction handling (:class:`SyncBridging`: transactions, their cancellation and
refusals, concurrent appends, recorded calls, fenced updates, leases); every other
behaviour of those backends is the async suite's, run on each of them in tests/stores,
and a sync verb is the same few lines whichever store is behind it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from qmcp_agents.adapters import open_store
from qmcp_agents.adapters.mongo import MongoStore
from qmcp_agents.domain.ports import Store
from qmcp_agents.testing import StoreConformance
from qmcp_agents.testing.conformance_appends import AppendConformance
from qmcp_agents.testing.conformance_fenced import FencedConformance
from qmcp_agents.testing.conformance_record import RecordConformance
from qmcp_agents.testing.conformance_whole import WholeConformance
from qmcp_agents.testing.lease_conformance import LeaseConformance
from tests.stores.servers import MONGODB_URL, postgres_store, prepared_mongo, with_database

from .adapter import through_sync


@asynccontextmanager
async def _with_schema(url: str) -> AsyncIterator[Store]:
    async with open_store(url) as store:
        await store.create_schema()
        yield store


class SyncBridging(StoreConformance):
    """The parts of the suite where the sync layer meets a backend (see the module): the
    tests of the transaction, append, record, fenced-update and lease parts, and every
    other test about transactions, concurrency or cancellation."""

    hypothesis_examples = 8


BRIDGING_PARTS = (WholeConformance, AppendConformance, RecordConformance, FencedConformance, LeaseConformance)
BRIDGING_NAMES = re.compile(r"transaction|concurren|cancel|gather|nested|commit|roll")
for _name in dir(StoreConformance):
    if (
        _name.startswith("test_")
        and not any(_name in vars(part) for part in BRIDGING_PARTS)
        and not BRIDGING_NAMES.search(_name)
    ):
        setattr(SyncBridging, _name, None)  # not collected: run through sync on memory only


class TestSyncMemoryStore(StoreConformance):
    hypothesis_examples = 30

    def make_store(self) -> AbstractAsyncContextManager[Store]:
        return through_sync(lambda: _with_schema("memory://"))


class TestSyncSqliteStore(SyncBridging):
    hypothesis_examples = 10

    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path: Path) -> None:
        self.folder = tmp_path

    def make_store(self) -> AbstractAsyncContextManager[Store]:
        path = self.folder / f"store-{uuid.uuid4().hex}.db"
        return through_sync(lambda: _with_schema(f"sqlite:///{path}"))


class TestSyncPostgresStore(SyncBridging):
    hypothesis_examples = 8

    def make_store(self) -> AbstractAsyncContextManager[Store]:
        return through_sync(postgres_store)


def _mongo() -> AbstractAsyncContextManager[Store]:
    url = with_database(MONGODB_URL, f"qmcp_test_{uuid.uuid4().hex[:10]}")
    store = open_store(url, server_selection_timeout_ms=5000)
    assert isinstance(store, MongoStore)
    return prepared_mongo(store)


class TestSyncMongoStore(SyncBridging):
    hypothesis_examples = 8

    def make_store(self) -> AbstractAsyncContextManager[Store]:
        return through_sync(_mongo)

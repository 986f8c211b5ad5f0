"""Where the backend servers for the tests are, and what to do when one is missing.

Under ``CI=true`` a backend that cannot be reached fails the run; elsewhere its tests are
skipped with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import text

from qmcp_agents.adapters import open_store
from qmcp_agents.adapters.mongo import MongoStore
from qmcp_agents.adapters.sql import SqlStore
from qmcp_agents.domain import StoreUnavailable
from qmcp_agents.domain.ports import Store

POSTGRES_URL = os.environ.get("QMCP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MONGODB_URL = os.environ.get("QMCP_TEST_MONGODB_URL", "mongodb://127.0.0.1:27017/?directConnection=true")
IN_CI = os.environ.get("CI") == "true"


def unavailable(backend: str, error: BaseException) -> None:
    message = f"{backend} is unreachable for the tests: {error!r}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: a missing backend is a failure)", pytrace=False)
    pytest.skip(message)


def unique_schema() -> str:
    """A PostgreSQL schema of its own for one test run, so runs never see each other's data."""
    return f"qmcp_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def postgres_store(**options: Any) -> AsyncIterator[SqlStore]:
    """A PostgreSQL store in a schema of its own, dropped afterwards."""
    store = SqlStore(POSTGRES_URL, schema=unique_schema(), **options)
    try:
        await store.create_schema()
    except StoreUnavailable as error:
        await store.close()
        unavailable("PostgreSQL", error)
    try:
        yield store
    finally:
        async with store.engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{store.schema}" CASCADE'))
        await store.close()


@asynccontextmanager
async def sql_store(kind: str, folder: Path, **options: Any) -> AsyncIterator[SqlStore]:
    """A store of ``kind`` ("sqlite": a file in ``folder``; "postgresql": a schema of its
    own, dropped afterwards), its schema made; ``options`` go to :class:`SqlStore`."""
    if kind == "postgresql":
        async with postgres_store(**options) as store:
            yield store
        return
    store = SqlStore(f"sqlite:///{folder / 'store.db'}", **options)
    try:
        await store.create_schema()
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def prepared_mongo(store: MongoStore) -> AsyncIterator[MongoStore]:
    """``store`` connected and its schema made (an unreachable server fails under CI), its
    database dropped afterwards."""
    try:
        await store.connect()
        await store.create_schema()
    except StoreUnavailable as error:
        await store.close()
        unavailable("MongoDB", error)
    try:
        yield store
    finally:
        await store.drop_schema()
        await store.close()


@asynccontextmanager
async def mongo_store(database: str | None = None, *, standalone: bool = False) -> AsyncIterator[MongoStore]:
    """A MongoDB store in a database of its own (``database``, or a new name), dropped
    afterwards; ``standalone`` makes it act as on a server without transactions."""
    store = MongoStore.from_url(with_database(MONGODB_URL, database or f"qmcp_test_{uuid.uuid4().hex[:10]}"))
    async with prepared_mongo(store) as prepared:
        if standalone:  # the test server has transactions; a standalone server's probe finds none
            prepared._transactions = False
        yield prepared


def with_database(url: str, database: str) -> str:
    """``url`` with its path (the database name) replaced by ``database``."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


@asynccontextmanager
async def backend_store(kind: str, folder: Path) -> AsyncIterator[Store]:
    """A fresh store with its schema: ``memory``, ``sqlite`` (a file in ``folder``) or
    ``postgresql`` (a schema of its own) -- for tests that run on several backends."""
    if kind == "postgresql":
        async with postgres_store() as postgres:
            yield postgres
        return
    url = "memory://" if kind == "memory" else f"sqlite:///{folder / 'store.db'}"
    async with open_store(url) as opened:
        await opened.create_schema()
        yield opened

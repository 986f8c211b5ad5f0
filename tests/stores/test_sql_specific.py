"""What only the SQL adapter has: migrations, faults, several processes, driver choice."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, event, text
from sqlalchemy.pool import Pool

from qmcp_agents.adapters import open_store
from qmcp_agents.adapters.sql import SqlStore
from qmcp_agents.adapters.sql.errors import connection_lost, translate
from qmcp_agents.adapters.sql.migrate import current_revision
from qmcp_agents.adapters.sql.schema import VERSION_TABLE, metadata
from qmcp_agents.adapters.sql.schema import leases as leases_table
from qmcp_agents.adapters.sql.store import async_url
from qmcp_agents.domain import StoreUnavailable, TransactionRolledBack
from qmcp_agents.testing.builders import World, agent_type, message
from qmcp_agents.testing.inspect import dump_store

from .servers import POSTGRES_URL, postgres_store, sql_store, unavailable, unique_schema

pytestmark = pytest.mark.asyncio
ROOT = Path(__file__).resolve().parents[2]
KILL = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :a"


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    async with sql_store(request.param, tmp_path) as opened:
        yield opened


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(
        connection, opts={"version_table": VERSION_TABLE, "compare_type": True}
    )
    return list(compare_metadata(context, metadata))


async def test_migrated_database_matches_the_metadata(store: SqlStore) -> None:
    async with store.engine.connect() as conn:
        assert await conn.run_sync(_differences) == []
        assert await conn.run_sync(current_revision) == "0003"


async def test_only_messages_with_a_recipient_are_in_the_recipient_index(store: SqlStore) -> None:
    """Migration 0003: a broadcast (no recipient) costs no entry in the recipient index; the
    comparison with the metadata above does not look at an index's WHERE."""
    if store.dialect == "sqlite":
        query = text("SELECT sql FROM sqlite_master WHERE name = 'ix_qmcp_messages_recipient_id'")
    else:
        query = text(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_qmcp_messages_recipient_id' "
            f"AND schemaname = '{store.schema}'"
        )
    async with store.engine.connect() as conn:
        definition = (await conn.execute(query)).scalar_one()
    assert "WHERE (recipient_id IS NOT NULL)" in definition or "WHERE recipient_id IS NOT NULL" in definition


async def test_the_connection_kept_between_driver_calls_is_never_inside_a_transaction(tmp_path: Path) -> None:
    """SQLite keeps one connection between driver-level calls instead of returning it to
    the pool; one left inside a transaction (a call that began one and did not end it) goes
    back to the pool, which rolls it back, so no later call runs inside it."""
    store = SqlStore(f"sqlite:///{tmp_path / 'kept.db'}")
    await store.create_schema()
    try:
        async with store.driver() as raw:
            await raw.execute("BEGIN IMMEDIATE")
        for _ in range(2):
            async with store.driver() as raw:
                assert not raw.in_transaction
    finally:
        await store.close()


async def test_closing_the_store_closes_the_connection_kept_between_calls(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'kept.db'}")
    await store.create_schema()
    async with store.driver() as raw:
        await raw.execute_fetchall("SELECT 1")
    await store.close()
    with pytest.raises(ValueError, match="closed"):
        await raw.execute_fetchall("SELECT 1")


async def test_drop_schema_removes_only_this_librarys_tables(store: SqlStore) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE application_table (id integer primary key)"))
    await store.agent_types.add(agent_type())
    await store.drop_schema()
    async with store.engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(c.dialect.get_table_names(c)))
    assert names == {"application_table"}
    await store.create_schema()
    assert await store.agent_types.count() == 0


async def test_two_processes_append_without_gaps(store: SqlStore, tmp_path: Path) -> None:
    world = await World(store).build()
    url = str(store.url) if store.dialect == "postgresql" else f"sqlite:///{store.url.database}"
    url = url.replace("+asyncpg", "").replace("+aiosqlite", "")
    args = [str(store.schema or "-"), str(world.execution.id), str(world.instance.id), "20", "10"]
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.stores.append_worker",
            url,
            *args,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [await worker.communicate() for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), [err.decode()[-2000:] for _, err in outputs]
    numbers = [n for out, _ in outputs for n in json.loads(out)]
    assert sorted(numbers) == list(range(1, 401))
    assert await store.messages.count(world.execution.id) == 400
    last = await store.messages.last(world.execution.id, 400)
    assert [m.sequence_number for m in last] == list(range(1, 401))


async def test_killed_connection_leaves_nothing_partial_and_store_recovers() -> None:
    store = SqlStore(POSTGRES_URL, schema=unique_schema())
    try:
        await store.create_schema()
    except StoreUnavailable as error:
        await store.close()
        unavailable("PostgreSQL", error)
    killer = SqlStore(POSTGRES_URL)
    try:
        world = await World(store).build()
        before = await dump_store(store)
        with pytest.raises(StoreUnavailable):
            async with store.transaction():
                await store.agent_types.add(agent_type("doomed"))
                await store.messages.append(
                    world.execution.id, [message(world.instance.id) for _ in range(5)]
                )
                async with killer.engine.begin() as conn:
                    killed = await conn.execute(
                        text(KILL),
                        {"a": store.label},
                    )
                    assert any(row[0] for row in killed)
                await store.agent_types.add(agent_type("after-kill"))
        assert await dump_store(store) == before
        assert await store.agent_types.find_by_name("doomed") is None
        again = await store.messages.append(world.execution.id, [message(world.instance.id)])
        assert again[0].sequence_number == 1
    finally:
        async with killer.engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{store.schema}" CASCADE'))
        await killer.close()
        await store.close()


async def test_unreachable_server_raises_store_unavailable() -> None:
    async with open_store("postgresql://nobody@127.0.0.1:1/none", connect_timeout=2) as store:
        with pytest.raises(StoreUnavailable, match=r"unreachable|unavailable"):
            await store.agent_types.count()


async def test_urls_pick_the_async_drivers() -> None:
    assert async_url("sqlite:///x.db").drivername == "sqlite+aiosqlite"
    assert async_url("postgresql://u@h/db").drivername == "postgresql+asyncpg"
    assert async_url("postgres://u@h/db").drivername == "postgresql+asyncpg"
    with pytest.raises(ValueError, match="psycopg2"):
        async_url("postgresql+psycopg2://u@h/db")
    with pytest.raises(ValueError, match="sqlite:// and postgresql://"):
        async_url("mysql://u@h/db")


async def test_a_caught_driver_level_failure_never_commits_a_postgres_transaction_silently_empty() -> None:
    """A driver-level statement in a PostgreSQL transaction runs without a savepoint, so its
    failure aborts the transaction, and PostgreSQL answers a COMMIT of an aborted
    transaction by rolling back without an error. A body that catches that failure and
    ends normally must then hear that nothing was committed, not lose its writes silently."""
    async with postgres_store() as store:
        world = await World(store).build()
        await store.leases.enqueue(world.execution.id)
        assert await store.leases.claim("w1", limit=1, lease_seconds=60)
        async with store.engine.connect() as other:  # holds the lease row's lock
            await other.execute(text("BEGIN"))
            await other.execute(
                text(f"SELECT 1 FROM {leases_table.name} WHERE execution_id = :e FOR UPDATE"),
                {"e": world.execution.id},
            )
            try:
                async with store.transaction():
                    await store.agent_types.add(agent_type("before-the-failure"))
                    frame = store._current.get()
                    assert frame is not None
                    await frame.handle.execute(text("SET LOCAL lock_timeout = '100ms'"))
                    with pytest.raises(Exception):  # noqa: B017, PT011  # the lock wait times out
                        await store.leases.hold(world.execution.id, "w1")
            except TransactionRolledBack:
                assert await store.agent_types.find_by_name("before-the-failure") is None
            else:
                assert await store.agent_types.find_by_name("before-the-failure") is not None
            await other.rollback()


async def test_closing_the_store_while_calls_run_leaves_no_connection_open(store: SqlStore) -> None:
    """``close()`` while calls are running: a connection they had checked out goes back to a
    pool the store has disposed of, which nothing closes (on SQLite a driver thread and an
    open file per connection, on PostgreSQL a server backend each). Each must be closed
    when its call ends; the calls themselves end normally."""
    await close_while_calls_run(store)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_closing_a_one_connection_store_while_calls_start_keeps_none_waiting(
    kind: str, tmp_path: Path
) -> None:
    """With one pooled connection and no overflow, calls starting while ``close()`` empties
    the pool found it empty and waited on it for the whole ``pool_timeout`` (the pool counts
    its connections as taken until the emptying ends), then failed. They go to the next
    engine instead, at once."""
    async with sql_store(kind, tmp_path, pool_size=1, pool_timeout=5) as store:
        await close_while_calls_run(store)


async def close_while_calls_run(store: SqlStore) -> None:
    """45 appends, reads and counts, the store closed under them after 0, 2 and 5 ms: every
    call ends normally, the numbers have no gap and no connection is left open."""
    world = await World(store).build()
    execution_id, sender = world.execution.id, world.instance.id
    opened: list[Any] = []

    async def call(i: int) -> object:
        if i % 3 == 0:
            return await store.messages.append(execution_id, [message(sender, {"i": i})])
        if i % 3 == 1:
            return await store.messages.last(execution_id, 5)
        return await store.agent_types.count()

    def note(dbapi: Any, _record: Any) -> None:
        opened.append(dbapi)

    # every engine's: a call that starts after close() opens the next engine
    event.listen(Pool, "connect", note)
    try:
        for pause in (0.0, 0.002, 0.005):
            calls = [asyncio.ensure_future(call(i)) for i in range(45)]
            await asyncio.sleep(pause)
            await store.close()
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
            assert [o for o in outcomes if isinstance(o, BaseException)] == [], pause
    finally:
        event.remove(Pool, "connect", note)
    await store.close()
    numbers = [m.sequence_number for m in (await store.messages.list(execution_id, limit=200)).items]
    assert numbers == list(range(1, 46))
    await store.close()
    if store.dialect == "sqlite":
        assert opened
        assert [c for c in opened if c.driver_connection._connection is not None] == []
    else:
        async with postgres_store() as other, other.engine.connect() as conn:
            left = await conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :a"), {"a": store.label}
            )
            assert left.scalar_one() == 0


async def test_the_kept_sqlite_connection_under_concurrent_cancelled_calls(tmp_path: Path) -> None:
    """Three hundred reads and appends at once on one SQLite file store, forty of them
    cancelled at random moments: the connection kept between driver-level calls is taken
    by one call at a time, is never left inside a transaction, the numbers have no gap, and
    a second store (another connection pool) sees exactly what this one sees and can write
    at once (no write lock left behind)."""
    path = tmp_path / "kept.db"
    store = SqlStore(f"sqlite:///{path}")
    other = SqlStore(f"sqlite:///{path}")
    await store.create_schema()
    try:
        world = await World(store).build()
        execution_id, sender = world.execution.id, world.instance.id
        original = store._keeps_spare

        def keeps(pooled: Any) -> bool:
            assert all(p is not pooled for p in store._spare)  # never kept twice
            return original(pooled)

        store._keeps_spare = keeps  # type: ignore[method-assign]

        async def call(i: int) -> object:
            if i % 3 == 0:
                return await store.messages.append(execution_id, [message(sender, {"i": i})])
            if i % 3 == 1:
                return await store.messages.last(execution_id, 5)
            return await store.messages.list(execution_id, limit=3)

        rng = random.Random(7)
        calls = [asyncio.ensure_future(call(i)) for i in range(300)]
        for _ in range(40):
            await asyncio.sleep(rng.random() * 0.002)
            rng.choice(calls).cancel()
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert [o for o in outcomes if isinstance(o, Exception)] == []
        assert len(store._spare) <= 1
        assert not any(p.driver_connection.in_transaction for p in store._spare)
        numbers = [m.sequence_number for m in (await store.messages.list(execution_id, limit=500)).items]
        assert numbers == list(range(1, len(numbers) + 1))
        assert len(numbers) >= 100 - sum(isinstance(o, asyncio.CancelledError) for o in outcomes[::3])
        seen = [m.sequence_number for m in (await other.messages.list(execution_id, limit=500)).items]
        assert seen == numbers
        await asyncio.wait_for(other.messages.append(execution_id, [message(sender)]), timeout=5)
        assert len(await store.messages.last(execution_id, 500)) == len(numbers) + 1
    finally:
        await store.close()
        await other.close()


async def test_a_connection_asyncpg_can_no_longer_use_is_lost_and_the_store_unavailable() -> None:
    """asyncpg's error for a connection whose backend ended before it saw the socket close
    (docs/decisions.md, "16: a drive's client CPU"): the connection is invalidated, the
    caller gets StoreUnavailable, not the driver's error."""
    error = asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress")
    assert connection_lost(error)
    translated = translate(error)
    assert isinstance(translated, StoreUnavailable)
    assert "another operation" in str(translated)

"""The SQL store's connection pool: bounded, kept, refused when misconfigured (decision
"16: a pool that does not churn")."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.pool import QueuePool

from qmcp_agents.adapters.sql import SqlStore
from qmcp_agents.domain import StoreUnavailable
from qmcp_agents.testing.builders import World, agent_type, message
from qmcp_agents.testing.inspect import dump_store

from .servers import POSTGRES_URL, sql_store

pytestmark = pytest.mark.asyncio
KINDS = ["sqlite", "postgresql"]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("pool_size", 0),
        ("pool_size", -3),
        ("pool_size", 2.5),
        ("pool_size", True),
        ("max_overflow", -1),
        ("max_overflow", "4"),
        ("pool_timeout", 0),
        ("pool_timeout", -1.0),
        ("pool_timeout", float("nan")),
        ("pool_timeout", float("inf")),
    ],
)
async def test_a_bad_pool_option_is_refused_naming_it_and_its_value(option: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"^{option} must be .*, got {value!r}$"):
        SqlStore(POSTGRES_URL, **{option: value})


def _queue_pool(store: SqlStore) -> QueuePool:
    pool = store.engine.sync_engine.pool
    assert isinstance(pool, QueuePool)
    return pool


async def _burst(store: SqlStore, world: World, calls: int) -> None:
    execution_id, sender = world.execution.id, world.instance.id

    async def call(i: int) -> object:
        if i % 3 == 0:
            return await store.messages.append(execution_id, [message(sender, {"i": i})])
        if i % 3 == 1:
            return await store.messages.last(execution_id, 5)
        return await store.executions.get(execution_id)

    await asyncio.gather(*(call(i) for i in range(calls)))


@pytest.mark.parametrize("kind", KINDS)
async def test_a_burst_opens_at_most_pool_size_connections_and_keeps_them(kind: str, tmp_path: Path) -> None:
    """60 calls at once on a pool of 3: three connections are opened, the other calls wait
    for them, and a second burst opens none (overflow connections were opened and closed
    per burst before: on PostgreSQL a server process each, with every statement prepared
    again)."""
    async with sql_store(kind, tmp_path, pool_size=3) as store:
        world = await World(store).build()
        opened: list[Any] = []
        event.listen(store.engine.sync_engine, "connect", lambda dbapi, _record: opened.append(dbapi))
        pool = _queue_pool(store)
        before = pool.checkedin() + pool.checkedout()
        await _burst(store, world, 60)
        first = len(opened)
        assert before + first <= 3
        await _burst(store, world, 60)
        assert len(opened) == first
        stored = await store.messages.list(world.execution.id, limit=100)
        assert [m.sequence_number for m in stored.items] == list(range(1, 41))


@pytest.mark.parametrize("kind", KINDS)
async def test_max_overflow_opens_more_under_a_burst_and_closes_them_after(kind: str, tmp_path: Path) -> None:
    async with sql_store(kind, tmp_path, pool_size=1, max_overflow=4) as store:
        world = await World(store).build()
        opened: list[Any] = []
        event.listen(store.engine.sync_engine, "connect", lambda dbapi, _record: opened.append(dbapi))
        await _burst(store, world, 60)
        assert 1 <= len(opened) <= 5
        pool = _queue_pool(store)
        assert pool.checkedout() == len(store._spare)  # SQLite keeps one for the next call
        assert pool.checkedin() <= 1  # the overflow ones were closed


@pytest.mark.parametrize("kind", KINDS)
async def test_a_call_that_finds_every_connection_busy_fails_after_pool_timeout_and_writes_nothing(
    kind: str, tmp_path: Path
) -> None:
    """Every connection of a pool of 2 held: a call waits ``pool_timeout`` and is refused
    with the pool named and the fix, and the store is unchanged by it."""
    async with sql_store(kind, tmp_path, pool_size=2, pool_timeout=0.3) as store:
        world = await World(store).build()
        execution_id, sender = world.execution.id, world.instance.id
        before = await dump_store(store)
        # SQLite keeps one connection checked out for its next driver-level call, and gives
        # it back when a call finds the pool full: let go of it, so the holders hold all.
        await store.close()
        free = 2
        holding, release = asyncio.Event(), asyncio.Event()
        held = 0

        async def hold() -> None:
            nonlocal held
            async with store.engine.connect():
                held += 1
                if held == free:
                    holding.set()
                await release.wait()

        holders = [asyncio.ensure_future(hold()) for _ in range(free)]
        await holding.wait()
        refused = r"no pooled connection came free in time \(QueuePool limit of size 2 overflow 0.*pool_size"
        try:
            with pytest.raises(StoreUnavailable, match=refused):
                await store.agent_types.add(agent_type("late"))
            with pytest.raises(StoreUnavailable, match=refused):
                await store.agent_types.count()
            with pytest.raises(StoreUnavailable, match=refused):
                await store.messages.append(execution_id, [message(sender, {"late": True})])
        finally:
            release.set()
            await asyncio.gather(*holders)
        assert await dump_store(store) == before
        appended = await store.messages.append(execution_id, [message(sender, {"after": True})])
        assert [m.sequence_number for m in appended] == [1]

"""The SQL store's one-statement updates, topology reads and instance inserts (issue 16):
one statement each where the checks pass, and the checked path's answer where they do not
(the behaviour itself is pinned on every backend by ``testing/conformance_updates.py``)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import text

from benchmarks.worker_statements import counting
from qmcp_agents.adapters.sql import SqlStore
from qmcp_agents.domain import AgentInstance
from qmcp_agents.domain.transactions import whole
from qmcp_agents.testing.builders import World

from .servers import sql_store

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    async with sql_store(request.param, tmp_path) as opened:
        yield opened


@pytest_asyncio.fixture
async def postgres(tmp_path: Path) -> AsyncIterator[SqlStore]:
    async with sql_store("postgresql", tmp_path) as opened:
        yield opened


@pytest.mark.parametrize("in_whole", [False, True])
async def test_a_row_of_a_newer_release_is_refused_as_the_checked_path_refuses_it(
    store: SqlStore, in_whole: bool
) -> None:
    """The one statement matches only rows this release wrote: a newer release's row is
    left alone and the checked path's load says why (an older one's would be upcast)."""
    world = await World(store).build()
    current = await store.executions.get(world.execution.id)
    current.metadata = {"changed": True}
    table = "qmcp_executions"
    async with store.engine.begin() as conn:
        await conn.execute(text(f"UPDATE {table} SET schema_version = 2"))
        before = (await conn.execute(text(f"SELECT * FROM {table}"))).all()
    newer = re.escape("schema_version 2 is newer than this release understands (1); upgrade qmcp-agents")

    async def update() -> None:
        if in_whole:
            async with whole(store):
                await store.executions.update(current)
        else:
            await store.executions.update(current)

    with pytest.raises(ValueError, match=newer):
        await update()
    async with store.engine.begin() as conn:
        assert (await conn.execute(text(f"SELECT * FROM {table}"))).all() == before


@pytest.mark.parametrize("in_whole", [False, True])
async def test_per_execution_calls_are_one_statement_each_on_postgres(
    postgres: SqlStore, in_whole: bool
) -> None:
    """What asyncpg sends for each (inside a whole transaction, after its ``BEGIN``)."""
    store = postgres
    world = await World(store).build()
    assert world.topology.id is not None
    assert world.agent_type.id is not None
    execution = await store.executions.get(world.execution.id)
    instance = await store.agent_instances.get(world.instance.id)
    agent = await store.agent_types.get(world.agent_type.id)
    fresh = [AgentInstance(agent_type_id=world.agent_type.id, execution_id=execution.id) for _ in range(3)]
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "executions.update": lambda: store.executions.update(execution),
        "agent_instances.update": lambda: store.agent_instances.update(instance),
        "agent_types.update": lambda: store.agent_types.update(agent),
        "topologies.get": lambda: store.topologies.get(world.topology.id),  # type: ignore[arg-type]
        "topologies.get_by_name": lambda: store.topologies.get_by_name(world.topology.name),
        "agent_instances.add_many": lambda: store.agent_instances.add_many(fresh),
    }
    sent: dict[str, int] = {}
    if in_whole:
        async with whole(store):
            await store.executions.get(execution.id)  # the transaction's BEGIN goes with it
            for name, call in calls.items():
                with counting() as counts:
                    await call()
                sent[name] = sum(counts.values())
    else:
        for name, call in calls.items():
            with counting() as counts:
                await call()
            sent[name] = sum(counts.values())
    assert sent == dict.fromkeys(calls, 1)
    assert (await store.executions.get(execution.id)).revision == execution.revision + 1
    assert (await store.agent_instances.get(instance.id)).revision == instance.revision + 1
    assert (await store.agent_types.get(agent.id)).revision == agent.revision + 1  # type: ignore[arg-type]
    assert await store.agent_instances.count(execution_id=execution.id) == 4

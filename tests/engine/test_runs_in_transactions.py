"""``Engine.run()`` inside ``store.transaction()``: its parallel agents share the transaction
on every SQL dialect, and the pool stays healthy (issue 14, item 6)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from qmcp_agents.domain import ExecutionStatus
from qmcp_agents.domain.engine import Engine, ScriptedAgent, reply
from qmcp_agents.domain.ports import Store
from tests.stores.servers import backend_store

from .conftest import build

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture(params=["memory", "sqlite", "postgresql"])
async def sql_or_memory(request: Any, tmp_path: Path) -> AsyncIterator[Store]:
    async with backend_store(request.param, tmp_path) as store:
        yield store


def says(answer: Any) -> ScriptedAgent:
    return ScriptedAgent([reply({"answer": answer}, 0.9)])


async def test_an_ensemble_runs_inside_a_transaction_and_rolls_back_whole(sql_or_memory: Store) -> None:
    store = sql_or_memory
    await build(store, "t", "ensemble", ["a", "b", "c"], {"aggregation_method": "vote"})
    agents = {"a": says("x"), "b": says("x"), "c": says("y")}
    async with store.transaction():
        done = await Engine(store, agents).run("t", {})
    assert done.status is ExecutionStatus.COMPLETED
    assert await store.messages.count(done.id) >= 3

    started: list[Any] = []

    async def run_then_undo() -> None:
        async with store.transaction():
            started.append(await Engine(store, agents).run("t", {}))
            raise RuntimeError("undo")

    with pytest.raises(RuntimeError, match="undo"):
        await run_then_undo()
    assert await store.executions.find(started[0].id) is None
    # The pool is healthy: plain calls and another run work at once.
    assert await store.executions.count() == 1
    again = await Engine(store, agents).run("t", {})
    assert again.status is ExecutionStatus.COMPLETED

"""Per-execution token totals (metadata ``token_usage``), the token budget and the time
limit (domain/engine/budget.py), on memory, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from typer.testing import CliRunner

from qmcp_agents.adapters import open_store
from qmcp_agents.adapters.cli.app import app
from qmcp_agents.domain import ExecutionStatus
from qmcp_agents.domain.engine import AgentContext, AgentReply, Engine, ScriptedAgent, reply
from qmcp_agents.domain.ports import Store
from tests.stores.servers import backend_store

from .conftest import build

pytestmark = pytest.mark.asyncio

USAGE = {"input": 10, "output": 2, "requests": 1, "tool_calls": 1}


@pytest_asyncio.fixture(params=["memory", "sqlite", "postgresql"])
async def three_stores(request: Any, tmp_path: Path) -> AsyncIterator[Store]:
    async with backend_store(request.param, tmp_path) as store:
        yield store


def says(answer: Any, usage: dict[str, int] | None = None, delay: float = 0.0) -> ScriptedAgent:
    return ScriptedAgent([reply({"answer": answer}, 0.9, token_usage=usage or USAGE)], delay=delay)


async def test_token_totals_are_recorded_with_the_execution(three_stores: Store) -> None:
    store = three_stores
    await build(store, "e", "ensemble", ["a", "b"], {"aggregation_method": "concat"})
    result = await Engine(store, {"a": says("x"), "b": says("y")}).run("e", {})
    stored = await store.executions.get(result.id)
    assert stored.metadata["token_usage"] == {"input": 20, "output": 4, "requests": 2, "tool_calls": 2}
    assert stored.metadata["running_seconds"] >= 0
    assert "limits" not in stored.metadata


async def test_a_question_costs_tokens_and_a_resume_does_not_count_twice(store: Store) -> None:
    await build(store, "e", "ensemble", ["asker", "steady"], {"aggregation_method": "concat"})

    def step(context: AgentContext) -> AgentReply:
        if context.human_input is None:
            return reply({}, needs_human="?", token_usage={"input": 5, "output": 1})
        return reply({"answer": "a"}, token_usage={"input": 7, "output": 2})

    engine = Engine(store, {"asker": ScriptedAgent([step]), "steady": says("s")})
    paused = await engine.run("e", {})
    assert paused.metadata["token_usage"] == {"input": 15, "output": 3, "requests": 1, "tool_calls": 1}
    done = await engine.resume(paused.id, "go")
    assert done.metadata["token_usage"] == {"input": 22, "output": 5, "requests": 1, "tool_calls": 1}


async def test_a_compound_counts_its_children(store: Store) -> None:
    await build(store, "one", "ensemble", ["a"], {"aggregation_method": "concat"})
    await build(store, "two", "ensemble", ["b", "c"], {"aggregation_method": "concat"})
    await build(
        store, "both", "compound", [], {"sub_topologies": ["one", "two"], "composition_type": "parallel"}
    )
    result = await Engine(store, {"a": says(1), "b": says(2), "c": says(3)}).run("both", {})
    assert result.metadata["token_usage"] == {"input": 30, "output": 6, "requests": 3, "tool_calls": 3}


async def test_the_token_budget_fails_the_run_naming_the_limit(three_stores: Store) -> None:
    store = three_stores
    config = {"max_rounds": 3, "consensus_method": "majority", "allow_early_termination": False}
    await build(store, "d", "debate", ["pro", "con"], config)
    agents = {"pro": says("yes"), "con": says("no")}
    failed = await Engine(store, agents, token_budget=30).run("d", {})  # one round costs 24
    assert failed.status is ExecutionStatus.FAILED
    assert failed.error is not None
    assert "token_budget exceeded" in failed.error
    assert failed.error_details is not None
    assert (failed.error_details["limit"], failed.error_details["token_budget"]) == ("token_budget", 30)
    assert failed.error_details["used"] > 30
    assert failed.metadata["token_usage"]["input"] + failed.metadata["token_usage"]["output"] == 48
    assert failed.metadata["limits"] == {"token_budget": 30, "time_limit_seconds": None}
    assert await store.results.count(execution_id=failed.id) == 4  # what was spent is recorded
    # The run's own limit overrides the engine's; none at all lets it finish.
    assert (await Engine(store, agents, token_budget=30).run("d", {}, token_budget=1000)).status is (
        ExecutionStatus.COMPLETED
    )
    nothing = await Engine(store, agents).run("d", {}, token_budget=0)
    assert nothing.status is ExecutionStatus.FAILED
    assert await store.results.count(execution_id=nothing.id) == 0  # no call was made


async def test_the_budget_holds_across_a_pause(store: Store) -> None:
    await build(store, "e", "ensemble", ["asker"], {"aggregation_method": "concat"})

    def step(context: AgentContext) -> AgentReply:
        if context.human_input is None:
            return reply({}, needs_human="?", token_usage={"input": 8, "output": 0})
        return reply({"answer": "a"}, token_usage={"input": 8, "output": 0})

    engine = Engine(store, {"asker": ScriptedAgent([step])})
    paused = await engine.run("e", {}, token_budget=10)
    assert paused.status is ExecutionStatus.PAUSED
    failed = await Engine(store, {"asker": ScriptedAgent([step])}).resume(paused.id, "go")
    assert failed.status is ExecutionStatus.FAILED
    assert failed.error_details == {"limit": "token_budget", "token_budget": 10, "used": 16}


async def test_the_time_limit_fails_the_run_naming_the_limit(three_stores: Store) -> None:
    store = three_stores
    await build(store, "e", "ensemble", ["slow"], {"aggregation_method": "concat"})
    started = asyncio.get_running_loop().time()
    failed = await Engine(store, {"slow": says("late", delay=5.0)}).run("e", {}, time_limit_seconds=0.2)
    assert asyncio.get_running_loop().time() - started < 4.0
    assert failed.status is ExecutionStatus.FAILED
    assert failed.error_details is not None
    assert (failed.error_details["limit"], failed.error_details["time_limit_seconds"]) == (
        "time_limit_seconds",
        0.2,
    )
    assert failed.error_details["used"] >= 0.2


async def test_a_childs_limit_is_its_parents(store: Store) -> None:
    await build(store, "slow", "ensemble", ["s"], {"aggregation_method": "concat"})
    await build(store, "quick", "ensemble", ["q"], {"aggregation_method": "concat"})
    await build(
        store, "fan", "compound", [], {"sub_topologies": ["quick", "slow"], "composition_type": "parallel"}
    )
    agents = {"s": says("late", delay=5.0), "q": says("now")}
    failed = await Engine(store, agents, time_limit_seconds=0.3).run("fan", {})
    assert failed.status is ExecutionStatus.FAILED
    assert failed.error_details is not None
    assert failed.error_details["limit"] == "time_limit_seconds"
    kids = (await store.executions.list(parent_id=failed.id)).items
    assert len(kids) == 2
    assert all(k.is_final for k in kids)  # none is left running
    await build(store, "pair", "ensemble", ["a", "b"], {"aggregation_method": "concat"})
    await build(store, "seq", "compound", [], {"sub_topologies": ["quick", "pair"]})
    agents = {"q": says("now"), "a": says(1), "b": says(2)}
    over = await Engine(store, agents, token_budget=15).run("seq", {})  # 12, then 24 more
    assert over.status is ExecutionStatus.FAILED
    assert over.error_details == {"limit": "token_budget", "token_budget": 15, "used": 36}
    pair = [
        k
        for k in (await store.executions.list(parent_id=over.id)).items
        if k.status is ExecutionStatus.FAILED
    ]
    assert len(pair) == 1
    assert pair[0].error_details is not None
    assert pair[0].error_details["token_budget"] == 3  # what the parent had left


async def test_bad_limits_are_refused_before_anything_is_stored(store: Store) -> None:
    await build(store, "e", "ensemble", ["a"], {"aggregation_method": "concat"})
    with pytest.raises(ValueError, match="token_budget must be an int >= 0, got -1"):
        Engine(store, {}, token_budget=-1)
    with pytest.raises(ValueError, match="time_limit_seconds must be a number > 0, got 0"):
        await Engine(store, {"a": says(1)}).run("e", {}, time_limit_seconds=0)
    assert await store.executions.count() == 0


async def test_executions_show_prints_the_totals(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    async with open_store(url) as store:
        await store.create_schema()
        await build(store, "e", "ensemble", ["a", "b"], {"aggregation_method": "concat"})
        result = await Engine(store, {"a": says("x"), "b": says("y")}).run("e", {}, token_budget=500)
    command = ["--store", url, "executions", "show", str(result.id)]
    shown = await asyncio.to_thread(CliRunner().invoke, app, command)
    assert shown.exit_code == 0, shown.output
    assert "tokens input 20, output 4, requests 2, tool_calls 2" in shown.stdout
    assert "limits token_budget 500" in shown.stdout

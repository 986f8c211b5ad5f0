"""A run whose agents leave a slot without an agent is refused before anything is written
(issue 13): no execution, no agent instance, on any store; the command says it in one line."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qmcp_agents.adapters import open_store
from qmcp_agents.adapters.cli.app import app
from qmcp_agents.domain import NoAgent
from qmcp_agents.domain.engine import Engine, ScriptedAgent, reply
from qmcp_agents.domain.ports import Store

from .conftest import build


def says(answer: str) -> ScriptedAgent:
    return ScriptedAgent([reply({"answer": answer}, 0.9)])


async def counts(store: Store) -> tuple[int, int, int]:
    return (
        await store.executions.count(),
        await store.agent_instances.count(),
        await store.results.count(),
    )


@pytest.mark.asyncio
async def test_a_slot_without_an_agent_writes_nothing(any_store: Store) -> None:
    await build(any_store, "panel", "ensemble", ["a", "b", "c"], {"aggregation_method": "vote"})
    await Engine(any_store, {"a": says("x"), "b": says("x"), "c": says("x")}).run("panel", {})
    before = await counts(any_store)
    with pytest.raises(NoAgent, match=r"no agent for slot 'b' \(agent type 'b'\), 'c'"):
        await Engine(any_store, {"a": says("x")}).run("panel", {})
    with pytest.raises(NoAgent):  # a lookup function that finds nobody for a slot
        await Engine(any_store, lambda agent_type, slot: None).run("panel", {})
    assert await counts(any_store) == before


@pytest.mark.asyncio
async def test_a_compound_checks_its_children_before_it_starts(any_store: Store) -> None:
    await build(any_store, "one", "ensemble", ["a", "b"], {"aggregation_method": "vote"})
    await build(any_store, "two", "ensemble", ["c", "d"], {"aggregation_method": "vote"})
    await build(any_store, "both", "compound", [], {"sub_topologies": ["one", "two"]})
    agents = {name: says("x") for name in ("a", "b", "c")}
    with pytest.raises(NoAgent, match="topology 'two': no agent for slot 'd'"):
        await Engine(any_store, agents).run("both", {})
    assert await counts(any_store) == (0, 0, 0)


def test_the_command_refuses_in_one_line_and_stores_no_execution(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"

    async def setup() -> None:
        async with open_store(url) as store:
            await store.create_schema()
            await build(store, "panel", "ensemble", ["a", "b"], {"aggregation_method": "vote"})

    asyncio.run(setup())
    script = tmp_path / "agents.yaml"
    script.write_text("agents:\n  a:\n    replies:\n      - output: {answer: x}\n")
    result = CliRunner().invoke(app, ["--store", url, "run", "panel", "--agents", str(script)])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        "error: topology 'panel': no agent for slot 'b' (agent type 'b'); give each slot an agent, "
        "by slot name or agent type name"
    ]

    async def executions() -> int:
        async with open_store(url) as store:
            return await store.executions.count()

    assert asyncio.run(executions()) == 0

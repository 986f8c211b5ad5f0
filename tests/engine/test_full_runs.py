"""One full run of every topology type, on the in-memory store and on SQLite, checking the
recorded transcript: status, messages in gap-free sequence, results, instances."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from qmcp_agents.domain import ExecutionRead, ExecutionStatus, MessageType
from qmcp_agents.domain.engine import Engine, ScriptedAgent, reply
from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.queries import all_pages

from .conftest import build

pytestmark = pytest.mark.asyncio


def says(answer: Any, confidence: float = 0.9) -> ScriptedAgent:
    return ScriptedAgent([reply({"answer": answer}, confidence, token_usage={"input": 10, "output": 2})])


async def debate(store: Store) -> tuple[ExecutionRead, int]:
    await build(
        store, "t", "debate", ["pro", "con", "judge"], {"max_rounds": 2, "mediator_agent_name": "judge"}
    )
    agents = {"pro": says("yes"), "con": says("no"), "judge": says("yes")}
    return await Engine(store, agents).run("t", {"q": "?"}), 5  # 2 rounds x 2 debaters + verdict


async def chain(store: Store) -> tuple[ExecutionRead, int]:
    await build(store, "t", "chain", ["commander", "lieutenant", "worker"])
    agents = {"commander": says("plan"), "lieutenant": says("order"), "worker": says("done")}
    return await Engine(store, agents).run("t", {}), 3


async def delegation(store: Store) -> tuple[ExecutionRead, int]:
    await build(store, "t", "delegation", ["a", "b"], {}, capabilities={"a": ["x"], "b": ["y"]})
    run = await Engine(store, {"a": says(1), "b": says(2)}).run(
        "t", {"tasks": [{"capability": "y"}, {"capability": "x"}]}
    )
    return run, 2


async def crosscheck(store: Store) -> tuple[ExecutionRead, int]:
    await build(store, "t", "crosscheck", ["a", "b"], {"num_checkers": 2})
    return await Engine(store, {"a": says("ok"), "b": says("ok")}).run("t", {}), 2


async def ensemble(store: Store) -> tuple[ExecutionRead, int]:
    await build(store, "t", "ensemble", ["a", "b", "c"], {"aggregation_method": "best_of"})
    agents = {"a": says("low", 0.2), "b": says("high", 0.95), "c": says("mid", 0.5)}
    return await Engine(store, agents).run("t", {}), 3


async def pipeline(store: Store) -> tuple[ExecutionRead, int]:
    await build(
        store, "t", "pipeline", ["a", "b"], {"stages": ["first", "second"], "checkpoint_after": ["first"]}
    )
    return await Engine(store, {"a": says(1), "b": says(2)}).run("t", {}), 2


async def compound(store: Store) -> tuple[ExecutionRead, int]:
    await build(store, "inner", "ensemble", ["a"], {"aggregation_method": "vote"})
    await build(store, "t", "compound", [], {"sub_topologies": ["inner"]})
    return await Engine(store, {"a": says("z")}).run("t", {}), 0  # results belong to the child


SCENARIOS: dict[str, Callable[[Store], Awaitable[tuple[ExecutionRead, int]]]] = {
    "debate": debate,
    "chain": chain,
    "delegation": delegation,
    "crosscheck": crosscheck,
    "ensemble": ensemble,
    "pipeline": pipeline,
    "compound": compound,
}


@pytest.mark.parametrize("kind", list(SCENARIOS))
async def test_full_run_is_recorded(any_store: Store, kind: str) -> None:
    run, answers = await SCENARIOS[kind](any_store)
    assert run.status is ExecutionStatus.COMPLETED, run.error
    stored = await any_store.executions.get(run.id)
    assert stored.completed_at is not None
    assert stored.duration_ms is not None
    messages = await all_pages(lambda a: any_store.messages.list(run.id, limit=7, after=a))
    assert [m.sequence_number for m in messages] == list(range(1, len(messages) + 1))
    instances = {i.id for i in (await any_store.agent_instances.list(execution_id=run.id)).items}
    assert all(m.sender_id in instances for m in messages)
    responses = [m for m in messages if m.message_type is MessageType.RESPONSE]
    results = await all_pages(lambda a: any_store.results.list(execution_id=run.id, limit=3, after=a))
    assert len(responses) == len(results) == answers
    assert all(r.token_usage == {"input": 10, "output": 2} and r.confidence is not None for r in results)
    if kind == "compound":
        (child,) = (await any_store.executions.list(parent_id=run.id)).items
        assert child.status is ExecutionStatus.COMPLETED
        assert await any_store.results.count(execution_id=child.id) == 1
    if kind == "ensemble":
        assert run.output_data is not None
        assert run.output_data["result"] == "high"

"""A compound's child that waits for a person makes its parent wait; resuming the parent
resumes the child with the answer, and the children that had finished are not run again."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from qmcp_agents.domain import ExecutionStatus
from qmcp_agents.domain.engine import AgentContext, AgentReply, Engine, ScriptedAgent, reply
from qmcp_agents.domain.ports import Store

from .conftest import build

pytestmark = pytest.mark.asyncio


def asker(question: str) -> ScriptedAgent:
    def step(context: AgentContext) -> AgentReply:
        if context.human_input is None:
            return reply({}, needs_human=question, token_usage={"input": 4, "output": 1})
        return reply({"text": f"{context.human_input}"}, token_usage={"input": 6, "output": 2})

    return ScriptedAgent([step])


def upper() -> ScriptedAgent:
    return ScriptedAgent(
        [
            lambda c: reply(
                {"text": str(c.task["input"]["text"]).upper()}, token_usage={"input": 1, "output": 1}
            )
        ]
    )


async def children(store: Store, parent_id: Any) -> dict[str, Any]:
    found = (await store.executions.list(parent_id=parent_id)).items
    names = {t.id: t.name for t in (await store.topologies.list()).items}
    return {names[c.topology_id]: c for c in found}


async def test_a_paused_child_pauses_its_parent_and_resumes_with_it(any_store: Store) -> None:
    await build(any_store, "up", "pipeline", ["upper"])
    await build(any_store, "ask", "pipeline", ["asker"])
    await build(any_store, "both", "compound", [], {"sub_topologies": ["up", "ask"]})
    shout, ask = upper(), asker("Which owl?")
    engine = Engine(any_store, {"upper": shout, "asker": ask})
    paused = await engine.run("both", {"text": "owl"})
    assert paused.status is ExecutionStatus.PAUSED, paused.error
    kids = await children(any_store, paused.id)
    assert (kids["up"].status, kids["ask"].status) == (ExecutionStatus.COMPLETED, ExecutionStatus.PAUSED)
    waiting = paused.metadata["awaiting_human"]
    assert (waiting["question"], waiting["sub_topology"]) == ("Which owl?", "ask")
    assert waiting["execution_id"] == str(kids["ask"].id)
    assert paused.metadata["token_usage"]["input"] == 1 + 4  # the children's, so far

    done = await engine.resume(paused.id, "barn owl")
    assert done.status is ExecutionStatus.COMPLETED, done.error
    assert done.output_data == {"result": {"text": "barn owl"}}
    kids = await children(any_store, done.id)
    assert len(kids) == 2  # no child was started twice
    assert kids["ask"].status is ExecutionStatus.COMPLETED
    assert len(shout.calls) == 1
    assert [c.human_input for c in ask.calls] == [None, "barn owl"]
    assert done.metadata["token_usage"]["input"] == 1 + 4 + 6
    assert "child_answer" not in done.metadata


async def test_parallel_children_ask_one_question_at_a_time(store: Store) -> None:
    await build(store, "left", "pipeline", ["l"])
    await build(store, "right", "pipeline", ["r"])
    await build(
        store, "fan", "compound", [], {"sub_topologies": ["left", "right"], "composition_type": "parallel"}
    )
    engine = Engine(store, {"l": asker("left?"), "r": asker("right?")})
    first = await engine.run("fan", {})
    assert first.metadata["awaiting_human"]["question"] == "left?"
    second = await engine.resume(first.id, "L")
    assert second.status is ExecutionStatus.PAUSED
    assert second.metadata["awaiting_human"]["question"] == "right?"
    done = await engine.resume(second.id, "R")
    assert done.status is ExecutionStatus.COMPLETED, done.error
    assert done.output_data is not None
    assert {k: v["result"] for k, v in done.output_data["results"].items()} == {
        "left": {"text": "L"},
        "right": {"text": "R"},
    }


async def test_a_grandchild_question_reaches_the_top(store: Store) -> None:
    await build(store, "ask", "pipeline", ["asker"])
    await build(store, "mid", "compound", [], {"sub_topologies": ["ask"]})
    await build(store, "top", "compound", [], {"sub_topologies": ["mid"]})
    engine = Engine(store, {"asker": asker("deep?")})
    paused = await engine.run("top", {})
    assert paused.status is ExecutionStatus.PAUSED
    assert paused.metadata["awaiting_human"]["question"] == "deep?"
    done = await engine.resume(paused.id, "yes")
    assert done.status is ExecutionStatus.COMPLETED, done.error
    assert done.output_data == {"result": {"text": "yes"}}
    assert all(e.status is ExecutionStatus.COMPLETED for e in (await store.executions.list()).items)


async def test_a_child_resumed_directly_lets_its_parent_go_on(store: Store) -> None:
    await build(store, "ask", "pipeline", ["asker"])
    await build(store, "one", "compound", [], {"sub_topologies": ["ask"]})
    engine = Engine(store, {"asker": asker("q?")})
    paused = await engine.run("one", {})
    child_id = paused.metadata["awaiting_human"]["execution_id"]
    child = await engine.resume(UUID(child_id), "direct")
    assert child.status is ExecutionStatus.COMPLETED
    done = await engine.resume(paused.id, "ignored: the child has its answer")
    assert done.output_data == {"result": {"text": "direct"}}

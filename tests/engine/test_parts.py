"""Synthesis and mediation are awaited agent calls, recorded like any other; who plays the
mediator or synthesizer follows the seating rule (domain/seating.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from qmcp_agents.domain import (
    ExecutionStatus,
    IntegrityError,
    MessageType,
    TopologyCreate,
    TopologyUpdate,
    services,
)
from qmcp_agents.domain.engine import Agent, AgentContext, AgentReply, Engine, ScriptedAgent, reply
from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.queries import all_pages
from qmcp_agents.domain.votes import Answer

from .conftest import build

pytestmark = pytest.mark.asyncio


def says(answer: Any, confidence: float | None = 0.9) -> ScriptedAgent:
    return ScriptedAgent([reply({"answer": answer}, confidence)])


class SlowAgent:
    """A plain async agent (not scripted) that yields to the loop before answering."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls: list[AgentContext] = []

    async def __call__(self, context: AgentContext) -> AgentReply:
        self.calls.append(context)
        await asyncio.sleep(0.01)
        value = self.answer(context) if callable(self.answer) else self.answer
        return reply({"answer": value}, 0.8, token_usage={"input": 3, "output": 1})


async def calls_recorded(store: Store, execution_id: Any) -> list[tuple[str, str]]:
    """(sender agent type, call) of every response message, in sequence order."""
    messages = await all_pages(lambda a: store.messages.list(execution_id, limit=100, after=a))
    instances = {i.id: i for i in (await store.agent_instances.list(execution_id=execution_id)).items}
    return [
        (str(instances[m.sender_id].metadata["slot"]), str(m.content["call"]))
        for m in messages
        if m.message_type is MessageType.RESPONSE
    ]


# --- debate: who mediates ----------------------------------------------------------------


async def test_the_seed_default_debate_runs_with_its_coordinator_mediating(any_store: Store) -> None:
    await build(any_store, "d", "debate", ["pro", "con", "lead"], {}, roles={"lead": "coordinator"})
    lead = SlowAgent(lambda c: sorted(p["answer"] for p in c.task["positions"])[-1])
    agents: dict[str, Agent] = {"pro": says("yes"), "con": says("no"), "lead": lead}
    result = await Engine(any_store, agents).run("d", {"proposal": "p"})
    assert result.status is ExecutionStatus.COMPLETED, result.error
    assert result.output_data is not None
    assert (result.output_data["decision"], result.output_data["method"]) == ("yes", "mediator")
    assert result.output_data["rounds"] == 3  # no convergence: every round, then the verdict
    assert [c.call for c in lead.calls] == ["verdict"]
    recorded = await calls_recorded(any_store, result.id)
    assert recorded[-1] == ("lead", "verdict")
    assert sum(1 for slot, _ in recorded if slot == "lead") == 1
    assert await any_store.results.count(execution_id=result.id) == 3 * 2 + 1


async def test_the_mediator_slot_beats_the_roles_and_a_name_beats_both(store: Store) -> None:
    roles = {"lead": "coordinator", "writer": "synthesizer"}
    await build(store, "slot", "debate", ["lead", "mediator", "writer"], {"max_rounds": 1}, roles=roles)
    agents = {"lead": says("a"), "mediator": says("m"), "writer": says("w")}
    by_slot = await Engine(store, agents).run("slot", {})
    assert by_slot.output_data is not None
    assert by_slot.output_data["decision"] == "m"
    await build(store, "role", "debate", ["writer", "lead"], {"max_rounds": 1})
    by_role = await Engine(store, agents).run("role", {})
    assert by_role.output_data is not None
    assert by_role.output_data["decision"] == "a"  # coordinator before synthesizer
    await build(
        store, "named", "debate", ["lead", "writer"], {"max_rounds": 1, "mediator_agent_name": "writer"}
    )
    named = await Engine(store, agents).run("named", {})
    assert named.output_data is not None
    assert named.output_data["decision"] == "w"


async def test_a_debate_by_mediator_without_one_is_refused_on_save(store: Store) -> None:
    await build(store, "ok", "debate", ["pro", "con", "judge"], {"mediator_agent_name": "judge"})
    with pytest.raises(IntegrityError, match="consensus_method is 'mediator' but no member mediates"):
        await services.create_topology(
            store,
            TopologyCreate(name="d", description="d", topology_type="debate", agent_names=["pro", "con"]),
        )
    assert await store.topologies.find_by_name("d") is None
    with pytest.raises(IntegrityError, match="set mediator_agent_name"):
        await services.update_topology(store, "ok", TopologyUpdate(config={"max_rounds": 2}))
    assert (await store.topologies.get_by_name("ok")).config == {"mediator_agent_name": "judge"}


# --- ensemble: who synthesizes ---------------------------------------------------------------


async def test_an_async_synthesizer_member_is_awaited_and_recorded(any_store: Store) -> None:
    await build(
        any_store,
        "e",
        "ensemble",
        ["a", "b", "writer"],
        {"aggregation_method": "synthesis"},
        roles={"writer": "synthesizer"},
    )
    writer = SlowAgent(lambda c: " + ".join(str(a["answer"]) for a in c.task["answers"]))
    result = await Engine(any_store, {"a": says("x"), "b": says("y"), "writer": writer}).run("e", {"q": 1})
    assert result.status is ExecutionStatus.COMPLETED, result.error
    assert result.output_data == {
        "result": "x + y",
        "method": "synthesis",
        "fallback": False,
        "failed": [],
        "synthesized_by": "writer",
    }
    assert [c.call for c in writer.calls] == ["synthesis"]
    assert writer.calls[0].task["input"] == {"q": 1}
    assert ("writer", "synthesis") in await calls_recorded(any_store, result.id)
    assert await any_store.results.count(execution_id=result.id) == 3


async def test_an_async_synthesizer_function_is_awaited(store: Store) -> None:
    await build(store, "e", "ensemble", ["a", "b"], {"aggregation_method": "synthesis"})

    async def merge(answers: list[Answer]) -> Any:
        await asyncio.sleep(0)
        return {"both": [a.value for a in answers]}

    result = await Engine(store, {"a": says("x"), "b": says("y")}, synthesizer=merge).run("e", {})
    assert result.output_data is not None
    assert (result.output_data["result"], result.output_data["fallback"]) == ({"both": ["x", "y"]}, False)


async def test_a_failing_synthesizer_member_falls_back_to_concat(store: Store) -> None:
    await build(store, "e", "ensemble", ["a", "b", "synthesizer"], {"aggregation_method": "synthesis"})
    broken = ScriptedAgent([RuntimeError("model down")])
    result = await Engine(store, {"a": says("x"), "b": says("y"), "synthesizer": broken}).run("e", {})
    assert result.status is ExecutionStatus.COMPLETED
    assert result.output_data is not None
    assert (result.output_data["result"], result.output_data["fallback"]) == ("x\n\ny", True)
    messages = await all_pages(lambda a: store.messages.list(result.id, limit=100, after=a))
    assert [m.content["error"] for m in messages if m.message_type is MessageType.SYSTEM] == [
        "RuntimeError: model down"
    ]


async def test_a_synthesizer_may_ask_a_person(store: Store) -> None:
    await build(store, "e", "ensemble", ["a", "synthesizer"], {"aggregation_method": "synthesis"})

    def ask_first(context: AgentContext) -> AgentReply:
        if context.human_input is None:
            return reply({}, needs_human="Merge how?")
        return reply({"answer": f"{context.human_input}: {context.task['answers'][0]['answer']}"})

    a = says("x")
    engine = Engine(store, {"a": a, "synthesizer": ScriptedAgent([ask_first])})
    paused = await engine.run("e", {})
    assert paused.status is ExecutionStatus.PAUSED
    assert paused.metadata["awaiting_human"]["call"] == "synthesis"
    done = await engine.resume(paused.id, "briefly")
    assert done.output_data is not None
    assert done.output_data["result"] == "briefly: x"
    assert len(a.calls) == 1


# --- cross-check: the mediator decides, approval follows ---------------------------------------


@pytest.mark.parametrize(
    ("verdict", "unanimous", "answers", "expected"),
    [
        ({"answer": "bad", "approved": False}, False, ["ok", "ok"], ("bad", False)),
        ({"answer": "ok", "approved": True}, False, ["ok", "bad"], ("ok", True)),
        ({"answer": "ok"}, False, ["bad", "bad"], ("ok", True)),  # decided: approved
        ({"answer": "ok", "approved": True}, True, ["ok", "bad"], ("ok", False)),  # not unanimous
    ],
)
async def test_cross_check_by_mediator(
    store: Store, verdict: dict[str, Any], unanimous: bool, answers: list[str], expected: tuple[str, bool]
) -> None:
    config = {
        "consensus_method": "mediator",
        "num_checkers": 2,
        "require_unanimous_for_approval": unanimous,
        "checker_specializations": ["security"],
    }
    await build(store, "x", "crosscheck", ["c1", "c2", "lead"], config, roles={"lead": "coordinator"})
    lead = ScriptedAgent([reply(verdict, 0.9)])
    c1 = says(answers[0])
    result = await Engine(store, {"c1": c1, "c2": says(answers[1]), "lead": lead}).run("x", {"claim": "c"})
    assert result.output_data is not None
    assert (result.output_data["answer"], result.output_data["approved"]) == expected
    assert (result.output_data["method"], result.output_data["decided_by"]) == ("mediator", "lead")
    assert [c["answer"] for c in lead.calls[0].task["checks"]] == answers
    assert c1.calls[0].task["specialization"] == "security"
    assert await store.results.count(execution_id=result.id) == 3

"""Each of the seven topologies with scripted agents: config options, failures, pauses."""

from __future__ import annotations

from typing import Any

import pytest

from qmcp_agents.domain import ExecutionStatus, MessageType
from qmcp_agents.domain.engine import AgentContext, AgentReply, Engine, ScriptedAgent, reply
from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.queries import all_pages

from .conftest import build

pytestmark = pytest.mark.asyncio


def says(answer: Any, confidence: float | None = 0.9) -> ScriptedAgent:
    return ScriptedAgent([reply({"answer": answer}, confidence)])


async def transcript(store: Store, execution_id: Any) -> list[Any]:
    messages = await all_pages(lambda a: store.messages.list(execution_id, limit=100, after=a))
    assert [m.sequence_number for m in messages] == list(range(1, len(messages) + 1))
    return messages


# --- debate ------------------------------------------------------------------------------


async def test_debate_converges_early_and_the_mediator_decides(store: Store) -> None:
    await build(
        store,
        "d",
        "debate",
        ["pro", "con", "judge"],
        {"max_rounds": 3, "convergence_threshold": 0.8, "mediator_agent_name": "judge"},
    )
    judge = says("adopt")
    agents = {"pro": says("adopt"), "con": says("adopt"), "judge": judge}
    result = await Engine(store, agents).run("d", {"proposal": "p"})
    assert result.status is ExecutionStatus.COMPLETED
    assert result.output_data == {
        "decision": "adopt",
        "consensus": True,
        "support": 1.0,
        "method": "mediator",
        "rounds": 1,
    }
    assert [c.call for c in judge.calls] == ["verdict"]
    messages = await transcript(store, result.id)
    assert [(m.round_number, m.message_type) for m in messages] == [(1, MessageType.RESPONSE)] * 3
    assert await store.results.count(execution_id=result.id) == 3


async def test_debate_runs_every_round_without_early_termination(store: Store) -> None:
    await build(
        store,
        "d",
        "debate",
        ["pro", "con"],
        {"max_rounds": 3, "allow_early_termination": False, "consensus_method": "majority"},
    )
    pro = says("yes")
    result = await Engine(store, {"pro": pro, "con": says("no")}).run("d", {})
    assert result.output_data is not None
    assert result.output_data["rounds"] == 3
    assert result.output_data["consensus"] is False  # 1 of 2 is not a majority
    assert [c.round_number for c in pro.calls] == [1, 2, 3]
    assert [t["answer"] for t in pro.calls[2].transcript] == ["yes", "no", "yes", "no"]


async def test_debate_consensus_methods(store: Store) -> None:
    await build(store, "d", "debate", ["a", "b", "c"], {"max_rounds": 1, "consensus_method": "weighted"})
    agents = {"a": says("x"), "b": says("x"), "c": says("y")}
    weighted = await Engine(store, agents, weights={"a": 1.0, "b": 1.0, "c": 5.0}).run("d", {})
    assert weighted.output_data is not None
    assert weighted.output_data["decision"] == "y"
    await build(store, "u", "debate", ["a", "b", "c"], {"max_rounds": 1, "consensus_method": "unanimous"})
    unanimous = await Engine(store, agents).run("u", {})
    assert unanimous.output_data is not None
    assert (unanimous.output_data["consensus"], unanimous.output_data["decision"]) == (False, None)
    await build(store, "f", "debate", ["a", "b", "c"], {"max_rounds": 1, "consensus_method": "first_agree"})
    first = await Engine(store, agents).run("f", {})
    assert first.output_data is not None
    assert first.output_data["decision"] == "x"


# --- chain of command ----------------------------------------------------------------------


async def test_chain_passes_orders_down_and_the_worker_answers(store: Store) -> None:
    await build(store, "c", "chain", ["commander", "lieutenant", "worker"])
    worker = ScriptedAgent([reply({"done": "work"}, 0.9)])
    agents = {"commander": says("plan"), "lieutenant": says("orders"), "worker": worker}
    result = await Engine(store, agents).run("c", {"goal": "g"})
    assert result.output_data is not None
    assert (result.output_data["answered_by"], result.output_data["escalations"]) == ("worker", 0)
    assert worker.calls[0].task["directive"] == {"answer": "orders"}
    kinds = [m.message_type for m in await transcript(store, result.id)]
    assert kinds.count(MessageType.REQUEST) == 2


async def test_chain_escalates_low_confidence_upwards(store: Store) -> None:
    await build(store, "c", "chain", ["commander", "lieutenant", "worker"], {"escalation_threshold": 0.6})
    lieutenant = ScriptedAgent([reply({"answer": "orders"}, 0.9), reply({"answer": "fixed"}, 0.8)])
    agents = {"commander": says("plan"), "lieutenant": lieutenant, "worker": says("unsure", 0.3)}
    result = await Engine(store, agents).run("c", {})
    assert result.output_data is not None
    assert (result.output_data["answered_by"], result.output_data["escalations"]) == ("lieutenant", 1)
    assert result.output_data["result"] == {"answer": "fixed"}
    kinds = [m.message_type for m in await transcript(store, result.id)]
    assert kinds.count(MessageType.ESCALATION) == 1


async def test_chain_depth_limits_delegation(store: Store) -> None:
    await build(store, "c", "chain", ["commander", "lieutenant", "worker"], {"max_delegation_depth": 1})
    worker = says("never")
    result = await Engine(
        store, {"commander": says("plan"), "lieutenant": says("did it"), "worker": worker}
    ).run("c", {})
    assert result.output_data is not None
    assert result.output_data["answered_by"] == "lieutenant"
    assert worker.calls == []


# --- delegation ----------------------------------------------------------------------------


async def test_delegation_routes_by_capability_and_balances_load(store: Store) -> None:
    await build(
        store,
        "g",
        "delegation",
        ["sql", "py", "py2"],
        {"load_balance": True},
        capabilities={"sql": ["sql"], "py": ["python"], "py2": ["python"]},
    )
    tasks = [
        {"capability": "sql"},
        {"capability": "python"},
        {"capability": "python"},
        {"capability": "python"},
    ]
    agents = {"sql": says("q"), "py": says("p"), "py2": says("p2")}
    result = await Engine(store, agents).run("g", {"tasks": tasks})
    assert result.output_data is not None
    assert [a["slot"] for a in result.output_data["assignments"]] == ["sql", "py", "py2", "py"]


async def test_delegation_falls_back_or_fails(store: Store) -> None:
    await build(
        store,
        "g",
        "delegation",
        ["sql", "generalist"],
        {"fallback_agent_name": "generalist"},
        capabilities={"sql": ["sql"]},
    )
    result = await Engine(store, {"sql": says("q"), "generalist": says("g")}).run(
        "g", {"tasks": [{"capability": "art"}]}
    )
    assert result.output_data is not None
    assert result.output_data["assignments"][0]["slot"] == "generalist"
    await build(store, "h", "delegation", ["sql"], {}, capabilities={"sql": ["sql"]})
    failed = await Engine(store, {"sql": says("q")}).run("h", {"tasks": [{"capability": "art"}]})
    assert failed.status is ExecutionStatus.FAILED
    assert failed.error_details == {"task": 0, "capability": "art"}


# --- cross-check --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "answers", "approved"),
    [
        ({"num_checkers": 3}, ["ok", "ok", "ok"], True),
        ({"num_checkers": 3}, ["ok", "ok", "bad"], True),
        ({"num_checkers": 3, "require_unanimous_for_approval": True}, ["ok", "ok", "bad"], False),
        ({"num_checkers": 2}, ["ok", "bad", "ignored"], False),
    ],
)
async def test_cross_check(store: Store, config: dict[str, Any], answers: list[str], approved: bool) -> None:
    await build(store, "x", "crosscheck", ["c1", "c2", "c3"], config)
    agents = {f"c{i + 1}": says(a) for i, a in enumerate(answers)}
    result = await Engine(store, agents).run("x", {})
    assert result.output_data is not None
    assert result.output_data["approved"] is approved
    checked = config["num_checkers"]
    assert await store.results.count(execution_id=result.id) == checked
    feedback = [m for m in await transcript(store, result.id) if m.message_type is MessageType.FEEDBACK]
    assert len(feedback) == checked


# --- ensemble ------------------------------------------------------------------------------


async def test_ensemble_aggregates_and_tolerates_failures_under_the_threshold(store: Store) -> None:
    await build(
        store, "e", "ensemble", ["a", "b", "c"], {"aggregation_method": "vote", "failure_threshold": 0.4}
    )
    agents = {"a": says("x"), "b": says("x"), "c": ScriptedAgent([RuntimeError("model down")])}
    result = await Engine(store, agents).run("e", {})
    assert result.status is ExecutionStatus.COMPLETED
    assert result.output_data == {"result": "x", "method": "vote", "fallback": False, "failed": ["c"]}
    system = [m for m in await transcript(store, result.id) if m.message_type is MessageType.SYSTEM]
    assert system[0].content["error"] == "RuntimeError: model down"


async def test_ensemble_over_its_failure_threshold_fails(store: Store) -> None:
    await build(
        store, "e", "ensemble", ["a", "b", "c"], {"aggregation_method": "vote", "failure_threshold": 0.5}
    )
    boom = RuntimeError("down")
    result = await Engine(
        store, {"a": says("x"), "b": ScriptedAgent([boom]), "c": ScriptedAgent([boom])}
    ).run("e", {})
    assert result.status is ExecutionStatus.FAILED
    assert result.error_details == {"failed": ["b", "c"], "failure_threshold": 0.5}
    assert result.completed_at is not None


async def test_ensemble_synthesis_uses_the_synthesizer(store: Store) -> None:
    await build(store, "e", "ensemble", ["a", "b"], {"aggregation_method": "synthesis"})
    agents = {"a": says("x"), "b": says("y")}
    result = await Engine(
        store, agents, synthesizer=lambda answers: {"both": [a.value for a in answers]}
    ).run("e", {})
    assert result.output_data is not None
    assert result.output_data["result"] == {"both": ["x", "y"]}
    fallback = await Engine(store, agents).run("e", {})
    assert fallback.output_data is not None
    assert (fallback.output_data["result"], fallback.output_data["fallback"]) == ("x\n\ny", True)


async def test_timeouts_and_retries_follow_the_effective_agent_config(store: Store) -> None:
    await build(
        store,
        "e",
        "ensemble",
        ["slow", "flaky"],
        {"aggregation_method": "concat", "failure_threshold": 0.5},
        agent_config={"slow": {"timeout_seconds": 1}, "flaky": {"max_retries": 2}},
    )
    flaky = ScriptedAgent([RuntimeError("1"), RuntimeError("2"), reply({"answer": "third time"})])
    slow = ScriptedAgent([reply({"answer": "late"})], delay=0.5)
    result = await Engine(store, {"slow": slow, "flaky": flaky}, timeout_scale=0.1).run("e", {})
    assert result.output_data is not None
    assert result.output_data["failed"] == ["slow"]
    assert result.output_data["result"] == "third time"
    assert len(flaky.calls) == 3
    errors = [
        m.content["error"] for m in await transcript(store, result.id) if m.message_type is MessageType.SYSTEM
    ]
    assert sorted(errors) == ["RuntimeError: 1", "RuntimeError: 2", "timed out after 0.1s"]


# --- pipeline ------------------------------------------------------------------------------


async def test_pipeline_runs_stages_in_order_with_stage_retries(store: Store) -> None:
    await build(
        store, "p", "pipeline", ["drafter", "editor"], {"stages": ["draft", "edit"], "max_stage_retries": 1}
    )
    drafter = ScriptedAgent([lambda c: reply({"text": f"draft of {c.task['input']['topic']}"})])
    editor = ScriptedAgent(
        [RuntimeError("flaky"), lambda c: reply({"text": c.task["input"]["text"].upper()})]
    )
    result = await Engine(store, {"drafter": drafter, "editor": editor}).run("p", {"topic": "owls"})
    assert result.status is ExecutionStatus.COMPLETED
    assert result.output_data is not None
    assert result.output_data["result"] == {"text": "DRAFT OF OWLS"}
    assert [c.call for c in editor.calls] == ["stage-1/edit/try-1", "stage-1/edit/try-2"]


async def test_failed_pipeline_resumes_from_its_last_checkpoint(store: Store) -> None:
    await build(
        store,
        "p",
        "pipeline",
        ["a", "b", "c"],
        {"stages": ["one", "two", "three"], "checkpoint_after": ["two"], "retry_failed_stages": False},
    )
    first, second = says("1"), says("2")
    broken = ScriptedAgent([RuntimeError("disk full")])
    engine = Engine(store, {"a": first, "b": second, "c": broken})
    failed = await engine.run("p", {"start": True})
    assert failed.status is ExecutionStatus.FAILED
    assert failed.error_details is not None
    assert failed.error_details["checkpoint"]["stage"] == "two"
    fixed = ScriptedAgent([lambda c: reply({"final": c.task["input"]})])
    engine = Engine(store, {"a": first, "b": second, "c": fixed})
    resumed = await engine.resume_from_checkpoint(failed.id)
    assert resumed.status is ExecutionStatus.COMPLETED
    assert resumed.output_data is not None
    assert resumed.output_data["result"] == {"final": {"answer": "2"}}
    assert (len(first.calls), len(second.calls)) == (1, 1)  # earlier stages are not run again
    assert resumed.metadata["resumed_from"] == str(failed.id)
    # Nothing recorded is lost or duplicated.
    assert await store.results.count(execution_id=failed.id) == 2
    assert await store.results.count(execution_id=resumed.id) == 1


# --- compound ------------------------------------------------------------------------------


async def test_compound_sequential_parallel_and_conditional(store: Store) -> None:
    await build(store, "up", "pipeline", ["upper"])
    await build(store, "rev", "pipeline", ["reverse"])
    agents = {
        "upper": ScriptedAgent([lambda c: reply({"text": str(c.task["input"]["text"]).upper()})]),
        "reverse": ScriptedAgent([lambda c: reply({"text": str(c.task["input"]["text"])[::-1]})]),
    }
    engine = Engine(store, agents)
    await build(store, "both", "compound", [], {"sub_topologies": ["up", "rev"]})
    sequential = await engine.run("both", {"text": "abc"})
    assert sequential.output_data is not None
    assert sequential.output_data["result"] == {"text": "CBA"}  # each child's result feeds the next
    children = (await store.executions.list(parent_id=sequential.id)).items
    assert len(children) == 2
    assert all(c.status is ExecutionStatus.COMPLETED for c in children)
    await build(
        store, "fan", "compound", [], {"sub_topologies": ["up", "rev"], "composition_type": "parallel"}
    )
    parallel = await engine.run("fan", {"text": "abc"})
    assert parallel.output_data is not None
    assert {k: v["result"] for k, v in parallel.output_data["results"].items()} == {
        "up": {"text": "ABC"},
        "rev": {"text": "cba"},
    }
    await build(
        store, "pick", "compound", [], {"sub_topologies": ["up", "rev"], "composition_type": "conditional"}
    )
    picked = await engine.run("pick", {"text": "abc", "route": "rev"})
    assert picked.output_data is not None
    assert picked.output_data["route"] == "rev"
    unrouted = await engine.run("pick", {"text": "abc"})
    assert unrouted.status is ExecutionStatus.FAILED


# --- human input ---------------------------------------------------------------------------


async def test_an_agent_can_pause_for_a_person(store: Store) -> None:
    await build(store, "e", "ensemble", ["asker", "steady"], {"aggregation_method": "concat"})

    def ask_or_answer(context: AgentContext) -> AgentReply:
        if context.human_input is None:
            return reply({}, needs_human="Which owl?")
        return reply({"answer": f"the {context.human_input}"})

    asker, steady = ScriptedAgent([ask_or_answer]), says("steady")
    engine = Engine(store, {"asker": asker, "steady": steady})
    paused = await engine.run("e", {})
    assert paused.status is ExecutionStatus.PAUSED
    assert paused.metadata["awaiting_human"]["question"] == "Which owl?"
    done = await engine.resume(paused.id, "barn owl")
    assert done.status is ExecutionStatus.COMPLETED
    assert done.output_data is not None
    assert done.output_data["result"] == "the barn owl\n\nsteady"
    assert len(steady.calls) == 1  # answered calls are replayed, not asked again
    assert await store.results.count(execution_id=done.id) == 2

"""All seven topologies with LLM agents (pydantic-ai function models scripted by what each
agent is told) on memory, SQLite and PostgreSQL: transcripts, results, token usage, pauses."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from qmcp_agents.adapters.llm import LLMAgent
from qmcp_agents.domain import (
    AgentTypeCreate,
    ExecutionRead,
    ExecutionStatus,
    MessageType,
    services,
)
from qmcp_agents.domain.engine import Engine
from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.queries import MAX_LIMIT, all_pages
from qmcp_agents.testing.builders import register_topology

from .scripting import Ask, Decision, Script, Seen, answer, per_request, scripted

pytestmark = pytest.mark.asyncio

ONE_CALL = {**per_request(1), "tool_calls": 0}


@dataclass
class Scenario:
    """A topology, the script its agents follow, and what the run must show."""

    build: Callable[[Store], Awaitable[None]]
    decide: Callable[[Seen], Decision]
    input: dict[str, Any]
    calls: int  # answered calls, each one request
    check: Callable[[ExecutionRead, Script], None]


# --- debate: the skeptic comes round after reading the first round ------------------------


async def _debate(store: Store) -> None:
    await register_topology(
        store, "t", "debate", ["pro", "con", "judge"], {"max_rounds": 3, "mediator_agent_name": "judge"}
    )


def _debate_says(seen: Seen) -> Decision:
    if seen.slot == "con" and '"answer": "yes"' not in seen.prompt:
        return answer("no", 0.6)
    return answer("yes", 0.8)


def _debate_check(run: ExecutionRead, script: Script) -> None:
    assert run.output_data is not None
    assert run.output_data["decision"] == "yes"
    assert run.output_data["rounds"] == 2
    con_round_2 = next(s for s in script.seen if s.call == "round-2/con")
    assert '"slot": "pro"' in con_round_2.prompt  # it read round 1 before answering
    verdict = next(s for s in script.seen if s.call == "verdict")
    assert verdict.slot == "judge"


# --- the specification's default debate: consensus by a mediator nobody names ----------


async def _seed_debate(store: Store) -> None:
    await services.register_agent_type(
        store, AgentTypeCreate(name="chair", description="chairs", role="coordinator")
    )
    await register_topology(store, "t", "debate", ["pro", "con", "chair"], {})


def _seed_debate_says(seen: Seen) -> Decision:
    return answer("no" if seen.slot == "chair" else "yes", 0.7)


def _seed_debate_check(run: ExecutionRead, script: Script) -> None:
    assert run.output_data is not None
    assert run.output_data["decision"] == "no"  # the coordinator decides
    assert run.output_data["method"] == "mediator"
    assert any(s.slot == "chair" and s.call == "verdict" for s in script.seen)


# --- chain of command: orders down, a doubtful worker escalates -------------------------


async def _chain(store: Store) -> None:
    await register_topology(store, "t", "chain", ["boss", "middle", "hand"])


def _chain_says(seen: Seen) -> Decision:
    if seen.call.startswith("direct/"):
        return answer(f"order from {seen.slot}")
    if seen.call.startswith("execute/"):
        assert "order from lieutenant" in seen.prompt
        return answer("guess", 0.2)
    return answer("settled", 0.95)


def _chain_check(run: ExecutionRead, script: Script) -> None:
    assert run.output_data is not None
    assert run.output_data["answered_by"] == "lieutenant"
    assert run.output_data["escalations"] == 1
    assert [s.call for s in script.seen] == [
        "direct/commander",
        "direct/lieutenant",
        "execute/worker",
        "escalated/lieutenant",
    ]


# --- delegation: routed by capability ----------------------------------------------------


async def _delegation(store: Store) -> None:
    await register_topology(
        store, "t", "delegation", ["a", "b"], {}, capabilities={"a": ["maths"], "b": ["prose"]}
    )


def _delegation_says(seen: Seen) -> Decision:
    return answer(f"{seen.slot} did {json.loads(seen.prompt.split('Task:')[1].split('The conv')[0])['what']}")


def _delegation_check(run: ExecutionRead, script: Script) -> None:
    assert run.output_data is not None
    assert [(a["slot"], a["output"]["answer"]) for a in run.output_data["assignments"]] == [
        ("b", "b did poem"),
        ("a", "a did sum"),
    ]


# --- cross-check: specialised checkers agree ----------------------------------------------


async def _crosscheck(store: Store) -> None:
    await register_topology(
        store,
        "t",
        "crosscheck",
        ["a", "b"],
        {"num_checkers": 2, "checker_specializations": ["facts", "style"]},
    )


def _crosscheck_says(seen: Seen) -> Decision:
    focus = "facts" if '"specialization": "facts"' in seen.prompt else "style"
    return answer("sound", 0.9 if focus == "facts" else 0.8)


def _crosscheck_check(run: ExecutionRead, script: Script) -> None:
    assert run.output_data is not None
    assert run.output_data["approved"] is True
    assert run.output_data["answer"] == "sound"
    assert {s.slot: '"specialization": "facts"' in s.prompt for s in script.seen} == {"a": True, "b": False}


# --- cross-check decided by a mediator that answers JSON and withholds approval -----------


async def _mediated_crosscheck(store: Store) -> None:
    await services.register_agent_type(
        store,
        AgentTypeCreate(
            name="chair", description="chairs", role="coordinator", config={"output_format": "json"}
        ),
    )
    await register_topology(
        store, "t", "crosscheck", ["a", "b", "chair"], {"num_checkers": 2, "consensus_method": "mediator"}
    )


def _mediated_says(seen: Seen) -> Decision:
    if seen.call == "verdict":
        assert seen.slot == "chair"
        assert '"checks"' in seen.prompt
        return answer("sound", 0.6, seen=seen, approved=False)
    return answer("sound")


def _mediated_check(run: ExecutionRead, script: Script) -> None:
    assert run.output_data is not None
    assert run.output_data["answer"] == "sound"
    assert run.output_data["approved"] is False  # the mediator's decision, not the checkers' agreement
    assert run.output_data["decided_by"] == "chair"


# --- ensemble: an LLM synthesizes the others' answers -------------------------------------


async def _ensemble(store: Store) -> None:
    await register_topology(
        store, "t", "ensemble", ["a", "b", "synthesizer"], {"aggregation_method": "synthesis"}
    )


def _ensemble_says(seen: Seen) -> Decision:
    if seen.call == "synthesis":
        return answer(
            "a+b" if '"answer": "from a"' in seen.prompt and '"answer": "from b"' in seen.prompt else "?"
        )
    return answer(f"from {seen.slot}")


def _ensemble_check(run: ExecutionRead, script: Script) -> None:
    assert run.output_data is not None
    assert run.output_data["result"] == "a+b"
    assert run.output_data["fallback"] is False
    assert run.output_data["synthesized_by"] == "synthesizer"


# --- pipeline: the first stage answers JSON, the second reads it --------------------------


async def _pipeline(store: Store) -> None:
    await register_topology(
        store,
        "t",
        "pipeline",
        ["a", "b"],
        {"stages": ["draft", "polish"], "checkpoint_after": ["draft"]},
        agent_config={"a": {"output_format": "json"}},
    )


def _pipeline_says(seen: Seen) -> Decision:
    if seen.slot == "draft":
        assert seen.wants_json
        return answer("owls", seen=seen, words=3)
    assert '"words": 3' in seen.prompt
    return answer("Owls, polished.")


def _pipeline_check(run: ExecutionRead, script: Script) -> None:
    assert run.output_data is not None
    assert run.output_data["stages"]["draft"] == {"answer": "owls", "words": 3}
    assert run.output_data["result"] == {"text": "I say Owls, polished.", "answer": "Owls, polished."}


# --- compound: a child ensemble --------------------------------------------------------------


async def _compound(store: Store) -> None:
    await register_topology(store, "inner", "ensemble", ["a"], {"aggregation_method": "vote"})
    await register_topology(store, "t", "compound", [], {"sub_topologies": ["inner"]})


def _compound_check(run: ExecutionRead, script: Script) -> None:
    assert run.output_data is not None
    assert run.output_data["result"]["result"] == "inner answer"
    assert script.seen[0].instructions.count("'inner'") == 1


SCENARIOS: dict[str, Scenario] = {
    "debate": Scenario(_debate, _debate_says, {"q": "adopt?"}, 5, _debate_check),
    "seed-default-debate": Scenario(_seed_debate, _seed_debate_says, {"q": "?"}, 3, _seed_debate_check),
    "chain_of_command": Scenario(_chain, _chain_says, {"job": "dig"}, 4, _chain_check),
    "delegation": Scenario(
        _delegation,
        _delegation_says,
        {"tasks": [{"capability": "prose", "what": "poem"}, {"capability": "maths", "what": "sum"}]},
        2,
        _delegation_check,
    ),
    "cross_check": Scenario(_crosscheck, _crosscheck_says, {"claim": "x"}, 2, _crosscheck_check),
    "mediated-crosscheck": Scenario(_mediated_crosscheck, _mediated_says, {"claim": "x"}, 3, _mediated_check),
    "ensemble": Scenario(_ensemble, _ensemble_says, {"q": "?"}, 3, _ensemble_check),
    "pipeline": Scenario(_pipeline, _pipeline_says, {"topic": "owls"}, 2, _pipeline_check),
    "compound": Scenario(_compound, lambda seen: answer("inner answer"), {"q": "?"}, 0, _compound_check),
}


async def _transcript(store: Store, execution_id: Any) -> tuple[list[Any], list[Any]]:
    messages = await all_pages(lambda a: store.messages.list(execution_id, limit=MAX_LIMIT, after=a))
    results = await all_pages(
        lambda a: store.results.list(execution_id=execution_id, limit=MAX_LIMIT, after=a)
    )
    return messages, results


@pytest.mark.parametrize("kind", list(SCENARIOS))
async def test_topology_runs_with_llm_agents(any_store: Store, kind: str) -> None:
    scenario = SCENARIOS[kind]
    await scenario.build(any_store)
    script = scripted(scenario.decide)
    run = await Engine(any_store, LLMAgent(script.model()).lookup).run("t", scenario.input)

    assert run.status is ExecutionStatus.COMPLETED, (run.error, run.error_details)
    scenario.check(run, script)
    messages, results = await _transcript(any_store, run.id)
    assert [m.sequence_number for m in messages] == list(range(1, len(messages) + 1))
    responses = [m for m in messages if m.message_type is MessageType.RESPONSE]
    assert len(responses) == len(results) == scenario.calls
    # Each answer is recorded with the model's confidence, reasoning and the provider's usage.
    assert all(r.token_usage == ONE_CALL and r.reasoning == "scripted" for r in results)
    assert {json.dumps(m.content["output"], sort_keys=True) for m in responses} == {
        json.dumps(r.output, sort_keys=True) for r in results
    }
    assert all(0.0 <= (r.confidence or 0.0) <= 1.0 for r in results)
    # The execution's totals add every call up (a compound's include its child's).
    calls = len(script.seen)
    stored = await any_store.executions.get(run.id)
    assert stored.metadata["token_usage"] == {**per_request(calls), "tool_calls": 0}


async def test_an_llm_agent_pauses_for_a_person_and_resumes_with_the_answer(any_store: Store) -> None:
    await register_topology(any_store, "t", "pipeline", ["a", "b"], {"stages": ["draft", "polish"]})

    def decide(seen: Seen) -> Decision:
        if seen.slot == "draft":
            return answer("draft")
        if "Their answer" not in seen.prompt:
            return Ask("Which tone, dry or warm?")
        if not seen.tool_returns:  # it asks again: the tool now answers with the person's reply
            return Ask("Which tone, dry or warm?")
        return answer(f"in a {seen.tool_returns[0]} tone")

    script = scripted(decide)
    engine = Engine(any_store, LLMAgent(script.model()).lookup)
    paused = await engine.run("t", {"topic": "owls"})

    assert paused.status is ExecutionStatus.PAUSED
    waiting = (await any_store.executions.get(paused.id)).metadata["awaiting_human"]
    assert waiting["question"] == "Which tone, dry or warm?"
    assert waiting["slot"] == "polish"
    messages, results = await _transcript(any_store, paused.id)
    assert len(results) == 1  # only the draft is answered so far
    assert messages[-1].message_type is MessageType.SYSTEM
    assert messages[-1].content["question"] == "Which tone, dry or warm?"

    done = await engine.resume(paused.id, "dry")

    assert done.status is ExecutionStatus.COMPLETED, done.error
    assert done.output_data is not None
    assert done.output_data["result"]["answer"] == "in a dry tone"
    assert [s.call for s in script.seen] == ["stage-0/draft/try-1", "stage-1/polish/try-1"] + [
        "stage-1/polish/try-1"
    ] * 2
    messages, results = await _transcript(any_store, done.id)
    assert len(results) == 2
    polish = next(r for r in results if r.output.get("answer") == "in a dry tone")
    # The resumed call asked once more (one tool call answered from the person's reply).
    assert polish.token_usage == {**per_request(2), "tool_calls": 1}
    stored = await any_store.executions.get(done.id)
    # Totals include the call that asked the question.
    assert stored.metadata["token_usage"] == {**per_request(4), "tool_calls": 1}


async def test_a_question_in_a_child_pauses_the_compound_and_the_answer_resumes_both(
    any_store: Store,
) -> None:
    await register_topology(any_store, "inner", "pipeline", ["a"], {})
    await register_topology(any_store, "t", "compound", [], {"sub_topologies": ["inner"]})

    def decide(seen: Seen) -> Decision:
        if "Their answer" not in seen.prompt:
            return Ask("May I?")
        return answer("granted")

    script = scripted(decide)
    engine = Engine(any_store, LLMAgent(script.model()).lookup)
    paused = await engine.run("t", {})
    assert paused.status is ExecutionStatus.PAUSED
    (child,) = (await any_store.executions.list(parent_id=paused.id)).items
    assert child.status is ExecutionStatus.PAUSED
    assert (await any_store.executions.get(paused.id)).metadata["awaiting_human"]["question"] == "May I?"

    done = await engine.resume(paused.id, "yes")

    assert done.status is ExecutionStatus.COMPLETED, done.error_details
    assert done.output_data is not None
    assert done.output_data["result"]["answer"] == "granted"
    assert (await any_store.executions.get(child.id)).status is ExecutionStatus.COMPLETED
    totals = (await any_store.executions.get(done.id)).metadata["token_usage"]
    assert totals == {**per_request(2), "tool_calls": 0}  # the question and the answer, via the child

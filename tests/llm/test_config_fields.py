"""Every ``AgentConfig`` field an LLM agent reads, each with a test that fails if it is ignored
(on the in-memory store: the engine's recording is covered on every backend elsewhere)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.models.function import FunctionModel

from qmcp_agents.adapters.llm import LLMAgent, check_topology
from qmcp_agents.domain import ExecutionStatus, MessageType
from qmcp_agents.domain.engine import Engine
from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.queries import MAX_LIMIT
from qmcp_agents.testing.builders import register_topology

from .scripting import Ask, Decision, Seen, answer, scripted

pytestmark = pytest.mark.asyncio


async def solo(
    store: Store, config: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None
) -> None:
    """A one-stage pipeline of agent type ``solo`` (no stage retries: only the agent's own),
    its membership given ``overrides``."""
    await register_topology(
        store, "t", "pipeline", ["solo"], {"retry_failed_stages": False}, agent_config={"solo": config or {}}
    )
    if overrides:
        topology = await store.topologies.get_by_name("t")
        topology.memberships[0].config_overrides = overrides
        await store.topologies.update(topology)


async def run_solo(store: Store, decide: Any, **engine: Any) -> tuple[Any, list[Seen]]:
    script = scripted(decide)
    result = await Engine(store, LLMAgent(script.model()).lookup, **engine).run("t", {"q": "?"})
    return result, script.seen


async def test_temperature_and_max_tokens_are_model_settings_after_overrides(store: Store) -> None:
    await solo(store, {"temperature": 0.2, "max_tokens": 300}, overrides={"max_tokens": 77})
    run, seen = await run_solo(store, lambda s: answer("x"))
    assert run.status is ExecutionStatus.COMPLETED
    assert seen[0].settings == {"temperature": 0.2, "max_tokens": 77, "max_retries": 0}


async def test_system_prompt_role_slot_and_topology_are_the_instructions(store: Store) -> None:
    await solo(store, {"system_prompt": "You only speak in haiku."})
    _, seen = await run_solo(store, lambda s: answer("x"))
    instructions = seen[0].instructions
    assert instructions.startswith("You only speak in haiku.")
    assert "agent type 'solo' (specialist: solo)" in instructions
    assert "slot 'solo' of the pipeline topology 't'" in instructions
    assert "one stage of a pipeline" in instructions  # what its part in the topology asks of it


async def test_json_output_is_checked_by_the_payload_rules_and_asked_again(store: Store) -> None:
    await solo(store, {"output_format": "json"})
    replies: list[Decision] = [
        {"output": {"answer": "a\x00b"}, "confidence": 0.5},  # no NUL in a JSON payload
        {"output": {"answer": "clean", "n": 2}, "confidence": 0.5},
    ]
    run, seen = await run_solo(store, lambda s: replies.pop(0))
    assert run.status is ExecutionStatus.COMPLETED, run.error
    assert all(s.wants_json for s in seen)
    assert len(seen) == 2  # the first answer was refused and the model asked again
    (result,) = (await store.results.list(execution_id=run.id)).items
    assert result.output == {"answer": "clean", "n": 2}
    assert result.token_usage is not None
    assert result.token_usage["requests"] == 2


async def test_other_output_formats_answer_text_written_as_asked(store: Store) -> None:
    await solo(store, {"output_format": "markdown"})
    run, seen = await run_solo(store, lambda s: answer("x"))
    assert not seen[0].wants_json
    assert "written as markdown" in seen[0].instructions
    (result,) = (await store.results.list(execution_id=run.id)).items
    assert result.output == {"text": "I say x", "answer": "x"}


async def test_max_tool_calls_zero_offers_no_tool(store: Store) -> None:
    await solo(store, {"max_tool_calls": 0})
    _, seen = await run_solo(store, lambda s: answer("x"))
    assert seen[0].tools == []
    assert "ask_human" not in seen[0].instructions


async def test_max_tool_calls_is_a_usage_limit_and_stops_the_call(store: Store) -> None:
    await solo(store, {"max_tool_calls": 1, "max_retries": 2})
    paused, _ = await run_solo(store, lambda s: Ask("again?"))
    assert paused.status is ExecutionStatus.PAUSED
    script = scripted(lambda s: Ask("again?"))  # after the answer, it keeps asking
    failed = await Engine(store, LLMAgent(script.model()).lookup).resume(paused.id, "yes")
    assert failed.status is ExecutionStatus.FAILED
    messages = (await store.messages.list(failed.id, limit=MAX_LIMIT)).items
    failures = [
        m.content["error"] for m in messages if m.message_type is MessageType.SYSTEM and "error" in m.content
    ]
    assert len(failures) == 1  # refused, not retried although max_retries is 2
    assert "max_tool_calls is 1" in failures[0]
    assert len(script.seen) == 2  # one tool call answered, the second would exceed the limit


async def test_timeout_seconds_bounds_each_attempt(store: Store) -> None:
    await solo(store, {"timeout_seconds": 1, "max_retries": 1})

    async def slow(messages: Any, info: Any) -> Any:
        await asyncio.sleep(5)
        raise AssertionError("not reached")

    run = await Engine(store, LLMAgent(FunctionModel(slow)).lookup, timeout_scale=0.02).run("t", {})
    assert run.status is ExecutionStatus.FAILED
    messages = (await store.messages.list(run.id, limit=MAX_LIMIT)).items
    errors = [m.content["error"] for m in messages if m.message_type is MessageType.SYSTEM]
    assert errors == ["timed out after 0.02s"] * 2


@pytest.mark.parametrize("retries", [0, 2])
async def test_transient_errors_are_retried_within_max_retries_then_recorded(
    store: Store, retries: int
) -> None:
    await solo(store, {"max_retries": retries})
    run, seen = await run_solo(store, lambda s: ModelHTTPError(429, "scripted", {"error": "slow down"}))
    assert run.status is ExecutionStatus.FAILED
    assert len(seen) == retries + 1
    messages = (await store.messages.list(run.id, limit=MAX_LIMIT)).items
    errors = [m.content["error"] for m in messages if m.message_type is MessageType.SYSTEM]
    assert len(errors) == retries + 1
    assert all(
        e.startswith("LLMCallFailed: agent type 'solo', model 'scripted'") and "429" in e for e in errors
    )
    assert run.error_details is not None
    assert run.error_details["errors"] == errors


async def test_a_transient_error_then_an_answer_completes(store: Store) -> None:
    await solo(store, {"max_retries": 1})
    outcomes: list[Decision] = [ModelHTTPError(503, "scripted"), answer("ok")]
    run, seen = await run_solo(store, lambda s: outcomes.pop(0))
    assert run.status is ExecutionStatus.COMPLETED
    assert len(seen) == 2


async def test_a_refused_request_is_not_retried(store: Store) -> None:
    await solo(store, {"max_retries": 3})
    run, seen = await run_solo(store, lambda s: ModelHTTPError(401, "scripted", {"error": "bad key"}))
    assert run.status is ExecutionStatus.FAILED
    assert len(seen) == 1
    assert run.error_details is not None
    (error,) = run.error_details["errors"]
    assert "refused the API key" in error


async def test_a_missing_key_is_named_before_and_during_a_run(store: Store) -> None:
    await solo(store, {"model": "claude-sonnet-4-20250514", "max_retries": 3})
    agent = LLMAgent(env={})
    with pytest.raises(ValueError, match="ANTHROPIC_API_KEY") as refused:
        await check_topology(store, "t", agent)
    assert "agent type 'solo'" in str(refused.value)
    assert "anthropic:claude-sonnet-4-20250514" in str(refused.value)
    run = await Engine(store, agent.lookup).run("t", {})  # the engine records it, once
    assert run.status is ExecutionStatus.FAILED
    assert run.error_details is not None
    (error,) = run.error_details["errors"]
    assert "set ANTHROPIC_API_KEY" in error


async def test_the_model_comes_from_the_membership_override_unless_the_agent_fixes_one(store: Store) -> None:
    await solo(store, {"model": "claude-sonnet-4-20250514"}, overrides={"model": "gpt-4o"})
    with pytest.raises(ValueError, match="set OPENAI_API_KEY"):
        await check_topology(store, "t", LLMAgent(env={}))
    choices = await check_topology(store, "t", LLMAgent(env={"OPENAI_API_KEY": "k"}))
    assert {k: c.label for k, c in choices.items()} == {"t/solo": "openai:gpt-4o"}
    offline = await check_topology(store, "t", LLMAgent("test", env={}))
    assert {c.provider for c in offline.values()} == {"test"}


async def test_a_text_answer_that_cannot_be_stored_is_asked_again(store: Store) -> None:
    await solo(store, {"max_retries": 1})
    replies: list[Decision] = [
        {"text": "fine", "answer": 2**70, "confidence": 0.5},  # past the signed 64-bit range
        {"text": "fine", "reasoning": "no\x00pe", "confidence": 0.5},  # NUL in a stored string
        answer("fine"),
    ]
    run, seen = await run_solo(store, lambda s: replies.pop(0))
    assert run.status is ExecutionStatus.COMPLETED, run.error_details
    assert len(seen) == 3
    # pydantic-ai asked once more within the call; the second bad answer failed the attempt,
    # and the engine's next attempt got a storable one.
    messages = (await store.messages.list(run.id, limit=MAX_LIMIT)).items
    (failure,) = [m.content["error"] for m in messages if m.message_type is MessageType.SYSTEM]
    assert failure.startswith("LLMCallFailed: agent type 'solo', model 'scripted'")

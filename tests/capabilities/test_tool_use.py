"""tool_use over real MCP servers (stdio and HTTP), human_in_loop approvals, structured output:
LLM agents driven by pydantic-ai's FunctionModel, everything checked in the transcript."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic_ai.mcp import MCPToolset
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from qmcp_agents.adapters.llm import LLMAgent
from qmcp_agents.domain import ExecutionStatus, MessageType
from qmcp_agents.domain.engine import Engine
from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.queries import all_pages
from qmcp_agents.testing.builders import register_topology

pytestmark = pytest.mark.asyncio

USAGE = RequestUsage(input_tokens=50, output_tokens=5)


@dataclass
class ToolScript:
    """First request: call ``calls`` (in parallel); then answer, quoting what the tools returned.
    ``answers`` (if given) are the successive final outputs, for structured-output tests."""

    calls: list[tuple[str, dict[str, Any]]]
    answers: list[dict[str, Any]] = field(default_factory=list)
    tools_seen: list[list[str]] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    requests: int = 0

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.requests += 1
        self.tools_seen.append(sorted(t.name for t in info.function_tools))
        self.prompts.extend(
            p.content
            for m in messages
            if isinstance(m, ModelRequest)
            for p in m.parts
            if isinstance(p, UserPromptPart) and isinstance(p.content, str)
        )
        returns = [
            p.content
            for m in messages
            if isinstance(m, ModelRequest)
            for p in m.parts
            if isinstance(p, ToolReturnPart)
        ]
        if not returns and self.calls:
            return ModelResponse(parts=[ToolCallPart(name, args) for name, args in self.calls], usage=USAGE)
        if self.answers:
            out = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
            final = {"output": out, "confidence": 0.8}
        else:
            final = {"text": json.dumps(returns, default=str), "answer": "ok", "confidence": 0.8}
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, final)], usage=USAGE)


async def team(store: Store, caps: list[dict[str, Any]], **config: Any) -> None:
    await register_topology(
        store,
        "tools",
        "ensemble",
        ["worker"],
        {"aggregation_method": "vote"},
        agent_config={"worker": {"capabilities": caps, "max_retries": 0, **config}},
    )


async def tool_calls(store: Store, execution_id: Any) -> list[dict[str, Any]]:
    messages = await all_pages(lambda a: store.messages.list(execution_id, limit=100, after=a))
    assert [m.sequence_number for m in messages] == list(range(1, len(messages) + 1))
    return [m.content["tool_call"] for m in messages if "tool_call" in m.content]


def agent(script: Callable[..., ModelResponse], tools: Any) -> LLMAgent:
    return LLMAgent(FunctionModel(script, model_name="scripted"), tools=tools)


async def test_mcp_tools_over_stdio_are_called_and_every_call_recorded(
    store: Store, stdio_tools: MCPToolset[Any]
) -> None:
    await team(store, [{"name": "tool_use", "config": {"denied_tools": ["delete_everything"]}}])
    script = ToolScript([("add", {"a": 2, "b": 3}), ("shout", {"text": "hi"}), ("fail", {"message": "nope"})])
    run = await Engine(store, agent(script, [stdio_tools]).lookup).run("tools", {"q": 1})
    assert run.status is ExecutionStatus.COMPLETED, run.error
    assert "delete_everything" not in script.tools_seen[0]
    assert {"add", "shout", "slow", "fail"} <= set(script.tools_seen[0])
    calls = {c["name"]: c for c in await tool_calls(store, run.id)}
    assert calls["add"]["arguments"] == {"a": 2, "b": 3}
    assert calls["add"]["result"] == 5
    assert calls["shout"]["result"] == "HI"
    assert "nope" in calls["fail"]["error"]
    assert all(isinstance(c["duration_ms"], int) and c["call"] == "answer/worker" for c in calls.values())
    (result,) = (await store.results.list(execution_id=run.id)).items
    assert result.token_usage is not None
    assert result.token_usage["tool_calls"] == 3


async def test_mcp_tools_over_http_and_python_functions(store: Store, http_server: str) -> None:
    def weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    await team(store, [{"name": "tool_use", "config": {"allowed_tools": ["add", "weather"]}}])
    script = ToolScript([("add", {"a": 40, "b": 2}), ("weather", {"city": "Oslo"})])
    async with MCPToolset(http_server) as http_tools:
        run = await Engine(store, agent(script, [http_tools, weather]).lookup).run("tools", {})
    assert run.status is ExecutionStatus.COMPLETED, run.error
    assert [t for t in script.tools_seen[0] if t != "ask_human"] == ["add", "weather"]  # allowed list only
    calls = {c["name"]: c["result"] for c in await tool_calls(store, run.id)}
    assert calls == {"add": 42, "weather": "sunny in Oslo"}


async def test_per_turn_limit_and_timeout_hold(store: Store, stdio_tools: MCPToolset[Any]) -> None:
    await team(
        store,
        [{"name": "tool_use", "config": {"max_tool_calls_per_turn": 2, "tool_call_timeout_seconds": 0.3}}],
    )
    script = ToolScript([("slow", {"seconds": 5}), ("add", {"a": 1, "b": 1}), ("add", {"a": 2, "b": 2})])
    run = await Engine(store, agent(script, [stdio_tools]).lookup).run("tools", {})
    assert run.status is ExecutionStatus.COMPLETED, run.error
    calls = await tool_calls(store, run.id)
    assert len(calls) == 3
    timed_out = [c for c in calls if c["name"] == "slow"]
    assert timed_out[0]["error"] == "timed out after 0.3s"
    assert timed_out[0]["duration_ms"] < 2000
    refused = [c for c in calls if "refused" in c]
    assert len(refused) == 1
    assert "limit of 2 tool calls per turn" in refused[0]["refused"]
    assert sum(1 for c in calls if "result" in c) == 1


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"approve": True}, {"result": "deleted", "arguments": {"confirm": True}}),
        ({"approve": False, "reason": "not today"}, {"denied": "not today", "arguments": {"confirm": True}}),
        (
            {"approve": True, "arguments": {"confirm": False}},
            {"result": "kept", "arguments": {"confirm": False}, "requested_arguments": {"confirm": True}},
        ),
    ],
)
async def test_an_approval_pauses_the_run_and_resume_applies_the_decision(
    sql_store: Store, stdio_tools: MCPToolset[Any], answer: dict[str, Any], expected: dict[str, Any]
) -> None:
    caps: list[dict[str, Any]] = [
        {"name": "tool_use"},
        {"name": "human_in_loop", "config": {"require_approval_for": ["delete_everything"]}},
    ]
    await team(sql_store, caps)
    script = ToolScript([("delete_everything", {"confirm": True})])
    engine = Engine(sql_store, agent(script, [stdio_tools]).lookup)
    paused = await engine.run("tools", {})
    assert paused.status is ExecutionStatus.PAUSED
    assert await tool_calls(sql_store, paused.id) == []  # nothing ran before the decision
    question = paused.metadata["awaiting_human"]["question"]
    assert "delete_everything" in question
    assert '{"confirm": true}' in question
    done = await engine.resume(paused.id, answer)
    assert done.status is ExecutionStatus.COMPLETED, done.error
    (call,) = await tool_calls(sql_store, done.id)
    assert {k: call[k] for k in expected} == expected
    messages = (await sql_store.messages.list(done.id, limit=100)).items
    kinds = [m.message_type for m in messages]
    assert kinds.count(MessageType.RESPONSE) == 1  # the answer, once
    assert sum(1 for m in messages if "question" in m.content) == 1  # the question, once
    assert len((await sql_store.results.list(execution_id=done.id)).items) == 1


async def test_an_approval_answered_too_late_follows_the_escalation_policy(
    store: Store, stdio_tools: MCPToolset[Any]
) -> None:
    for policy, status, check in (
        ("abort", ExecutionStatus.FAILED, lambda calls: calls == []),
        ("continue", ExecutionStatus.COMPLETED, lambda calls: calls[0]["result"] == "deleted"),
        ("default", ExecutionStatus.COMPLETED, lambda calls: "no approval in time" in calls[0]["denied"]),
    ):
        caps = [
            {"name": "tool_use"},
            {
                "name": "human_in_loop",
                "config": {
                    "require_approval_for": ["delete_everything"],
                    "approval_timeout_seconds": 0.001,
                    "escalation_on_timeout": policy,
                },
            },
        ]
        name = f"late-{policy}"
        await register_topology(
            store, name, "ensemble", [name], {}, agent_config={name: {"capabilities": caps, "max_retries": 0}}
        )
        engine = Engine(
            store, agent(ToolScript([("delete_everything", {"confirm": True})]), [stdio_tools]).lookup
        )
        paused = await engine.run(name, {})
        assert paused.status is ExecutionStatus.PAUSED
        done = await engine.resume(paused.id, {"approve": False})
        assert done.status is status, (policy, done.error)
        assert check(await tool_calls(store, done.id)), policy


SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}


async def test_structured_output_is_repaired_then_validated(store: Store) -> None:
    caps = [{"name": "structured_output", "config": {"output_schema": SCHEMA, "max_repair_attempts": 2}}]
    await team(store, caps)
    script = ToolScript([], answers=[{"answer": "seven"}, {"answer": 7}])
    run = await Engine(store, agent(script, []).lookup).run("tools", {})
    assert run.status is ExecutionStatus.COMPLETED, run.error
    (result,) = (await store.results.list(execution_id=run.id)).items
    assert result.output == {"answer": 7}
    assert result.token_usage is not None
    assert result.token_usage["requests"] == 2
    assert any("JSON Schema" in p and '"integer"' in p for p in script.prompts)
    assert any("$.answer: 'seven' is not of type 'integer'" in p for p in script.prompts)


async def test_structured_output_that_stays_invalid_fails_naming_the_path(store: Store) -> None:
    caps = [{"name": "structured_output", "config": {"output_schema": SCHEMA, "max_repair_attempts": 1}}]
    await register_topology(
        store,
        "strict",
        "pipeline",
        ["w"],
        {"retry_failed_stages": False},
        agent_config={"w": {"capabilities": caps, "max_retries": 0}},
    )
    script = ToolScript([], answers=[{"answer": "seven"}])
    run = await Engine(store, agent(script, []).lookup).run("strict", {})
    assert run.status is ExecutionStatus.FAILED
    assert script.requests == 2  # one answer, one repair
    assert run.error_details is not None
    assert run.error_details["capability"] == "structured_output"
    assert "$.answer: 'seven' is not of type 'integer'" in str(run.error_details["errors"])


async def test_an_llm_agent_remembers_through_tools_and_recalls_after_reopening(tmp_path: Any) -> None:
    from qmcp_agents.adapters import open_store

    url = f"sqlite:///{tmp_path / 'memory.db'}"
    caps = [{"name": "memory"}]
    async with open_store(url) as first_store:
        await first_store.create_schema()
        await team(first_store, caps)
        writer = ToolScript(
            [("remember", {"text": "the launch code is 1234", "tags": ["secrets"], "importance": 1})]
        )
        run = await Engine(first_store, agent(writer, []).lookup).run("tools", {"task": "keep this"})
        assert run.status is ExecutionStatus.COMPLETED, run.error
        assert {"remember", "recall", "forget"} <= set(writer.tools_seen[0])
    async with open_store(url) as second_store:
        reader = ToolScript([("recall", {"query": "launch code"})])
        run = await Engine(second_store, agent(reader, []).lookup).run(
            "tools", {"task": "what is the launch code"}
        )
        assert run.status is ExecutionStatus.COMPLETED, run.error
        assert any(
            "What you remember" in p and "the launch code is 1234 [secrets]" in p for p in reader.prompts
        )
        (result,) = (await second_store.results.list(execution_id=run.id)).items
        assert "the launch code is 1234" in result.output["text"]

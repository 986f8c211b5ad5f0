"""Capability hooks called by the engine: order, changes to requests and replies, failures,
and the built-in memory and reasoning behaviours."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qmcp_agents.adapters import open_store
from qmcp_agents.domain import ExecutionStatus
from qmcp_agents.domain.capabilities import (
    CapabilityConfig,
    CapabilityDefinition,
    CapabilityHooks,
    HookContext,
    MemoryBank,
    memory_instance_id,
    registry,
)
from qmcp_agents.domain.engine import AgentContext, AgentReply, Engine, ScriptedAgent, reply
from qmcp_agents.domain.message import Message
from qmcp_agents.domain.ports import Store

from .conftest import build

pytestmark = pytest.mark.asyncio

EVENTS: list[tuple[str, str, str]] = []


class TraceConfig(CapabilityConfig):
    tag: str = "t"


class Tracer(CapabilityHooks):
    config: TraceConfig

    def _log(self, ctx: HookContext, hook: str) -> None:
        EVENTS.append((ctx.slot, self.name, hook))

    async def on_create(self, ctx: HookContext) -> None:
        self._log(ctx, "on_create")

    async def on_start(self, ctx: HookContext) -> None:
        self._log(ctx, "on_start")

    async def on_message(self, ctx: HookContext, message: Message) -> None:
        self._log(ctx, "on_message")

    async def on_invoke(self, ctx: HookContext, request: AgentContext) -> AgentContext:
        self._log(ctx, "on_invoke")
        seen = [*request.task.get("seen", []), self.name]
        return AgentContext(**{**_fields(request), "task": {**request.task, "seen": seen}})

    async def on_response(self, ctx: HookContext, request: AgentContext, answer: AgentReply) -> AgentReply:
        self._log(ctx, "on_response")
        stamped = [*answer.output.get("stamped", []), f"{self.name}:{self.config.tag}"]
        return AgentReply(output={**answer.output, "stamped": stamped}, confidence=answer.confidence)

    async def on_complete(self, ctx: HookContext) -> None:
        self._log(ctx, "on_complete")

    async def on_error(self, ctx: HookContext, error: BaseException) -> None:
        self._log(ctx, "on_error")

    async def on_destroy(self, ctx: HookContext) -> None:
        self._log(ctx, "on_destroy")


class Exploding(Tracer):
    async def on_response(self, ctx: HookContext, request: AgentContext, answer: AgentReply) -> AgentReply:
        raise RuntimeError("kaboom")


def _fields(request: AgentContext) -> dict[str, Any]:
    return {name: getattr(request, name) for name in AgentContext.__dataclass_fields__}


@pytest.fixture(autouse=True)
def tracing_capabilities() -> Iterator[None]:
    EVENTS.clear()
    added = [
        CapabilityDefinition("trace-base", "1.0.0", TraceConfig, (), "", Tracer),
        CapabilityDefinition("trace-top", "1.0.0", TraceConfig, ("trace-base",), "", Tracer),
        CapabilityDefinition("exploding", "1.0.0", TraceConfig, (), "", Exploding),
    ]
    for definition in added:
        registry.register(definition, replace=True)
    yield
    for definition in added:
        registry.unregister(definition.name)


def echo_task(context: AgentContext) -> AgentReply:
    return reply({"answer": "yes", "seen": context.task.get("seen", [])}, 0.9)


async def test_hooks_run_in_dependency_order_at_every_lifecycle_point(any_store: Store) -> None:
    caps = [  # listed dependent-first: the engine orders them
        {"name": "trace-top", "config": {"tag": "top"}},
        {"name": "trace-base", "config": {"tag": "base"}},
    ]
    await build(
        any_store,
        "e",
        "ensemble",
        ["a"],
        {"aggregation_method": "vote"},
        agent_config={"a": {"capabilities": caps}},
    )
    run = await Engine(any_store, {"a": ScriptedAgent([echo_task])}).run("e", {"q": 1})
    assert run.status is ExecutionStatus.COMPLETED
    hooks = [(cap, hook) for _, cap, hook in EVENTS]
    assert hooks[:4] == [
        ("trace-base", "on_create"),
        ("trace-top", "on_create"),
        ("trace-base", "on_start"),
        ("trace-top", "on_start"),
    ]
    assert hooks[4:8] == [
        ("trace-base", "on_invoke"),
        ("trace-top", "on_invoke"),
        ("trace-base", "on_response"),
        ("trace-top", "on_response"),
    ]
    assert ("trace-base", "on_message") in hooks
    assert hooks[-4:] == [
        ("trace-base", "on_complete"),
        ("trace-top", "on_complete"),
        ("trace-base", "on_destroy"),
        ("trace-top", "on_destroy"),
    ]
    (result,) = (await any_store.results.list(execution_id=run.id)).items
    # on_invoke changed the request the agent saw; on_response changed what was recorded
    assert result.output["seen"] == ["trace-base", "trace-top"]
    assert result.output["stamped"] == ["trace-base:base", "trace-top:top"]


async def test_a_failing_hook_fails_the_call_naming_the_capability_without_retries(store: Store) -> None:
    agent = ScriptedAgent([echo_task])
    await build(
        store,
        "e",
        "pipeline",
        ["a"],
        {"retry_failed_stages": False},
        agent_config={"a": {"capabilities": [{"name": "exploding"}], "max_retries": 3}},
    )
    run = await Engine(store, {"a": agent}).run("e", {})
    system = [
        m.content for m in (await store.messages.list(run.id)).items if m.message_type.value == "system"
    ]
    assert system[-1]["capability"] == "exploding"
    assert "failed in on_response: RuntimeError: kaboom" in system[-1]["error"]
    assert run.status is ExecutionStatus.FAILED
    assert run.error_details is not None
    assert (run.error_details["capability"], run.error_details["hook"]) == ("exploding", "on_response")
    assert "kaboom" in str(run.error_details["errors"])
    assert len(agent.calls) == 1  # not retried
    assert ("a", "exploding", "on_error") in EVENTS
    assert EVENTS[-1] == ("a", "exploding", "on_destroy")


async def test_a_stored_capability_that_is_no_longer_registered_fails_the_run_by_name(store: Store) -> None:
    await build(
        store, "e", "ensemble", ["a"], {}, agent_config={"a": {"capabilities": [{"name": "trace-base"}]}}
    )
    registry.unregister("trace-base")
    try:
        run = await Engine(store, {"a": ScriptedAgent([echo_task])}).run("e", {})
    finally:
        registry.register(CapabilityDefinition("trace-base", "1.0.0", TraceConfig, (), "", Tracer))
    assert run.status is ExecutionStatus.FAILED
    assert "unknown capability 'trace-base'" in (run.error or "")


# --- memory -------------------------------------------------------------------------------


def remembering(context: AgentContext) -> AgentReply:
    bank: MemoryBank = context.capabilities["memory"]["bank"]
    recalled = [m["text"] for m in context.capabilities["memory"]["recalled"]]
    task = context.task["input"]  # an ensemble member is asked {"input": <the run's input>}
    if "fact" in task:
        bank.remember(task["fact"], tags=["facts"], importance=0.9)
    return reply({"recalled": recalled}, 0.9)


async def test_memory_written_in_one_execution_is_recalled_in_the_next_after_reopening(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'memory.db'}"
    async with open_store(url) as store:
        await store.create_schema()
        await build(
            store, "e", "ensemble", ["a"], {}, agent_config={"a": {"capabilities": [{"name": "memory"}]}}
        )
        first = await Engine(store, {"a": ScriptedAgent([remembering])}).run(
            "e", {"fact": "the sky is green"}
        )
        assert first.status is ExecutionStatus.COMPLETED
        assert first.output_data is not None
    async with open_store(url) as store:
        second = await Engine(store, {"a": ScriptedAgent([remembering])}).run("e", {"about": "sky"})
        (result,) = (await store.results.list(execution_id=second.id)).items
        assert result.output["recalled"] == ["the sky is green"]
        agent_type = await store.agent_types.get_by_name("a")
        assert agent_type.id is not None
        holder = await store.agent_instances.get(memory_instance_id(agent_type.id))
        assert holder.execution_id is None
        assert [m["text"] for m in holder.state["memories"]["items"]] == ["the sky is green"]


async def test_memory_of_a_failed_call_is_not_kept(store: Store) -> None:
    def remember_then_fail(context: AgentContext) -> AgentReply:
        context.capabilities["memory"]["bank"].remember("half-done")
        raise RuntimeError("agent broke")

    await build(store, "e", "ensemble", ["a"], {}, agent_config={"a": {"capabilities": [{"name": "memory"}]}})
    run = await Engine(store, {"a": ScriptedAgent([remember_then_fail])}).run("e", {})
    assert run.status is ExecutionStatus.FAILED
    agent_type = await store.agent_types.get_by_name("a")
    holder = await store.agent_instances.get(memory_instance_id(agent_type.id))  # type: ignore[arg-type]
    assert holder.state["memories"]["items"] == []


# --- reasoning ----------------------------------------------------------------------------


def reasoner(reasoning: str) -> ScriptedAgent:
    def answer(context: AgentContext) -> AgentReply:
        return reply({"prompt": context.config.system_prompt}, 0.8, reasoning=reasoning)

    return ScriptedAgent([answer])


async def test_reasoning_instructions_steps_and_conclusion(store: Store) -> None:
    caps = [{"name": "reasoning", "config": {"reasoning_style": "socratic", "max_reasoning_steps": 2}}]
    await build(
        store,
        "e",
        "ensemble",
        ["a"],
        {},
        agent_config={"a": {"system_prompt": "Be brief.", "capabilities": caps}},
    )
    text = "1. Why?\n2. Because.\n3. Extra.\nConclusion: yes"
    run = await Engine(store, {"a": reasoner(text)}).run("e", {})
    assert run.status is ExecutionStatus.COMPLETED
    (result,) = (await store.results.list(execution_id=run.id)).items
    assert result.output["prompt"].startswith("Be brief.\n\nReason by asking yourself numbered questions")
    assert "at most 2 steps" in result.output["prompt"]
    assert result.reasoning == "1. Why?\n2. Because.\nConclusion: yes"


async def test_reasoning_without_a_conclusion_fails_and_hidden_reasoning_is_not_recorded(
    store: Store,
) -> None:
    await build(
        store,
        "e",
        "pipeline",
        ["a"],
        {"retry_failed_stages": False},
        agent_config={"a": {"capabilities": [{"name": "reasoning"}]}},
    )
    failed = await Engine(store, {"a": reasoner("1. hmm")}).run("e", {})
    assert failed.status is ExecutionStatus.FAILED
    assert failed.error_details is not None
    assert failed.error_details["capability"] == "reasoning"
    hidden = [{"name": "reasoning", "config": {"show_reasoning": False, "require_conclusion": False}}]
    await build(store, "h", "ensemble", ["b"], {}, agent_config={"b": {"capabilities": hidden}})
    run = await Engine(store, {"b": reasoner("1. secret")}).run("h", {})
    (result,) = (await store.results.list(execution_id=run.id)).items
    assert result.reasoning is None

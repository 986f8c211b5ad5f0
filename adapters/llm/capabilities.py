"""Capability behaviours that act on a model's tool calls: ``tool_use`` and ``human_in_loop``.

Importing :mod:`qmcp_agents.adapters.llm` attaches these hooks to the built-in definitions.
:class:`LLMAgent` offers the model the tools it was given (MCP servers through pydantic-ai's
``MCPToolset``, Python functions, any pydantic-ai toolset) wrapped in a :class:`ToolGuard`,
which enforces the ``tool_use`` config and records every call in the transcript:

- ``allowed_tools`` (empty: all) and ``denied_tools``: tools outside them are never shown to
  the model, and a call to one anyway is refused;
- ``max_tool_calls_per_turn``: calls past it in one agent call are refused with a message
  telling the model to answer now (the engine-wide ``max_tool_calls`` is a hard usage limit);
- ``tool_call_timeout_seconds``: a call that takes longer is abandoned and the model told;
- every call is a ``request`` message of the calling agent whose content is
  ``{"tool_call": {"name", "arguments", "result" | "error", "duration_ms", ...}}``.

Approvals (``human_in_loop.require_approval_for``, or ``tool_use.require_confirmation`` for
every tool): the first time, the execution pauses with the call shown; the person resumes
with ``{"approve": true}``, ``{"approve": false, "reason": "..."}`` or (when
``allow_modification``) ``{"approve": true, "arguments": {...}}``. The pending approval is
kept in the agent instance's state with its deadline, so any process may resume it; an answer
after ``approval_timeout_seconds`` follows ``escalation_on_timeout``: ``abort`` fails the
call, ``continue`` runs the tool as first asked, ``default`` denies it. One approval per
agent call: a second tool needing approval in the same call is denied, told so.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from pydantic_ai import CallDeferred, RunContext
from pydantic_ai.toolsets import AbstractToolset, FunctionToolset, WrapperToolset
from pydantic_ai.toolsets.abstract import ToolsetTool

from qmcp_agents.domain.capabilities import (
    CapabilityHooks,
    HookContext,
    HumanInLoopConfig,
    ToolCall,
    ToolUseConfig,
    registry,
)
from qmcp_agents.domain.clock import utc_now
from qmcp_agents.domain.engine import AgentContext
from qmcp_agents.domain.enums import MessageType
from qmcp_agents.domain.errors import ConcurrencyError
from qmcp_agents.domain.json_payload import check_json_object
from qmcp_agents.domain.message import MessageCreate

APPROVALS = "approvals"
"""Key of an agent instance's ``state`` that holds the approval a call waits for."""

Recorder = Callable[[dict[str, Any]], Awaitable[None]]
Decider = Callable[[ToolCall], Awaitable[ToolCall]]


def _jsonable(value: Any) -> Any:
    """A tool result as stored JSON (MCP results may be text, dicts, lists or objects)."""
    try:
        return check_json_object({"v": json.loads(json.dumps(value, default=str))})["v"]
    except (TypeError, ValueError):
        return str(value)


@dataclass
class ToolGuard(WrapperToolset[AgentContext]):
    """The tools one agent call may use, under its ``tool_use`` config."""

    config: ToolUseConfig = field(default_factory=ToolUseConfig)
    record: Recorder | None = None
    decide: Decider | None = None
    calls: int = 0
    approval_asked: bool = False

    def visible(self, name: str) -> bool:
        if name in self.config.denied_tools:
            return False
        return not self.config.allowed_tools or name in self.config.allowed_tools

    async def get_tools(self, ctx: RunContext[AgentContext]) -> dict[str, ToolsetTool[AgentContext]]:
        tools = await self.wrapped.get_tools(ctx)
        return {name: tool for name, tool in tools.items() if self.visible(name)}

    async def _note(self, entry: dict[str, Any]) -> None:
        if self.record is not None:
            await self.record(entry)

    async def call_tool(
        self,
        name: str,
        tool_args: dict[str, Any],
        ctx: RunContext[AgentContext],
        tool: ToolsetTool[AgentContext],
    ) -> Any:
        arguments = dict(tool_args)
        if not self.visible(name):
            await self._note({"name": name, "arguments": arguments, "refused": "not an allowed tool"})
            return f"tool {name!r} is not allowed for this agent"
        if self.calls >= self.config.max_tool_calls_per_turn:
            reason = f"the limit of {self.config.max_tool_calls_per_turn} tool calls per turn is reached"
            await self._note({"name": name, "arguments": arguments, "refused": reason})
            return f"tool call refused: {reason}; answer with what you have"
        self.calls += 1
        call = ToolCall(name, arguments)
        if self.decide is not None:
            call = await self.decide(call)
        if call.question is not None:
            if self.approval_asked:
                reason = "only one approval can be asked per turn"
                await self._note({"name": name, "arguments": arguments, "refused": reason})
                return f"tool call refused: {reason}; answer with what you have"
            self.approval_asked = True
            raise CallDeferred({"question": call.question, "tool": name, "arguments": arguments})
        if not call.allowed:
            await self._note({"name": name, "arguments": arguments, "denied": call.reason or "denied"})
            return f"tool call denied: {call.reason or 'denied'}"
        entry: dict[str, Any] = {"name": name, "arguments": call.arguments}
        if call.arguments != arguments:
            entry["requested_arguments"] = arguments
        started = time.perf_counter()
        try:
            result = await asyncio.wait_for(
                self.wrapped.call_tool(name, call.arguments, ctx, tool), self.config.tool_call_timeout_seconds
            )
        except TimeoutError:
            entry["error"] = f"timed out after {self.config.tool_call_timeout_seconds:g}s"
            entry["duration_ms"] = round((time.perf_counter() - started) * 1000)
            await self._note(entry)
            return f"tool call failed: {entry['error']}"
        except (CallDeferred, asyncio.CancelledError):
            raise
        except Exception as error:  # the model is told, and may try otherwise
            entry["error"] = f"{type(error).__name__}: {error}"
            entry["duration_ms"] = round((time.perf_counter() - started) * 1000)
            await self._note(entry)
            return f"tool call failed: {entry['error']}"
        entry["result"] = _jsonable(result)
        entry["duration_ms"] = round((time.perf_counter() - started) * 1000)
        await self._note(entry)
        return result


def _bank(ctx: RunContext[AgentContext]) -> Any:
    return ctx.deps.capabilities["memory"]["bank"]


async def remember(
    ctx: RunContext[AgentContext], text: str, tags: list[str] | None = None, importance: float = 0.5
) -> str:
    """Remember a fact for later runs; importance from 0 to 1. Returns the memory's id."""
    return str(_bank(ctx).remember(text, tags, importance))


async def recall(
    ctx: RunContext[AgentContext], query: str = "", tags: list[str] | None = None
) -> list[dict[str, Any]]:
    """The memories best matching the query (and any of the tags), best first."""
    return [{"id": m["id"], "text": m["text"], "tags": m["tags"]} for m in _bank(ctx).recall(query, tags)]


async def forget(ctx: RunContext[AgentContext], ids: list[str]) -> int:
    """Forget the memories with these ids; returns how many were forgotten."""
    return int(_bank(ctx).forget(ids))


MEMORY_TOOLS = FunctionToolset[AgentContext]([remember, recall, forget])
"""Offered to agents with the ``memory`` capability (their memory is saved after the call)."""


def toolset_of(
    tools: Sequence[AbstractToolset[AgentContext] | Callable[..., Any]],
) -> AbstractToolset[AgentContext]:
    """One toolset from toolsets (MCP servers...) and plain Python functions."""
    from pydantic_ai.toolsets import CombinedToolset

    functions = [t for t in tools if not isinstance(t, AbstractToolset)]
    sets = [t for t in tools if isinstance(t, AbstractToolset)]
    if functions:
        sets.append(FunctionToolset[AgentContext](functions))
    return CombinedToolset(sets)


def _recorder(ctx: HookContext, request: AgentContext) -> Recorder:
    async def record(entry: dict[str, Any]) -> None:
        await ctx.store.messages.append(
            ctx.execution_id,
            [
                MessageCreate(
                    sender_id=ctx.instance.id,
                    message_type=MessageType.REQUEST,
                    content={"tool_call": {"call": request.call, **entry}},
                    round_number=request.round_number,
                )
            ],
        )

    return record


class ToolUseHooks(CapabilityHooks):
    """Offers the call its tool config and recorder; asks for confirmations when configured
    and no ``human_in_loop`` capability does it."""

    config: ToolUseConfig

    async def on_invoke(self, ctx: HookContext, request: AgentContext) -> AgentContext:
        ctx.data["request"] = request
        ctx.data["confirm_all"] = self.config.require_confirmation
        offered = {"config": self.config, "record": _recorder(ctx, request)}
        return replace(request, capabilities={**request.capabilities, "tool_use": offered})

    async def on_tool_call(self, ctx: HookContext, call: ToolCall) -> ToolCall:
        if self.config.require_confirmation and "human_in_loop" not in ctx.data.get("capabilities", ()):
            return await decide_approval(ctx, call, HumanInLoopConfig())
        return call


class HumanInLoopHooks(CapabilityHooks):
    config: HumanInLoopConfig

    async def on_create(self, ctx: HookContext) -> None:
        ctx.data.setdefault("capabilities", set()).add("human_in_loop")

    async def on_start(self, ctx: HookContext) -> None:
        ctx.data.setdefault("capabilities", set()).add("human_in_loop")

    async def on_tool_call(self, ctx: HookContext, call: ToolCall) -> ToolCall:
        if call.tool in self.config.require_approval_for or ctx.data.get("confirm_all"):
            return await decide_approval(ctx, call, self.config)
        return call


async def decide_approval(ctx: HookContext, call: ToolCall, config: HumanInLoopConfig) -> ToolCall:
    """The approval decision for ``call``: a question (pause) the first time, then what the
    person answered (or the timeout policy), as kept in the instance's state."""
    request: AgentContext = ctx.data["request"]
    instance = await ctx.store.agent_instances.get(ctx.instance.id)
    pending = instance.state.get(APPROVALS, {}).get(request.call)
    answer = request.human_input
    if pending is None or answer is None or pending["tool"] != call.tool:
        deadline = utc_now() + timedelta(seconds=float(config.approval_timeout_seconds))
        await _keep_pending(
            ctx,
            request.call,
            {"tool": call.tool, "arguments": call.arguments, "deadline": deadline.isoformat()},
        )
        shown = json.dumps(call.arguments, sort_keys=True)
        how = '{"approve": true}, {"approve": false, "reason": "..."}'
        if config.allow_modification:
            how += ' or {"approve": true, "arguments": {...}}'
        return replace(
            call, question=f"approve the call of tool {call.tool!r} with arguments {shown}? answer {how}"
        )
    if utc_now() > datetime.fromisoformat(pending["deadline"]):
        policy = config.escalation_on_timeout
        if policy == "abort":
            raise TimeoutError(
                f"the approval of tool {call.tool!r} came after its deadline {pending['deadline']} "
                "(escalation_on_timeout: abort)"
            )
        if policy == "continue":
            return replace(call, arguments=pending["arguments"])
        return replace(call, allowed=False, reason="no approval in time (escalation_on_timeout: default)")
    if not isinstance(answer, dict) or not isinstance(answer.get("approve"), bool):
        raise ValueError(f'an approval answer is {{"approve": true|false, ...}}, got {answer!r}')
    if not answer["approve"]:
        return replace(call, allowed=False, reason=str(answer.get("reason") or "denied by a person"))
    if "arguments" in answer:
        if not config.allow_modification:
            raise ValueError(
                f"the approver changed the arguments of {call.tool!r}, but allow_modification is off"
            )
        if not isinstance(answer["arguments"], dict):
            raise ValueError(f"modified arguments must be a JSON object, got {answer['arguments']!r}")
        return replace(call, arguments=dict(answer["arguments"]))
    return replace(call, arguments=pending["arguments"])


async def _keep_pending(ctx: HookContext, call: str, pending: dict[str, Any]) -> None:
    for attempt in range(5):
        instance = await ctx.store.agent_instances.get(ctx.instance.id)
        instance.update_state({APPROVALS: {**instance.state.get(APPROVALS, {}), call: pending}})
        try:
            await ctx.store.agent_instances.update(instance)
            return
        except ConcurrencyError:
            await asyncio.sleep(0.005 * (attempt + 1))
    raise ConcurrencyError(f"agent instance {ctx.instance.id} kept changing; approval not kept")


def install() -> None:
    """Attach these behaviours to the built-in definitions (idempotent)."""
    for name, hooks in (("tool_use", ToolUseHooks), ("human_in_loop", HumanInLoopHooks)):
        definition = registry.get(name)
        if definition.hooks is not hooks:
            registry.register(replace(definition, hooks=hooks), replace=True)


__all__ = [
    "APPROVALS",
    "HumanInLoopHooks",
    "ToolGuard",
    "ToolUseHooks",
    "decide_approval",
    "install",
    "toolset_of",
]

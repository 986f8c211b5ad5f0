"""The lifecycle every capability can take part in, and the no-op base its behaviours extend.

The engine makes one behaviour object per enabled capability per agent in a run, from
:attr:`CapabilityDefinition.hooks`, and calls them in dependency order (a capability's
hooks run after those of the capabilities it depends on; ``on_response`` too, so a
dependent capability sees what its dependencies made of the reply):

    on_create    the agent's instance was created for this execution
    on_start     the run (or a resumed run) starts driving this agent's topology
    on_message   a message this agent sent or received was recorded
    on_invoke    before each call of the agent; returns the (possibly changed) request
    on_response  after each answer; returns the (possibly changed) reply
    on_tool_call before a tool runs (called by tool-using agents); returns the decision
    on_complete  the run completed
    on_error     a call of this agent failed (before the engine retries or gives up)
    on_destroy   the run ended in any way (completed, failed, paused): release resources

An exception from a hook fails the agent call, with the capability and hook named in the
execution's ``error_details``; it is not retried (a hook that failed once fails again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:  # the engine imports capabilities; these names are for type checkers only
    from qmcp_agents.domain.agent import AgentInstance, AgentType
    from qmcp_agents.domain.engine.agents import AgentContext, AgentReply
    from qmcp_agents.domain.message import Message
    from qmcp_agents.domain.ports import Store


@dataclass
class HookContext:
    """What a capability's hooks know about the agent they serve, for one run."""

    store: Store
    execution_id: Any
    topology: str
    slot: str
    agent_type: AgentType
    instance: AgentInstance
    data: dict[str, Any] = field(default_factory=dict)
    """Scratch space shared by this agent's capabilities for the run (not persisted)."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call an agent is about to make. ``on_tool_call`` may change ``arguments``,
    deny the call (``allowed=False`` with a ``reason`` the model is told), or ask a person
    first (``question``: the execution pauses until someone answers)."""

    tool: str
    arguments: dict[str, Any]
    allowed: bool = True
    reason: str | None = None
    question: str | None = None


class CapabilityHooks:
    """A capability's behaviour: every hook does nothing until a subclass says otherwise."""

    def __init__(self, name: str, config: BaseModel) -> None:
        self.name = name
        self.config = config

    async def on_create(self, ctx: HookContext) -> None:
        return None

    async def on_start(self, ctx: HookContext) -> None:
        return None

    async def on_message(self, ctx: HookContext, message: Message) -> None:
        return None

    async def on_invoke(self, ctx: HookContext, request: AgentContext) -> AgentContext:
        return request

    async def on_response(self, ctx: HookContext, request: AgentContext, reply: AgentReply) -> AgentReply:
        return reply

    async def on_tool_call(self, ctx: HookContext, call: ToolCall) -> ToolCall:
        return call

    async def on_complete(self, ctx: HookContext) -> None:
        return None

    async def on_error(self, ctx: HookContext, error: BaseException) -> None:
        return None

    async def on_destroy(self, ctx: HookContext) -> None:
        return None


class CapabilityHookFailed(Exception):
    """A capability's hook raised: the agent call fails naming the capability and the hook."""

    def __init__(self, capability: str, hook: str, error: BaseException) -> None:
        super().__init__(f"capability {capability!r} failed in {hook}: {type(error).__name__}: {error}")
        self.capability = capability
        self.hook = hook
        self.error = error


HOOK_NAMES: tuple[str, ...] = (
    "on_create",
    "on_start",
    "on_message",
    "on_invoke",
    "on_response",
    "on_tool_call",
    "on_complete",
    "on_error",
    "on_destroy",
)

__all__ = ["HOOK_NAMES", "CapabilityHookFailed", "CapabilityHooks", "HookContext", "ToolCall"]

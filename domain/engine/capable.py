"""Calling capability hooks for one agent of a run (see :mod:`qmcp_agents.domain.capabilities.hooks`).

Each member of a run gets a :class:`CapabilitySet`: one behaviour object per enabled
capability of its *effective* config, in dependency order. The engine and :class:`Run`
call it at the lifecycle points; a member without capabilities gets an empty set and
costs nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from qmcp_agents.domain.agent import AgentConfig, AgentInstance, AgentType
from qmcp_agents.domain.capabilities import (
    CapabilityHookFailed,
    CapabilityHooks,
    CapabilityRegistry,
    HookContext,
    ToolCall,
)
from qmcp_agents.domain.capabilities import registry as default_registry
from qmcp_agents.domain.errors import CapabilityError
from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.transactions import guarded

from .agents import Agent, AgentContext, AgentReply


class CapabilitySet:
    """The hooks of one agent's enabled capabilities, called in dependency order."""

    def __init__(self, hooks: list[CapabilityHooks], context: HookContext) -> None:
        self.hooks = hooks
        self.context = context

    @classmethod
    def build(
        cls,
        config: AgentConfig,
        context: HookContext,
        registry: CapabilityRegistry = default_registry,
    ) -> CapabilitySet:
        """Behaviours for ``config``'s enabled capabilities. A capability stored before it was
        unregistered, or whose stored config no longer validates, is refused here (the run
        cannot honour it) with :class:`CapabilityError` naming it."""
        enabled = {c.name: c for c in config.capabilities if c.enabled}
        hooks = []
        for name in registry.resolve(enabled) if enabled else []:
            if name not in enabled:
                continue  # a dependency the save-time rule would have refused; nothing to run
            definition = registry.get(name)
            try:
                settings = definition.config_class.model_validate(enabled[name].config)
            except ValueError as error:
                raise CapabilityError(
                    f"agent type {context.agent_type.name!r}: capability {name!r} has a config this "
                    f"release refuses ({' '.join(str(error).split())}); update the agent type"
                ) from error
            hooks.append(definition.hooks(name, settings))
        return cls(hooks, context)

    def __bool__(self) -> bool:
        return bool(self.hooks)

    async def _each(self, hook: str, call: Callable[[CapabilityHooks], Awaitable[Any]]) -> None:
        for behaviour in self.hooks:
            try:
                await call(behaviour)
            except CapabilityHookFailed:
                raise
            except Exception as error:  # any failure of a hook fails the call, named
                raise CapabilityHookFailed(behaviour.name, hook, error) from error

    async def fire(self, hook: str, *args: Any) -> None:
        """A hook without a result (on_create, on_start, on_message, on_complete, on_destroy)."""
        if self.hooks:
            with guarded():  # a hook may catch a store call's failure and go on
                await self._each(hook, lambda b: getattr(b, hook)(self.context, *args))

    def bind(self, instance: AgentInstance) -> None:
        self.context.instance = instance

    async def call(self, agent: Agent, request: AgentContext) -> AgentReply:
        """``on_invoke`` hooks, the agent, ``on_response`` hooks; ``on_error`` on a failure."""
        if not self.hooks:
            return await agent(request)
        offered = {**request.capabilities, "hooks": {"tool_call": self.tool_call}}
        request = replace(request, capabilities=offered)
        try:
            for behaviour in self.hooks:
                try:
                    request = await behaviour.on_invoke(self.context, request)
                except Exception as error:
                    raise CapabilityHookFailed(behaviour.name, "on_invoke", error) from error
            answer = await agent(request)
            for behaviour in self.hooks:
                try:
                    answer = await behaviour.on_response(self.context, request, answer)
                except Exception as error:
                    raise CapabilityHookFailed(behaviour.name, "on_response", error) from error
        except BaseException as error:
            await self.fire("on_error", error)
            raise
        return answer

    async def tool_call(self, call: ToolCall) -> ToolCall:
        """``on_tool_call`` hooks in order, each seeing the previous one's decision."""
        for behaviour in self.hooks:
            try:
                call = await behaviour.on_tool_call(self.context, call)
            except Exception as error:
                raise CapabilityHookFailed(behaviour.name, "on_tool_call", error) from error
            if not call.allowed or call.question is not None:
                break
        return call


def hook_context(
    store: Store, execution_id: Any, topology: str, slot: str, agent_type: AgentType, instance: AgentInstance
) -> HookContext:
    return HookContext(store, execution_id, topology, slot, agent_type, instance)


__all__ = ["CapabilitySet", "hook_context"]

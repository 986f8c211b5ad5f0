"""The built-in capabilities: definitions (config class, dependencies, behaviour).

Behaviours that need a model or a tool server (tool_use, human_in_loop) are attached by
``qmcp_agents.adapters.llm``, which registers its hooks for these names; the domain's own
(memory, reasoning, structured_output with a pluggable JSON Schema validator) are here.
"""

from __future__ import annotations

from typing import Any

from qmcp_agents.domain.agent import AgentType

from .configs import (
    HumanInLoopConfig,
    MemoryConfig,
    ReasoningConfig,
    SkillsConfig,
    StructuredOutputConfig,
    ToolUseConfig,
)
from .memory import MemoryHooks
from .reasoning import ReasoningHooks
from .registry import CapabilityDefinition
from .structured import StructuredOutputHooks

BUILTINS: tuple[CapabilityDefinition, ...] = (
    CapabilityDefinition("tool_use", "1.0.0", ToolUseConfig, (), "call tools from MCP servers and functions"),
    CapabilityDefinition(
        "human_in_loop", "1.0.0", HumanInLoopConfig, ("tool_use",), "a person approves listed tool calls"
    ),
    CapabilityDefinition(
        "memory", "1.0.0", MemoryConfig, (), "remember, recall and forget across runs", MemoryHooks
    ),
    CapabilityDefinition(
        "structured_output",
        "1.0.0",
        StructuredOutputConfig,
        (),
        "replies valid against a JSON Schema",
        StructuredOutputHooks,
    ),
    CapabilityDefinition(
        "reasoning", "1.0.0", ReasoningConfig, (), "reason in a given style, recorded", ReasoningHooks
    ),
    CapabilityDefinition("skills", "1.0.0", SkillsConfig, (), "skill tags for delegation routing"),
)


def has_skill(agent_type: AgentType, name: str) -> bool:
    """Whether ``agent_type`` can take a task asking for ``name``: an enabled capability of
    that name, or ``name`` among the tags of its enabled ``skills`` capability."""
    if agent_type.has_capability(name):
        return True
    return any(
        c.name == "skills" and c.enabled and name.lower() in (t.lower() for t in c.config.get("tags", []))
        for c in agent_type.config.capabilities
    )


def builtin_config(name: str, **values: Any) -> dict[str, Any]:
    """A built-in capability's config with defaults filled in (docs and tests)."""
    for definition in BUILTINS:
        if definition.name == name:
            return definition.config_class.model_validate(values).model_dump(mode="json")
    raise KeyError(name)


__all__ = [
    "BUILTINS",
    "builtin_config",
    "has_skill",
]

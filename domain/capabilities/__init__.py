"""Capabilities (the specification's "composable mixins"): a typed registry, dependency
order, the save-time rule, and the built-ins.

    from qmcp_agents.domain.capabilities import registry, CapabilityDefinition, CapabilityConfig

    class CiteConfig(CapabilityConfig):
        style: str = "apa"

    registry.register(CapabilityDefinition("cite", "1.0.0", CiteConfig, depends_on=("tool_use",)))

:data:`registry` is the process-wide registry every store checks agent types against;
register your own capabilities before saving agent types that use them (in every process).
"""

from __future__ import annotations

from qmcp_agents.domain.errors import CapabilityError, DependencyCycle

from .builtins import BUILTINS, builtin_config, has_skill
from .check import check_agent_config, check_capabilities, check_overrides
from .configs import (
    HumanInLoopConfig,
    MemoryConfig,
    ReasoningConfig,
    SkillsConfig,
    StructuredOutputConfig,
    ToolUseConfig,
)
from .hooks import HOOK_NAMES, CapabilityHookFailed, CapabilityHooks, HookContext, ToolCall
from .memory import MemoryBank, MemoryHooks, memory_instance_id
from .reasoning import ReasoningHooks
from .registry import CapabilityConfig, CapabilityDefinition, CapabilityRegistry

registry: CapabilityRegistry = CapabilityRegistry.of(BUILTINS)
"""The registry stores consult on save; holds the built-ins until an application adds more."""


def register(definition: CapabilityDefinition, *, replace: bool = False) -> CapabilityDefinition:
    """Register ``definition`` in :data:`registry` (the same call the built-ins use)."""
    return registry.register(definition, replace=replace)


__all__ = [
    "BUILTINS",
    "HOOK_NAMES",
    "CapabilityHookFailed",
    "CapabilityHooks",
    "HookContext",
    "MemoryBank",
    "MemoryHooks",
    "ReasoningHooks",
    "ToolCall",
    "memory_instance_id",
    "CapabilityConfig",
    "CapabilityDefinition",
    "CapabilityError",
    "CapabilityRegistry",
    "DependencyCycle",
    "HumanInLoopConfig",
    "MemoryConfig",
    "ReasoningConfig",
    "SkillsConfig",
    "StructuredOutputConfig",
    "ToolUseConfig",
    "builtin_config",
    "check_agent_config",
    "check_capabilities",
    "check_overrides",
    "has_skill",
    "register",
    "registry",
]

"""The built-in capabilities' config classes: fields, defaults, bounds.

What each capability *does* lives where its behaviour needs it: the engine calls the hooks
(:mod:`qmcp_agents.domain.capabilities.hooks`), memory is pure bookkeeping on an agent
instance's state (:mod:`qmcp_agents.domain.capabilities.memory`), and everything that needs
a model or a tool server (MCP, schema repair) is in ``qmcp_agents.adapters.llm``.

Bounds are chosen so that a config value is always something the behaviour can honour; the
upper bounds keep a typo (``max_memories: 1000000000``) from becoming a resource problem.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictFloat, StrictInt, model_validator

from qmcp_agents.domain.base import Name, Text
from qmcp_agents.domain.json_payload import JsonObject

from .registry import CapabilityConfig

ToolName = Annotated[Text, Field(min_length=1, max_length=128)]


class ToolUseConfig(CapabilityConfig):
    """Tools from MCP servers and registered Python functions."""

    allowed_tools: list[ToolName] = Field(default_factory=list, description="empty = every tool offered")
    denied_tools: list[ToolName] = Field(default_factory=list, description="never offered, even if allowed")
    require_confirmation: StrictBool = Field(
        default=False,
        description="every tool call needs a person's approval (as human_in_loop does per tool)",
    )
    max_tool_calls_per_turn: StrictInt = Field(default=5, ge=1, le=1000)
    tool_call_timeout_seconds: StrictFloat | StrictInt = Field(default=60, gt=0, le=86_400)

    @model_validator(mode="after")
    def _lists_disjoint(self) -> ToolUseConfig:
        both = sorted(set(self.allowed_tools) & set(self.denied_tools))
        if both:
            raise ValueError(f"tools {both} are both allowed and denied; list each in one of them")
        return self


class HumanInLoopConfig(CapabilityConfig):
    """Approval by a person before listed tools run."""

    require_approval_for: list[ToolName] = Field(default_factory=list, description="tool names")
    approval_timeout_seconds: StrictFloat | StrictInt = Field(default=3600, gt=0, le=30 * 86_400)
    allow_modification: StrictBool = Field(default=True, description="the approver may change the arguments")
    escalation_on_timeout: Literal["abort", "continue", "default"] = Field(
        default="abort",
        description="when the answer comes after the deadline: abort the call, continue as "
        "approved, or answer with the tool's default (denied)",
    )


class MemoryConfig(CapabilityConfig):
    """Remember / recall / forget, kept in the agent instance's state."""

    max_memories: StrictInt = Field(default=100, ge=1, le=100_000)
    memory_decay: StrictBool = True
    decay_half_life_hours: StrictFloat | StrictInt = Field(default=24.0, gt=0, le=1_000_000)
    auto_summarize: StrictBool = True
    summary_threshold: StrictInt = Field(default=50, ge=1, le=100_000)

    @model_validator(mode="after")
    def _threshold_reachable(self) -> MemoryConfig:
        if self.auto_summarize and self.summary_threshold > self.max_memories:
            raise ValueError(
                f"summary_threshold {self.summary_threshold} exceeds max_memories {self.max_memories}: "
                "summaries would never be made"
            )
        return self


class StructuredOutputConfig(CapabilityConfig):
    """The reply is a JSON value valid against ``output_schema``."""

    output_schema: JsonObject = Field(description="a JSON Schema (draft 2020-12)")
    strict_validation: StrictBool = Field(default=True, description="invalid output fails the call")
    auto_repair: StrictBool = Field(default=True, description="send invalid output back to the model")
    max_repair_attempts: StrictInt = Field(default=3, ge=0, le=20)

    @model_validator(mode="after")
    def _schema_shape(self) -> StructuredOutputConfig:
        kind = self.output_schema.get("type")
        if kind is not None and not isinstance(kind, str | list):
            raise ValueError(f"output_schema.type must be a string or a list, got {kind!r}")
        return self


class ReasoningConfig(CapabilityConfig):
    """Instructions to reason in a given style; the reasoning is recorded."""

    reasoning_style: Literal["step_by_step", "tree_of_thought", "socratic"] = "step_by_step"
    show_reasoning: StrictBool = Field(default=True, description="record reasoning in messages and results")
    max_reasoning_steps: StrictInt = Field(default=10, ge=1, le=100)
    require_conclusion: StrictBool = True


class SkillsConfig(CapabilityConfig):
    """Skill tags a delegation topology routes by (``capability_match``).

    Free-form capability names would defeat the registry (a typo would pass); tags are the
    one place where any name goes, and they mean only "route tasks asking for this to me".
    """

    tags: list[Name] = Field(default_factory=list, description="skills, e.g. sql, python")


__all__ = [
    "HumanInLoopConfig",
    "MemoryConfig",
    "ReasoningConfig",
    "SkillsConfig",
    "StructuredOutputConfig",
    "ToolUseConfig",
]

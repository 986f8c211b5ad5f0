"""The ``structured_output`` capability: replies valid against a JSON Schema.

The domain cannot validate JSON Schema itself (it depends on Pydantic alone), so a validator
is plugged in: ``qmcp_agents.adapters`` installs one built on the ``jsonschema`` package
when that package is present (it comes with the ``[llm]`` extra). Without one, an agent type
using this capability fails its calls with a message saying what to install -- the config
is never silently ignored.

On each call the schema is offered to the agent (``context.capabilities["structured_output"]``:
the LLM agents put it in the prompt and repair invalid output themselves, up to
``max_repair_attempts`` when ``auto_repair``); on each answer the output is checked. With
``strict_validation`` an invalid output fails the call naming the schema path that failed;
without, it is recorded as given, with the problems listed in ``reasoning``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .configs import StructuredOutputConfig
from .hooks import CapabilityHooks, HookContext

if TYPE_CHECKING:
    from qmcp_agents.domain.engine.agents import AgentContext, AgentReply

SchemaValidator = Callable[[dict[str, Any], Any], list[str]]
"""``(schema, instance) -> problems``: each problem names its path, e.g.
``$.answer: 'x' is not of type 'integer'``; an empty list means valid. Raises ValueError for
a schema that is not itself valid JSON Schema."""

_validator: SchemaValidator | None = None


def set_schema_validator(validator: SchemaValidator | None) -> None:
    """Install the JSON Schema validator the capability uses (adapters do this)."""
    global _validator
    _validator = validator


def schema_problems(schema: dict[str, Any], instance: Any) -> list[str]:
    if _validator is None:
        raise RuntimeError(
            "the structured_output capability needs a JSON Schema validator: "
            "pip install 'qmcp-agents[llm]' (it brings jsonschema) and import qmcp_agents.adapters"
        )
    return _validator(schema, instance)


class StructuredOutputHooks(CapabilityHooks):
    config: StructuredOutputConfig

    async def on_invoke(self, ctx: HookContext, request: AgentContext) -> AgentContext:
        schema_problems(self.config.output_schema, {})  # a bad schema or no validator: fail now
        offered = {
            "schema": self.config.output_schema,
            "auto_repair": self.config.auto_repair,
            "max_repair_attempts": self.config.max_repair_attempts,
            "problems": lambda output: schema_problems(self.config.output_schema, output),
        }
        return replace(request, capabilities={**request.capabilities, "structured_output": offered})

    async def on_response(self, ctx: HookContext, request: AgentContext, reply: AgentReply) -> AgentReply:
        problems = schema_problems(self.config.output_schema, reply.output)
        if not problems:
            return reply
        if self.config.strict_validation:
            raise ValueError(f"output does not match output_schema: {'; '.join(problems)}")
        note = "output_schema problems: " + "; ".join(problems)
        return replace(reply, reasoning=f"{reply.reasoning}\n{note}" if reply.reasoning else note)


__all__ = ["SchemaValidator", "StructuredOutputHooks", "schema_problems", "set_schema_validator"]

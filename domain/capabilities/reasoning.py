"""The ``reasoning`` capability: instructions per style, and the reasoning kept as asked.

The instructions are appended to the agent's system prompt for the call (any agent that
reads ``config.system_prompt`` follows them; the LLM agents do). The reply's ``reasoning``
is kept to ``max_reasoning_steps`` numbered steps, dropped from the record when
``show_reasoning`` is off, and, with ``require_conclusion``, must end in a line starting
``Conclusion:`` or the call fails naming the capability.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING

from .configs import ReasoningConfig
from .hooks import CapabilityHooks, HookContext

if TYPE_CHECKING:
    from qmcp_agents.domain.engine.agents import AgentContext, AgentReply

STYLES = {
    "step_by_step": "Reason step by step: number each step (1., 2., ...), one idea per step.",
    "tree_of_thought": (
        "Explore at least two alternative lines of thought as numbered branches (1., 2., ...), "
        "judge each, and keep the best."
    ),
    "socratic": "Reason by asking yourself numbered questions (1., 2., ...) and answering each in turn.",
}
_STEP = re.compile(r"^\s*(?:\d+[.)]|step\s+\d+)", re.IGNORECASE)
_CONCLUSION = re.compile(r"^\s*conclusion\s*:", re.IGNORECASE | re.MULTILINE)


def instructions(config: ReasoningConfig) -> str:
    text = f"{STYLES[config.reasoning_style]} Use at most {config.max_reasoning_steps} steps."
    if config.require_conclusion:
        text += " End your reasoning with a line that starts with 'Conclusion:'."
    return text


def keep_steps(reasoning: str, limit: int) -> str:
    """``reasoning`` with numbered steps past ``limit`` (and what follows them until the next
    kept line, such as the conclusion) removed."""
    out, steps, skipping = [], 0, False
    for line in reasoning.splitlines():
        if _STEP.match(line):
            steps += 1
            skipping = steps > limit
        elif _CONCLUSION.match(line):
            skipping = False
        if not skipping:
            out.append(line)
    return "\n".join(out)


class ReasoningHooks(CapabilityHooks):
    config: ReasoningConfig

    async def on_invoke(self, ctx: HookContext, request: AgentContext) -> AgentContext:
        text = instructions(self.config)
        prompt = f"{request.config.system_prompt}\n\n{text}" if request.config.system_prompt else text
        config = request.config.model_copy(update={"system_prompt": prompt})
        extras = {
            **request.capabilities,
            "reasoning": {"style": self.config.reasoning_style, "instructions": text},
        }
        return replace(request, config=config, capabilities=extras)

    async def on_response(self, ctx: HookContext, request: AgentContext, reply: AgentReply) -> AgentReply:
        reasoning = reply.reasoning
        if self.config.require_conclusion and not (reasoning and _CONCLUSION.search(reasoning)):
            raise ValueError("the reply's reasoning has no line starting with 'Conclusion:'")
        if reasoning is not None:
            reasoning = keep_steps(reasoning, self.config.max_reasoning_steps)
        return replace(reply, reasoning=reasoning if self.config.show_reasoning else None)


__all__ = ["STYLES", "ReasoningHooks", "instructions", "keep_steps"]

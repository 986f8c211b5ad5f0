"""The agent interface the engine calls, and scripted agents that need no LLM."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

from qmcp_agents.domain.agent import AgentConfig, AgentType
from qmcp_agents.domain.enums import TopologyType
from qmcp_agents.domain.json_payload import check_json_object


@dataclass(frozen=True, slots=True)
class AgentContext:
    """What an agent is told for one call.

    ``task`` is what this call asks (the topology's input, a stage's input, a directive);
    ``transcript`` holds what the agent may read of the conversation so far (earlier rounds'
    answers); ``human_input`` is the answer to a question the agent asked, on resume;
    ``capabilities`` is what the agent's capabilities offer this call, by capability name
    (e.g. ``memory``: the recalled memories and the bank to remember into).
    """

    execution_id: UUID
    topology: str
    topology_type: TopologyType
    slot_name: str
    agent_type: AgentType
    config: AgentConfig
    call: str
    task: dict[str, Any]
    round_number: int = 0
    transcript: Sequence[Mapping[str, Any]] = ()
    human_input: Any = None
    capabilities: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AgentReply:
    """An agent's answer. ``needs_human`` (a question) pauses the execution until a person
    answers through ``Engine.resume``; the call is then made again with ``human_input``."""

    output: dict[str, Any]
    confidence: float | None = None
    reasoning: str | None = None
    token_usage: dict[str, int] | None = None
    needs_human: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "output", check_json_object(self.output))
        if self.confidence is not None and not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "confidence": self.confidence,
            "reasoning": self.reasoning,
            "token_usage": self.token_usage,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AgentReply:
        return cls(
            output=dict(data["output"]),
            confidence=data.get("confidence"),
            reasoning=data.get("reasoning"),
            token_usage=data.get("token_usage"),
        )


class AgentRefused(Exception):
    """A failure that asking again cannot fix (a missing API key, an unknown model, a request
    the provider refuses): the engine records it and stops retrying the call at once."""


class Agent(Protocol):
    """Anything that answers a context: an LLM client, a tool, a scripted test double."""

    async def __call__(self, context: AgentContext) -> AgentReply: ...


Step = AgentReply | BaseException | Callable[[AgentContext], AgentReply | Awaitable[AgentReply]]


@dataclass
class ScriptedAgent:
    """An agent that plays a script: one step per call, the last step repeating.

    A step is a reply, an exception to raise (a failing agent), or a function of the
    context. ``delay`` seconds are slept before each answer (to exercise timeouts).
    Every context it was called with is kept in ``calls``.
    """

    steps: list[Step]
    delay: float = 0.0
    calls: list[AgentContext] = field(default_factory=list)

    async def __call__(self, context: AgentContext) -> AgentReply:
        step = self.steps[min(len(self.calls), len(self.steps) - 1)]
        self.calls.append(context)
        if self.delay:
            await asyncio.sleep(self.delay)
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, AgentReply):
            return step
        result = step(context)
        return await result if isinstance(result, Awaitable) else result


def reply(output: dict[str, Any] | None = None, confidence: float | None = None, **extra: Any) -> AgentReply:
    """A short way to write a scripted reply."""
    return AgentReply(output=output if output is not None else {}, confidence=confidence, **extra)


__all__ = ["Agent", "AgentContext", "AgentRefused", "AgentReply", "ScriptedAgent", "Step", "reply"]

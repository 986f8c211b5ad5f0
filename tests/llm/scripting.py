"""A pydantic-ai ``FunctionModel`` scripted by what the agent is told.

``scripted(decide)`` gives a model whose every request is shown to ``decide`` as a
:class:`Seen` (instructions, prompt, settings, tools, the slot and call parsed from them);
``decide`` returns the structured answer's arguments, :class:`Ask` (call ``ask_human``), or
an exception to raise. Every response reports ``USAGE`` tokens, so the recorded token
usage of a call is exactly ``USAGE`` times its requests.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.settings import ModelSettings
from pydantic_ai.usage import RequestUsage

USAGE = RequestUsage(input_tokens=100, output_tokens=10)


@dataclass(frozen=True)
class Ask:
    """Make the model call ``ask_human`` with this question."""

    question: str


@dataclass
class Seen:
    instructions: str
    prompt: str
    settings: ModelSettings | None
    tools: list[str]
    output_schema: dict[str, Any]
    tool_returns: list[Any]

    @property
    def slot(self) -> str:
        found = re.search(r"in slot '([^']+)'", self.instructions)
        assert found is not None, self.instructions
        return found.group(1)

    @property
    def call(self) -> str:
        found = re.match(r"Call: (\S+)", self.prompt)
        assert found is not None, self.prompt
        return found.group(1)

    @property
    def wants_json(self) -> bool:
        return "output" in self.output_schema.get("properties", {})


Decision = dict[str, Any] | Ask | BaseException


@dataclass
class Script:
    decide: Callable[[Seen], Decision]
    seen: list[Seen] = field(default_factory=list)

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        prompt = next(
            part.content
            for message in messages
            if isinstance(message, ModelRequest)
            for part in message.parts
            if isinstance(part, UserPromptPart) and isinstance(part.content, str)
        )
        returns = [
            part.content
            for message in messages
            if isinstance(message, ModelRequest)
            for part in message.parts
            if isinstance(part, ToolReturnPart)
        ]
        seen = Seen(
            instructions=info.instructions or "",
            prompt=prompt,
            settings=info.model_settings,
            tools=[t.name for t in info.function_tools],
            output_schema=info.output_tools[0].parameters_json_schema,
            tool_returns=returns,
        )
        self.seen.append(seen)
        decision = self.decide(seen)
        if isinstance(decision, BaseException):
            raise decision
        if isinstance(decision, Ask):
            part = ToolCallPart("ask_human", {"question": decision.question})
        else:
            part = ToolCallPart(info.output_tools[0].name, decision)
        return ModelResponse(parts=[part], usage=USAGE)

    def model(self) -> FunctionModel:
        return FunctionModel(self, model_name="scripted")


def answer(value: Any, confidence: float = 0.9, seen: Seen | None = None, **extra: Any) -> dict[str, Any]:
    """The structured answer for ``value``: in ``output`` when the agent answers JSON, else as
    ``text`` plus the short ``answer``."""
    if seen is not None and seen.wants_json:
        return {"output": {"answer": value, **extra}, "confidence": confidence, "reasoning": "scripted"}
    return {"text": f"I say {value}", "answer": value, "confidence": confidence, "reasoning": "scripted"}


def scripted(decide: Callable[[Seen], Decision]) -> Script:
    return Script(decide)


def per_request(n: int) -> dict[str, int]:
    """The token usage recorded for a call of ``n`` requests."""
    return {"input": USAGE.input_tokens * n, "output": USAGE.output_tokens * n, "requests": n}

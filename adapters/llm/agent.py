"""An engine ``Agent`` that answers through a pydantic-ai model chosen by its effective config.

One :class:`LLMAgent` can serve every member of every topology: each call's context carries
the member's effective ``AgentConfig`` (type config plus membership overrides), and the
answer is shaped by it:

- ``model`` -> the model (see :mod:`.models`); ``temperature``, ``max_tokens`` -> model settings;
- ``system_prompt`` plus role, slot and topology -> instructions (:mod:`.prompts`);
- ``output_format`` ``json`` -> a JSON object checked by the payload rules, else ``{"text": ...}``;
- ``max_tool_calls`` -> pydantic-ai's tool-call usage limit (0: no tools at all);
- ``timeout_seconds``, ``max_retries`` -> the engine's own timeout and attempts; the provider
  SDK makes no retries of its own (``max_retries=0``), so the config's number is the number.

Confidence and reasoning are asked of the model as structured output; token usage is the
provider's own figures summed by pydantic-ai over the call's requests.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self

from pydantic import BaseModel, Field, model_validator
from pydantic_ai import Agent as PydanticAgent
from pydantic_ai import (
    CallDeferred,
    DeferredToolRequests,
    FunctionToolset,
    RunContext,
    RunUsage,
    UsageLimits,
)
from pydantic_ai.exceptions import (
    AgentRunError,
    ModelAPIError,
    ModelAuthenticationError,
    ModelConnectionError,
    ModelHTTPError,
    ModelNotFoundError,
    ModelRateLimitError,
    ModelRequestTimeout,
    ModelServerError,
    ModelUnavailableError,
    UnexpectedModelBehavior,
    UsageLimitExceeded,
    UserError,
)
from pydantic_ai.models import Model
from pydantic_ai.run import AgentRunResult
from pydantic_ai.settings import ModelSettings
from pydantic_ai.toolsets import AbstractToolset

from qmcp_agents.domain.agent import AgentConfig, AgentType
from qmcp_agents.domain.engine import AgentContext, AgentRefused, AgentReply
from qmcp_agents.domain.json_payload import check_json_object

from .capabilities import MEMORY_TOOLS, ToolGuard, toolset_of
from .models import LLMConfigError, ModelChoice, build_model, check_key, parse_model
from .prompts import JSON_FORMAT, instructions, prompt, repair_prompt

RETRY_AFTER_CAP = 5.0
"""Longest wait, in seconds, honoured from a provider's Retry-After before the engine's next
attempt (the wait counts against the call's timeout)."""


class _Answer(BaseModel):
    confidence: float = Field(ge=0.0, le=1.0, description="How sure you are, from 0 to 1.")
    reasoning: str | None = Field(default=None, description="Why, in a sentence or two.")

    def to_output(self) -> dict[str, Any]:
        raise NotImplementedError

    @model_validator(mode="after")
    def _storable(self) -> Self:
        """What will be stored must pass the JSON payload rules; a model whose answer does not
        is told why and asked again (pydantic-ai's output retry), not failed."""
        check_json_object({"output": self.to_output(), "reasoning": self.reasoning})
        return self


class TextAnswer(_Answer):
    text: str = Field(description="Your answer.")
    answer: str | int | float | bool | None = Field(
        default=None, description="Its short form (a word, a label or a number) others can vote on."
    )

    def to_output(self) -> dict[str, Any]:
        return {"text": self.text} if self.answer is None else {"text": self.text, "answer": self.answer}


class JsonAnswer(_Answer):
    output: dict[str, Any] = Field(description="Your answer, a JSON object; the voted value under 'answer'.")

    def to_output(self) -> dict[str, Any]:
        return self.output


class LLMCallFailed(Exception):
    """A provider error that may pass (rate limit, overload, 5xx, a dropped connection, a
    timeout, a malformed answer): the engine asks again within ``max_retries``. Carries
    the tokens the failed call spent, which the engine counts."""

    def __init__(self, message: str, token_usage: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.token_usage = token_usage


class LLMRefused(AgentRefused):
    """A call that asking again cannot fix (a key refused, an unknown model, a request the
    provider rejects, ``max_tool_calls`` reached): the engine stops at once."""

    def __init__(self, message: str, token_usage: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.token_usage = token_usage


async def ask_human(ctx: RunContext[AgentContext], question: str) -> str:
    """Ask a person one short question; only they can answer it."""
    if ctx.deps.human_input is not None:
        answer = ctx.deps.human_input
        return answer if isinstance(answer, str) else repr(answer)
    raise CallDeferred({"question": question}, kind="question")


HUMAN_TOOLS = FunctionToolset[AgentContext]([ask_human])
_RUNNER = PydanticAgent[AgentContext, Any](deps_type=AgentContext, name="qmcp-agent")


def token_usage(usage: RunUsage) -> dict[str, int]:
    return {
        "input": usage.input_tokens,
        "output": usage.output_tokens,
        "requests": usage.requests,
        "tool_calls": usage.tool_calls,
    }


class LLMAgent:
    """Answers engine calls with a model: the one named by each call's effective config, or
    ``model`` for every call (a name like ``test`` or ``openai:gpt-4o``, or a pydantic-ai
    ``Model`` such as a ``FunctionModel`` in tests). API keys come from ``env`` (default:
    the process environment)."""

    def __init__(
        self,
        model: str | Model | None = None,
        *,
        env: Mapping[str, str] | None = None,
        tools: Sequence[AbstractToolset[AgentContext] | Callable[..., Any]] = (),
    ) -> None:
        self.model = model
        self.env: Mapping[str, str] = env if env is not None else os.environ
        self.tools = toolset_of(tools) if tools else None
        """Tools for agents whose type has the ``tool_use`` capability: MCP servers
        (``pydantic_ai.mcp.MCPToolset``), other pydantic-ai toolsets and plain functions."""
        self._built: dict[tuple[ModelChoice, str | None], Model] = {}

    def choice(self, agent_type: str, config: AgentConfig) -> ModelChoice:
        """Where this agent's calls for ``config`` go; :class:`LLMConfigError` when they cannot."""
        text = self.model if isinstance(self.model, str) else config.model
        choice = parse_model(text, agent_type)
        check_key(choice, agent_type, self.env)
        return choice

    def lookup(self, agent_type: AgentType, slot: str) -> LLMAgent:
        """For ``Engine(store, agent.lookup)``: this one agent plays every member."""
        return self

    def model_for(self, context: AgentContext) -> tuple[Model, ModelChoice | None]:
        """The model for this call, and where it leads (None for a model given as an object)."""
        if isinstance(self.model, Model):
            return self.model, None
        choice = self.choice(context.agent_type.name, context.config)
        key = check_key(choice, context.agent_type.name, self.env)
        built = self._built.get((choice, key))
        if built is None:
            built = self._built[(choice, key)] = build_model(choice, key)
        return built, choice

    def _toolsets(self, context: AgentContext, can_ask: bool) -> list[AbstractToolset[AgentContext]]:
        toolsets: list[AbstractToolset[AgentContext]] = [HUMAN_TOOLS] if can_ask else []
        if "memory" in context.capabilities and can_ask:
            toolsets.append(MEMORY_TOOLS)
        offered = context.capabilities.get("tool_use")
        if offered is not None and self.tools is not None and context.config.max_tool_calls > 0:
            hooks = context.capabilities.get("hooks", {})
            guard = ToolGuard(
                self.tools, config=offered["config"], record=offered["record"], decide=hooks.get("tool_call")
            )
            toolsets.append(guard)
        return toolsets

    async def __call__(self, context: AgentContext) -> AgentReply:
        config = context.config
        try:
            model, choice = self.model_for(context)
        except LLMConfigError as error:
            raise LLMRefused(str(error)) from error
        label = choice.label if choice is not None else model.model_name
        where = f"agent type {context.agent_type.name!r}, model {label!r}: "
        can_ask = config.max_tool_calls > 0
        answer_type = JsonAnswer if config.output_format == JSON_FORMAT else TextAnswer
        settings: ModelSettings = {
            "temperature": config.temperature,
            "max_tokens": config.max_tokens,
            "max_retries": 0,
        }
        spent = RunUsage()  # pydantic-ai adds to it as it goes, so a failed call's cost is known
        structured = context.capabilities.get("structured_output")
        if structured is not None:
            answer_type = JsonAnswer  # a schema describes a JSON object, whatever output_format says
        toolsets = self._toolsets(context, can_ask)
        try:
            ask: Any = prompt(context)
            history: Any = None
            repairs = 0
            while True:
                result: AgentRunResult[Any] = await _RUNNER.run(
                    ask,
                    message_history=history,
                    output_type=[answer_type, DeferredToolRequests],
                    model=model,
                    deps=context,
                    instructions=instructions(context, can_ask),
                    model_settings=settings,
                    usage_limits=UsageLimits(tool_calls_limit=config.max_tool_calls),
                    toolsets=toolsets,
                    usage=spent,
                )
                problems = _schema_problems(structured, result.output)
                if structured is None or not problems or not structured["auto_repair"]:
                    break
                if repairs >= structured["max_repair_attempts"]:
                    break
                repairs += 1
                history = result.all_messages()
                ask = repair_prompt(problems)
        except AgentRunError as error:
            raise await _failure(error, where, config, choice, token_usage(spent)) from error
        except UserError as error:
            raise LLMRefused(f"{where}pydantic-ai refused the setup: {error}", token_usage(spent)) from error
        usage = token_usage(result.usage)
        output = result.output
        if isinstance(output, DeferredToolRequests):
            question = _question(output)
            return AgentReply(output={}, token_usage=usage, needs_human=question or "(no question given)")
        assert isinstance(output, TextAnswer | JsonAnswer)
        return AgentReply(
            output=output.to_output(),
            confidence=output.confidence,
            reasoning=output.reasoning,
            token_usage=usage,
        )


def _schema_problems(structured: Mapping[str, Any] | None, output: Any) -> list[str]:
    """What is wrong with ``output`` under the structured_output capability's schema."""
    if structured is None or not isinstance(output, JsonAnswer):
        return []
    problems: list[str] = structured["problems"](output.output)
    return problems


def _question(requests: DeferredToolRequests) -> str:
    """What a paused call asks a person: an approval's own question, else ask_human's."""
    for call in requests.calls:
        asked = requests.metadata.get(call.tool_call_id, {}).get("question")
        if asked:
            return str(asked)
    return str(requests.calls[0].args_as_dict().get("question", "")) if requests.calls else ""


_TRANSIENT_STATUS = (408, 409, 429)
_TRANSIENT = (
    ModelRateLimitError,
    ModelUnavailableError,
    ModelServerError,
    ModelConnectionError,
    ModelRequestTimeout,
    UnexpectedModelBehavior,
)


async def _failure(
    error: AgentRunError,
    where: str,
    config: AgentConfig,
    choice: ModelChoice | None,
    spent: dict[str, int],
) -> LLMCallFailed | LLMRefused:
    """The engine's view of a failed call: ask again (it may pass) or stop (it will not)."""
    status = error.status_code if isinstance(error, ModelHTTPError) else None
    if isinstance(error, UsageLimitExceeded):
        return LLMRefused(f"{where}{error} (config.max_tool_calls is {config.max_tool_calls})", spent)
    if isinstance(error, ModelAuthenticationError) or status in (401, 403):
        variable = choice.key_variable if choice is not None and choice.key_variable else "the API key"
        return LLMRefused(f"{where}the provider refused the API key; check {variable} ({error})", spent)
    if isinstance(error, ModelNotFoundError) or status == 404:
        return LLMRefused(
            f"{where}the provider does not know this model; check config.model ({error})", spent
        )
    transient = isinstance(error, _TRANSIENT) or (
        status is not None and (status in _TRANSIENT_STATUS or status >= 500)
    )
    if not transient:
        return LLMRefused(f"{where}the provider refused the request; check config.model ({error})", spent)
    if isinstance(error, ModelAPIError) and error.retry_after:
        await asyncio.sleep(min(error.retry_after, RETRY_AFTER_CAP))
    return LLMCallFailed(f"{where}{error}", spent)


__all__ = [
    "HUMAN_TOOLS",
    "JsonAnswer",
    "LLMAgent",
    "LLMCallFailed",
    "LLMRefused",
    "TextAnswer",
    "token_usage",
]

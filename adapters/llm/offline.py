"""The ``test`` model: a pydantic-ai function model that answers without a key or a network.

It fills in the answer the agent asks for (the structured output tool) with the same short
answer every time, so every topology runs to the end: votes agree, averages are numbers,
pipelines pass text on. Its token figures are pydantic-ai's estimate from the messages'
length, so runs with it still record token usage. It never calls a tool.
"""

from __future__ import annotations

from typing import Any

from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, ToolCallPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

OFFLINE_ANSWER = 1
OFFLINE_CONFIDENCE = 0.75


def _first_line(messages: list[ModelMessage]) -> str:
    for message in messages:
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                    return part.content.strip().splitlines()[0] if part.content.strip() else ""
    return ""


def _answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    tool = info.output_tools[0]
    text = f"offline answer ({_first_line(messages)})"
    args: dict[str, Any] = {
        "confidence": OFFLINE_CONFIDENCE,
        "reasoning": "the offline test model answers without an LLM",
    }
    if "output" in tool.parameters_json_schema.get("properties", {}):
        args["output"] = {"answer": OFFLINE_ANSWER, "text": text}
    else:
        args.update(text=text, answer=OFFLINE_ANSWER)
    return ModelResponse(parts=[ToolCallPart(tool.name, args)], model_name="test")


def offline_model() -> FunctionModel:
    return FunctionModel(_answer, model_name="test")


__all__ = ["OFFLINE_ANSWER", "OFFLINE_CONFIDENCE", "offline_model"]

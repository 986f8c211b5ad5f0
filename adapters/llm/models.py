"""From an ``AgentConfig.model`` string to a pydantic-ai model (the rule is in docs/decisions.md).

    provider:model            openai:gpt-4o, anthropic:claude-sonnet-4-20250514
    bare name                 claude-*  -> anthropic;  gpt-*, o<digit>*  -> openai
    NAME@http(s)://HOST/PATH  an OpenAI-compatible server (Ollama, vLLM, LM Studio) at that base URL
    test                      the offline model: no key, no network

The string is the only place a model's whereabouts live, so a membership's
``config_overrides`` and ``run --llm --model`` move an agent to another model or server
the same way. Everything is checked before a request is sent: a missing key or an unknown
provider is an :class:`LLMConfigError` naming the agent type, the model and what to set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from pydantic_ai.models import Model

from .offline import offline_model

Provider = Literal["openai", "anthropic", "openai-compatible", "test"]

KEY_VARIABLES: dict[Provider, str] = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "openai-compatible": "OPENAI_COMPATIBLE_API_KEY",
}
"""Where each provider's API key is read from; an OpenAI-compatible server's key is optional
(local servers need none), and an OpenAI key is never sent to another server."""

_PREFIXES: dict[str, Provider] = {"openai": "openai", "anthropic": "anthropic"}
_BARE_RULES: list[tuple[re.Pattern[str], Provider]] = [
    (re.compile(r"^claude-"), "anthropic"),
    (re.compile(r"^(gpt-|o\d)"), "openai"),
]
_BASE_URL = re.compile(r"@(?=https?://)")


class LLMConfigError(ValueError):
    """An agent's model cannot be used as configured; the message says what to set."""


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """Where a model name leads."""

    provider: Provider
    name: str
    base_url: str | None = None

    @property
    def key_variable(self) -> str | None:
        return KEY_VARIABLES.get(self.provider)

    @property
    def label(self) -> str:
        """The name as a person would write it back into ``config.model``."""
        text = self.name if self.provider in ("test", "openai-compatible") else f"{self.provider}:{self.name}"
        return f"{text}@{self.base_url}" if self.base_url else text


def parse_model(text: str, agent_type: str) -> ModelChoice:
    """Where ``text`` leads, or :class:`LLMConfigError` naming ``agent_type``."""

    def refuse(why: str) -> LLMConfigError:
        return LLMConfigError(f"agent type {agent_type!r}, model {text!r}: {why}")

    name, base_url = text.strip(), None
    found = _BASE_URL.search(name)
    if found is not None:
        name, base_url = name[: found.start()], name[found.end() :]
        parts = urlsplit(base_url)
        if not parts.netloc or parts.scheme not in ("http", "https"):
            raise refuse(f"base URL {base_url!r} is not an http(s) URL with a host")
    prefix, colon, rest = name.partition(":")
    provider: Provider | None
    if colon and prefix in _PREFIXES:
        provider, name = _PREFIXES[prefix], rest
    elif name == "test" and base_url is None:
        return ModelChoice("test", "test")
    elif base_url is not None:
        provider = "openai-compatible"
    else:
        provider = next((p for pattern, p in _BARE_RULES if pattern.match(name)), None)
        if provider is None:
            known = "write provider:model (openai:..., anthropic:...), NAME@http://HOST/v1 for an "
            known += "OpenAI-compatible server, or test for the offline model"
            if colon:
                raise refuse(f"unknown provider {prefix!r}; {known}")
            raise refuse(f"cannot tell which provider serves it; {known}")
    if not name:
        raise refuse("the model name is empty")
    if provider == "openai" and base_url is not None:
        provider = "openai-compatible"
    return ModelChoice(provider, name, base_url)


def check_key(choice: ModelChoice, agent_type: str, env: Mapping[str, str]) -> str | None:
    """The API key ``choice`` needs, or :class:`LLMConfigError` naming the variable to set."""
    variable = choice.key_variable
    if variable is None:
        return None
    key = env.get(variable) or None
    if key is None and choice.provider != "openai-compatible":
        raise LLMConfigError(
            f"agent type {agent_type!r}, model {choice.label!r}: set {variable} "
            f"(the {choice.provider} API key), or choose another model (--model test runs offline)"
        )
    return key


def build_model(choice: ModelChoice, key: str | None) -> Model:
    """The pydantic-ai model for ``choice``; the provider modules are imported only when used."""
    if choice.provider == "test":
        return offline_model()
    if choice.provider == "anthropic":
        from pydantic_ai.models.anthropic import AnthropicModel
        from pydantic_ai.providers.anthropic import AnthropicProvider

        return AnthropicModel(choice.name, provider=AnthropicProvider(api_key=key, base_url=choice.base_url))
    from pydantic_ai.models.openai import OpenAIChatModel

    if choice.provider == "openai-compatible":
        from pydantic_ai.providers.openai_compatible import OpenAICompatibleProvider

        assert choice.base_url is not None
        compatible = OpenAICompatibleProvider("openai-compatible", base_url=choice.base_url, api_key=key)
        return OpenAIChatModel(choice.name, provider=compatible)
    from pydantic_ai.providers.openai import OpenAIProvider

    return OpenAIChatModel(choice.name, provider=OpenAIProvider(api_key=key))


__all__ = [
    "KEY_VARIABLES",
    "LLMConfigError",
    "ModelChoice",
    "Provider",
    "build_model",
    "check_key",
    "parse_model",
]

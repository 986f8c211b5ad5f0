"""The model-name rule (docs/decisions.md): provider prefixes, bare names, base URLs, ``test``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.models.function import FunctionModel
from pydantic_ai.models.openai import OpenAIChatModel

from qmcp_agents.adapters.llm import LLMConfigError, ModelChoice, parse_model
from qmcp_agents.adapters.llm.models import build_model, check_key

names = st.from_regex(r"[a-z0-9][a-z0-9.\-]{0,30}", fullmatch=True)
urls = st.builds(
    lambda host, port, path: f"http://{host}:{port}{path}",
    st.sampled_from(["127.0.0.1", "localhost", "ollama.internal"]),
    st.integers(1, 65535),
    st.sampled_from(["", "/v1", "/api/v1"]),
)


@given(st.sampled_from(["openai", "anthropic"]), names)
def test_a_provider_prefix_names_the_provider(provider: str, name: str) -> None:
    choice = parse_model(f"{provider}:{name}", "t")
    assert (choice.provider, choice.name, choice.base_url) == (provider, name, None)
    assert parse_model(choice.label, "t") == choice


@given(names)
def test_bare_names_follow_the_documented_rule(rest: str) -> None:
    assert parse_model(f"claude-{rest}", "t") == ModelChoice("anthropic", f"claude-{rest}")
    assert parse_model(f"gpt-{rest}", "t") == ModelChoice("openai", f"gpt-{rest}")
    assert parse_model(f"o3{rest}", "t") == ModelChoice("openai", f"o3{rest}")


@given(names, urls, st.booleans())
def test_a_base_url_means_an_openai_compatible_server(name: str, url: str, prefixed: bool) -> None:
    choice = parse_model(f"{'openai:' if prefixed else ''}{name}@{url}", "t")
    assert choice == ModelChoice("openai-compatible", name, url)
    assert parse_model(choice.label, "t") == choice


def test_model_names_with_colons_and_at_signs_survive() -> None:
    assert parse_model("llama3.2:3b@http://127.0.0.1:11434/v1", "t") == ModelChoice(
        "openai-compatible", "llama3.2:3b", "http://127.0.0.1:11434/v1"
    )
    assert parse_model("anthropic:claude-3@20240229", "t") == ModelChoice("anthropic", "claude-3@20240229")


def test_the_specification_default_and_test() -> None:
    assert parse_model("claude-sonnet-4-20250514", "t").label == "anthropic:claude-sonnet-4-20250514"
    assert parse_model("test", "t") == ModelChoice("test", "test")


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("mistral-large", "cannot tell which provider"),
        ("google-gla:gemini-2.5-pro", "unknown provider 'google-gla'"),
        ("openai:", "the model name is empty"),
        ("llama@http://", "not an http(s) URL with a host"),
    ],
)
def test_unknown_models_are_refused_naming_agent_type_and_model(model: str, says: str) -> None:
    with pytest.raises(LLMConfigError) as refused:
        parse_model(model, "scout")
    assert str(refused.value).startswith(f"agent type 'scout', model {model!r}: ")
    assert says in str(refused.value)


def test_keys_come_from_the_documented_variables() -> None:
    openai, anthropic = ModelChoice("openai", "gpt-4o"), ModelChoice("anthropic", "claude-x")
    local = ModelChoice("openai-compatible", "llama3", "http://127.0.0.1:1/v1")
    assert check_key(openai, "t", {"OPENAI_API_KEY": "sk"}) == "sk"
    assert check_key(anthropic, "t", {"ANTHROPIC_API_KEY": "ak"}) == "ak"
    assert check_key(local, "t", {}) is None  # local servers need no key
    assert check_key(local, "t", {"OPENAI_COMPATIBLE_API_KEY": "lk", "OPENAI_API_KEY": "sk"}) == "lk"
    with pytest.raises(LLMConfigError, match="set OPENAI_API_KEY"):
        check_key(openai, "t", {"ANTHROPIC_API_KEY": "ak"})
    with pytest.raises(LLMConfigError, match="set ANTHROPIC_API_KEY"):
        check_key(anthropic, "t", {"ANTHROPIC_API_KEY": ""})


def test_built_models_go_where_the_name_says_without_a_request() -> None:
    local = build_model(ModelChoice("openai-compatible", "llama3", "http://127.0.0.1:9/v1"), None)
    assert isinstance(local, OpenAIChatModel)
    assert local.model_name == "llama3"
    assert local.base_url == "http://127.0.0.1:9/v1/"
    openai = build_model(ModelChoice("openai", "gpt-4o"), "sk-test")
    assert isinstance(openai, OpenAIChatModel)
    assert "api.openai.com" in openai.base_url
    claude = build_model(ModelChoice("anthropic", "claude-x"), "ak-test")
    assert isinstance(claude, AnthropicModel)
    assert claude.model_name == "claude-x"
    assert isinstance(build_model(ModelChoice("test", "test"), None), FunctionModel)

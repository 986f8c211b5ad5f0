"""LLM agents on pydantic-ai (extra ``[llm]``): engine agents built from agent types' configs.

from qmcp_agents.adapters.llm import LLMAgent, check_topology
agent = LLMAgent()                       # or LLMAgent("test"), LLMAgent(FunctionModel(...))
await check_topology(store, "review", agent)   # keys and model names, before anything is stored
run = await Engine(store, agent.lookup).run("review", {"doc": "..."})
"""

from . import capabilities as _capabilities
from .agent import JsonAnswer, LLMAgent, LLMCallFailed, LLMRefused, TextAnswer, token_usage
from .models import KEY_VARIABLES, LLMConfigError, ModelChoice, parse_model
from .offline import offline_model
from .preflight import check_topology

_capabilities.install()  # tool_use and human_in_loop hooks act on this package's agents

__all__ = [
    "KEY_VARIABLES",
    "JsonAnswer",
    "LLMAgent",
    "LLMCallFailed",
    "LLMConfigError",
    "LLMRefused",
    "ModelChoice",
    "TextAnswer",
    "check_topology",
    "offline_model",
    "parse_model",
    "token_usage",
]

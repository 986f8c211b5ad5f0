"""``run --llm`` and ``demo --llm``: agents built from the stored agent types' configs.

Every member of every topology about to run (sub-topologies included) is checked first
(model name, provider, API key), so a run that cannot reach its models stores nothing and
the command says, in one line, what to set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qmcp_agents.domain.ports import Store

INSTALL_HINT = "--llm needs the llm extra: pip install 'qmcp-agents[llm]'"


def check_options(llm: bool, model: str | None, scripted: bool) -> str | None:
    """What is wrong with this combination of options, if anything."""
    if model is not None and not llm:
        return "--model chooses the model of --llm agents: add --llm"
    if llm and scripted:
        return "--llm and --agents both choose the agents: give one of them"
    return None


async def agents(store: Store, topologies: Sequence[str], model: str | None) -> Any:
    """The engine's agent lookup for LLM agents, once every member can reach its model."""
    try:
        from qmcp_agents.adapters.llm import LLMAgent, check_topology
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    agent = LLMAgent(model)
    for name in topologies:
        await check_topology(store, name, agent)
    return agent.lookup


__all__ = ["INSTALL_HINT", "agents", "check_options"]

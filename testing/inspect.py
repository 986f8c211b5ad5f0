"""Read a whole store into plain data, to compare two stores or a store before and after."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.queries import all_pages

T = TypeVar("T", bound=BaseModel)


async def dump_store(store: Store) -> dict[str, list[dict[str, Any]]]:
    """Everything in ``store`` as JSON-ready dicts, in key order."""
    executions = await all_pages(lambda a: store.executions.list(limit=500, after=a))
    messages = []
    for execution in executions:
        messages.extend(await all_pages(lambda a, e=execution.id: store.messages.list(e, limit=500, after=a)))  # type: ignore[misc]
    agent_types = await all_pages(lambda a: store.agent_types.list(limit=500, after=a))
    topologies = await all_pages(lambda a: store.topologies.list(limit=500, after=a))
    instances = await all_pages(lambda a: store.agent_instances.list(limit=500, after=a))
    results = await all_pages(lambda a: store.results.list(limit=500, after=a))
    groups: dict[str, list[BaseModel]] = {
        "agent_types": [*agent_types],
        "topologies": [*topologies],
        "agent_instances": [*instances],
        "executions": [*executions],
        "messages": [*messages],
        "results": [*results],
    }
    return {name: [item.model_dump(mode="json") for item in items] for name, items in groups.items()}

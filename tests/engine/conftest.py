"""Stores for the engine tests: memory always, SQLite for the full-run tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from qmcp_agents.adapters import open_store
from qmcp_agents.domain import AgentTypeCreate, TopologyCreate, services
from qmcp_agents.domain.ports import Store


@pytest_asyncio.fixture
async def store() -> AsyncIterator[Store]:
    async with open_store("memory://") as memory:
        yield memory


@pytest_asyncio.fixture(params=["memory", "sqlite"])
async def any_store(request: Any, tmp_path: Path) -> AsyncIterator[Store]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'engine.db'}"
    async with open_store(url) as opened:
        await opened.create_schema()
        yield opened


async def build(
    store: Store,
    name: str,
    topology_type: str,
    members: list[str],
    config: dict[str, Any] | None = None,
    capabilities: dict[str, list[str]] | None = None,
    agent_config: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Agent types for ``members`` (skipping ones that exist) and a topology using them."""
    for member in dict.fromkeys(members):
        if await store.agent_types.find_by_name(member) is None:
            config_fields: dict[str, Any] = {
                "timeout_seconds": 5,
                "max_retries": 0,
                **(agent_config or {}).get(member, {}),
            }
            config_fields["capabilities"] = [{"name": c} for c in (capabilities or {}).get(member, [])]
            await services.register_agent_type(
                store,
                AgentTypeCreate(name=member, description=member, role="specialist", config=config_fields),
            )
    await services.create_topology(
        store,
        TopologyCreate(
            name=name, description=name, topology_type=topology_type, config=config or {}, agent_names=members
        ),
    )

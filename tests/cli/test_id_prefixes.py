"""Execution id prefixes resolve the same on every backend: the one keyset page from just
below the prefix finds exactly the ids that start with it (ids chosen to sit on the edges)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import pytest_asyncio

from qmcp_agents.adapters.cli.ids import AmbiguousId, resolve_execution_id
from qmcp_agents.domain import AgentTypeCreate, Execution, TopologyCreate, services
from qmcp_agents.domain.ports import Store
from tests.stores.servers import backend_store, mongo_store

pytestmark = pytest.mark.asyncio

IDS = [
    "00000000-0000-7000-8000-000000000001",
    "0abc0000-0000-7000-8000-000000000000",
    "0abc0000-0000-7000-8000-000000000001",
    "0abcffff-ffff-7fff-bfff-ffffffffffff",
    "0abd0000-0000-7000-8000-000000000000",
    "ffffffff-ffff-7fff-bfff-fffffffffff0",
]


@pytest_asyncio.fixture(params=["memory", "sqlite", "postgresql", "mongodb"])
async def store(request: Any, tmp_path: Path) -> AsyncIterator[Store]:
    opened = mongo_store() if request.param == "mongodb" else backend_store(request.param, tmp_path)
    async with opened as ready:
        await services.register_agent_type(ready, AgentTypeCreate(name="a", description="a", role="critic"))
        topology = await services.create_topology(
            ready, TopologyCreate(name="t", description="t", topology_type="ensemble", agent_names=["a"])
        )
        await ready.executions.restore_many(
            [Execution(id=UUID(i), topology_id=topology.id, input_data={}, revision=1) for i in IDS]
        )
        yield ready


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("0000", IDS[0]),
        ("0abc0000-0000-7000-8000-000000000001", IDS[2]),
        ("0abc0000000070008000000000000001", IDS[2]),
        ("0ABCF", IDS[3]),
        ("0abd", IDS[4]),
        ("ffff", IDS[5]),
    ],
)
async def test_a_unique_prefix(store: Store, prefix: str, expected: str) -> None:
    assert str(await resolve_execution_id(store, prefix)) == expected


async def test_an_ambiguous_prefix_lists_exactly_its_matches(store: Store) -> None:
    with pytest.raises(AmbiguousId) as ambiguous:
        await resolve_execution_id(store, "0abc")
    assert ambiguous.value.matches == IDS[1:4]
    with pytest.raises(AmbiguousId) as ambiguous:
        await resolve_execution_id(store, "0abc0000-0000-7000-8000-00000000000")
    assert ambiguous.value.matches == IDS[1:3]


async def test_an_unknown_prefix(store: Store) -> None:
    for prefix in ("0abe", "1234", "ffffffff-ffff-8"):
        with pytest.raises(LookupError, match="no execution id starts with"):
            await resolve_execution_id(store, prefix)

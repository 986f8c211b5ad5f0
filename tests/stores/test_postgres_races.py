"""PostgreSQL races that only a server with concurrent transactions shows (issue 14)."""

from __future__ import annotations

import asyncio

import pytest

from qmcp_agents.domain import IntegrityError, TopologyType
from qmcp_agents.testing.builders import topology

from .servers import postgres_store

pytestmark = pytest.mark.asyncio


async def test_concurrent_updates_cannot_store_a_compound_cycle() -> None:
    async with postgres_store() as store:
        for name in ("leaf", "a", "b"):
            config = {"sub_topologies": ["leaf"]} if name != "leaf" else {}
            kind = TopologyType.COMPOUND if name != "leaf" else TopologyType.ENSEMBLE
            await store.topologies.add(topology(name, [], kind, config))
        first_saved = asyncio.Event()

        async def a_to_b() -> None:
            async with store.transaction():
                a = await store.topologies.get_by_name("a")
                a.config = {"sub_topologies": ["b"]}
                await store.topologies.update(a)
                first_saved.set()
                await asyncio.sleep(0.3)  # still uncommitted while the other one checks

        async def b_to_a() -> None:
            await first_saved.wait()
            b = await store.topologies.get_by_name("b")
            b.config = {"sub_topologies": ["a"]}
            await store.topologies.update(b)

        outcomes = await asyncio.gather(a_to_b(), b_to_a(), return_exceptions=True)
        assert outcomes[0] is None
        assert isinstance(outcomes[1], IntegrityError), outcomes
        assert "cycle" in str(outcomes[1]).lower()
        assert (await store.topologies.get_by_name("b")).config == {"sub_topologies": ["leaf"]}

"""A copy that does not match its source says, per kind, which side has how many."""

from __future__ import annotations

import asyncio

import pytest

from qmcp_agents.adapters import open_store, transfer
from qmcp_agents.domain import AgentTypeCreate, services
from qmcp_agents.domain.errors import IntegrityError


def test_the_mismatch_names_each_sides_count() -> None:
    async def main() -> str:
        async with open_store("memory://") as source, open_store("memory://") as target:
            for store in (source, target):
                await store.create_schema()
            for name in ("a", "b", "c"):
                await services.register_agent_type(
                    source, AgentTypeCreate(name=name, description=name, role="critic")
                )
            await services.register_agent_type(
                target, AgentTypeCreate(name="a", description="a", role="critic")
            )
            with pytest.raises(IntegrityError) as refused:
                await transfer.verify(source, target)
            return str(refused.value)

    message = asyncio.run(main())
    assert "agent_type: source has 3, target has 1" in message
    assert "topology" not in message  # only the kinds that differ
    assert "{" not in message  # no dict reprs

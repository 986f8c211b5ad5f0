"""Conformance: the drive's first read (a topology with its members' agent types), in one
step where the store offers it (:class:`~qmcp_agents.domain.ports.TopologyReader`), equals
the repositories' reads; mixed into the suite. Needs the ``store`` fixture."""

from __future__ import annotations

import pytest

from qmcp_agents.domain import AgentType, NotFound, Topology, TopologyType
from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.reading import topology_with_agent_types, topology_with_agent_types_composed

from .builders import agent_type, topology


async def _team(store: Store, name: str = "team") -> tuple[Topology, list[AgentType]]:
    """Three memberships over two agent types (one of them seated twice)."""
    planner = await store.agent_types.add(agent_type(f"{name}-planner"))
    critic = await store.agent_types.add(agent_type(f"{name}-critic"))
    stored = await store.topologies.add(
        topology(name, [planner, critic, planner], TopologyType.ENSEMBLE, slots=["a", "b", "c"])
    )
    return stored, [planner, critic]


class ReadingConformance:
    async def test_a_topology_with_its_agent_types_is_what_the_repositories_read(self, store: Store) -> None:
        stored, types = await _team(store)
        assert stored.id is not None
        await _team(store, "other")  # not read
        got = await topology_with_agent_types(store, stored.id)
        assert got == await topology_with_agent_types_composed(store, stored.id)
        assert got[0] == await store.topologies.get(stored.id)
        assert got[1] == {t.id: t for t in types}
        assert [m.slot_name for m in got[0].memberships] == ["a", "b", "c"]

    async def test_a_missing_topology_is_not_found_as_the_repository_says(self, store: Store) -> None:
        with pytest.raises(NotFound) as expected:
            await store.topologies.get(987_654)
        with pytest.raises(NotFound) as got:
            await topology_with_agent_types(store, 987_654)
        assert str(got.value) == str(expected.value)

    async def test_an_updated_agent_type_is_read_as_it_is_now(self, store: Store) -> None:
        stored, (planner, _) = await _team(store)
        assert stored.id is not None
        assert planner.id is not None
        await topology_with_agent_types(store, stored.id)
        changed = await store.agent_types.update(planner.model_copy(update={"description": "plans, revised"}))
        _, types = await topology_with_agent_types(store, stored.id)
        assert types[planner.id] == changed
        assert types[planner.id].revision == planner.revision + 1

    async def test_inside_a_transaction_it_reads_the_transactions_writes(self, store: Store) -> None:
        """(Without transactions, MongoDB standalone, the writes are there at once.)"""
        async with store.transaction():
            stored, types = await _team(store)
            assert stored.id is not None
            got = await topology_with_agent_types(store, stored.id)
        assert got == (stored, {t.id: t for t in types})


__all__ = ["ReadingConformance"]

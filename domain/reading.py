"""Reads a drive makes at its start, in one step where the store can do them so."""

from __future__ import annotations

from .agent import AgentType
from .ports import Store, TopologyReader, supports
from .topology import Topology


async def topology_with_agent_types(store: Store, topology_id: int) -> tuple[Topology, dict[int, AgentType]]:
    """The topology and the agent type of each of its memberships, keyed by id: what every
    drive reads before it seats its members. A store that reads them in one step
    (:class:`~.ports.TopologyReader`: SQL, one statement instead of one per member) is asked
    first; otherwise, or when it finds nothing, :func:`topology_with_agent_types_composed`."""
    if supports(store, TopologyReader):  # type: ignore[type-abstract]
        found = await store.topology_with_agent_types(topology_id)
        if found is not None:
            return found
    return await topology_with_agent_types_composed(store, topology_id)


async def topology_with_agent_types_composed(
    store: Store, topology_id: int
) -> tuple[Topology, dict[int, AgentType]]:
    """:func:`topology_with_agent_types` from the repositories: the definition a store's
    one-step form must match (``NotFound`` for a missing topology or agent type)."""
    topology = await store.topologies.get(topology_id)
    types: dict[int, AgentType] = {}
    for membership in topology.memberships:
        if membership.agent_type_id not in types:
            types[membership.agent_type_id] = await store.agent_types.get(membership.agent_type_id)
    return topology, types


__all__ = ["topology_with_agent_types", "topology_with_agent_types_composed"]

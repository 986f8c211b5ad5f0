"""Use cases: what an application does with a store, in the domain's own words.

Each function takes any :class:`~.ports.Store`, so the same code runs on every backend and
is unit-tested on the in-memory one. Multi-step use cases run in one transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from .agent import AgentType, AgentTypeCreate, AgentTypeRead, AgentTypeUpdate
from .errors import IntegrityError
from .execution import Execution, ExecutionCreate, ExecutionRead
from .message import MessageCreate, MessageRead, Result
from .ports import Store
from .seating import chain_slots
from .topology import Topology, TopologyCreate, TopologyMembership, TopologyRead, TopologyUpdate
from .topology_configs import ChainOfCommandConfig, PipelineConfig


async def register_agent_type(store: Store, data: AgentTypeCreate) -> AgentTypeRead:
    """Store a new agent type (AlreadyExists if the name is taken)."""
    stored = await store.agent_types.add(AgentType(**data.model_dump(exclude={"config"}), config=data.config))
    return AgentTypeRead.from_entity(stored)


async def update_agent_type(store: Store, name: str, data: AgentTypeUpdate) -> AgentTypeRead:
    """Apply ``data`` to the agent type ``name`` (ConcurrencyError if it changed meanwhile)."""
    async with store.transaction():
        current = await store.agent_types.get_by_name(name)
        stored = await store.agent_types.update(current.apply(data))
    return AgentTypeRead.from_entity(stored)


def _slot_names(data: TopologyCreate) -> list[str]:
    """Pipeline members sit in their stage's slot, in order; a chain of command's on the
    authority levels, from the top down; others in a slot named after the agent type
    (``name``, ``name-2``, ... when a type appears more than once)."""
    config = data.get_typed_config()
    if isinstance(config, ChainOfCommandConfig):
        try:
            return chain_slots(config.authority_levels, data.agent_names)
        except ValueError as error:
            raise IntegrityError(f"topology {data.name!r}: {error}") from None
    if isinstance(config, PipelineConfig) and config.stages:
        if len(data.agent_names) != len(config.stages):
            raise IntegrityError(
                f"topology {data.name!r}: {len(config.stages)} stages {config.stages} need exactly "
                f"one agent each, got agent_names {data.agent_names}"
            )
        return list(config.stages)
    seen: Counter[str] = Counter()
    slots = []
    for name in data.agent_names:
        seen[name] += 1
        slots.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return slots


async def create_topology(store: Store, data: TopologyCreate) -> TopologyRead:
    """Store a topology with members resolved from ``agent_names`` (rules checked on save)."""
    async with store.transaction():
        memberships = []
        for position, (name, slot) in enumerate(zip(data.agent_names, _slot_names(data), strict=True)):
            agent_type = await store.agent_types.find_by_name(name)
            if agent_type is None or agent_type.id is None:
                raise IntegrityError(
                    f"topology {data.name!r}: agent_names lists {name!r}, which does not exist"
                )
            memberships.append(
                TopologyMembership(agent_type_id=agent_type.id, slot_name=slot, position=position)
            )
        topology = Topology(**data.model_dump(exclude={"agent_names"}), memberships=memberships)
        stored = await store.topologies.add(topology)
    return TopologyRead.from_entity(stored)


async def update_topology(store: Store, name: str, data: TopologyUpdate) -> TopologyRead:
    async with store.transaction():
        current = await store.topologies.get_by_name(name)
        stored = await store.topologies.update(current.apply(data))
    return TopologyRead.from_entity(stored)


async def start_execution(store: Store, data: ExecutionCreate) -> Execution:
    """Create a running execution of the topology named in ``data``."""
    topology = await store.topologies.get_by_name(data.topology_name)
    assert topology.id is not None
    execution = Execution(
        topology_id=topology.id,
        parent_id=data.parent_id,
        input_data=data.input_data,
        metadata=data.metadata or {},
        correlation_id=data.correlation_id,
    )
    execution.start()
    return await store.executions.add(execution)


async def append_messages(
    store: Store, execution_id: UUID, messages: Sequence[MessageCreate]
) -> list[MessageRead]:
    return [MessageRead.from_entity(m) for m in await store.messages.append(execution_id, messages)]


async def record_result(store: Store, result: Result) -> Result:
    return await store.results.add(result)


async def finish_execution(store: Store, execution_id: UUID, output: dict[str, Any]) -> ExecutionRead:
    """running -> completed with ``output``."""
    async with store.transaction():
        execution = await store.executions.get(execution_id)
        execution.mark_complete(output)
        stored = await store.executions.update(execution)
    return ExecutionRead.from_entity(stored)


async def fail_execution(
    store: Store, execution_id: UUID, error: str, details: dict[str, Any] | None = None
) -> ExecutionRead:
    """pending | running | paused -> failed, with the error and its details."""
    async with store.transaction():
        execution = await store.executions.get(execution_id)
        execution.mark_failed(error, details)
        stored = await store.executions.update(execution)
    return ExecutionRead.from_entity(stored)


async def get_agent_type(store: Store, name: str) -> AgentTypeRead:
    return AgentTypeRead.from_entity(await store.agent_types.get_by_name(name))


async def get_topology(store: Store, name: str) -> TopologyRead:
    return TopologyRead.from_entity(await store.topologies.get_by_name(name))


async def get_execution(store: Store, execution_id: UUID) -> ExecutionRead:
    return ExecutionRead.from_entity(await store.executions.get(execution_id))


async def list_messages(store: Store, execution_id: UUID, limit: int = 1000) -> list[MessageRead]:
    """Every message of an execution, in sequence order (follows the pages)."""
    out: list[MessageRead] = []
    after: str | None = None
    while True:
        page = await store.messages.list(execution_id, limit=limit, after=after)
        out.extend(MessageRead.from_entity(m) for m in page.items)
        if page.next_cursor is None:
            return out
        after = page.next_cursor


__all__ = [
    "append_messages",
    "create_topology",
    "fail_execution",
    "finish_execution",
    "get_agent_type",
    "get_execution",
    "get_topology",
    "list_messages",
    "record_result",
    "register_agent_type",
    "start_execution",
    "update_agent_type",
    "update_topology",
]

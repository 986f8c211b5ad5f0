"""Small builders for valid entities, so each test states only what it is about."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from qmcp_agents.domain import (
    AgentInstance,
    AgentRole,
    AgentType,
    AgentTypeCreate,
    Execution,
    MessageCreate,
    MessageType,
    Result,
    Topology,
    TopologyCreate,
    TopologyMembership,
    TopologyType,
    services,
)
from qmcp_agents.domain.ports import Store


def agent_type(name: str = "planner", role: AgentRole = AgentRole.PLANNER, **fields: Any) -> AgentType:
    return AgentType(name=name, description=f"{name} agent", role=role, **fields)


def topology(
    name: str = "team",
    members: list[AgentType] | None = None,
    topology_type: TopologyType = TopologyType.ENSEMBLE,
    config: dict[str, Any] | None = None,
    slots: list[str] | None = None,
) -> Topology:
    members = members or []
    slot_names = slots or [f"{m.name}-{i}" for i, m in enumerate(members)]
    return Topology(
        name=name,
        description=f"{name} topology",
        topology_type=topology_type,
        config=config or {},
        memberships=[
            TopologyMembership(agent_type_id=m.id, slot_name=slot, position=i)
            for i, (m, slot) in enumerate(zip(members, slot_names, strict=True))
        ],
    )


def message(sender: UUID, content: dict[str, Any] | None = None, **fields: Any) -> MessageCreate:
    fields.setdefault("message_type", MessageType.BROADCAST)
    return MessageCreate(
        sender_id=sender, content=content if content is not None else {"text": "hi"}, **fields
    )


class World:
    """A store seeded with one agent type, one topology, one running execution and one
    instance bound to it: the usual starting point of execution-level tests."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def build(self) -> World:
        self.agent_type = await self.store.agent_types.add(agent_type())
        self.topology = await self.store.topologies.add(topology(members=[self.agent_type]))
        self.execution = await self.new_execution()
        self.instance = await self.new_instance(self.execution.id)
        return self

    async def new_execution(self, running: bool = True, **fields: Any) -> Execution:
        assert self.topology.id is not None
        execution = Execution(topology_id=self.topology.id, input_data={"task": "t"}, **fields)
        if running:
            execution.start()
        return await self.store.executions.add(execution)

    async def new_instance(self, execution_id: UUID | None = None) -> AgentInstance:
        assert self.agent_type.id is not None
        return await self.store.agent_instances.add(
            AgentInstance(agent_type_id=self.agent_type.id, execution_id=execution_id)
        )

    def result(self, **fields: Any) -> Result:
        fields.setdefault("execution_id", self.execution.id)
        fields.setdefault("agent_instance_id", self.instance.id)
        fields.setdefault("output", {"answer": 1})
        return Result(**fields)


async def register_topology(
    store: Store,
    name: str,
    topology_type: str,
    members: list[str],
    config: dict[str, Any] | None = None,
    capabilities: dict[str, list[str]] | None = None,
    agent_config: dict[str, dict[str, Any]] | None = None,
    roles: dict[str, str] | None = None,
) -> None:
    """Agent types for ``members`` (skipping ones that exist; role ``specialist`` unless
    ``roles`` says otherwise) and a topology using them.

    ``capabilities`` gives members skill tags (the ``skills`` capability) to route by."""
    for member in dict.fromkeys(members):
        if await store.agent_types.find_by_name(member) is None:
            config_fields: dict[str, Any] = {
                "timeout_seconds": 5,
                "max_retries": 0,
                **(agent_config or {}).get(member, {}),
            }
            skills = (capabilities or {}).get(member, [])
            if skills:
                config_fields["capabilities"] = [
                    *config_fields.get("capabilities", []),
                    {"name": "skills", "config": {"tags": skills}},
                ]
            await services.register_agent_type(
                store,
                AgentTypeCreate(
                    name=member,
                    description=member,
                    role=(roles or {}).get(member, "specialist"),
                    config=config_fields,
                ),
            )
    await services.create_topology(
        store,
        TopologyCreate(
            name=name, description=name, topology_type=topology_type, config=config or {}, agent_names=members
        ),
    )

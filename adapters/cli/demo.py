"""A short tour of qmcp-agents: agent types, a topology and an execution, on any store.

Run ``python -m qmcp_agents.adapters.cli.demo [STORE_URL]`` (default ``memory://``).
"""

from __future__ import annotations

import asyncio
import sys
from uuid import UUID

from qmcp_agents.adapters import open_store
from qmcp_agents.domain import (
    AgentInstance,
    AgentRole,
    AgentTypeCreate,
    ExecutionCreate,
    MessageCreate,
    MessageType,
    Result,
    TopologyCreate,
    TopologyType,
    services,
)
from qmcp_agents.domain.ports import Store


async def build(store: Store) -> UUID:
    """Register two debaters and a judge, a debate topology, and record one short debate."""
    for name, role, prompt in (
        ("optimist", AgentRole.SPECIALIST, "Argue for the proposal."),
        ("skeptic", AgentRole.CRITIC, "Argue against the proposal."),
        ("judge", AgentRole.REVIEWER, "Weigh both sides and decide."),
    ):
        await services.register_agent_type(
            store,
            AgentTypeCreate(name=name, description=prompt, role=role, config={"system_prompt": prompt}),
        )
    await services.create_topology(
        store,
        TopologyCreate(
            name="proposal-debate",
            description="Two debaters, one judge",
            topology_type=TopologyType.DEBATE,
            config={"max_rounds": 2, "mediator_agent_name": "judge"},
            agent_names=["optimist", "skeptic", "judge"],
        ),
    )
    execution = await services.start_execution(
        store, ExecutionCreate(topology_name="proposal-debate", input_data={"proposal": "Adopt UUIDv7 keys"})
    )
    topology = await store.topologies.get_by_name("proposal-debate")
    agents = {}
    for membership in topology.memberships:
        agent_type = await store.agent_types.get(membership.agent_type_id)
        agents[agent_type.name] = await store.agent_instances.add(
            AgentInstance(agent_type_id=agent_type.id, execution_id=execution.id)
        )
    script = [
        (0, "optimist", "Time-ordered keys keep indexes compact."),
        (0, "skeptic", "They leak creation time."),
        (1, "optimist", "Creation time is already public here."),
        (1, "skeptic", "Then I concede."),
    ]
    await store.messages.append(
        execution.id,
        [
            MessageCreate(
                sender_id=agents[who].id,
                message_type=MessageType.BROADCAST,
                content={"text": text},
                round_number=r,
            )
            for r, who, text in script
        ],
    )
    verdict = {"decision": "adopt", "votes": {"optimist": "adopt", "skeptic": "adopt"}}
    await store.results.add(
        Result(
            execution_id=execution.id,
            agent_instance_id=agents["judge"].id,
            output=verdict,
            confidence=0.9,
            reasoning="Both debaters agree after round 1.",
            token_usage={"input": 812, "output": 64},
        )
    )
    await services.finish_execution(store, execution.id, verdict)
    return execution.id


async def show(store: Store, execution_id: UUID) -> None:
    execution = await services.get_execution(store, execution_id)
    topology = await store.topologies.get(execution.topology_id)
    print(f"topology  {topology.name} ({topology.topology_type.value}) config={topology.config}")
    print(f"execution {execution.id} {execution.status.value} in {execution.duration_ms} ms")
    names = {}
    for instance in (await store.agent_instances.list(execution_id=execution_id)).items:
        names[instance.id] = (await store.agent_types.get(instance.agent_type_id)).name
    for message in await services.list_messages(store, execution_id):
        print(
            f"  #{message.sequence_number} round {message.round_number} {names[message.sender_id]:>8}: "
            f"{message.content['text']}"
        )
    for result in (await store.results.list(execution_id=execution_id)).items:
        print(
            f"result by {names[result.agent_instance_id]}: {result.output} (confidence {result.confidence})"
        )


async def main(url: str) -> None:
    async with open_store(url) as store:
        await store.create_schema()
        execution_id = await build(store)
        await show(store, execution_id)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "memory://"))

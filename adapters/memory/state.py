"""The in-memory store's data, and cheap snapshots of it for transactions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias
from uuid import UUID

from qmcp_agents.domain import AgentInstance, AgentType, Execution, Message, Result, Topology
from qmcp_agents.domain.leases import Lease

Plan: TypeAlias = tuple[tuple[str | int, "Plan"], ...]
"""Where a stored JSON container holds containers: ``(key or index, plan of that child)``
for each dict or list value in it, ``()`` if it holds only scalars. Copying a message's
``content`` along its plan copies exactly its containers (``dict.copy``/``list.copy`` in C)
without looking at a single scalar."""

StoredMessage: TypeAlias = tuple[Message, Plan]
"""A stored message and the plan of its ``content``, made once when it is written."""


@dataclass
class State:
    """Everything a memory store holds. Stored entities are never mutated in place, only
    replaced, so a snapshot can share them and copy just the containers."""

    agent_types: dict[int, AgentType] = field(default_factory=dict)
    topologies: dict[int, Topology] = field(default_factory=dict)
    instances: dict[UUID, AgentInstance] = field(default_factory=dict)
    executions: dict[UUID, Execution] = field(default_factory=dict)
    messages: dict[UUID, StoredMessage] = field(default_factory=dict)
    message_log: dict[UUID, list[UUID]] = field(default_factory=dict)  # execution -> ids by sequence
    results: dict[UUID, Result] = field(default_factory=dict)
    leases: dict[UUID, Lease] = field(default_factory=dict)
    next_ids: dict[str, int] = field(
        default_factory=lambda: {"agent_type": 1, "topology": 1, "membership": 1}
    )

    def snapshot(self) -> State:
        return State(
            agent_types=dict(self.agent_types),
            topologies=dict(self.topologies),
            instances=dict(self.instances),
            executions=dict(self.executions),
            messages=dict(self.messages),
            message_log={k: list(v) for k, v in self.message_log.items()},
            results=dict(self.results),
            leases=dict(self.leases),
            next_ids=dict(self.next_ids),
        )

    def restore(self, snapshot: State) -> None:
        self.__dict__.update(snapshot.__dict__)

    def bump_id(self, kind: str, used: int) -> None:
        """Make sure ``used`` (an id written as given) is never handed out again."""
        self.next_ids[kind] = max(self.next_ids[kind], used + 1)

    def take_id(self, kind: str) -> int:
        value = self.next_ids[kind]
        self.next_ids[kind] = value + 1
        return value

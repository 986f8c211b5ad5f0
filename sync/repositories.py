"""The six repositories without ``async``: each verb runs the async store's own verb.

Signatures are the ports' (``domain/ports.py``) word for word; a test compares every verb
of every port with its counterpart here, so a verb added to a port cannot be forgotten.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar
from uuid import UUID

from qmcp_agents.domain.agent import AgentInstance, AgentType
from qmcp_agents.domain.enums import AgentRole, ExecutionStatus, TopologyType
from qmcp_agents.domain.execution import Execution
from qmcp_agents.domain.leases import Lease
from qmcp_agents.domain.message import Message, MessageCreate, Result
from qmcp_agents.domain.ports import (
    AgentInstanceRepository,
    AgentTypeRepository,
    ExecutionRepository,
    LeaseRepository,
    MessageRepository,
    ResultRepository,
    TopologyRepository,
)
from qmcp_agents.domain.queries import DEFAULT_LIMIT, Page
from qmcp_agents.domain.topology import Topology

if TYPE_CHECKING:
    from .store import SyncStore

T = TypeVar("T")


class _Repository:
    def __init__(self, store: SyncStore) -> None:
        self._store = store


class SyncAgentTypeRepository(_Repository):
    def _run(self, verb: Callable[[AgentTypeRepository], Awaitable[T]]) -> T:
        return self._store.run(lambda store: verb(store.agent_types))

    def add(self, agent_type: AgentType) -> AgentType:
        return self._run(lambda r: r.add(agent_type))

    def add_many(self, agent_types: Sequence[AgentType]) -> builtins.list[AgentType]:
        return self._run(lambda r: r.add_many(agent_types))

    def restore_many(self, entities: Sequence[AgentType]) -> int:
        return self._run(lambda r: r.restore_many(entities))

    def get(self, id: int) -> AgentType:
        return self._run(lambda r: r.get(id))

    def find(self, id: int) -> AgentType | None:
        return self._run(lambda r: r.find(id))

    def get_by_name(self, name: str) -> AgentType:
        return self._run(lambda r: r.get_by_name(name))

    def find_by_name(self, name: str) -> AgentType | None:
        return self._run(lambda r: r.find_by_name(name))

    def update(self, agent_type: AgentType) -> AgentType:
        return self._run(lambda r: r.update(agent_type))

    def delete(self, id: int) -> None:
        return self._run(lambda r: r.delete(id))

    def list(
        self, *, role: AgentRole | None = None, limit: int = DEFAULT_LIMIT, after: str | None = None
    ) -> Page[AgentType]:
        return self._run(lambda r: r.list(role=role, limit=limit, after=after))

    def count(self, *, role: AgentRole | None = None) -> int:
        return self._run(lambda r: r.count(role=role))


class SyncTopologyRepository(_Repository):
    def _run(self, verb: Callable[[TopologyRepository], Awaitable[T]]) -> T:
        return self._store.run(lambda store: verb(store.topologies))

    def add(self, topology: Topology) -> Topology:
        return self._run(lambda r: r.add(topology))

    def add_many(self, topologies: Sequence[Topology]) -> builtins.list[Topology]:
        return self._run(lambda r: r.add_many(topologies))

    def restore_many(self, entities: Sequence[Topology]) -> int:
        return self._run(lambda r: r.restore_many(entities))

    def get(self, id: int) -> Topology:
        return self._run(lambda r: r.get(id))

    def find(self, id: int) -> Topology | None:
        return self._run(lambda r: r.find(id))

    def get_by_name(self, name: str) -> Topology:
        return self._run(lambda r: r.get_by_name(name))

    def find_by_name(self, name: str) -> Topology | None:
        return self._run(lambda r: r.find_by_name(name))

    def update(self, topology: Topology) -> Topology:
        return self._run(lambda r: r.update(topology))

    def delete(self, id: int) -> None:
        return self._run(lambda r: r.delete(id))

    def list(
        self,
        *,
        topology_type: TopologyType | None = None,
        limit: int = DEFAULT_LIMIT,
        after: str | None = None,
    ) -> Page[Topology]:
        return self._run(lambda r: r.list(topology_type=topology_type, limit=limit, after=after))

    def count(self, *, topology_type: TopologyType | None = None) -> int:
        return self._run(lambda r: r.count(topology_type=topology_type))


class SyncAgentInstanceRepository(_Repository):
    def _run(self, verb: Callable[[AgentInstanceRepository], Awaitable[T]]) -> T:
        return self._store.run(lambda store: verb(store.agent_instances))

    def add(self, instance: AgentInstance) -> AgentInstance:
        return self._run(lambda r: r.add(instance))

    def add_many(self, instances: Sequence[AgentInstance]) -> builtins.list[AgentInstance]:
        return self._run(lambda r: r.add_many(instances))

    def restore_many(self, entities: Sequence[AgentInstance]) -> int:
        return self._run(lambda r: r.restore_many(entities))

    def get(self, id: UUID) -> AgentInstance:
        return self._run(lambda r: r.get(id))

    def find(self, id: UUID) -> AgentInstance | None:
        return self._run(lambda r: r.find(id))

    def update(self, instance: AgentInstance) -> AgentInstance:
        return self._run(lambda r: r.update(instance))

    def delete(self, id: UUID) -> None:
        return self._run(lambda r: r.delete(id))

    def list(
        self,
        *,
        agent_type_id: int | None = None,
        execution_id: UUID | None = None,
        limit: int = DEFAULT_LIMIT,
        after: str | None = None,
    ) -> Page[AgentInstance]:
        return self._run(
            lambda r: r.list(agent_type_id=agent_type_id, execution_id=execution_id, limit=limit, after=after)
        )

    def count(self, *, agent_type_id: int | None = None, execution_id: UUID | None = None) -> int:
        return self._run(lambda r: r.count(agent_type_id=agent_type_id, execution_id=execution_id))


class SyncExecutionRepository(_Repository):
    def _run(self, verb: Callable[[ExecutionRepository], Awaitable[T]]) -> T:
        return self._store.run(lambda store: verb(store.executions))

    def add(self, execution: Execution) -> Execution:
        return self._run(lambda r: r.add(execution))

    def add_many(self, executions: Sequence[Execution]) -> builtins.list[Execution]:
        return self._run(lambda r: r.add_many(executions))

    def restore_many(self, entities: Sequence[Execution]) -> int:
        return self._run(lambda r: r.restore_many(entities))

    def get(self, id: UUID) -> Execution:
        return self._run(lambda r: r.get(id))

    def find(self, id: UUID) -> Execution | None:
        return self._run(lambda r: r.find(id))

    def update(self, execution: Execution) -> Execution:
        return self._run(lambda r: r.update(execution))

    def delete(self, id: UUID) -> None:
        return self._run(lambda r: r.delete(id))

    def list(
        self,
        *,
        status: ExecutionStatus | None = None,
        topology_id: int | None = None,
        correlation_id: str | None = None,
        parent_id: UUID | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        limit: int = DEFAULT_LIMIT,
        after: str | None = None,
    ) -> Page[Execution]:
        return self._run(
            lambda r: r.list(
                status=status,
                topology_id=topology_id,
                correlation_id=correlation_id,
                parent_id=parent_id,
                started_after=started_after,
                started_before=started_before,
                limit=limit,
                after=after,
            )
        )

    def count(
        self,
        *,
        status: ExecutionStatus | None = None,
        topology_id: int | None = None,
        correlation_id: str | None = None,
        parent_id: UUID | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
    ) -> int:
        return self._run(
            lambda r: r.count(
                status=status,
                topology_id=topology_id,
                correlation_id=correlation_id,
                parent_id=parent_id,
                started_after=started_after,
                started_before=started_before,
            )
        )

    def purge(
        self,
        *,
        older_than: datetime,
        statuses: frozenset[ExecutionStatus] | None = None,
        batch_size: int = 500,
    ) -> int:
        return self._run(lambda r: r.purge(older_than=older_than, statuses=statuses, batch_size=batch_size))


class SyncMessageRepository(_Repository):
    def _run(self, verb: Callable[[MessageRepository], Awaitable[T]]) -> T:
        return self._store.run(lambda store: verb(store.messages))

    def append(self, execution_id: UUID, messages: Sequence[MessageCreate]) -> builtins.list[Message]:
        return self._run(lambda r: r.append(execution_id, messages))

    def restore_many(self, messages: Sequence[Message]) -> int:
        return self._run(lambda r: r.restore_many(messages))

    def get(self, id: UUID) -> Message:
        return self._run(lambda r: r.get(id))

    def find(self, id: UUID) -> Message | None:
        return self._run(lambda r: r.find(id))

    def list(
        self,
        execution_id: UUID,
        *,
        limit: int = DEFAULT_LIMIT,
        after: str | None = None,
        round_number: int | None = None,
        sender_id: UUID | None = None,
    ) -> Page[Message]:
        return self._run(
            lambda r: r.list(
                execution_id, limit=limit, after=after, round_number=round_number, sender_id=sender_id
            )
        )

    def last(self, execution_id: UUID, n: int) -> builtins.list[Message]:
        return self._run(lambda r: r.last(execution_id, n))

    def count(self, execution_id: UUID | None = None) -> int:
        return self._run(lambda r: r.count(execution_id))


class SyncResultRepository(_Repository):
    def _run(self, verb: Callable[[ResultRepository], Awaitable[T]]) -> T:
        return self._store.run(lambda store: verb(store.results))

    def add(self, result: Result) -> Result:
        return self._run(lambda r: r.add(result))

    def add_many(self, results: Sequence[Result]) -> builtins.list[Result]:
        return self._run(lambda r: r.add_many(results))

    def restore_many(self, entities: Sequence[Result]) -> int:
        return self._run(lambda r: r.restore_many(entities))

    def get(self, id: UUID) -> Result:
        return self._run(lambda r: r.get(id))

    def find(self, id: UUID) -> Result | None:
        return self._run(lambda r: r.find(id))

    def update(self, result: Result) -> Result:
        return self._run(lambda r: r.update(result))

    def delete(self, id: UUID) -> None:
        return self._run(lambda r: r.delete(id))

    def list(
        self,
        *,
        execution_id: UUID | None = None,
        agent_instance_id: UUID | None = None,
        limit: int = DEFAULT_LIMIT,
        after: str | None = None,
    ) -> Page[Result]:
        return self._run(
            lambda r: r.list(
                execution_id=execution_id, agent_instance_id=agent_instance_id, limit=limit, after=after
            )
        )

    def count(self, *, execution_id: UUID | None = None, agent_instance_id: UUID | None = None) -> int:
        return self._run(lambda r: r.count(execution_id=execution_id, agent_instance_id=agent_instance_id))


class SyncLeaseRepository(_Repository):
    def _run(self, verb: Callable[[LeaseRepository], Awaitable[T]]) -> T:
        return self._store.run(lambda store: verb(store.leases))

    def enqueue(self, execution_id: UUID, *, attempts: int = 0) -> None:
        return self._run(lambda r: r.enqueue(execution_id, attempts=attempts))

    def claim(self, owner: str, *, limit: int, lease_seconds: float) -> builtins.list[Lease]:
        return self._run(lambda r: r.claim(owner, limit=limit, lease_seconds=lease_seconds))

    def heartbeat(self, owner: str, execution_ids: Sequence[UUID], *, lease_seconds: float) -> set[UUID]:
        return self._run(lambda r: r.heartbeat(owner, execution_ids, lease_seconds=lease_seconds))

    def hold(self, execution_id: UUID, owner: str, *, attempt: int | None = None) -> None:
        return self._run(lambda r: r.hold(execution_id, owner, attempt=attempt))

    def release(
        self, execution_id: UUID, owner: str | None, *, requeue: bool = False, attempt: int | None = None
    ) -> bool:
        return self._run(lambda r: r.release(execution_id, owner, requeue=requeue, attempt=attempt))

    def find(self, execution_id: UUID) -> Lease | None:
        return self._run(lambda r: r.find(execution_id))

    def list(self, *, owner: str | None = None) -> builtins.list[Lease]:
        return self._run(lambda r: r.list(owner=owner))


__all__ = [
    "SyncAgentInstanceRepository",
    "SyncLeaseRepository",
    "SyncAgentTypeRepository",
    "SyncExecutionRepository",
    "SyncMessageRepository",
    "SyncResultRepository",
    "SyncTopologyRepository",
]

"""Repository ports: what every store offers, whatever its backend.

Adapters implement these protocols; the use cases in :mod:`.services`, the topology engine
and applications depend only on them. Semantics (errors, cascades, ordering) are defined
here once and checked on every backend by :mod:`qmcp_agents.testing`.

Conventions shared by every repository:

* ``add`` / ``add_many`` return the stored entity with its id and ``revision=1``; the
  argument is never mutated. ``add_many`` is all-or-nothing.
* ``get`` raises :class:`~.errors.NotFound`; ``find`` returns ``None``.
* ``update`` takes the entity as last read; if its ``revision`` is not the stored one it
  raises :class:`~.errors.ConcurrencyError`. It returns the entity with ``revision + 1``.
  Names and an execution's topology never change.
* ``delete`` raises ``NotFound`` for a missing id and :class:`~.errors.IntegrityError` for
  an entity still referenced (see each method).
* ``list`` returns a :class:`~.queries.Page` in ascending key order (ids; sequence numbers
  for messages); ``count`` takes the same filters.
* A reference to a missing entity raises ``IntegrityError`` and writes nothing.
* ``restore_many`` is for moving data between stores (export/import, ``copy``): it keeps
  ids, revisions, timestamps and sequence numbers, checks references, and skips what is
  already there.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self, TypeGuard, TypeVar, runtime_checkable
from uuid import UUID

from .agent import AgentInstance, AgentType
from .enums import AgentRole, ExecutionStatus, TopologyType
from .execution import Execution
from .leases import Lease, LeaseHold
from .message import Message, MessageCreate, Result
from .queries import DEFAULT_LIMIT, Page
from .topology import Topology


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend guarantees; see ``docs/backends.md``.

    ``transactions``: ``store.transaction()`` is all-or-nothing across repositories.
    ``savepoints``: a nested ``transaction()`` that fails rolls back only its own work; where
    this is False (MongoDB), it dooms the enclosing transaction, which rolls back whole
    and raises ``TransactionRolledBack``.
    ``multi_process``: several processes may share the store safely (SQL, MongoDB).
    """

    backend: str
    transactions: bool
    multi_process: bool
    savepoints: bool = True


class AgentTypeRepository(Protocol):
    async def add(self, agent_type: AgentType) -> AgentType: ...
    async def add_many(self, agent_types: Sequence[AgentType]) -> builtins.list[AgentType]: ...
    async def restore_many(self, entities: Sequence[AgentType]) -> int:
        """Write entities exactly as exported (ids, revisions, timestamps kept); ids already
        stored are skipped, so a restore can be rerun. Returns how many were written."""

    async def get(self, id: int) -> AgentType: ...
    async def find(self, id: int) -> AgentType | None: ...
    async def get_by_name(self, name: str) -> AgentType: ...
    async def find_by_name(self, name: str) -> AgentType | None: ...
    async def update(self, agent_type: AgentType) -> AgentType: ...
    async def delete(self, id: int) -> None:
        """Refused (IntegrityError) while a topology or an instance uses the type."""

    async def list(
        self, *, role: AgentRole | None = None, limit: int = DEFAULT_LIMIT, after: str | None = None
    ) -> Page[AgentType]: ...
    async def count(self, *, role: AgentRole | None = None) -> int: ...


class TopologyRepository(Protocol):
    """Topologies with their memberships (one aggregate, always loaded whole)."""

    async def add(self, topology: Topology) -> Topology:
        """Checks the topology rules (members exist, mediator/fallback are members, ...)."""

    async def add_many(self, topologies: Sequence[Topology]) -> builtins.list[Topology]: ...
    async def restore_many(self, entities: Sequence[Topology]) -> int:
        """Write entities exactly as exported (ids, revisions, timestamps kept); ids already
        stored are skipped, so a restore can be rerun. Returns how many were written."""

    async def get(self, id: int) -> Topology: ...
    async def find(self, id: int) -> Topology | None: ...
    async def get_by_name(self, name: str) -> Topology: ...
    async def find_by_name(self, name: str) -> Topology | None: ...
    async def update(self, topology: Topology) -> Topology: ...
    async def delete(self, id: int) -> None:
        """Refused while executions of it exist or a compound topology names it."""

    async def list(
        self,
        *,
        topology_type: TopologyType | None = None,
        limit: int = DEFAULT_LIMIT,
        after: str | None = None,
    ) -> Page[Topology]: ...
    async def count(self, *, topology_type: TopologyType | None = None) -> int: ...


class AgentInstanceRepository(Protocol):
    async def add(self, instance: AgentInstance) -> AgentInstance: ...
    async def add_many(self, instances: Sequence[AgentInstance]) -> builtins.list[AgentInstance]: ...
    async def restore_many(self, entities: Sequence[AgentInstance]) -> int:
        """Write entities exactly as exported (ids, revisions, timestamps kept); ids already
        stored are skipped, so a restore can be rerun. Returns how many were written."""

    async def get(self, id: UUID) -> AgentInstance: ...
    async def find(self, id: UUID) -> AgentInstance | None: ...
    async def update(self, instance: AgentInstance) -> AgentInstance: ...
    async def delete(self, id: UUID) -> None:
        """Refused while messages or results refer to the instance."""

    async def list(
        self,
        *,
        agent_type_id: int | None = None,
        execution_id: UUID | None = None,
        limit: int = DEFAULT_LIMIT,
        after: str | None = None,
    ) -> Page[AgentInstance]: ...
    async def count(self, *, agent_type_id: int | None = None, execution_id: UUID | None = None) -> int: ...


class ExecutionRepository(Protocol):
    async def add(self, execution: Execution) -> Execution: ...
    async def add_many(self, executions: Sequence[Execution]) -> builtins.list[Execution]: ...
    async def restore_many(self, entities: Sequence[Execution]) -> int:
        """Write entities exactly as exported (ids, revisions, timestamps kept); ids already
        stored are skipped, so a restore can be rerun. Returns how many were written."""

    async def get(self, id: UUID) -> Execution: ...
    async def find(self, id: UUID) -> Execution | None: ...
    async def update(self, execution: Execution) -> Execution:
        """Also refuses a status change the status machine does not allow."""

    async def delete(self, id: UUID) -> None:
        """Deletes the execution's messages, results, bound instances and child executions."""

    async def list(
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
    ) -> Page[Execution]: ...
    async def count(
        self,
        *,
        status: ExecutionStatus | None = None,
        topology_id: int | None = None,
        correlation_id: str | None = None,
        parent_id: UUID | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
    ) -> int: ...
    async def purge(
        self,
        *,
        older_than: datetime,
        statuses: frozenset[ExecutionStatus] | None = None,
        batch_size: int = 500,
    ) -> int:
        """Delete final executions completed before ``older_than`` (with all they own).

        Works in batches of ``batch_size``, each its own transaction; returns how many
        executions were deleted (children included).
        """


class MessageRepository(Protocol):
    async def append(self, execution_id: UUID, messages: Sequence[MessageCreate]) -> builtins.list[Message]:
        """Append atomically, numbering 1, 2, 3... per execution with no gaps.

        NotFound for an unknown execution, InvalidTransition for a final one, IntegrityError
        for an unknown sender or recipient (or one bound to another execution).
        """

    async def restore_many(self, messages: Sequence[Message]) -> int:
        """Write exported messages with their sequence numbers (also into final executions).
        Per execution they must continue its sequence without a gap; numbers already
        stored are skipped, so a restore can be rerun. Returns how many were written."""

    async def get(self, id: UUID) -> Message: ...
    async def find(self, id: UUID) -> Message | None: ...
    async def list(
        self,
        execution_id: UUID,
        *,
        limit: int = DEFAULT_LIMIT,
        after: str | None = None,
        round_number: int | None = None,
        sender_id: UUID | None = None,
    ) -> Page[Message]: ...
    async def last(self, execution_id: UUID, n: int) -> builtins.list[Message]:
        """The newest ``n`` messages, oldest first."""

    async def count(self, execution_id: UUID | None = None) -> int: ...


class ResultRepository(Protocol):
    async def add(self, result: Result) -> Result:
        """IntegrityError for a missing execution or instance; InvalidTransition if final."""

    async def add_many(self, results: Sequence[Result]) -> builtins.list[Result]: ...
    async def restore_many(self, entities: Sequence[Result]) -> int:
        """Write entities exactly as exported (ids, revisions, timestamps kept); ids already
        stored are skipped, so a restore can be rerun. Returns how many were written."""

    async def get(self, id: UUID) -> Result: ...
    async def find(self, id: UUID) -> Result | None: ...
    async def update(self, result: Result) -> Result: ...
    async def delete(self, id: UUID) -> None: ...
    async def list(
        self,
        *,
        execution_id: UUID | None = None,
        agent_instance_id: UUID | None = None,
        limit: int = DEFAULT_LIMIT,
        after: str | None = None,
    ) -> Page[Result]: ...
    async def count(
        self, *, execution_id: UUID | None = None, agent_instance_id: UUID | None = None
    ) -> int: ...


class LeaseRepository(Protocol):
    """The work queue of executions submitted for workers, and the workers' leases on them.

    Claiming is atomic: two workers (tasks, processes or machines) never both get the same
    entry from ``claim`` while its lease runs. An entry is deleted with its execution.
    """

    async def enqueue(self, execution_id: UUID, *, attempts: int = 0) -> None:
        """Make the execution claimable (a new entry, or an existing one made ready again).
        A new entry counts on from ``attempts`` claims (those of the execution's earlier
        entries: a claim's attempt is a fencing token and must never be handed out twice).
        NotFound for an unknown execution."""

    async def claim(self, owner: str, *, limit: int, lease_seconds: float) -> builtins.list[Lease]:
        """Take up to ``limit`` claimable entries of executions that are not final (oldest
        first) for ``owner`` until now + ``lease_seconds``; each claim counts an attempt."""

    async def heartbeat(
        self, owner: str, execution_ids: Sequence[UUID], *, lease_seconds: float
    ) -> set[UUID]:
        """Extend ``owner``'s leases on ``execution_ids``; returns those it still holds on
        executions that are not final (the rest it must stop running)."""

    async def hold(self, execution_id: UUID, owner: str, *, attempt: int | None = None) -> None:
        """Inside ``store.transaction()``: LeaseLost unless ``owner`` holds the entry (and,
        with ``attempt``, still by that claim: a worker whose lease expired and that claimed
        the execution again must not let its first drive write on); where the backend locks
        rows, the entry then stays locked until the transaction ends, so a takeover cannot
        slip in before the transaction's writes commit (fencing)."""

    async def release(
        self, execution_id: UUID, owner: str | None, *, requeue: bool = False, attempt: int | None = None
    ) -> bool:
        """If ``owner`` holds the entry (``None``: if nobody does; with ``attempt``: by that
        claim), delete it, or with ``requeue`` make it ready for any worker at once. Returns
        whether it did."""

    async def find(self, execution_id: UUID) -> Lease | None: ...
    async def list(self, *, owner: str | None = None) -> builtins.list[Lease]:
        """Every entry (or ``owner``'s), oldest execution first."""


class Store(Protocol):
    """A backend: six repositories and a unit of work. Use it as an async context manager."""

    @property
    def agent_types(self) -> AgentTypeRepository: ...
    @property
    def topologies(self) -> TopologyRepository: ...
    @property
    def agent_instances(self) -> AgentInstanceRepository: ...
    @property
    def executions(self) -> ExecutionRepository: ...
    @property
    def messages(self) -> MessageRepository: ...
    @property
    def results(self) -> ResultRepository: ...
    @property
    def leases(self) -> LeaseRepository: ...

    @property
    def capabilities(self) -> Capabilities: ...

    def transaction(self) -> AbstractAsyncContextManager[None]:
        """All-or-nothing unit of work over every repository (see ``capabilities``)."""

    async def create_schema(self) -> None:
        """Create (or migrate to the current version) everything the store needs. Idempotent."""

    async def drop_schema(self) -> None:
        """Remove this library's tables or collections, and nothing else."""

    async def close(self) -> None: ...
    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """What recording an answered call stored: the message, the result and the instance,
    each exactly as ``messages.append``, ``results.add`` and ``agent_instances.update``
    return it."""

    message: Message
    result: Result
    instance: AgentInstance


_Capability = TypeVar("_Capability")
_CAPABLE: dict[tuple[type, type], bool] = {}


def supports(store: object, capability: type[_Capability]) -> TypeGuard[_Capability]:
    """``isinstance(store, capability)`` for the optional one-step capabilities below,
    decided once per store class: a runtime protocol's ``isinstance`` walks its members
    every time (about 80 µs on Python 3.11), and the per-call writes of a run ask it on
    every call. A capability is a store class's own methods, never an instance's. (mypy
    refuses a protocol as a ``type[...]`` argument, hence the call sites' ``type-abstract``.)"""
    key = (type(store), capability)
    found = _CAPABLE.get(key)
    if found is None:
        found = _CAPABLE[key] = isinstance(store, capability)
    return found


@runtime_checkable
class CallRecorder(Protocol):
    """Optional: a store that can record an answered call in one step (PostgreSQL: one
    statement). Use :func:`qmcp_agents.domain.recording.record_call`, which falls back on
    the repositories; nothing else should call this."""

    async def record_call(
        self,
        execution_id: UUID,
        message: MessageCreate,
        result: Result,
        instance: AgentInstance,
        lease: LeaseHold | None,
    ) -> RecordedCall | None:
        """Exactly what :func:`~qmcp_agents.domain.recording.record_call_composed` writes
        and returns when it succeeds, written all at once; ``None`` when this store cannot
        do it in one step here (or its checks refused it): then nothing was written (at
        most a lock taken, in the caller's transaction), and the caller runs the composed
        path, which writes it or raises the precise error."""


@runtime_checkable
class FencedUpdater(Protocol):
    """Optional: a store that can update an execution under a worker's lease in one step
    (PostgreSQL: one statement). Use
    :func:`qmcp_agents.domain.recording.update_execution_fenced`, which falls back on the
    repositories; nothing else should call this."""

    async def update_execution_fenced(
        self, execution: Execution, lease: LeaseHold, release: bool
    ) -> Execution | None:
        """Exactly what :func:`~qmcp_agents.domain.recording.update_execution_fenced_composed`
        writes and returns when it succeeds, written all at once; ``None`` when this store
        cannot do it in one step here (or its checks refused it): then nothing was written
        (at most a lock taken, in the caller's transaction), and the caller runs the
        composed path, which writes it or raises the precise error."""


@runtime_checkable
class FencedInstanceAdder(Protocol):
    """Optional: a store that can add a run's new agent instances under a worker's lease in
    one step (PostgreSQL: one statement). Use
    :func:`qmcp_agents.domain.recording.add_instances_fenced`, which falls back on the
    repositories; nothing else should call this."""

    async def add_instances_fenced(
        self, instances: Sequence[AgentInstance], lease: LeaseHold
    ) -> builtins.list[AgentInstance] | None:
        """Exactly what :func:`~qmcp_agents.domain.recording.add_instances_fenced_composed`
        writes and returns when it succeeds, written all at once; ``None`` when this store
        cannot do it in one step here (or its checks refused it): then nothing was written,
        and the caller runs the composed path, which writes them or raises the precise
        error."""


@runtime_checkable
class TopologyReader(Protocol):
    """Optional: a store that reads a topology together with its members' agent types in
    one step (SQL: one statement). Use
    :func:`qmcp_agents.domain.reading.topology_with_agent_types`, which falls back on the
    repositories; nothing else should call this."""

    async def topology_with_agent_types(self, id: int) -> tuple[Topology, dict[int, AgentType]] | None:
        """``topologies.get(id)`` and ``agent_types.get`` of each of its memberships' agent
        types, keyed by id; ``None`` when this store cannot read them in one step here (or
        the topology is not there): the caller then reads them one by one, which raises the
        precise error."""


__all__ = [
    "AgentInstanceRepository",
    "AgentTypeRepository",
    "CallRecorder",
    "Capabilities",
    "ExecutionRepository",
    "FencedInstanceAdder",
    "FencedUpdater",
    "LeaseRepository",
    "MessageRepository",
    "Page",
    "RecordedCall",
    "ResultRepository",
    "Store",
    "TopologyReader",
    "TopologyRepository",
    "supports",
]

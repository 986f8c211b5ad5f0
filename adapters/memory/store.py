"""Dict-backed store with the exact semantics every other backend must match.

Concurrency: the store is safe under asyncio. Each operation runs without awaiting in the
middle, so it is atomic; a transaction holds the store's lock for its duration, so other
tasks' operations wait and never see its partial writes. Transactions snapshot the state
and restore it on error. Tasks started inside a transaction share it and take turns on the
lock of its frame (see ``adapters/concurrency.py``).
"""

from __future__ import annotations

import asyncio
import builtins
import contextvars
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from enum import Enum
from functools import cache
from types import TracebackType, UnionType
from typing import Annotated, Any, Generic, Self, TypeVar, Union, get_args, get_origin
from uuid import UUID

from pydantic import BaseModel

from qmcp_agents.adapters.concurrency import Frame
from qmcp_agents.domain import (
    FINAL_STATUSES,
    AgentInstance,
    AgentRole,
    AgentType,
    AlreadyExists,
    Execution,
    ExecutionStatus,
    IntegrityError,
    Message,
    MessageCreate,
    NotFound,
    Result,
    Topology,
    TopologyType,
)
from qmcp_agents.domain.arguments import (
    check_entity_arguments,
    check_message_arguments,
    int_id,
    name_key,
    optional_uuid,
    uuid_id,
)
from qmcp_agents.domain.clock import utc_now
from qmcp_agents.domain.integrity import (
    check_instance_binding,
    describe,
    for_insert,
    for_restore,
    for_update,
    messages_to_restore,
    refuse_child_of_final,
    refuse_if_final,
    refuse_taken_message_ids,
    with_own_membership_ids,
)
from qmcp_agents.domain.leases import Lease, LeaseLost, lease_span
from qmcp_agents.domain.message import build_messages
from qmcp_agents.domain.ports import Capabilities
from qmcp_agents.domain.queries import (
    AgentInstanceFilter,
    AgentTypeFilter,
    ExecutionFilter,
    Page,
    PurgeRequest,
    ResultFilter,
    TopologyFilter,
    check_limit,
    int_cursor,
    message_query,
    uuid_cursor,
)
from qmcp_agents.domain.topology_rules import check_topology_rules

from .state import Plan, State, StoredMessage

K = TypeVar("K", int, UUID)
E = TypeVar("E", bound=BaseModel)


def _clone(value: Any) -> Any:
    """A copy of a stored value that shares nothing mutable with it: JSON containers and
    nested models are copied, scalars are immutable and shared."""
    kind = type(value)
    if kind is dict:
        return {k: v if type(v) in _SCALARS else _clone(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _SCALARS else _clone(v) for v in value]
    if isinstance(value, BaseModel):
        return _copy(value)
    return value


_SCALARS = frozenset({str, int, float, bool, type(None), UUID, datetime})
_IMMUTABLE = (str, int, float, bool, UUID, datetime, type(None))


def _immutable(annotation: Any) -> bool:
    """Whether every value a field of this type can hold is immutable (enums included)."""
    if get_origin(annotation) is Annotated:
        return _immutable(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        return all(_immutable(arg) for arg in get_args(annotation))
    return isinstance(annotation, type) and issubclass(annotation, (*_IMMUTABLE, Enum))


@cache
def _mutable_fields(model: type[BaseModel]) -> tuple[str, ...]:
    return tuple(name for name, info in model.model_fields.items() if not _immutable(info.annotation))


# The slots every Pydantic model has, set directly: ``object.__setattr__`` looks each name
# up through the class's MRO first, which is most of the cost of building a copy.
_new = object.__new__
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def _copy(entity: E) -> E:
    """What a read hands out: a copy, so a caller mutating it never changes the store.

    Not ``model_copy(deep=True)``: ``deepcopy`` walks every UUID and datetime through
    ``__reduce_ex__``, about 40 µs per message. Stored models are only ever replaced, never
    mutated in place, so only the fields that can hold containers (JSON payloads, nested
    models) are copied. Models here carry no private attributes and no extras
    (``extra="forbid"``). Messages take the faster :func:`_hand_out`.
    """
    model = type(entity)
    fields = entity.__dict__.copy()
    for name in _mutable_fields(model):
        value = fields[name]
        if type(value) not in _SCALARS:
            fields[name] = _clone(value)
    clone = _new(model)
    _set_dict(clone, fields)
    _set_fields_set(clone, entity.__pydantic_fields_set__.copy())
    _set_extra(clone, None)
    _set_private(clone, None)
    return clone


if _mutable_fields(Message) != ("content",):  # pragma: no cover - a guard for whoever adds one
    raise RuntimeError(f"_hand_out copies only a message's content, not {_mutable_fields(Message)}")


def _plan(value: Any) -> Plan:
    """The :data:`~.state.Plan` of a stored JSON container."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    return tuple((key, _plan(item)) for key, item in items if isinstance(item, (dict, list)))


def _stored(message: Message) -> StoredMessage:
    """How the store keeps ``message`` (which it owns: nobody else holds it)."""
    return message, _plan(message.content)


def _thaw(value: Any, plan: Plan) -> Any:
    """A copy of a stored JSON container sharing no container with it, along its plan."""
    copied = value.copy()
    for key, inner in plan:
        copied[key] = _thaw(value[key], inner) if inner else value[key].copy()
    return copied


def _hand_out(stored: Iterable[StoredMessage]) -> list[Message]:
    """What a read hands out for stored messages: like :func:`_copy`, but each content is
    copied along its plan, not walked value by value, in one loop with no call per message
    (reading the newest 50 is what every agent turn does). Every other field of a message is
    immutable (checked above)."""
    out: list[Message] = []
    append = out.append
    for message, plan in stored:
        fields = message.__dict__.copy()
        fields["content"] = content = fields["content"].copy()
        for key, inner in plan:  # _thaw, inlined
            content[key] = _thaw(content[key], inner) if inner else content[key].copy()
        clone = _new(Message)
        _set_dict(clone, fields)
        _set_fields_set(clone, message.__pydantic_fields_set__.copy())
        _set_extra(clone, None)
        _set_private(clone, None)
        append(clone)
    return out


class _Repository(Generic[K, E]):
    """Behaviour shared by the keyed repositories: reads, paging and batch adds."""

    label: str
    cursor: Callable[[str | None], Any]
    key: Callable[[Any], Any]

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    @property
    def _state(self) -> State:
        return self._store._state

    def _rows(self) -> dict[K, E]:
        raise NotImplementedError

    async def _insert(self, entity: E) -> E:
        raise NotImplementedError

    async def add(self, entity: E) -> E:
        async with self._store._exclusive():
            return _copy(await self._insert(entity))

    async def add_many(self, entities: Sequence[E]) -> builtins.list[E]:
        async with self._store._exclusive():
            snapshot = self._state.snapshot()
            try:
                return [_copy(await self._insert(entity)) for entity in entities]
            except BaseException:
                self._state.restore(snapshot)
                raise

    async def _restore(self, entity: E) -> None:
        raise NotImplementedError

    async def restore_many(self, entities: Sequence[E]) -> int:
        async with self._store._exclusive():
            snapshot = self._state.snapshot()
            written = 0
            try:
                for entity in entities:
                    if self.key(getattr(entity, "id")) not in self._rows():  # noqa: B009
                        await self._restore(entity)
                        written += 1
            except BaseException:
                self._state.restore(snapshot)
                raise
            return written

    async def find(self, id: K) -> E | None:
        id = self.key(id)
        async with self._store._exclusive():
            entity = self._rows().get(id)
            return None if entity is None else _copy(entity)

    async def get(self, id: K) -> E:
        entity = await self.find(id)
        if entity is None:
            raise NotFound(f"{self.label} {id} does not exist")
        return entity

    def _stored(self, id: K | None) -> E:
        entity = self._rows().get(self.key(id)) if id is not None else None
        if entity is None:
            raise NotFound(f"{self.label} {id} does not exist")
        return entity

    async def _page(self, matches: Callable[[E], bool], limit: int, after: str | None) -> Page[E]:
        check_limit(limit)
        start = self.cursor(after)
        async with self._store._exclusive():
            rows = self._rows()
            keys = sorted(k for k in rows if start is None or k > start)
            items: list[E] = []
            last_key: K | None = None
            for key in keys:
                if matches(rows[key]):
                    if len(items) == limit:
                        return Page(items, str(last_key))
                    items.append(_copy(rows[key]))
                    last_key = key
            return Page(items, None)

    async def _count(self, matches: Callable[[E], bool]) -> int:
        async with self._store._exclusive():
            return sum(1 for entity in self._rows().values() if matches(entity))


class _NamedRepository(_Repository[int, E]):
    key = staticmethod(int_id)

    async def find_by_name(self, name: str) -> E | None:
        key = name_key(name)
        if key is None:
            return None
        async with self._store._exclusive():
            for entity in self._rows().values():
                if getattr(entity, "name") == key:  # noqa: B009
                    return _copy(entity)
            return None

    async def get_by_name(self, name: str) -> E:
        entity = await self.find_by_name(name)
        if entity is None:
            raise NotFound(f"{self.label} named {name!r} does not exist")
        return entity

    def _check_name_free(self, name: str, except_id: int | None = None) -> None:
        for entity in self._rows().values():
            if getattr(entity, "name") == name and getattr(entity, "id") != except_id:  # noqa: B009
                raise AlreadyExists(f"{self.label} named {name!r} already exists")

    def _check_new(self, entity: E) -> None:
        if getattr(entity, "id") is not None:  # noqa: B009
            raise IntegrityError(f"{describe(entity)} already has an id; use update() to change it")
        # Checked as it will be stored: an entity that bypassed validation may hold "PLANNER".
        name = name_key(getattr(entity, "name"))  # noqa: B009
        if name is not None:
            self._check_name_free(name)


class MemoryAgentTypes(_NamedRepository[AgentType]):
    label = "agent type"
    cursor = staticmethod(int_cursor)

    def _rows(self) -> dict[int, AgentType]:
        return self._state.agent_types

    async def _restore(self, entity: AgentType) -> None:
        stored = for_restore(entity)
        assert stored.id is not None
        self._check_name_free(stored.name, stored.id)
        self._state.agent_types[stored.id] = stored
        self._state.bump_id("agent_type", stored.id)

    async def _insert(self, entity: AgentType) -> AgentType:
        self._check_new(entity)
        stored = for_insert(entity, id=self._state.take_id("agent_type"))
        self._state.agent_types[stored.id] = stored  # type: ignore[index]
        return stored

    async def update(self, agent_type: AgentType) -> AgentType:
        async with self._store._exclusive():
            stored = for_update(self._stored(agent_type.id), agent_type)
            self._state.agent_types[stored.id] = stored  # type: ignore[index]
            return _copy(stored)

    async def delete(self, id: int) -> None:
        async with self._store._exclusive():
            entity = self._stored(id)
            users = [
                t.name
                for t in self._state.topologies.values()
                if any(m.agent_type_id == id for m in t.memberships)
            ]
            instances = sum(1 for i in self._state.instances.values() if i.agent_type_id == id)
            if users or instances:
                raise IntegrityError(
                    f"{describe(entity)} is in use by topologies {sorted(users)} and {instances} instance(s)"
                )
            del self._state.agent_types[id]

    async def list(
        self, *, role: AgentRole | None = None, limit: int = 50, after: str | None = None
    ) -> Page[AgentType]:
        return await self._page(AgentTypeFilter(role=role).matches, limit, after)

    async def count(self, *, role: AgentRole | None = None) -> int:
        return await self._count(AgentTypeFilter(role=role).matches)


class MemoryTopologies(_NamedRepository[Topology]):
    label = "topology"
    cursor = staticmethod(int_cursor)

    def _rows(self) -> dict[int, Topology]:
        return self._state.topologies

    async def _sub_topologies_of(self, name: str) -> builtins.list[str] | None:
        for topology in self._state.topologies.values():
            if topology.name == name:
                config = topology.config
                return (
                    list(config.get("sub_topologies", []))
                    if topology.topology_type is TopologyType.COMPOUND
                    else []
                )
        return None

    def _with_membership_ids(self, topology: Topology, topology_id: int) -> builtins.list[Any]:
        return [
            m.model_copy(update={"topology_id": topology_id, "id": m.id or self._state.take_id("membership")})
            for m in topology.memberships
        ]

    async def _checked(self, topology: Topology) -> None:
        names = {
            m.agent_type_id: self._state.agent_types[m.agent_type_id].name
            for m in topology.memberships
            if m.agent_type_id in self._state.agent_types
        }
        roles = {
            m.agent_type_id: self._state.agent_types[m.agent_type_id].role.value
            for m in topology.memberships
            if m.agent_type_id in self._state.agent_types
        }
        await check_topology_rules(topology, names, self._sub_topologies_of, member_roles=roles)

    async def _restore(self, entity: Topology) -> None:
        stored = for_restore(entity)
        topology_id = stored.id
        assert topology_id is not None
        self._check_name_free(stored.name, topology_id)
        await self._checked(stored)
        stored = stored.model_copy(update={"memberships": self._with_membership_ids(stored, topology_id)})
        for membership in stored.memberships:
            self._state.bump_id("membership", membership.id or 0)
        self._state.topologies[topology_id] = stored
        self._state.bump_id("topology", topology_id)

    async def _insert(self, entity: Topology) -> Topology:
        self._check_new(entity)
        await self._checked(entity)
        new_id = self._state.take_id("topology")
        members = self._with_membership_ids(with_own_membership_ids(entity, ()), new_id)
        stored = for_insert(entity, id=new_id, memberships=members)
        self._state.topologies[new_id] = stored
        return stored

    async def update(self, topology: Topology) -> Topology:
        async with self._store._exclusive():
            current = self._stored(topology.id)
            stored = for_update(current, topology)
            await self._checked(stored)
            topology_id = current.id
            assert topology_id is not None
            stored = with_own_membership_ids(stored, (m.id for m in current.memberships if m.id))
            stored = stored.model_copy(update={"memberships": self._with_membership_ids(stored, topology_id)})
            self._state.topologies[topology_id] = stored
            return _copy(stored)

    async def delete(self, id: int) -> None:
        async with self._store._exclusive():
            entity = self._stored(id)
            runs = sum(1 for e in self._state.executions.values() if e.topology_id == id)
            parents = [
                t.name
                for t in self._state.topologies.values()
                if t.topology_type is TopologyType.COMPOUND
                and entity.name in t.config.get("sub_topologies", [])
            ]
            if runs or parents:
                raise IntegrityError(
                    f"{describe(entity)} has {runs} execution(s) and is a sub-topology of {sorted(parents)}"
                )
            del self._state.topologies[id]

    async def list(
        self, *, topology_type: TopologyType | None = None, limit: int = 50, after: str | None = None
    ) -> Page[Topology]:
        return await self._page(TopologyFilter(topology_type=topology_type).matches, limit, after)

    async def count(self, *, topology_type: TopologyType | None = None) -> int:
        return await self._count(TopologyFilter(topology_type=topology_type).matches)


class _UuidRepository(_Repository[UUID, E]):
    cursor = staticmethod(uuid_cursor)
    key = staticmethod(uuid_id)

    def _check_new_id(self, entity: E) -> None:
        entity_id = getattr(entity, "id")  # noqa: B009
        if entity_id in self._rows():
            raise AlreadyExists(f"{self.label} {entity_id} already exists")

    def _require(self, rows: dict[Any, Any], key: Any, what: str, owner: BaseModel) -> Any:
        if key not in rows:
            raise IntegrityError(f"{describe(owner)}: {what} {key} does not exist")
        return rows[key]


class MemoryAgentInstances(_UuidRepository[AgentInstance]):
    label = "agent instance"

    def _rows(self) -> dict[UUID, AgentInstance]:
        return self._state.instances

    def _check_refs(self, entity: AgentInstance) -> None:
        self._require(self._state.agent_types, entity.agent_type_id, "agent_type_id", entity)
        if entity.execution_id is not None:
            self._require(self._state.executions, entity.execution_id, "execution_id", entity)

    async def _restore(self, entity: AgentInstance) -> None:
        stored = for_restore(entity)
        self._check_refs(stored)
        self._state.instances[stored.id] = stored

    async def _insert(self, entity: AgentInstance) -> AgentInstance:
        self._check_new_id(entity)
        self._check_refs(entity)
        stored = for_insert(entity)
        self._state.instances[stored.id] = stored
        return stored

    async def update(self, instance: AgentInstance) -> AgentInstance:
        async with self._store._exclusive():
            stored = for_update(self._stored(instance.id), instance)
            self._check_refs(stored)
            self._state.instances[stored.id] = stored
            return _copy(stored)

    async def delete(self, id: UUID) -> None:
        async with self._store._exclusive():
            entity = self._stored(id)
            messages = sum(1 for m, _ in self._state.messages.values() if id in (m.sender_id, m.recipient_id))
            results = sum(1 for r in self._state.results.values() if r.agent_instance_id == id)
            if messages or results:
                raise IntegrityError(
                    f"{describe(entity)} is referenced by {messages} message(s) and {results} result(s)"
                )
            del self._state.instances[id]

    async def list(
        self,
        *,
        agent_type_id: int | None = None,
        execution_id: UUID | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> Page[AgentInstance]:
        flt = AgentInstanceFilter(agent_type_id=agent_type_id, execution_id=execution_id)
        return await self._page(flt.matches, limit, after)

    async def count(self, *, agent_type_id: int | None = None, execution_id: UUID | None = None) -> int:
        return await self._count(
            AgentInstanceFilter(agent_type_id=agent_type_id, execution_id=execution_id).matches
        )


class MemoryExecutions(_UuidRepository[Execution]):
    label = "execution"

    def _rows(self) -> dict[UUID, Execution]:
        return self._state.executions

    def _check_refs(self, entity: Execution) -> None:
        self._require(self._state.topologies, entity.topology_id, "topology_id", entity)
        if entity.parent_id is not None:
            self._require(self._state.executions, entity.parent_id, "parent_id", entity)

    async def _restore(self, entity: Execution) -> None:
        stored = for_restore(entity)
        self._check_refs(stored)
        self._state.executions[stored.id] = stored

    async def _insert(self, entity: Execution) -> Execution:
        self._check_new_id(entity)
        self._check_refs(entity)
        if entity.parent_id is not None:
            refuse_child_of_final(entity.parent_id, self._state.executions[entity.parent_id].status)
        stored = for_insert(entity)
        self._state.executions[stored.id] = stored
        return stored

    async def update(self, execution: Execution) -> Execution:
        async with self._store._exclusive():
            stored = for_update(self._stored(execution.id), execution)
            self._state.executions[stored.id] = stored
            return _copy(stored)

    def _tree(self, root: UUID) -> builtins.list[UUID]:
        """``root`` and all its descendants."""
        tree = [root]
        index = 0
        while index < len(tree):
            parent = tree[index]
            tree.extend(e.id for e in self._state.executions.values() if e.parent_id == parent)
            index += 1
        return tree

    def _cascade(self, root: UUID) -> int:
        """Delete an execution, its children, and everything they own. Returns executions deleted."""
        gone = set(self._tree(root))
        state = self._state
        for execution_id in gone:
            for message_id in state.message_log.pop(execution_id, []):
                del state.messages[message_id]
        state.results = {k: r for k, r in state.results.items() if r.execution_id not in gone}
        state.instances = {k: i for k, i in state.instances.items() if i.execution_id not in gone}
        for execution_id in gone:
            del state.executions[execution_id]
            state.leases.pop(execution_id, None)
        return len(gone)

    async def delete(self, id: UUID) -> None:
        async with self._store._exclusive():
            self._stored(id)
            self._cascade(id)

    async def list(
        self,
        *,
        status: ExecutionStatus | None = None,
        topology_id: int | None = None,
        correlation_id: str | None = None,
        parent_id: UUID | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> Page[Execution]:
        flt = ExecutionFilter(
            status=status,
            topology_id=topology_id,
            correlation_id=correlation_id,
            parent_id=parent_id,
            started_after=started_after,
            started_before=started_before,
        )
        return await self._page(flt.matches, limit, after)

    async def count(
        self,
        *,
        status: ExecutionStatus | None = None,
        topology_id: int | None = None,
        correlation_id: str | None = None,
        parent_id: UUID | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
    ) -> int:
        flt = ExecutionFilter(
            status=status,
            topology_id=topology_id,
            correlation_id=correlation_id,
            parent_id=parent_id,
            started_after=started_after,
            started_before=started_before,
        )
        return await self._count(flt.matches)

    async def purge(
        self,
        *,
        older_than: datetime,
        statuses: frozenset[ExecutionStatus] | None = None,
        batch_size: int = 500,
    ) -> int:
        request = PurgeRequest.model_validate(
            {
                "older_than": older_than,
                "batch_size": batch_size,
                **({"statuses": statuses} if statuses else {}),
            }
        )
        deleted = 0
        kept: set[UUID] = set()  # final, but with a descendant still live
        while True:
            async with self._store._exclusive():
                executions = self._state.executions
                batch = [e.id for e in executions.values() if request.matches(e) and e.id not in kept][
                    : request.batch_size
                ]
                for execution_id in batch:
                    if execution_id not in executions:  # gone with its parent
                        continue
                    if any(executions[i].status not in FINAL_STATUSES for i in self._tree(execution_id)):
                        kept.add(execution_id)
                        continue
                    deleted += self._cascade(execution_id)
            if len(batch) < request.batch_size:
                return deleted
            await asyncio.sleep(0)  # let other tasks in between batches


class MemoryMessages:
    label = "message"

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    @property
    def _state(self) -> State:
        return self._store._state

    async def append(self, execution_id: UUID, messages: Sequence[MessageCreate]) -> builtins.list[Message]:
        execution_id = uuid_id(execution_id, "execution_id")
        drafts = [MessageCreate.model_validate(m) for m in messages]
        async with self._store._exclusive():
            state = self._state
            execution = state.executions.get(execution_id)
            if execution is None:
                raise NotFound(f"execution {execution_id} does not exist")
            refuse_if_final(execution.id, execution.status, "messages")
            self._check_participants(execution_id, drafts)
            log = state.message_log.setdefault(execution_id, [])
            stored = build_messages(execution_id, drafts, len(log) + 1)  # drafts: just validated copies
            kept = [_stored(m) for m in stored]
            for entry in kept:
                state.messages[entry[0].id] = entry
                log.append(entry[0].id)
            return _hand_out(kept)

    def _check_participants(self, execution_id: UUID, drafts: Sequence[MessageCreate | Message]) -> None:
        for draft in drafts:
            for role, instance_id in (("sender_id", draft.sender_id), ("recipient_id", draft.recipient_id)):
                if instance_id is None:
                    continue
                instance = self._state.instances.get(instance_id)
                if instance is None:
                    raise IntegrityError(f"message {role} {instance_id} is not an agent instance")
                check_instance_binding(instance_id, instance.execution_id, execution_id, f"message {role}")

    async def restore_many(self, messages: Sequence[Message]) -> int:
        by_execution: dict[UUID, builtins.list[Message]] = {}
        for message in messages:
            by_execution.setdefault(message.execution_id, []).append(message)
        async with self._store._exclusive():
            state = self._state
            planned = []
            for execution_id, group in by_execution.items():
                if execution_id not in state.executions:
                    raise IntegrityError(f"message execution_id {execution_id} does not exist")
                fresh = messages_to_restore(execution_id, len(state.message_log.get(execution_id, [])), group)
                self._check_participants(execution_id, fresh)
                planned.append((execution_id, fresh))
            every = [m for _, fresh in planned for m in fresh]
            refuse_taken_message_ids(every, [m.id for m in every if m.id in state.messages])
            for execution_id, fresh in planned:
                log = state.message_log.setdefault(execution_id, [])
                for message in fresh:
                    state.messages[message.id] = _stored(message)
                    log.append(message.id)
            return sum(len(fresh) for _, fresh in planned)

    async def find(self, id: UUID) -> Message | None:
        id = uuid_id(id)
        async with self._store._exclusive():
            stored = self._state.messages.get(id)
            return None if stored is None else _hand_out((stored,))[0]

    async def get(self, id: UUID) -> Message:
        message = await self.find(id)
        if message is None:
            raise NotFound(f"message {id} does not exist")
        return message

    async def list(
        self,
        execution_id: UUID,
        *,
        limit: int = 50,
        after: str | None = None,
        round_number: int | None = None,
        sender_id: UUID | None = None,
    ) -> Page[Message]:
        query = message_query(execution_id, limit, after, round_number, sender_id)
        start, matches = query.start, query.filter.matches
        async with self._store._exclusive():
            log = self._state.message_log.get(execution_id, [])
            items: builtins.list[Message] = []
            for message_id in log[start:]:  # sequence n sits at index n - 1
                stored = self._state.messages[message_id]
                if matches(stored[0]):
                    if len(items) == limit:
                        return Page(items, str(items[-1].sequence_number))
                    items.append(_hand_out((stored,))[0])
            return Page(items, None)

    async def last(self, execution_id: UUID, n: int) -> builtins.list[Message]:
        execution_id = uuid_id(execution_id, "execution_id")
        check_limit(n, "n")
        async with self._store._exclusive():
            log = self._state.message_log.get(execution_id, [])
            messages = self._state.messages
            return _hand_out([messages[m] for m in log[-n:]])

    async def count(self, execution_id: UUID | None = None) -> int:
        optional_uuid(execution_id, "execution_id")
        async with self._store._exclusive():
            if execution_id is None:
                return len(self._state.messages)
            return len(self._state.message_log.get(execution_id, []))


class MemoryResults(_UuidRepository[Result]):
    label = "result"

    def _rows(self) -> dict[UUID, Result]:
        return self._state.results

    def _check_refs(self, entity: Result, restoring: bool = False) -> None:
        execution = self._require(self._state.executions, entity.execution_id, "execution_id", entity)
        instance = self._require(self._state.instances, entity.agent_instance_id, "agent_instance_id", entity)
        check_instance_binding(instance.id, instance.execution_id, entity.execution_id, "agent_instance_id")
        if not restoring:
            refuse_if_final(execution.id, execution.status, "results")

    async def _restore(self, entity: Result) -> None:
        stored = for_restore(entity)
        self._check_refs(stored, restoring=True)
        self._state.results[stored.id] = stored

    async def _insert(self, entity: Result) -> Result:
        self._check_new_id(entity)
        self._check_refs(entity)
        stored = for_insert(entity)
        self._state.results[stored.id] = stored
        return stored

    async def update(self, result: Result) -> Result:
        async with self._store._exclusive():
            stored = for_update(self._stored(result.id), result)
            self._check_refs(stored)
            self._state.results[stored.id] = stored
            return _copy(stored)

    async def delete(self, id: UUID) -> None:
        async with self._store._exclusive():
            self._stored(id)
            del self._state.results[id]

    async def list(
        self,
        *,
        execution_id: UUID | None = None,
        agent_instance_id: UUID | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> Page[Result]:
        flt = ResultFilter(execution_id=execution_id, agent_instance_id=agent_instance_id)
        return await self._page(flt.matches, limit, after)

    async def count(self, *, execution_id: UUID | None = None, agent_instance_id: UUID | None = None) -> int:
        return await self._count(
            ResultFilter(execution_id=execution_id, agent_instance_id=agent_instance_id).matches
        )


class MemoryLeases:
    """The queue in the store's state: claims run under the store's lock, one at a time."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    @property
    def _state(self) -> State:
        return self._store._state

    async def enqueue(self, execution_id: UUID, *, attempts: int = 0) -> None:
        async with self._store._exclusive():
            if execution_id not in self._state.executions:
                raise NotFound(f"execution {execution_id} not found")
            current = self._state.leases.get(execution_id)
            self._state.leases[execution_id] = (
                Lease(execution_id, None, True, attempts) if current is None else replace(current, ready=True)
            )

    async def claim(self, owner: str, *, limit: int, lease_seconds: float) -> builtins.list[Lease]:
        span = lease_span(lease_seconds)
        async with self._store._exclusive():
            now = utc_now()
            state = self._state
            taken: builtins.list[Lease] = []
            for execution_id in sorted(state.leases):
                if len(taken) >= limit:
                    break
                lease = state.leases[execution_id]
                final = state.executions[execution_id].status in FINAL_STATUSES
                if final and lease.claimable(now):
                    # a dead worker's entry on an ended execution, or one handed back as it
                    # was cancelled: nobody would ever claim it
                    del state.leases[execution_id]
                elif lease.claimable(now) and not final:
                    lease = Lease(execution_id, owner, False, lease.attempts + 1, now, now, now + span)
                    state.leases[execution_id] = lease
                    taken.append(lease)
            return taken

    async def heartbeat(
        self, owner: str, execution_ids: Sequence[UUID], *, lease_seconds: float
    ) -> set[UUID]:
        span = lease_span(lease_seconds)
        async with self._store._exclusive():
            now = utc_now()
            held: set[UUID] = set()
            for execution_id in execution_ids:
                lease = self._state.leases.get(execution_id)
                if lease is None or lease.owner != owner:
                    continue
                self._state.leases[execution_id] = replace(lease, heartbeat_at=now, expires_at=now + span)
                if self._state.executions[execution_id].status not in FINAL_STATUSES:
                    held.add(execution_id)
            return held

    async def hold(self, execution_id: UUID, owner: str, *, attempt: int | None = None) -> None:
        async with self._store._exclusive():
            lease = self._state.leases.get(execution_id)
            if lease is None or not lease.held_by(owner, attempt):
                raise LeaseLost(f"worker {owner!r} no longer holds execution {execution_id}")

    async def release(
        self, execution_id: UUID, owner: str | None, *, requeue: bool = False, attempt: int | None = None
    ) -> bool:
        async with self._store._exclusive():
            lease = self._state.leases.get(execution_id)
            if lease is None or not lease.held_by(owner, attempt):
                return False
            if requeue:
                self._state.leases[execution_id] = Lease(execution_id, None, True, lease.attempts)
            else:
                del self._state.leases[execution_id]
            return True

    async def find(self, execution_id: UUID) -> Lease | None:
        return self._state.leases.get(execution_id)

    async def list(self, *, owner: str | None = None) -> builtins.list[Lease]:
        leases = self._state.leases
        return [leases[k] for k in sorted(leases) if owner is None or leases[k].owner == owner]


class MemoryStore:
    """The in-memory :class:`~qmcp_agents.domain.ports.Store`."""

    def __init__(self) -> None:
        self._state = State()
        self._lock = asyncio.Lock()
        self._frame: contextvars.ContextVar[Frame[None] | None] = contextvars.ContextVar(
            f"memory-store-{id(self)}", default=None
        )
        self.agent_types = MemoryAgentTypes(self)
        self.topologies = MemoryTopologies(self)
        self.agent_instances = MemoryAgentInstances(self)
        self.executions = MemoryExecutions(self)
        self.messages = MemoryMessages(self)
        self.results = MemoryResults(self)
        self.leases = MemoryLeases(self)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(backend="memory", transactions=True, multi_process=False)

    def _exclusive(self) -> asyncio.Lock:
        """One operation at a time (``async with store._exclusive():``): outside a transaction
        on the store's lock, inside one on the lock of the (nested) transaction the calling
        task belongs to. The lock itself, not a context manager wrapping it: that cost about
        2 µs per call, as much as the rest of a ``get``."""
        frame = self._frame.get()
        if frame is None:
            return self._lock
        frame.check_open()
        return frame.lock

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        frame = self._frame.get()
        if frame is not None:
            # Nested: a savepoint. It holds the parent frame's lock for its whole body, so no
            # sibling task writes while it runs, and restoring its snapshot on error undoes
            # only its own work (child tasks used to skip the lock and be rolled back too).
            frame.check_open()
            async with frame.lock, self._frame_of_its_own():
                yield
            return
        async with self._lock, self._frame_of_its_own():
            yield

    @asynccontextmanager
    async def _frame_of_its_own(self) -> AsyncIterator[None]:
        frame: Frame[None] = Frame(None)
        token = self._frame.set(frame)
        snapshot = self._state.snapshot()
        try:
            yield
        except BaseException:
            self._state.restore(snapshot)
            raise
        finally:
            frame.open = False
            self._frame.reset(token)

    async def create_schema(self) -> None:
        """Nothing to create in memory."""

    async def drop_schema(self) -> None:
        async with self._exclusive():
            self._state.restore(State())

    async def close(self) -> None:
        """Nothing to release."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


# One rule for entity arguments on every backend (domain/arguments.py).
for _repository, _model, _field in (
    (MemoryAgentTypes, AgentType, "agent_type"),
    (MemoryTopologies, Topology, "topology"),
    (MemoryAgentInstances, AgentInstance, "agent_instance"),
    (MemoryExecutions, Execution, "execution"),
    (MemoryResults, Result, "result"),
):
    check_entity_arguments(_repository, _model, _field)
check_message_arguments(MemoryMessages)

"""The six repositories on MongoDB.

MongoDB has no foreign keys, so every reference is checked here before a write, deletes
check what still points at the entity, and cascades are explicit. The rules themselves
come from the domain (:mod:`qmcp_agents.domain.integrity`,
:mod:`qmcp_agents.domain.topology_rules`).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from uuid import UUID, uuid4

from pydantic import BaseModel
from pymongo import ASCENDING, ReturnDocument

from qmcp_agents.adapters.concurrency import settle, taking_turns, wrap_verbs
from qmcp_agents.domain import (
    FINAL_STATUSES,
    AgentInstance,
    AgentRole,
    AgentType,
    AlreadyExists,
    ConcurrencyError,
    Execution,
    ExecutionStatus,
    IntegrityError,
    NotFound,
    Result,
    Topology,
    TopologyType,
)
from qmcp_agents.domain.arguments import check_entity_arguments, int_id, name_key, uuid_id
from qmcp_agents.domain.integrity import (
    check_instance_binding,
    describe,
    for_insert,
    for_restore,
    for_update,
    refuse_child_of_final,
    refuse_if_final,
    with_own_membership_ids,
)
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
    uuid_cursor,
)
from qmcp_agents.domain.topology_rules import check_topology_rules

from . import closing, documents

if TYPE_CHECKING:
    from .store import MongoStore

E = TypeVar("E", bound=BaseModel)
K = TypeVar("K", int, UUID)
Filter = dict[str, Any]

_FINAL = sorted(s.value for s in FINAL_STATUSES)
_OWNED = ("messages", "message_parts", "results", "agent_instances")
"""Collections whose documents belong to an execution (by ``execution_id``)."""


class _Repository(Generic[K, E]):
    collection_name: str
    label: str
    cursor: Callable[[str | None], Any]
    key: Callable[[Any], Any]  # checks an id argument before it reaches a query

    def __init__(self, store: MongoStore) -> None:
        self._store = store

    @property
    def _c(self) -> Any:
        return self._store.collection(self.collection_name)

    def _load(self, document: Mapping[str, Any]) -> E:
        raise NotImplementedError

    def _document(self, entity: E) -> dict[str, Any]:
        raise NotImplementedError

    async def _one(self, query: Filter, collection: Any = None) -> Any:
        target = self._c if collection is None else collection
        return await self._store.call(target.find_one(query, session=self._store.session()))

    async def _count_in(self, collection: Any, query: Filter) -> int:
        return int(await self._store.call(collection.count_documents(query, session=self._store.session())))

    async def find(self, id: K) -> E | None:
        id = self.key(id)
        await self._store.connect()
        document = await self._one({"_id": id})
        return None if document is None else self._load(document)

    async def get(self, id: K) -> E:
        entity = await self.find(id)
        if entity is None:
            raise NotFound(f"{self.label} {id} does not exist")
        return entity

    async def _stored(self, id: K | None) -> E:
        entity = None if id is None else await self.find(id)
        if entity is None:
            raise NotFound(f"{self.label} {id} does not exist")
        return entity

    async def _page(self, query: Filter, limit: int, after: str | None) -> Page[E]:
        check_limit(limit)
        start = self.cursor(after)
        if start is not None:
            query = {**query, "_id": {"$gt": start}}
        await self._store.connect()
        found = await self._store.call(
            self._c.find(
                query, sort=[("_id", ASCENDING)], limit=limit + 1, session=self._store.session()
            ).to_list(None)
        )
        items = [self._load(d) for d in found[:limit]]
        return Page(items, str(found[limit - 1]["_id"]) if len(found) > limit else None)

    async def _count(self, query: Filter) -> int:
        await self._store.connect()
        return await self._count_in(self._c, query)

    async def _require(self, name: str, key: Any, what: str, owner: BaseModel) -> Any:
        document = await self._one({"_id": key}, self._store.collection(name))
        if document is None:
            raise IntegrityError(f"{describe(owner)}: {what} {key} does not exist")
        return document

    async def _insert(self, entity: E, session: Any) -> E:
        raise NotImplementedError

    async def _write_new(self, document: dict[str, Any], session: Any) -> None:
        try:
            await self._store.call(self._c.insert_one(document, session=session))
        except AlreadyExists:
            raise AlreadyExists(
                f"{self.label} {document.get('name', document['_id'])!r} already exists"
            ) from None

    async def add(self, entity: E) -> E:
        await self._store.connect()
        return await self._insert(entity, self._store.session())

    async def _restore(self, entity: E, session: Any) -> None:
        raise NotImplementedError

    async def restore_many(self, entities: Sequence[E]) -> int:
        """See the port. Without a transaction, a refused entity leaves the earlier ones of
        the call written; rerunning the restore skips them."""
        await self._store.connect()
        session = self._store.session()
        written = 0
        for entity in entities:
            if await self._one({"_id": self.key(getattr(entity, "id"))}) is None:  # noqa: B009
                await self._restore(entity, session)
                written += 1
        return written

    async def _bump_counter(self, counter: str, used: int) -> None:
        """Make sure an id written as given is never handed out again."""
        counters = self._store.collection("counters")
        await self._store.call(
            counters.update_one(
                {"_id": counter}, {"$max": {"n": used}}, upsert=True, session=self._store.session()
            )
        )

    async def add_many(self, entities: Sequence[E]) -> builtins.list[E]:
        """All-or-nothing: inside a transaction by the transaction; otherwise by deleting what
        was inserted when a later entity is refused (a crash in between can leave a prefix)."""
        await self._store.connect()
        session = self._store.session()
        stored: builtins.list[E] = []
        try:
            for entity in entities:
                stored.append(await self._insert(entity, session))
        except BaseException:
            if session is None and stored:
                ids = [getattr(e, "id") for e in stored]  # noqa: B009
                await self._store.call(self._c.delete_many({"_id": {"$in": ids}}))
            raise
        return stored

    async def _replace(self, current: E, stored: E) -> E:
        """Write ``stored`` over ``current`` only if nobody changed it meanwhile."""
        document = self._document(stored)
        done = await self._store.call(
            self._c.replace_one(
                {"_id": document["_id"], "revision": getattr(current, "revision")},  # noqa: B009
                document,
                session=self._store.session(),
            )
        )
        if done.matched_count != 1:
            raise ConcurrencyError(
                f"{describe(stored)} was changed by someone else meanwhile; re-read and retry"
            )
        return stored

    async def _update(self, entity: E, check: Callable[[E], Any] | None = None) -> E:
        await self._store.connect()
        current = await self._stored(getattr(entity, "id"))  # noqa: B009
        stored = for_update(current, entity)
        if check is not None:
            await check(stored)
        return await self._replace(current, stored)


class _NamedRepository(_Repository[int, E]):
    cursor = staticmethod(int_cursor)
    key = staticmethod(int_id)
    counter: str

    async def find_by_name(self, name: str) -> E | None:
        key = name_key(name)
        if key is None:
            return None
        await self._store.connect()
        document = await self._one({"name": key})
        return None if document is None else self._load(document)

    async def get_by_name(self, name: str) -> E:
        entity = await self.find_by_name(name)
        if entity is None:
            raise NotFound(f"{self.label} named {name!r} does not exist")
        return entity

    async def _check_name_free(self, entity: BaseModel) -> None:
        # Checked as it will be stored: an entity that bypassed validation may hold "PLANNER".
        name = name_key(getattr(entity, "name"))  # noqa: B009
        if name is not None and await self._one({"name": name}) is not None:
            raise AlreadyExists(f"{self.label} named {name!r} already exists")

    async def _check_new(self, entity: BaseModel) -> None:
        if getattr(entity, "id") is not None:  # noqa: B009
            raise IntegrityError(f"{describe(entity)} already has an id; use update() to change it")
        await self._check_name_free(entity)

    async def next_id(self, counter: str | None = None) -> int:
        """A new id from an atomic counter (ids may skip, never repeat)."""
        counters = self._store.collection("counters")
        document = await self._store.call(
            counters.find_one_and_update(
                {"_id": counter or self.counter},
                {"$inc": {"n": 1}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
                session=self._store.session(),
            )
        )
        return int(document["n"])


class MongoAgentTypes(_NamedRepository[AgentType]):
    collection_name = "agent_types"
    label = "agent type"
    counter = "agent_types"

    def _load(self, document: Mapping[str, Any]) -> AgentType:
        return documents.agent_type_from(document)

    def _document(self, entity: AgentType) -> dict[str, Any]:
        return documents.agent_type_document(entity)

    async def _restore(self, entity: AgentType, session: Any) -> None:
        stored = for_restore(entity)
        await self._check_name_free(stored)
        await self._write_new(self._document(stored), session)
        await self._bump_counter(self.counter, stored.id or 0)

    async def _insert(self, entity: AgentType, session: Any) -> AgentType:
        await self._check_new(entity)
        stored = for_insert(entity)
        stored = stored.model_copy(update={"id": await self.next_id()})
        await self._write_new(self._document(stored), session)
        return stored

    async def update(self, agent_type: AgentType) -> AgentType:
        return await self._update(agent_type)

    async def delete(self, id: int) -> None:
        async with self._store.unit():
            entity = await self._stored(id)
            users = await self._store.call(
                self._store.collection("topologies")
                .find({"memberships.agent_type_id": id}, {"name": 1}, session=self._store.session())
                .to_list(None)
            )
            instances = await self._count_in(self._store.collection("agent_instances"), {"agent_type_id": id})
            if users or instances:
                names = sorted(u["name"] for u in users)
                raise IntegrityError(
                    f"{describe(entity)} is in use by topologies {names} and {instances} instance(s)"
                )
            await self._store.call(self._c.delete_one({"_id": id}, session=self._store.session()))

    async def list(
        self, *, role: AgentRole | None = None, limit: int = 50, after: str | None = None
    ) -> Page[AgentType]:
        kind = AgentTypeFilter(role=role).role
        return await self._page(_eq(role=kind.value if kind else None), limit, after)

    async def count(self, *, role: AgentRole | None = None) -> int:
        kind = AgentTypeFilter(role=role).role
        return await self._count(_eq(role=kind.value if kind else None))


class MongoTopologies(_NamedRepository[Topology]):
    collection_name = "topologies"
    label = "topology"
    counter = "topologies"

    def _load(self, document: Mapping[str, Any]) -> Topology:
        return documents.topology_from(document)

    def _document(self, entity: Topology) -> dict[str, Any]:
        return documents.topology_document(entity)

    async def _check_rules(self, topology: Topology) -> None:
        type_ids = sorted({m.agent_type_id for m in topology.memberships})
        found = await self._store.call(
            self._store.collection("agent_types")
            .find({"_id": {"$in": type_ids}}, {"name": 1, "role": 1}, session=self._store.session())
            .to_list(None)
        )
        names = {d["_id"]: d["name"] for d in found}
        roles = {d["_id"]: d["role"] for d in found}

        async def sub_topologies_of(name: str) -> builtins.list[str] | None:
            document = await self._one({"name": name})
            if document is None:
                return None
            if document["topology_type"] != TopologyType.COMPOUND.value:
                return []
            return builtins.list(documents.unescape(document["config"]).get("sub_topologies", []))

        await check_topology_rules(topology, names, sub_topologies_of, member_roles=roles)

    async def _with_member_ids(self, topology: Topology, topology_id: int) -> Topology:
        members = [
            m.model_copy(update={"topology_id": topology_id, "id": m.id or await self.next_id("memberships")})
            for m in topology.memberships
        ]
        return topology.model_copy(update={"memberships": members})

    async def _restore(self, entity: Topology, session: Any) -> None:
        stored = for_restore(entity)
        topology_id = stored.id
        assert topology_id is not None
        await self._check_name_free(stored)
        await self._check_rules(stored)
        stored = await self._with_member_ids(stored, topology_id)
        await self._write_new(self._document(stored), session)
        await self._bump_counter(self.counter, topology_id)
        await self._bump_counter("memberships", max((m.id or 0 for m in stored.memberships), default=0))

    async def _insert(self, entity: Topology, session: Any) -> Topology:
        await self._check_new(entity)
        stored = for_insert(entity)
        await self._check_rules(stored)
        new_id = await self.next_id()
        fresh = with_own_membership_ids(stored.model_copy(update={"id": new_id}), ())
        stored = await self._with_member_ids(fresh, new_id)
        await self._write_new(self._document(stored), session)
        return stored

    async def update(self, topology: Topology) -> Topology:
        await self._store.connect()
        current = await self._stored(topology.id)
        stored = for_update(current, topology)
        await self._check_rules(stored)
        assert current.id is not None
        stored = with_own_membership_ids(stored, (m.id for m in current.memberships if m.id))
        return await self._replace(current, await self._with_member_ids(stored, current.id))

    async def delete(self, id: int) -> None:
        async with self._store.unit():
            entity = await self._stored(id)
            runs = await self._count_in(self._store.collection("executions"), {"topology_id": id})
            parents = await self._store.call(
                self._c.find(
                    {"topology_type": TopologyType.COMPOUND.value, "config.sub_topologies": entity.name},
                    {"name": 1},
                    session=self._store.session(),
                ).to_list(None)
            )
            if runs or parents:
                names = sorted(p["name"] for p in parents)
                raise IntegrityError(
                    f"{describe(entity)} has {runs} execution(s) and is a sub-topology of {names}"
                )
            await self._store.call(self._c.delete_one({"_id": id}, session=self._store.session()))

    async def list(
        self, *, topology_type: TopologyType | None = None, limit: int = 50, after: str | None = None
    ) -> Page[Topology]:
        kind = TopologyFilter(topology_type=topology_type).topology_type
        return await self._page(_eq(topology_type=kind.value if kind else None), limit, after)

    async def count(self, *, topology_type: TopologyType | None = None) -> int:
        kind = TopologyFilter(topology_type=topology_type).topology_type
        return await self._count(_eq(topology_type=kind.value if kind else None))


class _UuidRepository(_Repository[UUID, E]):
    cursor = staticmethod(uuid_cursor)
    key = staticmethod(uuid_id)

    async def _confirm_execution(self, entity: BaseModel, execution_id: UUID | None, session: Any) -> None:
        """After writing an entity owned by an execution: if an ``executions.delete`` ran
        between the reference check and the write, its sweeps may have missed the entity,
        so the entity removes itself (see ``MongoExecutions.delete``). A transaction needs
        no such check."""
        if session is not None or execution_id is None:
            return
        executions = self._store.collection("executions")
        if await self._store.call(executions.find_one({"_id": execution_id}, {"_id": 1})) is not None:
            return
        await self._store.call(self._c.delete_one({"_id": getattr(entity, "id")}))  # noqa: B009
        raise IntegrityError(f"{describe(entity)}: execution_id {execution_id} was deleted meanwhile")

    async def _check_new_id(self, entity: BaseModel) -> None:
        entity_id = getattr(entity, "id")  # noqa: B009
        if await self._one({"_id": entity_id}) is not None:
            raise AlreadyExists(f"{self.label} {entity_id} already exists")


class MongoAgentInstances(_UuidRepository[AgentInstance]):
    collection_name = "agent_instances"
    label = "agent instance"

    def _load(self, document: Mapping[str, Any]) -> AgentInstance:
        return documents.instance_from(document)

    def _document(self, entity: AgentInstance) -> dict[str, Any]:
        return documents.instance_document(entity)

    async def _check_refs(self, entity: AgentInstance) -> None:
        await self._require("agent_types", entity.agent_type_id, "agent_type_id", entity)
        if entity.execution_id is not None:
            await self._require("executions", entity.execution_id, "execution_id", entity)

    async def _restore(self, entity: AgentInstance, session: Any) -> None:
        stored = for_restore(entity)
        await self._check_refs(stored)
        await self._write_new(self._document(stored), session)

    async def _insert(self, entity: AgentInstance, session: Any) -> AgentInstance:
        stored = for_insert(entity)
        await self._check_new_id(stored)
        await self._check_refs(stored)
        await self._write_new(self._document(stored), session)
        await self._confirm_execution(stored, stored.execution_id, session)
        return stored

    async def update(self, instance: AgentInstance) -> AgentInstance:
        return await self._update(instance, self._check_refs)

    async def delete(self, id: UUID) -> None:
        async with self._store.unit():
            entity = await self._stored(id)
            messages = await self._store.messages.referring(id)
            results = await self._count_in(self._store.collection("results"), {"agent_instance_id": id})
            if messages or results:
                raise IntegrityError(
                    f"{describe(entity)} is referenced by {messages} message(s) and {results} result(s)"
                )
            await self._store.call(self._c.delete_one({"_id": id}, session=self._store.session()))

    async def list(
        self,
        *,
        agent_type_id: int | None = None,
        execution_id: UUID | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> Page[AgentInstance]:
        flt = AgentInstanceFilter(agent_type_id=agent_type_id, execution_id=execution_id)
        return await self._page(_eq(**flt.model_dump()), limit, after)

    async def count(self, *, agent_type_id: int | None = None, execution_id: UUID | None = None) -> int:
        flt = AgentInstanceFilter(agent_type_id=agent_type_id, execution_id=execution_id)
        return await self._count(_eq(**flt.model_dump()))


class MongoExecutions(_UuidRepository[Execution]):
    collection_name = "executions"
    label = "execution"

    def _load(self, document: Mapping[str, Any]) -> Execution:
        return documents.execution_from(document)

    def _document(self, entity: Execution) -> dict[str, Any]:
        return documents.execution_document(entity)

    async def _check_refs(self, entity: Execution) -> None:
        await self._require("topologies", entity.topology_id, "topology_id", entity)
        if entity.parent_id is not None:
            await self._require("executions", entity.parent_id, "parent_id", entity)

    async def _restore(self, entity: Execution, session: Any) -> None:
        stored = for_restore(entity)
        await self._check_refs(stored)
        await self._write_new(
            {**self._document(stored), "last_sequence_number": 0, "incarnation": uuid4()}, session
        )

    async def _insert(self, entity: Execution, session: Any) -> Execution:
        stored = for_insert(entity)
        await self._check_new_id(stored)
        await self._check_refs(stored)
        if stored.parent_id is not None:
            parent = await self._one({"_id": stored.parent_id})
            refuse_child_of_final(stored.parent_id, ExecutionStatus(parent["status"]))
        document = self._document(stored)
        document["last_sequence_number"] = 0
        document["incarnation"] = uuid4()  # see MongoMessages: a restored execution is new
        await self._write_new(document, session)
        return stored

    async def _replace(self, current: Execution, stored: Execution) -> Execution:
        """A conditional update of the fields (the message counter and incarnation stay).
        A move to a final status first closes the message chain (``closing.close``), so no
        message can be appended after the status is written; the update then also requires
        that no append killed that closing entry meanwhile, and removes it if refused.

        Outside a transaction that move runs to its end even if the caller is cancelled
        (the cancellation is delivered afterwards, as on SQL): cut between the entry and
        the status, it left a pending entry that every append waited on for PENDING_WAIT."""
        if self._store.session() is None and stored.is_final and not current.is_final:
            return await settle(self._write_status(current, stored))
        return await self._write_status(current, stored)

    async def _write_status(self, current: Execution, stored: Execution) -> Execution:
        document = self._document(stored)
        session = self._store.session()
        query: Filter = {"_id": stored.id, "revision": current.revision}
        closed = None
        if stored.is_final and not current.is_final:
            closed = await closing.close(
                self._store, stored.id, stored.status.value, current.revision, session
            )
            if closed is not None:
                query[closing.KILLED] = {"$ne": closed[1]}
        try:
            done = await self._store.call(self._c.update_one(query, {"$set": document}, session=session))
        except BaseException:
            # Cancelled or cut off with the update's outcome unknown: a pending entry left
            # here would hold every append (and this transition's retry) for PENDING_WAIT.
            # Inside a transaction the rollback removes it.
            if closed is not None and session is None:
                await closing.abandon(self._store, stored.id, closed, current.revision)
            raise
        if done.matched_count != 1:
            if closed is not None:
                await closing.unclose(self._store, closed, session)
            raise ConcurrencyError(
                f"{describe(stored)} was changed by someone else meanwhile; re-read and retry"
            )
        return stored

    async def update(self, execution: Execution) -> Execution:
        return await self._update(execution)

    async def _tree(self, roots: builtins.list[UUID]) -> builtins.list[UUID]:
        """``roots`` and all their descendants."""
        tree = builtins.list(roots)
        frontier = builtins.list(roots)
        while frontier:
            children = await self._store.call(
                self._c.find(
                    {"parent_id": {"$in": frontier}}, {"_id": 1}, session=self._store.session()
                ).to_list(None)
            )
            frontier = [c["_id"] for c in children if c["_id"] not in tree]
            tree.extend(frontier)
        return tree

    async def _cascade(self, roots: builtins.list[UUID]) -> int:
        """Delete ``roots``, their children and all they own; what they own goes first, so
        a crash half-way leaves executions that a second delete finishes off."""
        tree = await self._tree(roots)
        session = self._store.session()
        for execution_id in tree:  # appends (even with a stale hint) now see "deleted"
            await closing.close(self._store, execution_id, closing.DELETED, None, session)
        await self._sweep(tree)
        leases = self._store.collection("leases")  # keyed by the execution's id
        await self._store.call(leases.delete_many({"_id": {"$in": tree}}, session=session))
        done = await self._store.call(self._c.delete_many({"_id": {"$in": tree}}, session=session))
        # A concurrent add of a result or instance that found an execution before it was
        # deleted may have written after the first sweep; sweeping again after the executions
        # are gone catches it (one that writes later sees the execution gone and removes its
        # own write). Appends cannot: their write meets the closing entry written above.
        await self._sweep(tree)
        await closing.retire(self._store, tree, session)
        return int(done.deleted_count)

    async def _sweep(self, tree: builtins.list[UUID]) -> int:
        """Delete everything the executions ``tree`` own; how many documents were deleted."""
        deleted = 0
        for name in _OWNED:
            collection = self._store.collection(name)
            query: Filter = {"execution_id": {"$in": tree}}
            if name == "messages":  # closing entries stay: they stop appends of the old incarnation
                query["closing"] = {"$exists": False}
            done = await self._store.call(collection.delete_many(query, session=self._store.session()))
            deleted += int(done.deleted_count)
        return deleted

    async def _owns_anything(self, tree: builtins.list[UUID]) -> bool:
        for name in _OWNED:
            query: Filter = {"execution_id": {"$in": tree}}
            if name == "messages":
                query["closing"] = {"$exists": False}
            if await self._count_in(self._store.collection(name), query):
                return True
        return False

    async def delete(self, id: UUID) -> None:
        """See the port. An execution already gone whose messages, results, instances or
        children remain (an earlier delete cut short, or a write that raced it) is finished
        off rather than reported as ``NotFound``."""
        id = self.key(id)
        async with self._store.unit():
            if await self.find(id) is None:
                tree = await self._tree([id])
                if len(tree) == 1 and not await self._owns_anything(tree):
                    raise NotFound(f"{self.label} {id} does not exist")
            await self._settled_cascade([id])

    async def _settled_cascade(self, roots: builtins.list[UUID]) -> int:
        """:meth:`_cascade`, run to its end outside a transaction even if the caller is
        cancelled (delivered afterwards, as on SQL): cut short, it left an execution that
        was still there but half swept, or whose appends said "deleted"; a crash still can
        (a second delete finishes it). Inside a transaction the rollback undoes it."""
        if self._store.session() is None:
            return await settle(self._cascade(roots))
        return await self._cascade(roots)

    def _query(self, flt: ExecutionFilter) -> Filter:
        query = _eq(
            status=flt.status.value if flt.status else None,
            topology_id=flt.topology_id,
            correlation_id=flt.correlation_id,
            parent_id=flt.parent_id,
        )
        started: Filter = {}
        if flt.started_after is not None:
            started["$gte"] = flt.started_after
        if flt.started_before is not None:
            started["$lt"] = flt.started_before
        if started:
            query["started_at"] = started
        return query

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
        return await self._page(self._query(flt), limit, after)

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
        return await self._count(self._query(flt))

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
        query = {
            "status": {"$in": sorted(s.value for s in request.statuses)},
            "completed_at": {"$lt": request.older_than},
        }
        deleted = 0
        kept: builtins.list[UUID] = []  # final, but with a descendant still live
        while True:
            async with self._store.unit() as session:
                found = await self._store.call(
                    self._c.find(
                        {**query, "_id": {"$nin": kept}},
                        {"_id": 1},
                        sort=[("completed_at", ASCENDING)],
                        limit=request.batch_size,
                        session=session,
                    ).to_list(None)
                )
                roots = []
                for document in found:  # purge never deletes a live execution below a final one
                    live = {"_id": {"$in": await self._tree([document["_id"]])}, "status": {"$nin": _FINAL}}
                    if await self._count_in(self._c, live):
                        kept.append(document["_id"])
                    else:
                        roots.append(document["_id"])
                if roots:
                    deleted += await self._settled_cascade(roots)
            if len(found) < request.batch_size:
                return deleted


class MongoResults(_UuidRepository[Result]):
    collection_name = "results"
    label = "result"

    def _load(self, document: Mapping[str, Any]) -> Result:
        return documents.result_from(document)

    def _document(self, entity: Result) -> dict[str, Any]:
        return documents.result_document(entity)

    async def _check_refs(self, entity: Result, restoring: bool = False) -> None:
        execution = await self._require("executions", entity.execution_id, "execution_id", entity)
        instance = await self._require(
            "agent_instances", entity.agent_instance_id, "agent_instance_id", entity
        )
        check_instance_binding(
            instance["_id"], instance.get("execution_id"), entity.execution_id, "agent_instance_id"
        )
        if not restoring:
            refuse_if_final(entity.execution_id, ExecutionStatus(execution["status"]), "results")

    async def _restore(self, entity: Result, session: Any) -> None:
        stored = for_restore(entity)
        await self._check_refs(stored, restoring=True)
        await self._write_new(self._document(stored), session)

    async def _insert(self, entity: Result, session: Any) -> Result:
        stored = for_insert(entity)
        await self._check_new_id(stored)
        await self._check_refs(stored)
        await self._write_new(self._document(stored), session)
        await self._confirm_execution(stored, stored.execution_id, session)
        return stored

    async def update(self, result: Result) -> Result:
        return await self._update(result, self._check_refs)

    async def delete(self, id: UUID) -> None:
        await self._stored(id)
        await self._store.call(self._c.delete_one({"_id": id}, session=self._store.session()))

    async def list(
        self,
        *,
        execution_id: UUID | None = None,
        agent_instance_id: UUID | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> Page[Result]:
        flt = ResultFilter(execution_id=execution_id, agent_instance_id=agent_instance_id)
        return await self._page(_eq(**flt.model_dump()), limit, after)

    async def count(self, *, execution_id: UUID | None = None, agent_instance_id: UUID | None = None) -> int:
        flt = ResultFilter(execution_id=execution_id, agent_instance_id=agent_instance_id)
        return await self._count(_eq(**flt.model_dump()))


def _eq(**fields: Any) -> Filter:
    return {name: value for name, value in fields.items() if value is not None}


__all__ = [
    "MongoAgentInstances",
    "MongoAgentTypes",
    "MongoExecutions",
    "MongoResults",
    "MongoTopologies",
]


# Tasks sharing one transaction take turns on its session (see adapters/concurrency.py).
wrap_verbs(
    taking_turns,
    MongoAgentTypes,
    MongoTopologies,
    MongoAgentInstances,
    MongoExecutions,
    MongoResults,
)


# One rule for entity arguments on every backend (domain/arguments.py).
for _repository, _model, _field in (
    (MongoAgentTypes, AgentType, "agent_type"),
    (MongoTopologies, Topology, "topology"),
    (MongoAgentInstances, AgentInstance, "agent_instance"),
    (MongoExecutions, Execution, "execution"),
    (MongoResults, Result, "result"),
):
    check_entity_arguments(_repository, _model, _field)

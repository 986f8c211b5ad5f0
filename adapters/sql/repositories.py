"""The six repositories on SQLAlchemy Core.

Write rules come from :mod:`qmcp_agents.domain.integrity` and
:mod:`qmcp_agents.domain.topology_rules`; this module only says how to read and write rows.
References are checked with explicit queries first (so errors name the field and value);
the foreign keys stay as a safety net against races between processes.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from uuid import UUID

from pydantic import BaseModel
from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    delete,
    func,
    insert,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from qmcp_agents.adapters.concurrency import settled, wrap_verbs
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
from qmcp_agents.domain.batching import paused_gc
from qmcp_agents.domain.integrity import (
    check_instance_binding,
    describe,
    for_insert,
    for_restore,
    for_update,
    for_update_matching,
    messages_to_restore,
    refuse_child_of_final,
    refuse_if_final,
    refuse_taken_message_ids,
    with_own_membership_ids,
)
from qmcp_agents.domain.message import build_messages
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

from . import bulk, driver, pages, rows, schema
from .rows import RowLike

if TYPE_CHECKING:
    from .store import SqlStore

E = TypeVar("E", bound=BaseModel)
_COMPOUND_LOCK = 727373  # pg_advisory_xact_lock key serialising compound topology saves (727372: migrations)
K = TypeVar("K", int, UUID)


class _Repository(Generic[K, E]):
    """Reads, paging, counting and deleting, shared by the keyed repositories."""

    table: Table
    label: str
    cursor: Callable[[str | None], Any]
    key: Callable[[Any], Any]
    single_read = True
    """A read of entities is one statement (topologies: a page is two, with their
    memberships; ``find`` one, joined)."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    def _load(self, row: RowLike) -> E:
        raise NotImplementedError

    async def _load_many(self, conn: AsyncConnection, found: Sequence[RowLike]) -> builtins.list[E]:
        return [self._load(row) for row in found]

    async def _fetch(self, conn: AsyncConnection, where: ColumnElement[bool], lock: bool = False) -> E | None:
        query = select(self.table).where(where)
        if lock:
            query = query.with_for_update()
        row = (await conn.execute(query)).mappings().first()
        if row is None:
            return None
        return (await self._load_many(conn, [row]))[0]

    async def find(self, id: K) -> E | None:
        """A single-read entity in one statement on the driver's connection, no transaction
        (see :mod:`.driver`): the engine reads executions, instances and agent types on
        every drive."""
        id = self.key(id)
        if not self.single_read:
            async with self._store.connection(read=True) as conn:
                return await self._fetch(conn, self.table.c.id == id)
        dialect = self._store.engine.dialect
        async with self._store.driver() as raw:
            found = await driver.fetch(raw, driver.by_id(self.table, dialect), {"id": id})
        return self._load(driver.decoder(self.table, dialect)(found[0])) if found else None

    async def get(self, id: K) -> E:
        entity = await self.find(id)
        if entity is None:
            raise NotFound(f"{self.label} {id} does not exist")
        return entity

    async def _stored(self, conn: AsyncConnection, id: K | None) -> E:
        entity = None if id is None else await self._fetch(conn, self.table.c.id == self.key(id), lock=True)
        if entity is None:
            raise NotFound(f"{self.label} {id} does not exist")
        return entity

    def _where(self, **filters: Any) -> builtins.list[ColumnElement[bool]]:
        return [self.table.c[name] == value for name, value in filters.items() if value is not None]

    async def _page(
        self, conditions: builtins.list[ColumnElement[bool]], limit: int, after: str | None
    ) -> Page[E]:
        check_limit(limit)
        start = self.cursor(after)
        key = self.table.c.id
        if start is not None:
            conditions = [*conditions, key > start]
        query: Select[Any] = select(self.table).where(*conditions).order_by(key).limit(limit + 1)
        async with self._store.connection(read=True, alone=self.single_read) as conn:
            found = (await conn.execute(query)).mappings().all()
            items = await self._load_many(conn, found[:limit])
        more = len(found) > limit
        return Page(items, str(found[limit - 1]["id"]) if more else None)

    async def _keyset_page(self, values: dict[str, Any], limit: int, after: str | None) -> Page[E]:
        """:meth:`_page` where each filter is a column's value (or an execution's start
        range), in one statement on the driver's connection (:func:`.driver.keyset_page`)."""
        check_limit(limit)
        start = self.cursor(after)
        dialect = self._store.engine.dialect
        statement = driver.keyset_page(self.table, dialect, tuple(sorted(values)), start is not None)
        async with self._store.driver() as raw:
            found = await driver.fetch(raw, statement, {**values, "after": start, "limit": limit + 1})
        decode = driver.decoder(self.table, dialect)
        decoded = [decode(row) for row in found[:limit]]
        more = len(found) > limit
        return Page([self._load(row) for row in decoded], str(decoded[-1]["id"]) if more else None)

    async def _count(self, conditions: builtins.list[ColumnElement[bool]]) -> int:
        async with self._store.connection(read=True, alone=True) as conn:
            return int(
                (
                    await conn.execute(select(func.count()).select_from(self.table).where(*conditions))
                ).scalar_one()
            )

    async def _exists(self, conn: AsyncConnection, table: Table, where: ColumnElement[bool]) -> int:
        return await _count(conn, table, where)

    async def _require(
        self, conn: AsyncConnection, table: Table, key: Any, what: str, owner: BaseModel, lock: bool = False
    ) -> RowLike:
        """The referenced row, or ``IntegrityError``. ``lock``: hold ``FOR KEY SHARE`` on it
        now, as the foreign key check of the insert would later: taking the execution's lock
        first keeps the order ``executions.delete`` takes (execution, then what cascades), so
        the two wait for each other instead of deadlocking (PostgreSQL; SQLite ignores it)."""
        query = select(table).where(table.c.id == key)
        if lock:
            query = query.with_for_update(key_share=True)
        row = (await conn.execute(query)).mappings().first()
        if row is None:
            raise IntegrityError(f"{describe(owner)}: {what} {key} does not exist")
        return row

    async def _insert(self, conn: AsyncConnection, entity: E) -> E:
        raise NotImplementedError

    async def add(self, entity: E) -> E:
        async with self._store.connection() as conn:
            return await self._insert(conn, entity)

    async def _restore(self, conn: AsyncConnection, entity: E) -> None:
        raise NotImplementedError

    async def _after_restore(self, conn: AsyncConnection) -> None:
        """Hook: make ids written as given never be handed out again."""

    async def restore_many(self, entities: Sequence[E]) -> int:
        written = 0
        async with self._store.connection() as conn:
            for entity in entities:
                key = self.key(getattr(entity, "id"))  # noqa: B009
                if not await self._exists(conn, self.table, self.table.c.id == key):
                    await self._restore(conn, entity)
                    written += 1
            if written:
                await self._after_restore(conn)
        return written

    async def add_many(self, entities: Sequence[E]) -> builtins.list[E]:
        async with self._store.connection() as conn:
            return [await self._insert(conn, entity) for entity in entities]

    async def _update_in_one(
        self, new: E, row_of: Callable[[E], dict[str, Any]], also: tuple[str, ...] = ()
    ) -> E | None:
        """``update`` as one checked statement where one fits (``one_statement_fits``):
        ``UPDATE ... WHERE`` the stored row passes every check ``for_update`` makes of it
        (:func:`~qmcp_agents.domain.integrity.for_update_matching`, and ``also``: columns
        that must be unchanged for the checked path to need no more queries). The written
        entity, or ``None`` when nothing was written: the caller then runs the checked path,
        which raises the precise error (or writes, if the match was only stricter)."""
        if not self._store.one_statement_fits():
            return None
        checked = checked_update_binds(new, row_of, also)
        if checked is None:
            return None
        written, values, shape = checked
        dialect = self._store.engine.dialect
        statement = driver.checked_update(self.table, dialect, *shape)
        if dialect.name == "postgresql":
            async with self._store.driver() as raw:
                found = await driver.fetch(raw, statement, values)
        else:
            async with self._store.sqlite_writer() as raw:
                found = await driver.fetch(raw, statement, values)
        return written if found else None

    async def _write_update(
        self, conn: AsyncConnection, stored: E, row: dict[str, Any], old_revision: int
    ) -> None:
        done = await conn.execute(
            update(self.table)
            .where(self.table.c.id == row["id"], self.table.c.revision == old_revision)
            .values(**row)
        )
        if done.rowcount != 1:  # pragma: no cover - the row is locked, so only a bug gets here
            raise IntegrityError(f"{describe(stored)} changed while it was being updated")


CheckedShape = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...] | None, bool]
"""The shape of :func:`.driver.checked_update`'s statement: written columns, columns equal
to their ``where_`` bind, columns null, statuses allowed, whether ``updated_at`` is checked."""


def checked_update_binds(
    new: E, row_of: Callable[[E], dict[str, Any]], also: tuple[str, ...] = ()
) -> tuple[E, dict[str, Any], CheckedShape] | None:
    """What ``update(new)`` as one checked statement writes (the entity), its binds and its
    shape (see :func:`.driver.checked_update`), from
    :func:`~qmcp_agents.domain.integrity.for_update_matching`; ``also``: columns that must
    be unchanged for the checked path to need no more queries. ``None`` when ``new`` needs
    the checked path."""
    matched = for_update_matching(new)
    if matched is None:
        return None
    written, match = matched
    row = row_of(written)
    unchanged = {**match.unchanged, **{name: row[name] for name in also}}
    values = {name: value for name, value in row.items() if name != "id"}
    values.update({f"where_{name}": value for name, value in unchanged.items() if value is not None})
    values.update(where_id=match.id, where_revision=match.revision, where_updated_at=match.not_after)
    shape: CheckedShape = (
        tuple(name for name in row if name != "id"),
        tuple(name for name, value in unchanged.items() if value is not None),
        tuple(name for name, value in unchanged.items() if value is None),
        None if match.statuses is None else tuple(sorted(s.value for s in match.statuses)),
        match.not_after is not None,
    )
    return written, values, shape


def instances_in_one_binds(store: SqlStore, stored: Sequence[AgentInstance]) -> dict[str, Any] | None:
    """The binds (``<column>_<k>``) of :func:`.driver.add_instances_postgres` for ``stored``
    where that one statement fits them: on PostgreSQL where one statement may go to the
    driver, a few instances with distinct ids; ``None`` otherwise (the checked path then)."""
    count = len(stored)
    if (
        not 0 < count <= driver.INSTANCES_IN_ONE
        or len({s.id for s in stored}) < count
        or store.dialect != "postgresql"
        or not store.one_statement_fits()
    ):
        return None
    return {
        f"{name}_{k}": value
        for k, entity in enumerate(stored)
        for name, value in rows.instance_row(entity).items()
    }


class _NamedRepository(_Repository[int, E]):
    cursor = staticmethod(int_cursor)
    key = staticmethod(int_id)

    async def find_by_name(self, name: str) -> E | None:
        key = name_key(name)
        if key is None:
            return None
        async with self._store.connection(read=True, alone=self.single_read) as conn:
            return await self._fetch(conn, self.table.c.name == key)

    async def get_by_name(self, name: str) -> E:
        entity = await self.find_by_name(name)
        if entity is None:
            raise NotFound(f"{self.label} named {name!r} does not exist")
        return entity

    async def _check_name_free(self, conn: AsyncConnection, entity: BaseModel) -> None:
        # Checked as it will be stored: an entity that bypassed validation may hold "PLANNER".
        name = name_key(getattr(entity, "name"))  # noqa: B009
        if name is not None and await self._exists(conn, self.table, self.table.c.name == name):
            raise AlreadyExists(f"{self.label} named {name!r} already exists")

    async def _after_restore(self, conn: AsyncConnection) -> None:
        await _advance_sequence(conn, self.table)

    async def _check_new(self, conn: AsyncConnection, entity: BaseModel) -> None:
        if getattr(entity, "id") is not None:  # noqa: B009
            raise IntegrityError(f"{describe(entity)} already has an id; use update() to change it")
        await self._check_name_free(conn, entity)


class SqlAgentTypes(_NamedRepository[AgentType]):
    table = schema.agent_types
    label = "agent type"

    def _load(self, row: RowLike) -> AgentType:
        return rows.agent_type_from(row)

    async def _restore(self, conn: AsyncConnection, entity: AgentType) -> None:
        stored = for_restore(entity)
        await self._check_name_free(conn, stored)
        await conn.execute(insert(self.table).values(**rows.agent_type_row(stored)))

    async def _insert(self, conn: AsyncConnection, entity: AgentType) -> AgentType:
        await self._check_new(conn, entity)
        stored = for_insert(entity)
        row = rows.agent_type_row(stored)
        del row["id"]
        new_id = (
            await conn.execute(insert(self.table).values(**row).returning(self.table.c.id))
        ).scalar_one()
        return stored.model_copy(update={"id": new_id})

    async def update(self, agent_type: AgentType) -> AgentType:
        """One statement where one fits (:meth:`_update_in_one`), else (or refused) checked."""
        written = await self._update_in_one(agent_type, rows.agent_type_row)
        if written is not None:
            return written
        async with self._store.connection() as conn:
            current = await self._stored(conn, agent_type.id)
            stored = for_update(current, agent_type)
            await self._write_update(conn, stored, rows.agent_type_row(stored), current.revision)
            return stored

    async def delete(self, id: int) -> None:
        async with self._store.connection() as conn:
            entity = await self._stored(conn, id)
            users = (
                (
                    await conn.execute(
                        select(schema.topologies.c.name)
                        .join(schema.memberships, schema.memberships.c.topology_id == schema.topologies.c.id)
                        .where(schema.memberships.c.agent_type_id == id)
                        .distinct()
                    )
                )
                .scalars()
                .all()
            )
            instances = await self._exists(
                conn, schema.agent_instances, schema.agent_instances.c.agent_type_id == id
            )
            if users or instances:
                raise IntegrityError(
                    f"{describe(entity)} is in use by topologies {sorted(users)} and {instances} instance(s)"
                )
            await conn.execute(delete(self.table).where(self.table.c.id == id))

    async def list(
        self, *, role: AgentRole | None = None, limit: int = 50, after: str | None = None
    ) -> Page[AgentType]:
        kind = AgentTypeFilter(role=role).role
        return await self._page(self._where(role=kind.value if kind else None), limit, after)

    async def count(self, *, role: AgentRole | None = None) -> int:
        kind = AgentTypeFilter(role=role).role
        return await self._count(self._where(role=kind.value if kind else None))


class SqlTopologies(_NamedRepository[Topology]):
    table = schema.topologies
    label = "topology"
    single_read = False

    async def _load_many(self, conn: AsyncConnection, found: Sequence[RowLike]) -> builtins.list[Topology]:
        if not found:
            return []
        members = schema.memberships
        ids = [row["id"] for row in found]
        by_topology: dict[int, builtins.list[RowLike]] = {i: [] for i in ids}
        query = (
            select(members).where(members.c.topology_id.in_(ids)).order_by(members.c.position, members.c.id)
        )
        for row in (await conn.execute(query)).mappings():
            by_topology[row["topology_id"]].append(row)
        return [rows.topology_from(row, by_topology[row["id"]]) for row in found]

    async def _check_rules(self, conn: AsyncConnection, topology: Topology) -> None:
        if conn.dialect.name == "postgresql" and topology.topology_type is TopologyType.COMPOUND:
            # Two transactions each adding one edge (a -> b, b -> a) would both pass the
            # acyclicity check on committed rows and store a cycle. Saves of compound
            # topologies take turns instead (until commit); the second then sees the first's
            # edge. SQLite writers are serialised already.
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _COMPOUND_LOCK})
        type_ids = sorted({m.agent_type_id for m in topology.memberships})
        found = (
            await conn.execute(
                select(schema.agent_types.c.id, schema.agent_types.c.name, schema.agent_types.c.role).where(
                    schema.agent_types.c.id.in_(type_ids)
                )
            )
        ).all()
        names = {row.id: row.name for row in found}
        roles = {row.id: row.role for row in found}

        async def sub_topologies_of(name: str) -> builtins.list[str] | None:
            row = (
                await conn.execute(
                    select(self.table.c.topology_type, self.table.c.config).where(self.table.c.name == name)
                )
            ).first()
            if row is None:
                return None
            return (
                builtins.list(row.config.get("sub_topologies", []))
                if row.topology_type == TopologyType.COMPOUND.value
                else []
            )

        await check_topology_rules(topology, names, sub_topologies_of, member_roles=roles)

    async def _write_members(self, conn: AsyncConnection, topology: Topology, topology_id: int) -> Topology:
        members = schema.memberships
        await conn.execute(delete(members).where(members.c.topology_id == topology_id))
        saved = []
        for membership in topology.memberships:  # few per topology; ids come back in order
            row = rows.membership_row(membership, topology_id)
            new_id = (await conn.execute(insert(members).values(**row).returning(members.c.id))).scalar_one()
            saved.append(membership.model_copy(update={"id": new_id, "topology_id": topology_id}))
        return topology.model_copy(update={"memberships": saved})

    def _load(self, row: RowLike) -> Topology:  # pragma: no cover - _load_many is used
        raise NotImplementedError

    async def find(self, id: int) -> Topology | None:
        """One statement on the driver's connection (:func:`.driver.topology_by`): the
        durable engine reads an execution's topology at every drive."""
        return await self._find_by("id", self.key(id))

    async def find_by_name(self, name: str) -> Topology | None:
        key = name_key(name)
        return None if key is None else await self._find_by("name", key)

    async def _find_by(self, column: str, key: Any) -> Topology | None:
        dialect = self._store.engine.dialect
        async with self._store.driver() as raw:
            found = await driver.fetch(raw, driver.topology_by(dialect, column), {"key": key})
        return self._topology_from(found, dialect) if found else None

    def _topology_from(self, found: Sequence[Any], dialect: Dialect) -> Topology:
        """The topology of :func:`.driver.topology_by`'s rows (``found``: at least one)."""
        width, membership_width = len(self.table.columns), len(schema.memberships.columns)
        topology, membership = (
            driver.decoder(self.table, dialect),
            driver.decoder(schema.memberships, dialect),
        )
        members: builtins.list[RowLike] = [
            membership(row[width : width + membership_width]) for row in found if row[width] is not None
        ]
        return rows.topology_from(topology(found[0][:width]), members)

    async def with_agent_types(self, id: int) -> tuple[Topology, dict[int, AgentType]] | None:
        """The topology and its members' agent types in one statement
        (:func:`.driver.topology_with_agent_types`); ``None`` when it is not there."""
        dialect = self._store.engine.dialect
        async with self._store.driver() as raw:
            found = await driver.fetch(raw, driver.topology_with_agent_types(dialect), {"key": self.key(id)})
        if not found:
            return None
        start = len(self.table.columns) + len(schema.memberships.columns)
        decode = driver.decoder(schema.agent_types, dialect)
        types: dict[int, AgentType] = {}
        for row in found:
            if row[start] is not None and row[start] not in types:
                types[row[start]] = rows.agent_type_from(decode(row[start:]))
        topology = self._topology_from(found, dialect)
        if any(m.agent_type_id not in types for m in topology.memberships):
            return None  # (the foreign key forbids it) the composed read names what is missing
        return topology, types

    async def _restore(self, conn: AsyncConnection, entity: Topology) -> None:
        stored = for_restore(entity)
        assert stored.id is not None
        await self._check_name_free(conn, stored)
        await self._check_rules(conn, stored)
        await conn.execute(insert(self.table).values(**rows.topology_row(stored)))
        await self._write_members(conn, stored, stored.id)

    async def _after_restore(self, conn: AsyncConnection) -> None:
        await _advance_sequence(conn, self.table)
        await _advance_sequence(conn, schema.memberships)

    async def _insert(self, conn: AsyncConnection, entity: Topology) -> Topology:
        await self._check_new(conn, entity)
        stored = for_insert(entity)
        await self._check_rules(conn, stored)
        row = rows.topology_row(stored)
        del row["id"]
        new_id = (
            await conn.execute(insert(self.table).values(**row).returning(self.table.c.id))
        ).scalar_one()
        fresh = with_own_membership_ids(stored.model_copy(update={"id": new_id}), ())
        return await self._write_members(conn, fresh, new_id)

    async def update(self, topology: Topology) -> Topology:
        async with self._store.connection() as conn:
            current = await self._stored(conn, topology.id)
            stored = for_update(current, topology)
            await self._check_rules(conn, stored)
            await self._write_update(conn, stored, rows.topology_row(stored), current.revision)
            assert current.id is not None
            owned = (m.id for m in current.memberships if m.id)
            return await self._write_members(conn, with_own_membership_ids(stored, owned), current.id)

    async def delete(self, id: int) -> None:
        async with self._store.connection() as conn:
            entity = await self._stored(conn, id)
            runs = await self._exists(conn, schema.executions, schema.executions.c.topology_id == id)
            compounds = (
                await conn.execute(
                    select(self.table.c.name, self.table.c.config).where(
                        self.table.c.topology_type == TopologyType.COMPOUND.value
                    )
                )
            ).all()
            parents = [name for name, config in compounds if entity.name in config.get("sub_topologies", [])]
            if runs or parents:
                raise IntegrityError(
                    f"{describe(entity)} has {runs} execution(s) and is a sub-topology of {sorted(parents)}"
                )
            await conn.execute(delete(self.table).where(self.table.c.id == id))

    async def list(
        self, *, topology_type: TopologyType | None = None, limit: int = 50, after: str | None = None
    ) -> Page[Topology]:
        kind = _topology_type(topology_type)
        return await self._page(self._where(topology_type=kind), limit, after)

    async def count(self, *, topology_type: TopologyType | None = None) -> int:
        kind = _topology_type(topology_type)
        return await self._count(self._where(topology_type=kind))


def _topology_type(topology_type: Any) -> str | None:
    kind = TopologyFilter(topology_type=topology_type).topology_type
    return kind.value if kind else None


class _UuidRepository(_Repository[UUID, E]):
    cursor = staticmethod(uuid_cursor)
    key = staticmethod(uuid_id)

    async def _check_new_id(self, conn: AsyncConnection, entity: BaseModel) -> None:
        entity_id = getattr(entity, "id")  # noqa: B009
        if await self._exists(conn, self.table, self.table.c.id == entity_id):
            raise AlreadyExists(f"{self.label} {entity_id} already exists")


class SqlAgentInstances(_UuidRepository[AgentInstance]):
    table = schema.agent_instances
    label = "agent instance"

    def _load(self, row: RowLike) -> AgentInstance:
        return rows.instance_from(row)

    async def _check_refs(self, conn: AsyncConnection, entity: AgentInstance) -> None:
        await self._require(conn, schema.agent_types, entity.agent_type_id, "agent_type_id", entity)
        if entity.execution_id is not None:
            await self._require(conn, schema.executions, entity.execution_id, "execution_id", entity)

    async def _restore(self, conn: AsyncConnection, entity: AgentInstance) -> None:
        stored = for_restore(entity)
        await self._check_refs(conn, stored)
        await conn.execute(insert(self.table).values(**rows.instance_row(stored)))

    async def _insert(self, conn: AsyncConnection, entity: AgentInstance) -> AgentInstance:
        stored = for_insert(entity)
        await self._check_new_id(conn, stored)
        await self._check_refs(conn, stored)
        await conn.execute(insert(self.table).values(**rows.instance_row(stored)))
        return stored

    async def add_many(self, entities: Sequence[AgentInstance]) -> builtins.list[AgentInstance]:
        """``add`` of each in order, in one call: the checks of all of them in three queries
        and one insert (or one statement: :meth:`_added_in_one`), refusing (with the same
        error ``add`` would give) the first that ``add`` one by one would refuse; nothing is
        written then."""
        stored: builtins.list[AgentInstance] = []
        invalid: Exception | None = None
        for entity in entities:
            try:
                stored.append(for_insert(entity))
            except Exception as error:  # raised in its turn, after the checks of those before
                invalid = error
                break
        if invalid is None and await self._added_in_one(stored):
            return stored
        async with self._store.connection() as conn:
            if stored:
                i, t, e = self.table, schema.agent_types, schema.executions
                ids = [s.id for s in stored]
                taken = set((await conn.execute(select(i.c.id).where(i.c.id.in_(ids)))).scalars())
                types = {s.agent_type_id for s in stored}
                known_types = set((await conn.execute(select(t.c.id).where(t.c.id.in_(types)))).scalars())
                bound = {s.execution_id for s in stored if s.execution_id is not None}
                known_executions = (
                    set((await conn.execute(select(e.c.id).where(e.c.id.in_(bound)))).scalars())
                    if bound
                    else set()
                )
                for entity in stored:
                    if entity.id in taken:
                        raise AlreadyExists(f"{self.label} {entity.id} already exists")
                    taken.add(entity.id)
                    if entity.agent_type_id not in known_types:
                        raise IntegrityError(
                            f"{describe(entity)}: agent_type_id {entity.agent_type_id} does not exist"
                        )
                    if entity.execution_id is not None and entity.execution_id not in known_executions:
                        raise IntegrityError(
                            f"{describe(entity)}: execution_id {entity.execution_id} does not exist"
                        )
            if invalid is not None:
                raise invalid
            if stored:
                await conn.execute(insert(self.table), [rows.instance_row(s) for s in stored])
        return stored

    async def _added_in_one(self, stored: builtins.list[AgentInstance]) -> bool:
        """On PostgreSQL, where one statement fits, the checks and the insert of a few
        instances with distinct ids as one statement (:func:`.driver.add_instances_postgres`).
        Whether they were written: if not, nothing was, and the checked path says why (or
        adds them, if a race resolved it)."""
        values = instances_in_one_binds(self._store, stored)
        if values is None:
            return False
        statement = driver.add_instances_postgres(self._store.engine.dialect, len(stored))
        async with self._store.driver() as raw:
            found = await driver.fetch(raw, statement, values)
        return bool(found)

    async def update(self, instance: AgentInstance) -> AgentInstance:
        """One statement where one fits (:meth:`_update_in_one`; the agent type unchanged,
        so no reference needs checking), else (or refused) checked."""
        written = await self._update_in_one(instance, rows.instance_row, also=("agent_type_id",))
        if written is not None:
            return written
        async with self._store.connection() as conn:
            current = await self._stored(conn, instance.id)
            stored = for_update(current, instance)
            # Only a reference that changes needs checking: the stored row's are held by the
            # foreign keys, and execution_id cannot change (for_update refuses it).
            if stored.agent_type_id != current.agent_type_id:
                await self._require(conn, schema.agent_types, stored.agent_type_id, "agent_type_id", stored)
            await self._write_update(conn, stored, rows.instance_row(stored), current.revision)
            return stored

    async def delete(self, id: UUID) -> None:
        async with self._store.connection() as conn:
            entity = await self._stored(conn, id)
            m = schema.messages
            messages = await self._exists(conn, m, (m.c.sender_id == id) | (m.c.recipient_id == id))
            results = await self._exists(conn, schema.results, schema.results.c.agent_instance_id == id)
            if messages or results:
                raise IntegrityError(
                    f"{describe(entity)} is referenced by {messages} message(s) and {results} result(s)"
                )
            await conn.execute(delete(self.table).where(self.table.c.id == id))

    async def list(
        self,
        *,
        agent_type_id: int | None = None,
        execution_id: UUID | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> Page[AgentInstance]:
        flt = AgentInstanceFilter(agent_type_id=agent_type_id, execution_id=execution_id)
        # On the driver: every drive lists its execution's instances.
        return await self._keyset_page(flt.model_dump(exclude_none=True), limit, after)

    async def count(self, *, agent_type_id: int | None = None, execution_id: UUID | None = None) -> int:
        flt = AgentInstanceFilter(agent_type_id=agent_type_id, execution_id=execution_id)
        return await self._count(self._where(**flt.model_dump()))


class SqlExecutions(_UuidRepository[Execution]):
    table = schema.executions
    label = "execution"

    def _load(self, row: RowLike) -> Execution:
        return rows.execution_from(row)

    async def _check_refs(self, conn: AsyncConnection, entity: Execution) -> None:
        await self._require(conn, schema.topologies, entity.topology_id, "topology_id", entity)
        if entity.parent_id is not None:
            await self._require(conn, self.table, entity.parent_id, "parent_id", entity)

    async def _restore(self, conn: AsyncConnection, entity: Execution) -> None:
        stored = for_restore(entity)
        await self._check_refs(conn, stored)
        await conn.execute(insert(self.table).values(**rows.execution_row(stored)))

    async def _insert(self, conn: AsyncConnection, entity: Execution) -> Execution:
        stored = for_insert(entity)
        await self._check_new_id(conn, stored)
        await self._check_refs(conn, stored)
        if stored.parent_id is not None:
            parent = select(self.table.c.status).where(self.table.c.id == stored.parent_id)
            status = (await conn.execute(parent)).scalar_one()
            refuse_child_of_final(stored.parent_id, ExecutionStatus(status))
        await conn.execute(insert(self.table).values(**rows.execution_row(stored)))
        return stored

    async def update(self, execution: Execution) -> Execution:
        """One statement where one fits (:meth:`_update_in_one`), else (or refused) checked."""
        written = await self._update_in_one(execution, rows.execution_row)
        if written is not None:
            return written
        async with self._store.connection() as conn:
            current = await self._stored(conn, execution.id)
            stored = for_update(current, execution)
            await self._write_update(conn, stored, rows.execution_row(stored), current.revision)
            return stored

    async def _tree_size(self, conn: AsyncConnection, roots: builtins.list[UUID]) -> int:
        """How many executions deleting ``roots`` removes (children cascade)."""
        e = self.table
        tree = select(e.c.id).where(e.c.id.in_(roots)).cte("tree", recursive=True)
        tree = tree.union(select(e.c.id).join(tree, e.c.parent_id == tree.c.id))
        return int((await conn.execute(select(func.count()).select_from(tree))).scalar_one())

    async def delete(self, id: UUID) -> None:
        async with self._store.connection() as conn:
            await self._stored(conn, id)
            await conn.execute(delete(self.table).where(self.table.c.id == id))  # cascades

    def _conditions(self, flt: ExecutionFilter) -> builtins.list[ColumnElement[bool]]:
        c = self.table.c
        conditions = self._where(
            status=flt.status.value if flt.status else None,
            topology_id=flt.topology_id,
            correlation_id=flt.correlation_id,
            parent_id=flt.parent_id,
        )
        if flt.started_after is not None:
            conditions.append(c.started_at >= flt.started_after)
        if flt.started_before is not None:
            conditions.append(c.started_at < flt.started_before)
        return conditions

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
        values: dict[str, Any] = {k: v for k, v in flt.model_dump(exclude_none=True).items() if k != "status"}
        if flt.status is not None:
            values["status"] = flt.status.value
        return await self._keyset_page(values, limit, after)

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
        return await self._count(self._conditions(flt))

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
        c = self.table.c
        kept: builtins.list[UUID] = []  # final, but with a descendant still live
        deleted = 0
        while True:
            query = (
                select(c.id)
                .where(
                    c.status.in_(sorted(s.value for s in request.statuses)),
                    c.completed_at < request.older_than,
                    c.id.not_in(kept),
                )
                .order_by(c.completed_at)
                .limit(request.batch_size)
            )
            async with self._store.connection() as conn:
                found = builtins.list((await conn.execute(query)).scalars().all())
                live = await self._with_live_descendants(conn, found)
                kept.extend(live)
                batch = [i for i in found if i not in live]
                if batch:
                    deleted += await self._tree_size(conn, batch)
                    await conn.execute(delete(self.table).where(c.id.in_(batch)))
            if len(found) < request.batch_size:
                return deleted

    async def _with_live_descendants(self, conn: AsyncConnection, roots: builtins.list[UUID]) -> set[UUID]:
        """Those of ``roots`` that have a descendant (or are themselves) not final."""
        if not roots:
            return set()
        e = self.table
        tree = select(e.c.id.label("root"), e.c.id).where(e.c.id.in_(roots)).cte("tree", recursive=True)
        tree = tree.union_all(select(tree.c.root, e.c.id).join(tree, e.c.parent_id == tree.c.id))
        finals = sorted(s.value for s in FINAL_STATUSES)
        live = select(tree.c.root).join(e, e.c.id == tree.c.id).where(e.c.status.not_in(finals)).distinct()
        return set((await conn.execute(live)).scalars().all())


class SqlMessages:
    """Append-only; sequence numbers come from a counter on the execution's row, bumped in
    the same statement that checks the execution, so concurrent writers (tasks or processes)
    queue on that row and each batch gets a contiguous block."""

    table = schema.messages
    label = "message"

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def append(self, execution_id: UUID, messages: Sequence[MessageCreate]) -> builtins.list[Message]:
        execution_id = uuid_id(execution_id, "execution_id")
        with paused_gc(len(messages)):
            drafts = [MessageCreate.model_validate(m) for m in messages]
        if len(drafts) == 1 and self._store.one_statement_fits():
            appended = await self._append_one(execution_id, drafts[0])
            if appended is not None:
                return [appended]
            # Refused: the general path below says why (or appends, if a race resolved it).
        if not drafts:  # nothing to write, but the same refusals as a real append
            async with self._store.connection(read=True, alone=True) as conn:
                status = (
                    await conn.execute(
                        select(schema.executions.c.status).where(schema.executions.c.id == execution_id)
                    )
                ).scalar_one_or_none()
            if status is None:
                raise NotFound(f"execution {execution_id} does not exist")
            refuse_if_final(execution_id, ExecutionStatus(status), "messages")
            return []
        e = schema.executions
        async with self._store.connection() as conn:
            bumped = (
                await conn.execute(
                    update(e)
                    .where(e.c.id == execution_id)
                    .values(last_sequence_number=e.c.last_sequence_number + len(drafts))
                    .returning(e.c.last_sequence_number, e.c.status, e.c.completed_at, e.c.started_at)
                )
            ).first()
            if bumped is None:
                raise NotFound(f"execution {execution_id} does not exist")
            refuse_if_final(execution_id, ExecutionStatus(bumped.status), "messages")
            await self._check_participants(conn, execution_id, drafts)
            first = bumped.last_sequence_number - len(drafts) + 1
            with paused_gc(len(drafts)):
                out = build_messages(execution_id, drafts, first)
            await self._write(conn, out)
            return out

    async def _append_one(self, execution_id: UUID, draft: MessageCreate) -> Message | None:
        """One message outside a transaction (or in a ``whole`` one on PostgreSQL), the
        per-turn call: on PostgreSQL one statement (bump the counter if the execution is
        not final and the participants fit, insert, return the number); on SQLite
        ``BEGIN IMMEDIATE``, the checked bump, the insert and ``COMMIT`` on the driver
        connection. ``None`` when the checks refused it: nothing was written and no number
        was taken."""
        (message,) = build_messages(execution_id, [draft], 0)
        values = bulk.row_dict(message)
        dialect = self._store.engine.dialect
        if dialect.name == "postgresql":
            async with self._store.driver() as raw:
                found = await driver.fetch(raw, driver.append_one_postgres(dialect), values)
            if not found:
                return None
            number = found[0][0]
        else:
            bump, insert_one = driver.append_one_sqlite(dialect)
            async with self._store.sqlite_writer() as raw:
                await raw.execute("BEGIN IMMEDIATE")
                try:
                    bumped = await driver.fetch(raw, bump, values)
                    if not bumped:
                        await raw.execute("ROLLBACK")
                        return None
                    number = values["sequence_number"] = bumped[0][0]
                    await raw.execute(insert_one.sql, insert_one.params(values))
                    await raw.execute("COMMIT")
                except BaseException:
                    if raw.in_transaction:
                        await raw.execute("ROLLBACK")
                    raise
        message.__dict__["sequence_number"] = number
        return message

    async def _write(self, conn: AsyncConnection, out: builtins.list[Message]) -> None:
        """Batch insert: COPY on PostgreSQL for large batches, the driver's executemany
        otherwise, with every value converted by the column types' own bind processors (so
        rows are stored exactly as a Core insert would store them)."""
        dialect = conn.dialect
        if dialect.name == "postgresql" and len(out) >= bulk.COPY_MIN_ROWS:
            with paused_gc():
                records = bulk.copy_records(out)
            raw = await conn.get_raw_connection()
            await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
                self.table.name, records=records, columns=bulk.COLUMNS, schema_name=self._store.schema
            )
        elif dialect.name == "sqlite":
            with paused_gc():
                rows = bulk.driver_rows(dialect, out)
            await conn.exec_driver_sql(bulk.insert_sql(dialect), rows)
        else:
            await conn.execute(insert(self.table), [bulk.row_dict(m) for m in out])

    async def restore_many(self, messages: Sequence[Message]) -> int:
        by_execution: dict[UUID, builtins.list[Message]] = {}
        for message in messages:
            by_execution.setdefault(message.execution_id, []).append(message)
        e = schema.executions
        written = 0
        async with self._store.connection() as conn:
            for execution_id, group in by_execution.items():
                row = (
                    await conn.execute(
                        select(e.c.last_sequence_number).where(e.c.id == execution_id).with_for_update()
                    )
                ).first()
                if row is None:
                    raise IntegrityError(f"message execution_id {execution_id} does not exist")
                fresh = messages_to_restore(execution_id, int(row.last_sequence_number), group)
                if not fresh:
                    continue
                await self._check_participants(conn, execution_id, fresh)
                await self._refuse_taken_ids(conn, fresh)
                await self._write(conn, fresh)
                await conn.execute(
                    update(e)
                    .where(e.c.id == execution_id)
                    .values(last_sequence_number=fresh[-1].sequence_number)
                )
                written += len(fresh)
        return written

    async def _refuse_taken_ids(self, conn: AsyncConnection, fresh: builtins.list[Message]) -> None:
        """An id stored in any execution is ``AlreadyExists`` naming it, as on every backend
        (the primary key would refuse it too, without saying which)."""
        taken: builtins.list[UUID] = []
        for start in range(0, len(fresh), 500):
            ids = [m.id for m in fresh[start : start + 500]]
            found = await conn.execute(select(self.table.c.id).where(self.table.c.id.in_(ids)))
            taken.extend(found.scalars())
        refuse_taken_message_ids(fresh, taken)

    async def _check_participants(
        self, conn: AsyncConnection, execution_id: UUID, drafts: Sequence[MessageCreate | Message]
    ) -> None:
        wanted = {d.sender_id for d in drafts} | {
            d.recipient_id for d in drafts if d.recipient_id is not None
        }
        i = schema.agent_instances
        bound = dict((await conn.execute(select(i.c.id, i.c.execution_id).where(i.c.id.in_(wanted)))).all())
        for draft in drafts:
            for role, instance_id in (("sender_id", draft.sender_id), ("recipient_id", draft.recipient_id)):
                if instance_id is None:
                    continue
                if instance_id not in bound:
                    raise IntegrityError(f"message {role} {instance_id} is not an agent instance")
                check_instance_binding(instance_id, bound[instance_id], execution_id, f"message {role}")

    async def find(self, id: UUID) -> Message | None:
        id = uuid_id(id)
        dialect = self._store.engine.dialect
        async with self._store.driver() as raw:
            found = await driver.fetch(raw, driver.by_id(self.table, dialect), {"id": id})
        return self._decoded(found, dialect)[0] if found else None

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
        checked = message_query(execution_id, limit, after, round_number, sender_id)
        flt = checked.filter
        given = (("round_number", flt.round_number), ("sender_id", flt.sender_id))
        values: dict[str, Any] = {name: value for name, value in given if value is not None}
        dialect = self._store.engine.dialect
        statement = driver.messages_page(dialect, tuple(sorted(values)))
        values.update(execution_id=checked.execution_id, after=checked.start, limit=checked.limit + 1)
        async with self._store.driver() as raw:
            found = await driver.fetch(raw, statement, values)
        items = self._decoded(found[: checked.limit], dialect)
        return Page(items, str(items[-1].sequence_number) if len(found) > checked.limit else None)

    async def last(self, execution_id: UUID, n: int) -> builtins.list[Message]:
        execution_id = uuid_id(execution_id, "execution_id")
        check_limit(n, "n")
        dialect = self._store.engine.dialect
        async with self._store.driver() as raw:
            found = await driver.fetch(
                raw, driver.newest_messages(dialect), {"execution_id": execution_id, "n": n}
            )
        found.reverse()
        return self._decoded(found, dialect)

    def _decoded(self, found: builtins.list[Sequence[Any]], dialect: Any) -> builtins.list[Message]:
        """Driver rows of ``SELECT qmcp_messages.*`` as messages: on SQLite the whole page
        in one pydantic-core call (:mod:`.pages`), else (or if that cannot vouch for the
        page) row by row."""
        if dialect.name == "sqlite":
            page = pages.messages(found)
            if page is not None:
                return page
        decode = driver.decoder(self.table, dialect)
        return [rows.message_from(decode(row)) for row in found]

    async def count(self, execution_id: UUID | None = None) -> int:
        optional_uuid(execution_id, "execution_id")
        where = (
            literal_column("1") == 1 if execution_id is None else self.table.c.execution_id == execution_id
        )
        async with self._store.connection(read=True, alone=True) as conn:
            return await _count(conn, self.table, where)


async def _advance_sequence(conn: AsyncConnection, table: Table) -> None:
    """After ids were written as given, move PostgreSQL's id sequence past them (SQLite's
    AUTOINCREMENT keeps track by itself)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                f"(SELECT GREATEST(COALESCE(MAX(id), 0), 1) FROM {table.name}), "
                f"(SELECT COUNT(*) > 0 FROM {table.name}))"
            )
        )


async def _count(conn: AsyncConnection, table: Table, where: ColumnElement[bool]) -> int:
    return int((await conn.execute(select(func.count()).select_from(table).where(where))).scalar_one())


class SqlResults(_UuidRepository[Result]):
    table = schema.results
    label = "result"

    def _load(self, row: RowLike) -> Result:
        return rows.result_from(row)

    async def _check_refs(self, conn: AsyncConnection, entity: Result, restoring: bool = False) -> None:
        execution = await self._require(
            conn, schema.executions, entity.execution_id, "execution_id", entity, lock=True
        )
        instance = await self._require(
            conn, schema.agent_instances, entity.agent_instance_id, "agent_instance_id", entity
        )
        check_instance_binding(
            instance["id"], instance["execution_id"], entity.execution_id, "agent_instance_id"
        )
        if not restoring:
            refuse_if_final(entity.execution_id, ExecutionStatus(execution["status"]), "results")

    async def _restore(self, conn: AsyncConnection, entity: Result) -> None:
        stored = for_restore(entity)
        await self._check_refs(conn, stored, restoring=True)
        await conn.execute(insert(self.table).values(**rows.result_row(stored)))

    async def _insert(self, conn: AsyncConnection, entity: Result) -> Result:
        stored = for_insert(entity)
        await self._check_new_id(conn, stored)
        await self._check_refs(conn, stored)
        await conn.execute(insert(self.table).values(**rows.result_row(stored)))
        return stored

    async def add(self, entity: Result) -> Result:
        """On PostgreSQL, outside a transaction or in a ``whole`` one, the checks and the
        insert are one statement (:func:`.driver.add_result_postgres`); refused, nothing
        was written, and the checked path below says why (or adds, if a race resolved it)."""
        if self._store.dialect == "postgresql" and self._store.one_statement_fits():
            stored = for_insert(entity)
            dialect = self._store.engine.dialect
            async with self._store.driver() as raw:
                found = await driver.fetch(raw, driver.add_result_postgres(dialect), rows.result_row(stored))
            if found:
                return stored
        async with self._store.connection() as conn:
            return await self._insert(conn, entity)

    async def update(self, result: Result) -> Result:
        async with self._store.connection() as conn:
            current = await self._stored(conn, result.id)
            stored = for_update(current, result)
            await self._check_refs(conn, stored)
            await self._write_update(conn, stored, rows.result_row(stored), current.revision)
            return stored

    async def delete(self, id: UUID) -> None:
        async with self._store.connection() as conn:
            await self._stored(conn, id)
            await conn.execute(delete(self.table).where(self.table.c.id == id))

    async def list(
        self,
        *,
        execution_id: UUID | None = None,
        agent_instance_id: UUID | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> Page[Result]:
        flt = ResultFilter(execution_id=execution_id, agent_instance_id=agent_instance_id)
        return await self._page(self._where(**flt.model_dump()), limit, after)

    async def count(self, *, execution_id: UUID | None = None, agent_instance_id: UUID | None = None) -> int:
        flt = ResultFilter(execution_id=execution_id, agent_instance_id=agent_instance_id)
        return await self._count(self._where(**flt.model_dump()))


# A cancelled call never leaves a connection inside a transaction (docs/decisions.md).
wrap_verbs(settled, SqlAgentTypes, SqlTopologies, SqlAgentInstances, SqlExecutions, SqlMessages, SqlResults)


# One rule for entity arguments on every backend (domain/arguments.py).
for _repository, _model, _field in (
    (SqlAgentTypes, AgentType, "agent_type"),
    (SqlTopologies, Topology, "topology"),
    (SqlAgentInstances, AgentInstance, "agent_instance"),
    (SqlExecutions, Execution, "execution"),
    (SqlResults, Result, "result"),
):
    check_entity_arguments(_repository, _model, _field)
check_message_arguments(SqlMessages)

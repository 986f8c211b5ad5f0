"""The work queue and leases on SQL (issue 16).

A claim is one ``UPDATE ... WHERE execution_id IN (SELECT ... LIMIT n) RETURNING``: on
PostgreSQL the inner select locks the rows it picks ``FOR UPDATE SKIP LOCKED``, so
concurrent claimers (in any process or machine) skip each other's picks instead of queueing
on them, and a row whose lease another claimer renewed meanwhile is re-checked and dropped.
On SQLite the statement runs in a ``BEGIN IMMEDIATE`` transaction: one writer at a time
on the file, so a claim is atomic by construction (one machine, several processes).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy import Integer, and_, bindparam, delete, insert, literal_column, or_, select, update

from qmcp_agents.domain.clock import utc_now
from qmcp_agents.domain.enums import FINAL_STATUSES
from qmcp_agents.domain.errors import NotFound
from qmcp_agents.domain.leases import Lease, LeaseLost, lease_span

from . import driver, schema

if TYPE_CHECKING:
    from .store import SqlStore

SCHEMA_VERSION = 1
_FINAL = sorted(s.value for s in FINAL_STATUSES)


def _lease(row: Mapping[Any, Any]) -> Lease:
    return Lease(
        execution_id=row["execution_id"],
        owner=row["owner"],
        ready=bool(row["ready"]),
        attempts=row["attempts"],
        claimed_at=row["claimed_at"],
        heartbeat_at=row["heartbeat_at"],
        expires_at=row["expires_at"],
    )


def _held(execution_id: UUID, owner: str | None, attempt: int | None) -> Any:
    """The entry held by ``owner`` (``None``: by nobody), by claim ``attempt`` if given."""
    t = schema.leases
    where = [t.c.execution_id == execution_id, t.c.owner.is_(None) if owner is None else t.c.owner == owner]
    if attempt is not None:
        where.append(t.c.attempts == attempt)
    return and_(*where)


def held_entry(with_owner: bool, with_attempt: bool, execution_key: str = "execution_id") -> list[Any]:
    """The conditions on the entry of ``:<execution_key>`` held by ``:held_by`` (else by
    nobody) by claim ``:claim`` (if given), with bind parameters: for statements compiled
    once (here, and :mod:`.record`'s fence)."""
    t = schema.leases
    where = [
        t.c.execution_id == bindparam(execution_key, type_=t.c.execution_id.type),
        t.c.owner == bindparam("held_by", type_=t.c.owner.type) if with_owner else t.c.owner.is_(None),
    ]
    if with_attempt:
        where.append(t.c.attempts == bindparam("claim", type_=t.c.attempts.type))
    return where


@cache
def _fenced_write(dialect: Any, kind: str, with_owner: bool, with_attempt: bool) -> driver.Statement:
    """``hold``'s no-op update, or ``release``'s delete or requeue, of the entry held by
    ``:held_by`` (else by nobody) by claim ``:claim`` (if given), compiled once: the row back
    says it was there. Sent to the driver directly (PostgreSQL)."""
    t = schema.leases
    where = held_entry(with_owner, with_attempt)
    statement: Any
    if kind == "hold":  # takes the row's lock until the transaction ends
        statement = update(t).where(*where).values(owner=t.c.owner)
    elif kind == "requeue":
        statement = (
            update(t)
            .where(*where)
            .values(owner=None, ready=True, claimed_at=None, heartbeat_at=None, expires_at=None)
        )
    else:
        statement = delete(t).where(*where)
    return driver.compile_statement(statement.returning(t.c.execution_id), dialect)


@cache
def _claim_statements(with_for_update: bool) -> tuple[Any, Any]:
    """The claim of up to ``:limit`` claimable entries by ``:owner`` at ``:now`` (their
    leases until ``:expires_at``), rows back; and the clean-up of claimable entries whose
    execution ended anyway (cancelled meanwhile, or handed back as it was cancelled), which
    nobody would ever claim. Each stands alone (on PostgreSQL, no transaction around
    them): the claim is one statement, and the clean-up commits on its own."""
    t, e = schema.leases, schema.executions
    now = bindparam("now", type_=t.c.claimed_at.type)
    claimable = or_(and_(t.c.owner.is_(None), t.c.ready), t.c.expires_at <= now)
    picked = (
        select(t.c.execution_id)
        .join(e, e.c.id == t.c.execution_id)
        .where(claimable, *(e.c.status != literal_column(f"'{status}'") for status in _FINAL))
        .order_by(t.c.execution_id)
        .limit(bindparam("limit", type_=Integer()))
    )
    if with_for_update:
        picked = picked.with_for_update(skip_locked=True, of=t)
    claim = (
        update(t)
        .where(t.c.execution_id.in_(picked.scalar_subquery()))
        .values(
            owner=bindparam("owner", type_=t.c.owner.type),
            ready=False,
            attempts=t.c.attempts + 1,
            claimed_at=now,
            heartbeat_at=now,
            expires_at=bindparam("expires_at", type_=t.c.expires_at.type),
        )
        .returning(*t.c)
    )
    stale = delete(t).where(
        claimable,
        t.c.execution_id.in_(
            select(e.c.id).where(
                e.c.id == t.c.execution_id, or_(*(e.c.status == literal_column(f"'{s}'") for s in _FINAL))
            )
        ),
    )
    return claim, stale


@cache
def _claim_postgres(dialect: Any) -> tuple[driver.Statement, driver.Statement]:
    """:func:`_claim_statements` compiled once, its picks locked ``FOR UPDATE SKIP LOCKED``."""
    claim, stale = _claim_statements(with_for_update=True)
    return driver.compile_statement(claim, dialect), driver.compile_statement(stale, dialect)


class SqlLeases:
    table = schema.leases

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def enqueue(self, execution_id: UUID, *, attempts: int = 0) -> None:
        t = self.table
        async with self._store.connection() as conn:
            found = await conn.execute(
                select(schema.executions.c.id).where(schema.executions.c.id == execution_id)
            )
            if found.first() is None:
                raise NotFound(f"execution {execution_id} not found")
            made_ready = await conn.execute(
                update(t).where(t.c.execution_id == execution_id).values(ready=True)
            )
            if made_ready.rowcount == 0:
                await conn.execute(
                    insert(t).values(
                        execution_id=execution_id,
                        owner=None,
                        ready=True,
                        attempts=attempts,
                        schema_version=SCHEMA_VERSION,
                    )
                )

    async def claim(self, owner: str, *, limit: int, lease_seconds: float) -> builtins.list[Lease]:
        span = lease_span(lease_seconds)
        if limit <= 0:
            return []
        now = utc_now()
        values = {"owner": owner, "now": now, "expires_at": now + span, "limit": limit}
        if self._store.dialect == "postgresql":
            # Compiled once and sent to the driver (a worker claims about once per run).
            claim, stale = _claim_postgres(self._store.engine.dialect)
            decode = driver.decoder(self.table, self._store.engine.dialect)
            async with self._store.driver() as raw:
                found = [decode(row) for row in await driver.fetch(raw, claim, values)]
                if len(found) < limit:
                    await driver.fetch(raw, stale, values)
        else:
            claim_sql, stale_sql = _claim_statements(with_for_update=False)
            # One BEGIN IMMEDIATE transaction on SQLite: one writer at a time on the file.
            async with self._store.connection(alone=True) as conn:
                found = [dict(r._mapping) for r in (await conn.execute(claim_sql, values)).all()]
                if len(found) < limit:
                    await conn.execute(stale_sql, values)
        return sorted((_lease(r) for r in found), key=lambda lease: lease.execution_id)

    async def heartbeat(
        self, owner: str, execution_ids: Sequence[UUID], *, lease_seconds: float
    ) -> set[UUID]:
        span = lease_span(lease_seconds)
        if not execution_ids:
            return set()
        t, e = self.table, schema.executions
        now = utc_now()
        ids = sorted(set(execution_ids))  # one lock order for every writer of these rows
        async with self._store.connection(alone=True) as conn:  # renew, then read: each alone
            renewed = await conn.execute(
                update(t)
                .where(t.c.execution_id.in_(ids), t.c.owner == owner)
                .values(heartbeat_at=now, expires_at=now + span)
                .returning(t.c.execution_id)
            )
            mine = [r.execution_id for r in renewed]
            if not mine:
                return set()
            live = await conn.execute(select(e.c.id).where(e.c.id.in_(mine), e.c.status.not_in(_FINAL)))
            return {r.id for r in live}

    async def _fenced(
        self, kind: str, execution_id: UUID, owner: str | None, attempt: int | None
    ) -> bool | None:
        """PostgreSQL: ``hold``/``release`` as one statement on the driver's connection (the
        open transaction's, or alone in autocommit); None elsewhere (SQLite)."""
        if self._store.dialect != "postgresql":
            return None
        dialect = self._store.engine.dialect
        statement = _fenced_write(dialect, kind, owner is not None, attempt is not None)
        values = {"execution_id": execution_id, "held_by": owner, "claim": attempt}
        async with self._store.driver() as raw:
            return bool(await driver.fetch(raw, statement, values))

    async def hold(self, execution_id: UUID, owner: str, *, attempt: int | None = None) -> None:
        t = self.table
        held_now = await self._fenced("hold", execution_id, owner, attempt)
        if held_now is not None:
            if not held_now:
                raise LeaseLost(f"worker {owner!r} no longer holds execution {execution_id}")
            return
        async with self._store.connection() as conn:
            # A no-op write: it takes the row's lock (PostgreSQL) until the transaction ends.
            held = await conn.execute(
                update(t).where(_held(execution_id, owner, attempt)).values(owner=owner)
            )
            if held.rowcount == 0:
                raise LeaseLost(f"worker {owner!r} no longer holds execution {execution_id}")

    async def release(
        self, execution_id: UUID, owner: str | None, *, requeue: bool = False, attempt: int | None = None
    ) -> bool:
        released = await self._fenced("requeue" if requeue else "delete", execution_id, owner, attempt)
        if released is not None:
            return released
        t = self.table
        where = _held(execution_id, owner, attempt)
        statement: Any = (
            update(t)
            .where(where)
            .values(owner=None, ready=True, claimed_at=None, heartbeat_at=None, expires_at=None)
            if requeue
            else delete(t).where(where)
        )
        async with self._store.connection(alone=True) as conn:  # one statement
            return bool((await conn.execute(statement)).rowcount)

    async def find(self, execution_id: UUID) -> Lease | None:
        t = self.table
        async with self._store.connection(read=True, alone=True) as conn:
            row = (await conn.execute(select(t).where(t.c.execution_id == execution_id))).first()
        return None if row is None else _lease(row._mapping)

    async def list(self, *, owner: str | None = None) -> builtins.list[Lease]:
        t = self.table
        query = select(t).order_by(t.c.execution_id)
        if owner is not None:
            query = query.where(t.c.owner == owner)
        async with self._store.connection(read=True, alone=True) as conn:
            return [_lease(r._mapping) for r in (await conn.execute(query)).all()]


__all__ = ["SqlLeases"]

"""Driver-level statements for the per-turn calls: one round trip (PostgreSQL) or one
thread hop (SQLite) each, no SQLAlchemy execution machinery in between.

The SQL text is compiled by SQLAlchemy once per dialect from Core statements, parameters
are converted by the column types' own bind processors and rows by their own result
processors, so what is written and read is exactly what a Core ``execute`` would write
and read: only the per-call machinery (statement cache lookup, execution context, result
wrapping, greenlet switches) is skipped. Rows are then validated into domain models as
everywhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import aiosqlite
from sqlalchemy import (
    ClauseElement,
    Dialect,
    Integer,
    Table,
    and_,
    bindparam,
    cast,
    exc,
    exists,
    insert,
    literal_column,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeEngine

from qmcp_agents.domain import FINAL_STATUSES
from qmcp_agents.domain.upcasting import CURRENT_SCHEMA_VERSION

from . import schema
from .rows import Row

_FINAL = sorted(s.value for s in FINAL_STATUSES)


@dataclass(frozen=True)
class Statement:
    """Compiled SQL text and, in order, the converter of each positional parameter."""

    sql: str
    names: tuple[str, ...]
    converters: tuple[Callable[[Any], Any], ...]
    defaults: dict[str, Any]
    """Values of the binds SQLAlchemy made itself (``+ 1``, ``OFFSET 0``)."""

    def params(self, values: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(
            convert(values[name] if name in values else self.defaults[name])
            for name, convert in zip(self.names, self.converters, strict=True)
        )


def _identity(value: Any) -> Any:
    return value


def _bind(kind: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any]:
    process = kind.dialect_impl(dialect).bind_processor(dialect)
    return process if process is not None else _identity


def compile_statement(statement: ClauseElement, dialect: Dialect) -> Statement:
    compiled = statement.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)
    names = tuple(compiled.positiontup or ())
    converters = tuple(_bind(compiled.binds[name].type, dialect) for name in names)
    defaults = {name: compiled.binds[name].value for name in names}
    return Statement(str(compiled), names, converters, defaults)


@dataclass(frozen=True)
class Decoder:
    """Turns a driver row (a tuple, or asyncpg's Record) of ``SELECT table.*`` into a dict."""

    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]

    def __call__(self, row: Sequence[Any]) -> Row:
        return {
            name: value if process is None or value is None else process(value)
            for name, process, value in zip(self.names, self.processors, row, strict=True)
        }


@cache
def decoder(table: Table, dialect: Dialect) -> Decoder:
    names = tuple(c.name for c in table.columns)
    return Decoder(names, tuple(_result(c.type, dialect) for c in table.columns))


def _result(kind: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    try:
        return kind.dialect_impl(dialect).result_processor(dialect, None)
    except (TypeError, exc.InvalidRequestError):
        # asyncpg's numeric types want the driver's type code; its floats come back as
        # Python floats already, which is what the column type would return.
        return None


@cache
def by_id(table: Table, dialect: Dialect) -> Statement:
    return compile_statement(
        select(table).where(table.c.id == bindparam("id", type_=table.c.id.type)), dialect
    )


@cache
def topology_by(dialect: Dialect, key: str) -> Statement:
    """A topology (by ``id`` or ``name``: the bind ``key``) with its memberships, in one
    statement: a row per membership in their order (``position``, then ``id``), the
    topology's columns then the membership's; one row with null membership columns for a
    topology without any."""
    t, m = schema.topologies, schema.memberships
    query = (
        select(t, m)
        .select_from(t.outerjoin(m, m.c.topology_id == t.c.id))
        .where(t.c[key] == bindparam("key", type_=t.c[key].type))
        .order_by(m.c.position, m.c.id)
    )
    return compile_statement(query, dialect)


@cache
def topology_with_agent_types(dialect: Dialect) -> Statement:
    """:func:`topology_by` ``id``, each membership row followed by its agent type's columns
    (a drive reads the topology and then every member's agent type: one statement, not
    one per member)."""
    t, m, a = schema.topologies, schema.memberships, schema.agent_types
    query = (
        select(t, m, a)
        .select_from(t.outerjoin(m, m.c.topology_id == t.c.id).outerjoin(a, a.c.id == m.c.agent_type_id))
        .where(t.c.id == bindparam("key", type_=t.c.id.type))
        .order_by(m.c.position, m.c.id)
    )
    return compile_statement(query, dialect)


@cache
def newest_messages(dialect: Dialect) -> Statement:
    m = schema.messages
    query = (
        select(m)
        .where(m.c.execution_id == bindparam("execution_id", type_=m.c.execution_id.type))
        .order_by(m.c.sequence_number.desc())
        .limit(bindparam("n", type_=Integer()))
    )
    return compile_statement(query, dialect)


def _participants_ok() -> Any:
    """The sender (and recipient, if any) exist and are unbound or bound to this execution."""
    i = schema.agent_instances

    def fits(key: str, optional: bool) -> Any:
        instance = bindparam(key, type_=i.c.id.type)
        found = exists().where(
            i.c.id == instance,
            or_(i.c.execution_id.is_(None), i.c.execution_id == bindparam("execution_id", type_=i.c.id.type)),
        )
        return or_(instance.is_(None), found) if optional else found

    return and_(fits("sender_id", False), fits("recipient_id", True))


def _bump(checked: bool) -> Any:
    e = schema.executions
    conditions = [
        e.c.id == bindparam("execution_id", type_=e.c.id.type),
        *(e.c.status != literal_column(f"'{status}'") for status in _FINAL),
    ]
    if checked:
        conditions.append(_participants_ok())
    return (
        update(e)
        .where(*conditions)
        .values(last_sequence_number=e.c.last_sequence_number + 1)
        .returning(e.c.last_sequence_number)
    )


_MESSAGE_VALUES = (
    "id",
    "execution_id",
    "sender_id",
    "recipient_id",
    "message_type",
    "content",
    "round_number",
    "created_at",
    "revision",
    "schema_version",
)


def _message_binds() -> dict[str, Any]:
    m = schema.messages
    return {name: bindparam(name, type_=m.c[name].type) for name in _MESSAGE_VALUES}


@cache
def append_one_sqlite(dialect: Dialect) -> tuple[Statement, Statement]:
    """SQLite has no data-modifying CTEs: a checked bump, then the insert, in one transaction
    that the caller runs under ``BEGIN IMMEDIATE`` (so nothing can come in between)."""
    m = schema.messages
    values = _message_binds()
    values["sequence_number"] = bindparam("sequence_number", type_=Integer())
    return compile_statement(_bump(checked=True), dialect), compile_statement(
        insert(m).values(**values), dialect
    )


@cache
def append_one_postgres(dialect: Dialect) -> Statement:
    """One statement: bump the counter only if the execution is not final and the
    participants fit, and insert the message numbered by the bump. No row back means
    nothing changed (the caller then finds out why on the general path)."""
    m = schema.messages
    bumped = _bump(checked=True).cte("bumped")
    values = _message_binds()
    columns = [*values, "sequence_number"]
    source = select(*values.values(), bumped.c.last_sequence_number)
    statement = insert(m).from_select(columns, source).returning(m.c.sequence_number)
    return compile_statement(statement, dialect)


_RESULT_VALUES = (
    "id",
    "execution_id",
    "agent_instance_id",
    "output",
    "confidence",
    "reasoning",
    "token_usage",
    "started_at",
    "completed_at",
    "revision",
    "schema_version",
)


@cache
def add_result_postgres(dialect: Dialect) -> Statement:
    """One statement: insert the result only if its id is free, the execution is there and
    not final (its row locked first, as the checked path locks it, so a concurrent delete
    of the execution is waited for in the same order) and the instance is there and
    unbound or bound to it. No row back means nothing was written (the caller
    then finds out why on the checked path)."""
    r, e, i = schema.results, schema.executions, schema.agent_instances
    values = {name: bindparam(name, type_=r.c[name].type) for name in _RESULT_VALUES}
    execution = (
        select(e.c.status)
        .where(e.c.id == values["execution_id"])
        .with_for_update(key_share=True)
        .cte("execution")
    )
    instance_fits = exists().where(
        i.c.id == values["agent_instance_id"],
        or_(i.c.execution_id.is_(None), i.c.execution_id == values["execution_id"]),
    )
    source = select(*values.values()).where(
        *(execution.c.status != literal_column(f"'{status}'") for status in _FINAL),
        ~exists().where(r.c.id == values["id"]),
        instance_fits,
    )
    source = source.select_from(execution)
    statement = insert(r).from_select(list(values), source).returning(r.c.id)
    return compile_statement(statement, dialect)


@cache
def checked_update(
    table: Table,
    dialect: Dialect,
    columns: tuple[str, ...],
    equal: tuple[str, ...],
    null: tuple[str, ...],
    statuses: tuple[str, ...] | None,
    not_after: bool,
) -> Statement:
    """``for_update`` as one statement (``domain.integrity.for_update_matching``): write
    ``columns`` (binds named after them) to the row ``where_id`` only if it holds revision
    ``where_revision``, was written by this release (an older one's row is upcast on the
    checked path), has each ``equal`` column equal to ``where_<column>``, each ``null``
    column null, its status in ``statuses`` and ``updated_at`` at most ``where_updated_at``
    (``not_after``). No row back means nothing was written: the caller then finds out why
    on the checked path."""
    t = table
    conditions = checked_conditions(table, equal, null, statuses, not_after)
    values = {name: bindparam(name, type_=t.c[name].type) for name in columns}
    return compile_statement(update(t).where(*conditions).values(**values).returning(t.c.id), dialect)


def checked_conditions(
    table: Table,
    equal: tuple[str, ...],
    null: tuple[str, ...],
    statuses: tuple[str, ...] | None,
    not_after: bool,
) -> list[Any]:
    """The conditions of :func:`checked_update` (binds as it names them), for statements
    that check a row the same way (:mod:`.fenced`)."""
    t = table
    conditions: list[Any] = [
        t.c.id == bindparam("where_id", type_=t.c.id.type),
        t.c.revision == bindparam("where_revision", type_=Integer()),
        t.c.schema_version == literal_column(str(CURRENT_SCHEMA_VERSION)),
        *(t.c[name] == bindparam(f"where_{name}", type_=t.c[name].type) for name in equal),
        *(t.c[name].is_(None) for name in null),
    ]
    if statuses is not None:
        conditions.append(or_(*(t.c.status == literal_column(f"'{status}'") for status in statuses)))
    if not_after:
        conditions.append(t.c.updated_at <= bindparam("where_updated_at", type_=t.c.updated_at.type))
    return conditions


INSTANCES_IN_ONE = 16
"""The most agent instances :func:`add_instances_postgres` takes (a statement per count)."""


@cache
def add_instances_postgres(dialect: Dialect, count: int) -> Statement:
    """``count`` agent instances (binds ``<column>_<k>``) inserted in one statement, only
    if none of their ids is taken, every agent type is there and every execution named is
    there: all or none of them. No rows back means nothing was written (the caller then
    finds out why on the checked path). The checks take no locks, as the checked path's
    queries take none: the insert's foreign keys lock what they reference, as there."""
    i = schema.agent_instances
    return compile_statement(instances_insert(count).returning(i.c.id), dialect)


def instances_insert(count: int, *also: Any) -> Any:
    """The insert of :func:`add_instances_postgres`, its checks and ``also`` conditions."""
    i, t, e = schema.agent_instances, schema.agent_types, schema.executions
    columns = [c.name for c in i.columns]

    def bound(name: str, k: int) -> Any:
        return bindparam(f"{name}_{k}", type_=i.c[name].type)

    rows = union_all(
        *(
            select(*(cast(bound(name, k), i.c[name].type).label(name) for name in columns))
            for k in range(count)
        )
    ).subquery("fresh")
    checks = [~exists().where(i.c.id.in_([bound("id", k) for k in range(count)])), *also]
    for k in range(count):
        checks.append(exists().where(t.c.id == bound("agent_type_id", k)))
        execution = bound("execution_id", k)
        checks.append(or_(execution.is_(None), exists().where(e.c.id == execution)))
    source = select(*(rows.c[name] for name in columns)).where(*checks)
    return insert(i).from_select(columns, source)


__all__ = [
    "INSTANCES_IN_ONE",
    "Decoder",
    "add_instances_postgres",
    "add_result_postgres",
    "Statement",
    "append_one_postgres",
    "append_one_sqlite",
    "by_id",
    "checked_update",
    "compile_statement",
    "decoder",
    "fetch",
    "instances_insert",
    "keyset_page",
    "messages_page",
    "newest_messages",
    "topology_by",
]


async def fetch(raw: Any, statement: Statement, values: dict[str, Any]) -> list[Sequence[Any]]:
    """Rows of one statement, in one round trip (asyncpg) or one thread hop (aiosqlite)."""
    params = statement.params(values)
    if isinstance(raw, aiosqlite.Connection):
        return list(await raw.execute_fetchall(statement.sql, params))
    return list(await raw.fetch(statement.sql, *params))


_RANGES = {"started_after": ">=", "started_before": "<"}


@cache
def keyset_page(table: Table, dialect: Dialect, filters: tuple[str, ...], after: bool) -> Statement:
    """A keyset page of ``table`` (ordered by ``id``) for one combination of filters: each a
    column's value, or an execution's ``started_after``/``started_before`` range."""
    conditions = []
    for name in filters:
        if name in _RANGES:
            bound = bindparam(name, type_=table.c.started_at.type)
            conditions.append(
                table.c.started_at >= bound if _RANGES[name] == ">=" else table.c.started_at < bound
            )
        else:
            conditions.append(table.c[name] == bindparam(name, type_=table.c[name].type))
    if after:
        conditions.append(table.c.id > bindparam("after", type_=table.c.id.type))
    query = select(table).where(*conditions).order_by(table.c.id).limit(bindparam("limit", type_=Integer()))
    return compile_statement(query, dialect)


@cache
def messages_page(dialect: Dialect, filters: tuple[str, ...]) -> Statement:
    """A keyset page of an execution's messages, oldest first, for one combination of
    filters (``round_number``, ``sender_id``: each an index prefix)."""
    m = schema.messages
    conditions = [
        m.c.execution_id == bindparam("execution_id", type_=m.c.execution_id.type),
        m.c.sequence_number > bindparam("after", type_=Integer()),
        *(m.c[name] == bindparam(name, type_=m.c[name].type) for name in filters),
    ]
    query = (
        select(m).where(*conditions).order_by(m.c.sequence_number).limit(bindparam("limit", type_=Integer()))
    )
    return compile_statement(query, dialect)

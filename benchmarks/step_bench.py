"""Per-step latency: the calls an agent run makes every turn, against a hand-written
SQLAlchemy Core baseline doing the same work, measured side by side in the same run.

The baseline is what a careful developer would write by hand with SQLAlchemy Core on the
same tables: its own engine (no pre-ping), the same SQLite pragmas (WAL, synchronous
NORMAL, foreign keys, busy timeout), statements built once, and it returns the same
validated domain objects the store returns (``Message``/``Execution`` built with
``model_validate``). Its append bumps the execution's counter with ``UPDATE ... RETURNING``,
refuses a final execution and inserts the row in one transaction (the foreign keys check
the sender); it does not check that the sender is bound to the execution, which the store
does on top.

Each figure is the median of ``calls`` single calls, store and baseline alternating in
blocks so that a burst of load on the shared machine lands on both.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Integer, bindparam, event, insert, select, update
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from qmcp_agents.adapters.memory import MemoryStore
from qmcp_agents.adapters.sql import SqlStore
from qmcp_agents.adapters.sql.schema import executions, messages
from qmcp_agents.domain import (
    FINAL_STATUSES,
    Execution,
    InvalidTransition,
    Message,
    MessageCreate,
    MessageType,
)
from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.upcasting import CURRENT_SCHEMA_VERSION
from qmcp_agents.testing.builders import World

from .sql_bench import Figure, fill_messages, fresh, payload

HISTORY = 2_000
"""Messages stored in the execution read by "newest 50"."""
LISTED = 200
"""Executions stored for the list-page figure."""

_FINAL = sorted(s.value for s in FINAL_STATUSES)
_INTERNAL = ("schema_version", "last_sequence_number")


def baseline_engine(store: SqlStore) -> AsyncEngine:
    """A plain engine on the store's database, with the store's SQLite pragmas."""
    url: URL = store.url
    if store.dialect == "sqlite":
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA busy_timeout = 30000")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.close()

        return engine
    settings = {"search_path": store.schema} if store.schema else {}
    return create_async_engine(url, connect_args={"server_settings": settings})


class CoreBaseline:
    """The hand-written Core implementation of the four calls."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        e, m = executions, messages
        self.bump = (
            update(e)
            .where(e.c.id == bindparam("eid"))
            .values(last_sequence_number=e.c.last_sequence_number + 1)
            .returning(e.c.last_sequence_number, e.c.status)
        )
        self.insert = insert(m)
        self.newest = (
            select(m)
            .where(m.c.execution_id == bindparam("eid"))
            .order_by(m.c.sequence_number.desc())
            .limit(bindparam("n", type_=Integer))
        )
        self.get_one = select(e).where(e.c.id == bindparam("eid"))
        self.page = select(e).order_by(e.c.id).limit(51)

    async def append(self, execution_id: uuid.UUID, draft: MessageCreate) -> Message:
        async with self.engine.begin() as conn:
            row = (await conn.execute(self.bump, {"eid": execution_id})).one()
            if row.status in _FINAL:
                raise InvalidTransition(f"execution {execution_id} is {row.status}")
            message = Message(
                execution_id=execution_id,
                sender_id=draft.sender_id,
                recipient_id=draft.recipient_id,
                message_type=draft.message_type,
                content=draft.content,
                round_number=draft.round_number,
                sequence_number=row.last_sequence_number,
                revision=1,
            )
            values = message.model_dump()
            values["message_type"] = message.message_type.value
            values["schema_version"] = CURRENT_SCHEMA_VERSION
            await conn.execute(self.insert, values)
            return message

    @staticmethod
    def _model(row: Any) -> dict[str, Any]:
        data = dict(row)
        for key in _INTERNAL:
            data.pop(key, None)
        return data

    async def last(self, execution_id: uuid.UUID, n: int) -> list[Message]:
        async with self.engine.connect() as conn:
            found = (await conn.execute(self.newest, {"eid": execution_id, "n": n})).mappings().all()
        return [Message.model_validate(self._model(row)) for row in reversed(found)]

    async def get(self, execution_id: uuid.UUID) -> Execution:
        async with self.engine.connect() as conn:
            row = (await conn.execute(self.get_one, {"eid": execution_id})).mappings().one()
        return Execution.model_validate(self._model(row))

    async def list_page(self) -> list[Execution]:
        async with self.engine.connect() as conn:
            found = (await conn.execute(self.page)).mappings().all()
        return [Execution.model_validate(self._model(row)) for row in found[:50]]


async def median_pair(
    calls: int, ours: Callable[[], Awaitable[Any]], theirs: Callable[[], Awaitable[Any]], blocks: int = 5
) -> tuple[float, float]:
    """Median seconds per call of each side, alternating blocks (after a warm-up of each)."""
    for _ in range(5):
        await ours()
        await theirs()
    mine: list[float] = []
    base: list[float] = []
    per_block = max(1, calls // blocks)
    for _ in range(blocks):
        for fn, into in ((ours, mine), (theirs, base)):
            for _ in range(per_block):
                start = time.perf_counter()
                await fn()
                into.append(time.perf_counter() - start)
    return statistics.median(mine), statistics.median(base)


async def median_of(calls: int, fn: Callable[[], Awaitable[Any]]) -> float:
    for _ in range(5):
        await fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def draft(sender: uuid.UUID, i: int = 0) -> MessageCreate:
    return MessageCreate(sender_id=sender, message_type=MessageType.BROADCAST, content=payload(i))


async def bench_sql_steps(store: SqlStore, calls: int) -> list[Figure]:
    backend = store.dialect
    world = await fresh(store)
    await fill_messages(store, world.execution.id, world.instance.id, 0, HISTORY)
    writing = await world.new_execution()
    writer = await world.new_instance(writing.id)
    for _ in range(LISTED):
        await world.new_execution()
    engine = baseline_engine(store)
    core = CoreBaseline(engine)
    one = draft(writer.id)
    read_id, write_id = world.execution.id, writing.id
    figures: list[Figure] = []
    try:
        pairs: list[tuple[str, Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]]]] = [
            (
                "append one message",
                lambda: store.messages.append(write_id, [one]),
                lambda: core.append(write_id, one),
            ),
            (
                f"newest 50 of {HISTORY:,} messages",
                lambda: store.messages.last(read_id, 50),
                lambda: core.last(read_id, 50),
            ),
            ("get an execution", lambda: store.executions.get(read_id), lambda: core.get(read_id)),
            (
                f"executions list, first page of 50 ({LISTED + 2} stored)",
                lambda: store.executions.list(limit=50),
                core.list_page,
            ),
        ]
        for name, ours, theirs in pairs:
            mine, base = await median_pair(calls, ours, theirs)
            figures.append(Figure(backend, name, mine * 1e6, base * 1e6, "hand-written Core", "µs"))
    finally:
        await engine.dispose()
    return figures


async def bench_memory_steps(calls: int) -> list[Figure]:
    """Absolute figures (the goal is absolute: newest 50 < 100 µs, get < 20 µs); the
    baseline column is the goal itself."""
    store: Store = MemoryStore()
    world = await World(store).build()
    for offset in range(0, HISTORY, 500):
        batch = [draft(world.instance.id, i) for i in range(offset, offset + 500)]
        await store.messages.append(world.execution.id, batch)
    writing = await world.new_execution()
    writer = await world.new_instance(writing.id)
    one = draft(writer.id)
    figures = []
    for name, fn, goal in (
        ("append one message", lambda: store.messages.append(writing.id, [one]), None),
        (
            f"newest 50 of {HISTORY:,} messages",
            lambda: store.messages.last(world.execution.id, 50),
            100.0,
        ),
        ("get an execution", lambda: store.executions.get(world.execution.id), 20.0),
    ):
        took = await median_of(calls, fn) * 1e6
        figures.append(Figure("memory", name, took, goal or took, "goal" if goal else "itself", "µs"))
    return figures


async def ten_thousand_turns() -> float:
    """Seconds for a 10,000-turn run on the memory store: append one message per turn and
    read the newest 50 back each turn (what an agent loop does)."""
    store = MemoryStore()
    world = await World(store).build()
    start = time.perf_counter()
    for i in range(10_000):
        await store.messages.append(world.execution.id, [draft(world.instance.id, i)])
        await store.messages.last(world.execution.id, 50)
    return time.perf_counter() - start


__all__ = ["CoreBaseline", "bench_memory_steps", "bench_sql_steps", "median_pair", "ten_thousand_turns"]

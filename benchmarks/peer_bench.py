"""Peer benchmark: the same conversation written turn by turn through LangGraph's
checkpointers (``AsyncSqliteSaver``, ``AsyncPostgresSaver``) and through qmcp-agents.

LangGraph side: a graph whose one node appends the turn's message to a list channel
(``Annotated[list, operator.add]``, the usual way to keep a conversation), invoked once per
turn on one thread, checkpointed every step (LangGraph's default durability). The newest
50 are read with ``graph.aget_state`` (the whole channel comes back; we slice it).

qmcp-agents side: ``store.messages.append(execution, [one message])`` per turn and
``store.messages.last(execution, 50)``.

Both sides get the same message (sender, type, JSON content) and, on SQLite, the same
pragmas (WAL, synchronous NORMAL); bytes on disk are the database file after a WAL
checkpoint (SQLite) or ``pg_total_relation_size`` of every table each side created
(PostgreSQL), so indexes and TOAST count on both sides.

LangGraph is a bench dependency only (the ``bench`` extra); nothing in the package imports it.
"""

from __future__ import annotations

import operator
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, TypedDict

import aiosqlite
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph
from sqlalchemy import text

from qmcp_agents.adapters.sql import SqlStore
from qmcp_agents.domain import MessageCreate, MessageType
from qmcp_agents.testing.builders import World

from .sql_bench import Figure, payload
from .step_bench import median_of

READS = 50
"""Newest-50 reads per size (median)."""


class Conversation(TypedDict):
    messages: Annotated[list[dict[str, Any]], operator.add]
    incoming: dict[str, Any]


def _turn(state: Conversation) -> dict[str, Any]:
    return {"messages": [state["incoming"]]}


def conversation_graph(checkpointer: Any) -> Any:
    graph = StateGraph(Conversation)
    graph.add_node("turn", _turn)
    graph.add_edge(START, "turn")
    graph.add_edge("turn", END)
    return graph.compile(checkpointer=checkpointer)


def message(sender: uuid.UUID, i: int) -> dict[str, Any]:
    return {"sender_id": str(sender), "message_type": "broadcast", "content": payload(i)}


async def langgraph_run(checkpointer: Any, turns: int) -> tuple[float, float]:
    """Seconds to write every turn, and median seconds to read the newest 50."""
    graph = conversation_graph(checkpointer)
    config = {"configurable": {"thread_id": uuid.uuid4().hex}}
    sender = uuid.uuid4()
    start = time.perf_counter()
    for i in range(turns):
        await graph.ainvoke({"incoming": message(sender, i)}, config)
    wrote = time.perf_counter() - start

    async def newest() -> None:
        state = await graph.aget_state(config)
        got = state.values["messages"][-50:]
        assert len(got) == min(50, turns)

    return wrote, await median_of(READS, newest)


async def store_run(store: SqlStore, turns: int, world: World | None = None) -> tuple[float, float]:
    """Seconds to write every turn, and median seconds to read the newest 50: in a new
    world, or in a new execution of ``world`` (a second conversation)."""
    if world is None:
        world = await World(store).build()
        execution_id, sender = world.execution.id, world.instance.id
    else:
        execution_id = (await world.new_execution()).id
        sender = (await world.new_instance(execution_id)).id
    start = time.perf_counter()
    for i in range(turns):
        draft = MessageCreate(sender_id=sender, message_type=MessageType.BROADCAST, content=payload(i))
        await store.messages.append(execution_id, [draft])
    wrote = time.perf_counter() - start

    async def newest() -> None:
        got = await store.messages.last(execution_id, 50)
        assert len(got) == min(50, turns)

    return wrote, await median_of(READS, newest)


async def _sqlite_bytes(path: Path) -> int:
    async with aiosqlite.connect(path) as conn:
        await conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


async def sqlite_peer(folder: Path, turns: int) -> list[Figure]:
    ours_path, theirs_path = folder / f"ours-{turns}.db", folder / f"langgraph-{turns}.db"
    store = SqlStore(f"sqlite:///{ours_path}")
    try:
        await store.create_schema()
        ours = await store_run(store, turns)
    finally:
        await store.close()
    async with aiosqlite.connect(theirs_path) as conn:
        await conn.execute("PRAGMA synchronous = NORMAL")  # the store's pragmas; WAL is set by setup()
        saver = AsyncSqliteSaver(conn)
        await saver.setup()
        theirs = await langgraph_run(saver, turns)
    sizes = await _sqlite_bytes(ours_path), await _sqlite_bytes(theirs_path)
    return _figures("sqlite", turns, ours, theirs, sizes)


async def _pg_bytes(store: SqlStore, schema: str) -> int:
    async with store.engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text(
                        "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = :schema AND c.relkind = 'r'"
                    ),
                    {"schema": schema},
                )
            ).scalar_one()
        )


async def postgres_peer(url: str, turns: int) -> list[Figure]:
    """Besides the bytes of both schemas after the run (the issue's measure), the bytes the
    run added to the empty schemas (each side's own fixed cost left out: PostgreSQL's
    minimum of a page per index and TOAST table, for tables the workload may never touch)
    and the bytes a second conversation of as many turns adds (the steady cost per
    conversation); docs/decisions.md, issue 15."""
    ours_schema = f"qmcp_peer_{uuid.uuid4().hex[:8]}"
    theirs_schema = f"{ours_schema}_langgraph"
    store = SqlStore(url, schema=ours_schema)

    async def sizes() -> tuple[int, int]:
        async with store.engine.begin() as conn:
            await conn.execute(text("CHECKPOINT"))
        return await _pg_bytes(store, ours_schema), await _pg_bytes(store, theirs_schema)

    try:
        await store.create_schema()
        async with store.engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{theirs_schema}"'))
        conninfo = f"{url}?options=-csearch_path%3D{theirs_schema}"
        async with AsyncPostgresSaver.from_conn_string(conninfo) as saver:
            await saver.setup()
            empty = await sizes()
            world = await World(store).build()
            ours = await store_run(store, turns, world)
            theirs = await langgraph_run(saver, turns)
            first = await sizes()
            await store_run(store, turns, world)
            await langgraph_run(saver, turns)
            second = await sizes()
    finally:
        async with store.engine.begin() as conn:
            for schema in (ours_schema, theirs_schema):
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await store.close()
    name = "LangGraph checkpointer"
    added = [
        Figure(
            "postgresql",
            f"{turns:,} turns: bytes added to the empty schema",
            (first[0] - empty[0]) / 1e3,
            (first[1] - empty[1]) / 1e3,
            name,
            "kB",
        ),
        Figure(
            "postgresql",
            f"{turns:,} turns: bytes a second conversation adds",
            (second[0] - first[0]) / 1e3,
            (second[1] - first[1]) / 1e3,
            name,
            "kB",
        ),
    ]
    return [*_figures("postgresql", turns, ours, theirs, first), *added]


def _figures(
    backend: str, turns: int, ours: tuple[float, float], theirs: tuple[float, float], sizes: tuple[int, int]
) -> list[Figure]:
    name = "LangGraph checkpointer"
    return [
        Figure(backend, f"{turns:,} turns: write every turn", ours[0] * 1e3, theirs[0] * 1e3, name, "ms"),
        Figure(backend, f"{turns:,} turns: newest 50", ours[1] * 1e6, theirs[1] * 1e6, name, "µs"),
        Figure(backend, f"{turns:,} turns: bytes on disk", sizes[0] / 1e3, sizes[1] / 1e3, name, "kB"),
    ]


async def bench_peer(backends: list[str], turns: list[int], folder: Path, postgres_url: str) -> list[Figure]:
    figures: list[Figure] = []
    for backend in backends:
        for size in turns:
            if backend == "sqlite":
                figures.extend(await sqlite_peer(folder, size))
            elif backend == "postgresql":
                figures.extend(await postgres_peer(postgres_url, size))
    return figures

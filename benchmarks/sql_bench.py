"""SQL benchmarks: batch append, get by id, last-50 latency; each against a baseline
measured in the same run on the same database (ratios, since this machine is shared)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from qmcp_agents.adapters.sql import SqlStore
from qmcp_agents.adapters.sql.schema import ALL_TABLES, messages
from qmcp_agents.domain import MessageCreate, MessageType, uuid7
from qmcp_agents.domain.upcasting import CURRENT_SCHEMA_VERSION
from qmcp_agents.testing.builders import World

from .sqlmodel_models import SpecAgentInstance, SpecExecution, SpecMessage


@dataclass
class Figure:
    backend: str
    name: str
    store: float
    baseline: float
    baseline_name: str
    unit: str

    @property
    def ratio(self) -> float:
        return self.baseline / self.store if self.unit == "rows/s" else self.store / self.baseline


def payload(i: int) -> dict[str, Any]:
    return {"text": f"message number {i} with a few words of content", "tokens": i % 97, "tags": ["a", "b"]}


async def best_of(repeat: int, fn: Callable[[], Awaitable[Any]]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - start)
    return min(times)


async def fresh(store: SqlStore) -> World:
    async with store.engine.begin() as conn:
        for table in reversed(ALL_TABLES):
            await conn.execute(table.delete())
    return await World(store).build()


async def append_through_store(store: SqlStore, total: int, batch: int, as_models: bool) -> float:
    """Drafts as ``MessageCreate`` models (validated when built, and again by the store) or as
    plain dicts (validated once, by the store); building them is part of the measurement."""
    world = await fresh(store)
    sender = world.instance.id
    start = time.perf_counter()
    for offset in range(0, total, batch):
        drafts: list[Any] = [
            MessageCreate(sender_id=sender, message_type=MessageType.BROADCAST, content=payload(i))
            if as_models
            else {"sender_id": sender, "message_type": "broadcast", "content": payload(i)}
            for i in range(offset, offset + batch)
        ]
        await store.messages.append(world.execution.id, drafts)
    return total / (time.perf_counter() - start)


async def append_raw_core(store: SqlStore, total: int, batch: int) -> float:
    world = await fresh(store)
    now = world.execution.started_at
    start = time.perf_counter()
    for offset in range(0, total, batch):
        rows = [
            {
                "id": uuid7(),
                "execution_id": world.execution.id,
                "sender_id": world.instance.id,
                "recipient_id": None,
                "message_type": "broadcast",
                "content": payload(i),
                "round_number": 0,
                "sequence_number": i + 1,
                "created_at": now,
                "revision": 1,
                "schema_version": CURRENT_SCHEMA_VERSION,
            }
            for i in range(offset, offset + batch)
        ]
        async with store.engine.begin() as conn:
            await conn.execute(insert(messages), rows)
    return total / (time.perf_counter() - start)


async def append_sqlmodel(engine: AsyncEngine, total: int, batch: int) -> float:
    async with engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.drop_all)
        await conn.run_sync(SQLModel.metadata.create_all)
    async with AsyncSession(engine) as session:
        execution = SpecExecution(topology_id=1, input_data={"task": "t"})
        instance = SpecAgentInstance(agent_type_id=1, execution_id=execution.id)
        execution_id, instance_id = execution.id, instance.id
        session.add(execution)
        await session.flush()
        session.add(instance)
        await session.commit()
    start = time.perf_counter()
    for offset in range(0, total, batch):
        async with AsyncSession(engine, expire_on_commit=False) as session:
            session.add_all(
                SpecMessage(
                    execution_id=execution_id,
                    sender_id=instance_id,
                    message_type="broadcast",
                    content=payload(i),
                    sequence_number=i + 1,
                )
                for i in range(offset, offset + batch)
            )
            await session.commit()
    return total / (time.perf_counter() - start)


async def get_latency(store: SqlStore, repeat: int) -> tuple[float, float]:
    world = await fresh(store)
    execution_id = world.execution.id
    query = select(store.executions.table).where(store.executions.table.c.id == execution_id)

    async def through_store() -> None:
        for _ in range(200):
            await store.executions.get(execution_id)

    async def raw() -> None:
        for _ in range(200):
            async with store.engine.connect() as conn:
                (await conn.execute(query)).mappings().one()

    return (await best_of(repeat, through_store)) / 200, (await best_of(repeat, raw)) / 200


async def fill_messages(
    store: SqlStore, execution_id: uuid.UUID, sender: uuid.UUID, start: int, stop: int
) -> None:
    """Bulk-load messages for the latency test (raw, fast: it is setup, not measured)."""
    chunk = 20_000
    created = (await store.executions.get(execution_id)).started_at
    for offset in range(start, stop, chunk):
        rows = [
            {
                "id": uuid7(),
                "execution_id": execution_id,
                "sender_id": sender,
                "recipient_id": None,
                "message_type": "broadcast",
                "content": {"i": i},
                "round_number": i // 1000,
                "sequence_number": i + 1,
                "created_at": created,
                "revision": 1,
                "schema_version": CURRENT_SCHEMA_VERSION,
            }
            for i in range(offset, min(stop, offset + chunk))
        ]
        async with store.engine.begin() as conn:
            await conn.execute(insert(messages), rows)
    executions = store.executions.table
    async with store.engine.begin() as conn:
        await conn.execute(
            executions.update().where(executions.c.id == execution_id).values(last_sequence_number=stop)
        )
        if store.dialect == "postgresql":
            await conn.execute(text("ANALYZE qmcp_messages"))
        else:
            await conn.execute(text("ANALYZE"))


async def last_50_latencies(store: SqlStore, sizes: list[int], repeat: int) -> dict[int, float]:
    world = await fresh(store)
    out: dict[int, float] = {}
    filled = 0
    for size in sizes:
        await fill_messages(store, world.execution.id, world.instance.id, filled, size)
        filled = size

        async def last(expected: int = size) -> None:
            for _ in range(100):
                got = await store.messages.last(world.execution.id, 50)
                assert got[-1].sequence_number == expected

        out[size] = (await best_of(repeat, last)) / 100
    return out

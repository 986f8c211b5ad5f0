"""Executions list at scale: a million stored executions, first page and a page deep in the
keyset, with and without a status filter, and ``count`` with a status filter (with the
query plan, to show it is answered from an index).

The rows are bulk-loaded (the driver's ``executemany`` on SQLite, binary ``COPY`` on
PostgreSQL), with every value converted by its column type's own bind processor, so they
are exactly what the store would have written, in a fraction of the time.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import Dialect, text

from qmcp_agents.adapters.sql import SqlStore
from qmcp_agents.adapters.sql.schema import executions
from qmcp_agents.domain import ExecutionStatus, utc_now
from qmcp_agents.domain.ids import uuid7_many
from qmcp_agents.domain.upcasting import CURRENT_SCHEMA_VERSION

from .sql_bench import Figure, fresh
from .step_bench import median_of

CHUNK = 50_000
STATUS_CYCLE = ["completed"] * 7 + ["failed"] * 2 + ["running"]
"""70% completed, 20% failed, 10% running; the filtered figures use ``failed``."""
COLUMNS = [c.name for c in executions.columns]


def _rows(topology_id: int, ids: list[UUID], start: int) -> list[dict[str, Any]]:
    base = utc_now() - timedelta(days=30)
    out = []
    for n, execution_id in enumerate(ids, start):
        status = STATUS_CYCLE[n % len(STATUS_CYCLE)]
        started = base + timedelta(milliseconds=n)
        out.append(
            {
                "id": execution_id,
                "topology_id": topology_id,
                "parent_id": None,
                "status": status,
                "input_data": {"task": f"task {n}"},
                "output_data": {"answer": n} if status == "completed" else None,
                "correlation_id": None,
                "metadata": {},
                "started_at": started,
                "completed_at": started + timedelta(seconds=1) if status != "running" else None,
                "error": "boom" if status == "failed" else None,
                "error_details": None,
                "last_sequence_number": 0,
                "revision": 1,
                "schema_version": CURRENT_SCHEMA_VERSION,
            }
        )
    return out


def _processors(dialect: Dialect) -> list[Any]:
    out = []
    for name in COLUMNS:
        process = executions.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        out.append(process or (lambda value: value))
    return out


async def load(store: SqlStore, total: int, topology_id: int) -> None:
    async with store.engine.begin() as conn:
        dialect = conn.dialect
        processors = _processors(dialect)
        raw = (await conn.get_raw_connection()).driver_connection
        columns = ", ".join(COLUMNS)
        for start in range(0, total, CHUNK):
            rows = _rows(topology_id, uuid7_many(min(CHUNK, total - start)), start)
            if store.dialect == "sqlite":
                marks = ", ".join("?" for _ in COLUMNS)
                records = [tuple(p(row[c]) for p, c in zip(processors, COLUMNS, strict=True)) for row in rows]
                await conn.exec_driver_sql(
                    f"INSERT INTO qmcp_executions ({columns}) VALUES ({marks})", records
                )
            else:
                records = [
                    tuple(
                        json.dumps(row[c]) if c in _JSON and row[c] is not None else row[c] for c in COLUMNS
                    )
                    for row in rows
                ]
                await raw.copy_records_to_table(  # type: ignore[union-attr]
                    "qmcp_executions", records=records, columns=COLUMNS, schema_name=store.schema
                )
    if store.dialect == "sqlite":
        async with store.engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
    else:
        async with store.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE qmcp_executions"))


_JSON = {"input_data", "output_data", "metadata", "error_details"}


async def _cursor_at(store: SqlStore, position: int, status: str | None) -> str:
    where = "WHERE status = :status" if status else ""
    async with store.engine.connect() as conn:
        found = (
            await conn.execute(
                text(f"SELECT id FROM qmcp_executions {where} ORDER BY id LIMIT 1 OFFSET :n"),
                {"n": position, "status": status},
            )
        ).scalar_one()
    return str(UUID(str(found)) if not isinstance(found, UUID) else found)


async def count_plan(store: SqlStore, status: str) -> str:
    async with store.engine.connect() as conn:
        if store.dialect == "sqlite":
            query = "EXPLAIN QUERY PLAN SELECT count(*) FROM qmcp_executions WHERE status = :s"
            rows = (await conn.execute(text(query), {"s": status})).all()
            return "; ".join(str(r[-1]) for r in rows)
        query = "EXPLAIN SELECT count(*) FROM qmcp_executions WHERE status = :s"
        rows = (await conn.execute(text(query), {"s": status})).all()
        return "; ".join(str(r[0]).strip() for r in rows)


async def bench_list(store: SqlStore, total: int, calls: int) -> tuple[list[Figure], list[str]]:
    world = await fresh(store)
    assert world.topology.id is not None
    await load(store, total, world.topology.id)
    backend = store.dialect
    figures: list[Figure] = []
    notes: list[str] = []
    failed = ExecutionStatus.FAILED
    for status in (None, failed):
        shown = f", status={status.value}" if status else ""
        filtered = total // 5 if status else total
        deep = await _cursor_at(store, int(filtered * 0.9), status.value if status else None)

        async def first(status: ExecutionStatus | None = status) -> None:
            page = await store.executions.list(status=status, limit=50)
            assert len(page.items) == 50

        async def deep_page(status: ExecutionStatus | None = status, cursor: str = deep) -> None:
            page = await store.executions.list(status=status, limit=50, after=cursor)
            assert len(page.items) == 50

        took_first = await median_of(calls, first)
        took_deep = await median_of(calls, deep_page)
        what = f"executions list at {total:,} stored{shown}"
        figures.append(
            Figure(backend, f"{what}: first page of 50", took_first * 1e6, 10_000, "goal 10 ms", "µs")
        )
        figures.append(
            Figure(
                backend,
                f"{what}: page at 90% of the keyset",
                took_deep * 1e6,
                took_first * 1e6,
                "first page",
                "µs",
            )
        )

    async def counted() -> None:
        await store.executions.count(status=failed)

    took = await median_of(max(5, calls // 5), counted)
    figures.append(
        Figure(
            backend,
            f"count(status=failed) at {total:,} stored ({total // 5:,} match)",
            took * 1e6,
            took * 1e6,
            "itself",
            "µs",
        )
    )
    notes.append(f"{backend}: count(status=failed) plan: {await count_plan(store, 'failed')}")
    return figures, notes

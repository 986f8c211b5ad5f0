"""``make bench``: every figure is the store against a baseline measured in the same run.

python -m benchmarks.run [--suites batch,steps,peer,list] [--backends sqlite,postgresql,mongodb,memory]
                         [--messages N] [--batch N] [--sizes 10000,100000,1000000]
                         [--calls N] [--turns 300,1000] [--executions N] [--full] [--quick]

--quick: tiny sizes, for a CI smoke run. --full: the peer benchmark at 3,000 turns too
(LangGraph's SQLite file reaches about 1 GB there).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import uuid
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from qmcp_agents.adapters.sql import SqlStore

from . import list_bench, mongo_bench, sql_bench, step_bench
from .sql_bench import Figure

POSTGRES_URL = os.environ.get("QMCP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def sqlmodel_engine(backend: str, folder: Path, schema: str) -> AsyncEngine:
    if backend == "sqlite":
        return create_async_engine(f"sqlite+aiosqlite:///{folder / 'sqlmodel.db'}")
    url = POSTGRES_URL.replace("postgresql://", "postgresql+asyncpg://")
    return create_async_engine(url, connect_args={"server_settings": {"search_path": schema}})


def sql_store(backend: str, folder: Path, schema: str, name: str = "store") -> SqlStore:
    if backend == "sqlite":
        return SqlStore(f"sqlite:///{folder / f'{name}.db'}")
    return SqlStore(POSTGRES_URL, schema=schema)


async def drop(store: SqlStore, *schemas: str) -> None:
    if store.dialect == "postgresql":
        async with store.engine.begin() as conn:
            for schema in schemas:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    await store.close()


async def bench_steps(backend: str, args: argparse.Namespace, folder: Path) -> list[Figure]:
    if backend == "memory":
        return await step_bench.bench_memory_steps(args.calls)
    schema = f"qmcp_bench_{uuid.uuid4().hex[:8]}"
    store = sql_store(backend, folder, schema, "steps")
    try:
        await store.create_schema()
        return await step_bench.bench_sql_steps(store, args.calls)
    finally:
        await drop(store, schema)


async def bench_list(backend: str, args: argparse.Namespace, folder: Path, notes: list[str]) -> list[Figure]:
    schema = f"qmcp_bench_{uuid.uuid4().hex[:8]}"
    store = sql_store(backend, folder, schema, "executions")
    try:
        await store.create_schema()
        figures, found = await list_bench.bench_list(store, args.executions, args.calls)
        notes.extend(found)
        return figures
    finally:
        await drop(store, schema)


async def bench_sql(backend: str, args: argparse.Namespace, folder: Path) -> list[Figure]:
    schema = f"qmcp_bench_{uuid.uuid4().hex[:8]}"
    store = sql_store(backend, folder, schema)
    orm = sqlmodel_engine(backend, folder, f"{schema}_orm")
    figures: list[Figure] = []
    try:
        if backend == "postgresql":
            async with store.engine.begin() as conn:
                await conn.execute(text(f'CREATE SCHEMA "{schema}_orm"'))
        await store.create_schema()
        n, batch = args.messages, args.batch
        core = await sql_bench.append_raw_core(store, n, batch)
        model = await sql_bench.append_sqlmodel(orm, n, batch)
        for as_models in (False, True):
            ours = await sql_bench.append_through_store(store, n, batch, as_models)
            drafts = "MessageCreate" if as_models else "dicts"
            what = f"append {n:,} messages in batches of {batch}, drafts as {drafts}"
            figures.append(Figure(backend, what, ours, core, "raw Core executemany", "rows/s"))
            figures.append(Figure(backend, what, ours, model, "SQLModel ORM", "rows/s"))
        got, raw = await sql_bench.get_latency(store, repeat=5)
        figures.append(Figure(backend, "get execution by id", got * 1e6, raw * 1e6, "raw Core select", "µs"))
        latencies = await sql_bench.last_50_latencies(store, args.sizes, repeat=5)
        smallest = latencies[args.sizes[0]]
        for size, latency in latencies.items():
            figures.append(
                Figure(
                    backend,
                    f"last 50 messages at {size:,} stored",
                    latency * 1e6,
                    smallest * 1e6,
                    f"same at {args.sizes[0]:,}",
                    "µs",
                )
            )
    finally:
        await orm.dispose()
        await drop(store, schema, f"{schema}_orm")
    return figures


def table(figures: list[Figure]) -> str:
    lines = [
        "| backend | measurement | store | baseline | ratio |",
        "|---|---|---|---|---|",
    ]
    for f in figures:
        size = f.unit in ("MB", "kB")
        what = {"rows/s": "store/baseline throughput"}.get(
            f.unit, "store/baseline size" if size else "store/baseline time"
        )
        ratio = 1 / f.ratio if f.unit == "rows/s" else f.ratio
        shown = f"{ratio:.3f}x (1/{1 / ratio:,.1f})" if size and 0 < ratio < 0.1 else f"{ratio:.2f}x"
        baseline = f"{f.baseline:,.1f} {f.unit} ({f.baseline_name})"
        lines.append(f"| {f.backend} | {f.name} | {f.store:,.1f} {f.unit} | {baseline} | {shown} {what} |")
    return "\n".join(lines)


def mongo_url() -> str:
    url = os.environ.get("QMCP_TEST_MONGODB_URL")
    if not url:
        raise SystemExit("mongodb: set QMCP_TEST_MONGODB_URL (make bench starts a test server)")
    return url


async def main(args: argparse.Namespace) -> None:
    figures: list[Figure] = []
    notes: list[str] = []
    sql = [b for b in args.backends if b in ("sqlite", "postgresql")]
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        if "batch" in args.suites:
            for backend in args.backends:
                if backend == "mongodb":
                    figures.extend(
                        await mongo_bench.bench_mongo(mongo_url(), args.mongo_messages, args.batch)
                    )
                elif backend in sql:
                    figures.extend(await bench_sql(backend, args, folder))
        if "steps" in args.suites:
            for backend in args.backends:
                if backend == "mongodb":
                    figures.extend(await mongo_bench.bench_mongo_single(mongo_url(), args.mongo_singles))
                else:
                    figures.extend(await bench_steps(backend, args, folder))
        if "peer" in args.suites and sql:
            from . import peer_bench  # LangGraph is needed only here

            figures.extend(await peer_bench.bench_peer(sql, args.turns, folder, POSTGRES_URL))
        if "list" in args.suites:
            for backend in sql:
                figures.extend(await bench_list(backend, args, folder, notes))
    print(f"\nPython {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores\n")
    print(table(figures))
    for note in notes:
        print(f"\n{note}")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[10_000, 100_000, 1_000_000]
    )
    parser.add_argument(
        "--backends", type=lambda s: s.split(","), default=["sqlite", "postgresql", "mongodb", "memory"]
    )
    parser.add_argument(
        "--mongo-messages", type=int, default=5000, help="the MongoDB test server stores ~450 documents/s"
    )
    parser.add_argument("--suites", type=lambda s: s.split(","), default=["batch", "steps", "peer", "list"])
    parser.add_argument("--calls", type=int, default=300, help="single calls per per-step figure (median)")
    parser.add_argument("--mongo-singles", type=int, default=500, help="single-message appends on MongoDB")
    parser.add_argument("--turns", type=lambda s: [int(x) for x in s.split(",")], default=[300, 1000])
    parser.add_argument("--executions", type=int, default=1_000_000)
    parser.add_argument("--full", action="store_true", help="peer benchmark at 3,000 turns too")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run for CI")
    args = parser.parse_args(argv)
    if args.full:
        args.turns = sorted({*args.turns, 3000})
    if args.quick:
        args.messages, args.batch, args.sizes = 2000, 500, [1000, 2000]
        args.mongo_messages, args.mongo_singles, args.calls = 500, 50, 30
        args.turns, args.executions = [30], 5000
    return args


if __name__ == "__main__":
    asyncio.run(main(parse()))

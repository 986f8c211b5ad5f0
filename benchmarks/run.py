"""``make bench``: every figure is the store against a baseline measured in the same run.

python -m benchmarks.run [--messages N] [--batch N] [--sizes 10000,100000,1000000]
                         [--backends sqlite,postgresql]
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

from . import mongo_bench, sql_bench
from .sql_bench import Figure

POSTGRES_URL = os.environ.get("QMCP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def sqlmodel_engine(backend: str, folder: Path, schema: str) -> AsyncEngine:
    if backend == "sqlite":
        return create_async_engine(f"sqlite+aiosqlite:///{folder / 'sqlmodel.db'}")
    url = POSTGRES_URL.replace("postgresql://", "postgresql+asyncpg://")
    return create_async_engine(url, connect_args={"server_settings": {"search_path": schema}})


async def bench_sql(backend: str, args: argparse.Namespace, folder: Path) -> list[Figure]:
    schema = f"qmcp_bench_{uuid.uuid4().hex[:8]}"
    if backend == "sqlite":
        store = SqlStore(f"sqlite:///{folder / 'store.db'}")
    else:
        store = SqlStore(POSTGRES_URL, schema=schema)
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
        if backend == "postgresql":
            async with store.engine.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}_orm" CASCADE'))
        await orm.dispose()
        await store.close()
    return figures


def table(figures: list[Figure]) -> str:
    lines = [
        "| backend | measurement | store | baseline | ratio |",
        "|---|---|---|---|---|",
    ]
    for f in figures:
        what = "store/baseline throughput" if f.unit == "rows/s" else "store/baseline time"
        ratio = 1 / f.ratio if f.unit == "rows/s" else f.ratio
        baseline = f"{f.baseline:,.1f} {f.unit} ({f.baseline_name})"
        lines.append(
            f"| {f.backend} | {f.name} | {f.store:,.1f} {f.unit} | {baseline} | {ratio:.2f}x {what} |"
        )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as folder:
        for backend in args.backends:
            if backend == "mongodb":
                url = os.environ.get("QMCP_TEST_MONGODB_URL")
                if not url:
                    raise SystemExit("mongodb: set QMCP_TEST_MONGODB_URL (make bench starts a test server)")
                figures.extend(await mongo_bench.bench_mongo(url, args.mongo_messages, args.batch))
            else:
                figures.extend(await bench_sql(backend, args, Path(folder)))
    print(f"\nPython {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores\n")
    print(table(figures))


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[10_000, 100_000, 1_000_000]
    )
    parser.add_argument(
        "--backends", type=lambda s: s.split(","), default=["sqlite", "postgresql", "mongodb"]
    )
    parser.add_argument(
        "--mongo-messages", type=int, default=5000, help="the MongoDB test server stores ~450 documents/s"
    )
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))

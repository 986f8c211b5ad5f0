"""Statements a worker sends to PostgreSQL per execution, grouped by where they come from.

    python -m benchmarks.worker_statements [--executions 20] [--stages 3] [--detail]

One in-process worker (concurrency 1, so every statement belongs to one execution at a
time) drives ``--executions`` submitted pipelines of ``--stages`` agents that answer at
once. Every statement asyncpg sends (simple queries such as ``BEGIN``/``COMMIT``, and
prepared statements such as ``SAVEPOINT`` or an ``UPDATE``) is counted and attributed to
the innermost engine function and the innermost store function that led to it. This is
what the worker benchmark (:mod:`.worker_bench`) pays per execution, without its timing.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import contextvars
import inspect
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
from asyncpg.prepared_stmt import PreparedStatement
from sqlalchemy import text

from qmcp_agents.adapters.sql import SqlStore
from qmcp_agents.domain.engine import AgentContext, AgentReply, Engine, ScriptedAgent, reply
from qmcp_agents.domain.engine.worker import Worker
from qmcp_agents.testing.builders import register_topology

from .worker_bench import POSTGRES_URL

ROOT = Path(__file__).resolve().parents[1]
POOL = 30
"""Connections, all opened before the count and kept (none beyond): their server processes
are the ones whose CPU time is read."""
Counts = collections.Counter[tuple[str, str, str]]


_SITE: contextvars.ContextVar[tuple[str, str]] = contextvars.ContextVar("site", default=("-", "-"))
"""The store call being made, and the engine function that made it. A context variable, not
the stack: the SQL store runs its transactions' ends (and settled calls) in tasks of their
own, whose stacks do not reach the caller."""


def _engine_frame() -> str:
    frame = sys._getframe(2)
    while frame is not None:
        path = frame.f_code.co_filename
        if path.startswith(str(ROOT)) and "/domain/" in path:
            return f"{Path(path).stem}.{frame.f_code.co_name}"
        frame = frame.f_back  # type: ignore[assignment]
    return "-"


def _where() -> tuple[str, str]:
    return _SITE.get()


def labelled(store: SqlStore) -> None:
    """Wrap the store's repository verbs (and ``transaction``) so what they send is labelled
    with them and with the engine function that called them."""
    names = ("executions", "agent_instances", "messages", "results", "leases", "topologies", "agent_types")
    for name in names:
        repository = getattr(store, name)
        for verb in dir(type(repository)):
            method = getattr(repository, verb)
            if verb.startswith("_") or not inspect.iscoroutinefunction(method):
                continue
            setattr(repository, verb, _wrapped(method, f"{name}.{verb}"))
    for one_step in ("record_call", "update_execution_fenced", "add_instances_fenced"):
        setattr(store, one_step, _wrapped(getattr(store, one_step), one_step))
    transaction = store.transaction

    @contextlib.asynccontextmanager
    async def labelled_transaction() -> AsyncIterator[None]:
        token = _SITE.set((_engine_frame(), "transaction"))
        try:
            async with transaction():
                _SITE.reset(token)
                yield
                token = _SITE.set((_SITE.get()[0], "transaction"))
        finally:
            with contextlib.suppress(ValueError):
                _SITE.reset(token)

    store.transaction = labelled_transaction  # type: ignore[method-assign]


def _wrapped(method: Any, label: str) -> Any:
    async def call(*args: Any, **kwargs: Any) -> Any:
        token = _SITE.set((_engine_frame(), label))
        try:
            return await method(*args, **kwargs)
        finally:
            _SITE.reset(token)

    return call


def _verb(sql: str) -> str:
    words = sql.split()
    first = words[0].upper() if words else "?"
    if first in ("SAVEPOINT", "RELEASE", "ROLLBACK") or first.startswith("BEGIN"):
        return first
    if first == "WITH":
        return "WITH(append)"
    table = next((w for w in words if w.startswith("qmcp_")), "")
    return f"{first} {table}".strip()


@contextmanager
def counting() -> Iterator[Counts]:
    """Count what asyncpg sends, by (engine function, store function, statement kind)."""
    counts: Counts = collections.Counter()
    connection = asyncpg.connection.Connection
    originals: dict[tuple[Any, str], Any] = {}

    def patch(owner: Any, name: str, sql_of: Any) -> None:
        original = getattr(owner, name)
        originals[(owner, name)] = original

        def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
            sql = sql_of(self, args)
            if sql is not None:
                counts[(*_where(), _verb(sql))] += 1
            return original(self, *args, **kwargs)

        setattr(owner, name, wrapped)

    # Connection.execute with arguments goes through _execute: counted there only.
    patch(connection, "execute", lambda self, args: args[0] if len(args) == 1 else None)
    patch(connection, "_execute", lambda self, args: args[0])
    patch(connection, "_executemany", lambda self, args: args[0])
    patch(PreparedStatement, "_PreparedStatement__bind_execute", lambda self, args: self.get_query())
    try:
        yield counts
    finally:
        for (owner, name), original in originals.items():
            setattr(owner, name, original)


def answering(context: AgentContext) -> AgentReply:
    return reply({"answer": "ok", "call": context.call}, confidence=0.9)


async def measure(executions: int, stages: int, concurrency: int) -> tuple[Counts, float, float]:
    schema = f"qmcp_stmts_{uuid.uuid4().hex[:8]}"
    store = SqlStore(POSTGRES_URL, schema=schema, pool_size=POOL)
    await store.create_schema()
    try:
        await register_topology(store, "bench", "pipeline", [f"s{i}" for i in range(stages)])
        labelled(store)
        agents = {f"s{i}": ScriptedAgent([answering]) for i in range(stages)}
        engine = Engine(store, agents)
        for n in range(3):  # warm the caches (compiled statements, prepared statements)
            await engine.submit("bench", {"warm": n})
        await Worker(engine, name="warm", concurrency=concurrency, poll_seconds=0.01).run(until_idle=True)
        for n in range(executions):
            await engine.submit("bench", {"n": n})
        worker = Worker(engine, name="counted", concurrency=concurrency, poll_seconds=0.01)
        backends = await _backends(store)
        with counting() as counts:
            server = _cpu_seconds(backends)
            started = time.process_time()
            stats = await worker.run(until_idle=True)
            cpu = time.process_time() - started
            server = _cpu_seconds(backends) - server
        assert stats.finished.get("completed") == executions, stats
        return counts, cpu, server
    finally:
        async with store.engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await store.close()


async def _backends(store: SqlStore) -> list[int]:
    """The PostgreSQL server processes of ``store``'s pooled connections (all opened now)."""
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(POOL):
            await stack.enter_async_context(store.engine.connect())
    async with store.engine.connect() as conn:
        found = await conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE application_name = :name"), {"name": store.label}
        )
        return [row.pid for row in found]


def _cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time of local processes ``pids`` (0 for one this host cannot see)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def report(counts: Counts, executions: int, cpu: float, server: float, detail: bool) -> None:
    total = sum(counts.values())
    print(f"{total / executions:.1f} statements per execution ({total} for {executions})")
    print(f"{cpu / executions * 1000:.1f} ms of CPU per execution (this process, not profiled)")
    print(f"{server / executions * 1000:.1f} ms of CPU per execution (its PostgreSQL server processes)")
    by_verb: collections.Counter[str] = collections.Counter()
    by_source: collections.Counter[tuple[str, str]] = collections.Counter()
    for (engine, store, verb), n in counts.items():
        by_verb[verb.split()[0]] += n
        by_source[(engine, store)] += n
    print("\nby kind:")
    for verb, n in by_verb.most_common():
        print(f"  {n / executions:6.1f}  {verb}")
    print("\nby source (engine function, store function):")
    for (engine, store), n in by_source.most_common():
        print(f"  {n / executions:6.1f}  {engine:40} {store}")
    if detail:
        print("\nin detail:")
        for (engine, store, verb), n in sorted(counts.items(), key=lambda item: -item[1]):
            print(f"  {n / executions:6.1f}  {engine:36} {store:34} {verb}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=20)
    parser.add_argument("--stages", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--detail", action="store_true")
    args = parser.parse_args()
    counts, cpu, server = asyncio.run(measure(args.executions, args.stages, args.concurrency))
    report(counts, args.executions, cpu, server, args.detail)


if __name__ == "__main__":
    main()

"""A fleet of worker processes on one store, for the crash, cancellation and benchmark runs.

``python -m tests.workers.fleet worker KIND LOCATION NAME CONCURRENCY LEASE`` runs one worker
process (scripted agents taking 50-200 ms a call) until SIGTERM; ``KIND`` is ``sqlite``
(LOCATION a file path), ``postgresql`` (LOCATION a schema) or ``mongodb`` (LOCATION a
database name). It prints ``ready`` once its store is open.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from qmcp_agents.adapters.mongo import MongoStore
from qmcp_agents.adapters.sql import SqlStore
from qmcp_agents.domain.engine import AgentContext, AgentReply, Engine, ScriptedAgent, reply
from qmcp_agents.domain.engine.worker import Worker
from qmcp_agents.domain.ports import Store
from qmcp_agents.testing.builders import register_topology
from tests.stores.servers import MONGODB_URL, POSTGRES_URL, with_database

DELAYS = {"fast": 0.05, "steady": 0.1, "slow": 0.2}
TOPOLOGIES = {
    "chain": ("pipeline", ["fast", "steady", "slow"]),
    "panel": ("ensemble", ["fast", "steady", "slow"]),
    "pair": ("pipeline", ["slow", "fast"]),
}


def answering(context: AgentContext) -> AgentReply:
    return reply({"answer": "yes", "by": context.slot_name, "call": context.call}, confidence=0.8)


def agents(delays: dict[str, float] = DELAYS) -> dict[str, ScriptedAgent]:
    return {name: ScriptedAgent([answering], delay=delay) for name, delay in delays.items()}


@asynccontextmanager
async def open_kind(kind: str, location: str) -> AsyncIterator[Store]:
    """The store a fleet shares (its schema already created by the test)."""
    store: Store
    if kind == "sqlite":
        store = SqlStore(f"sqlite:///{location}")
    elif kind == "postgresql":
        store = SqlStore(POSTGRES_URL, schema=location, pool_size=10)
    else:
        store = MongoStore.from_url(with_database(MONGODB_URL, location))
    async with store:
        yield store


async def register(store: Store) -> None:
    for name, (kind, members) in TOPOLOGIES.items():
        await register_topology(store, name, kind, members)


async def work(kind: str, location: str, name: str, concurrency: int, lease: float) -> None:
    async with open_kind(kind, location) as store:
        worker = Worker(
            Engine(store, agents()),
            name=name,
            concurrency=concurrency,
            lease_seconds=lease,
            poll_seconds=0.05,
            grace_seconds=lease,
        )
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, worker.stop)
        print("ready", flush=True)
        await worker.run()


def start(kind: str, location: str, name: str, concurrency: int, lease: float) -> subprocess.Popen[str]:
    root = Path(__file__).resolve().parents[2]
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.workers.fleet",
            "worker",
            kind,
            location,
            name,
            str(concurrency),
            str(lease),
        ],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )


if __name__ == "__main__":
    _, _, kind_, location_, name_, concurrency_, lease_ = sys.argv
    asyncio.run(work(kind_, location_, name_, int(concurrency_), float(lease_)))

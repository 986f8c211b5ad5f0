"""SQLite under cancellation and SIGKILL: no lock left behind, nothing partial (issue 14)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from qmcp_agents.adapters.sql import SqlStore
from qmcp_agents.domain.queries import all_pages
from qmcp_agents.testing.builders import World, agent_type, message

pytestmark = pytest.mark.asyncio
ROOT = Path(__file__).resolve().parents[2]

# Another process takes the write lock with a 1 s busy timeout (the store's is 30 s): it
# fails if any connection of the first process still holds the lock.
SECOND_WRITER = """
import sqlite3, sys, time
start = time.monotonic()
db = sqlite3.connect(sys.argv[1], timeout=1.0, isolation_level=None)
db.execute("BEGIN IMMEDIATE")
db.execute("UPDATE qmcp_agent_types SET description = description WHERE id = 1")
db.execute("COMMIT")
print(round(time.monotonic() - start, 3))
"""


def _second_writer(path: Path) -> float:
    done = subprocess.run(
        [sys.executable, "-c", SECOND_WRITER, str(path)], capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return float(done.stdout)


async def test_200_random_cancellations_leave_no_lock_and_no_partial_write(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with SqlStore(f"sqlite:///{path}") as store:
        await store.create_schema()
        world = await World(store).build()
        execution_id, sender = world.execution.id, world.instance.id
        rng = random.Random(200)
        sizes: dict[int, int] = {}
        cancelled = 0
        for attempt in range(200):
            kind = rng.choice(("append", "append", "read", "transaction", "add"))
            size = rng.choice((1, 5, 40))
            sizes[attempt] = size * (2 if kind == "transaction" else 1)
            drafts = [message(sender, {"attempt": attempt}) for _ in range(size)]
            job: Any
            if kind == "append":
                job = store.messages.append(execution_id, drafts)
            elif kind == "read":
                job = store.messages.list(execution_id, limit=100)
            elif kind == "add":
                job = store.agent_types.add(agent_type(f"t{attempt}"))
            else:
                job = _two_appends(store, execution_id, drafts)
            task = asyncio.ensure_future(job)
            await asyncio.sleep(rng.uniform(0, 0.003))
            if not task.done():
                task.cancel()
                cancelled += 1
            with suppress(asyncio.CancelledError):
                await task
        assert cancelled >= 50  # most of them were really cut short
        started = time.monotonic()
        assert _second_writer(path) < 0.5
        assert time.monotonic() - started < 10
        # Nothing partial: each call's messages are all there or none are.
        stored = await all_pages(lambda a: store.messages.list(execution_id, limit=1000, after=a))
        per_attempt: dict[int, int] = {}
        for m in stored:
            per_attempt[m.content["attempt"]] = per_attempt.get(m.content["attempt"], 0) + 1
        assert all(count == sizes[a] for a, count in per_attempt.items()), per_attempt
        assert [m.sequence_number for m in stored] == list(range(1, len(stored) + 1))
        # And this process writes at once too.
        more = await asyncio.wait_for(store.messages.append(execution_id, [message(sender)]), timeout=2)
        assert more[0].sequence_number == len(stored) + 1


async def _two_appends(store: SqlStore, execution_id: Any, drafts: list[Any]) -> None:
    async with store.transaction():
        await store.messages.append(execution_id, drafts)
        await asyncio.sleep(0)
        await store.messages.append(execution_id, drafts)


async def _kill_worker(path: Path, mode: str, world: World, delay: float) -> None:
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.stores.sqlite_worker",
        str(path),
        mode,
        str(world.execution.id),
        str(world.instance.id),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert worker.stdout is not None
    line = await asyncio.wait_for(worker.stdout.readline(), timeout=60)
    assert line.strip() == b"ready"
    await asyncio.sleep(delay)
    worker.send_signal(signal.SIGKILL)
    assert await worker.wait() == -signal.SIGKILL


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2])
async def test_sigkill_in_a_large_append_leaves_all_or_nothing(tmp_path: Path, delay: float) -> None:
    path = tmp_path / "store.db"
    async with SqlStore(f"sqlite:///{path}") as store:
        await store.create_schema()
        world = await World(store).build()
    await _kill_worker(path, "append", world, delay)
    async with SqlStore(f"sqlite:///{path}") as store:
        count = await store.messages.count(world.execution.id)
        assert count in (0, 20_000)
        again = await asyncio.wait_for(
            store.messages.append(world.execution.id, [message(world.instance.id)]), timeout=5
        )
        assert again[0].sequence_number == count + 1
    assert _second_writer(path) < 0.5


async def test_sigkill_in_a_multi_call_transaction_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with SqlStore(f"sqlite:///{path}") as store:
        await store.create_schema()
        world = await World(store).build()
        await store.messages.append(world.execution.id, [message(world.instance.id)])
    await _kill_worker(path, "transaction", world, 0.05)
    async with SqlStore(f"sqlite:///{path}") as store:
        assert await store.messages.count(world.execution.id) == 1
        assert await store.agent_types.find_by_name("doomed") is None
        again = await asyncio.wait_for(
            store.messages.append(world.execution.id, [message(world.instance.id)]), timeout=5
        )
        assert again[0].sequence_number == 2
    assert _second_writer(path) < 0.5


async def test_reads_do_not_wait_for_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with SqlStore(f"sqlite:///{path}") as store:
        await store.create_schema()
        world = await World(store).build()
        await store.messages.append(world.execution.id, [message(world.instance.id)])
        writer = sqlite3.connect(path, isolation_level=None)
        try:
            writer.execute("BEGIN IMMEDIATE")  # another writer holds the file's write lock
            started = time.monotonic()
            page = await asyncio.wait_for(store.messages.list(world.execution.id), timeout=5)
            assert [m.sequence_number for m in page.items] == [1]
            assert await asyncio.wait_for(store.executions.count(), timeout=5) == 1
            assert (await store.agent_types.get_by_name("planner")).name == "planner"
            assert time.monotonic() - started < 2
        finally:
            writer.execute("ROLLBACK")
            writer.close()

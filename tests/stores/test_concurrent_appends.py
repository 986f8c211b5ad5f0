"""Issue 18, item 4: three processes of three tasks each append batches of 1 to 1,500
messages to one execution at once; every append must get one contiguous block of
sequence numbers, and together they must number 1..N, on every multi-process backend
(memory is checked with concurrent tasks by the conformance suite)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.queries import all_pages
from qmcp_agents.testing.builders import World

from .servers import MONGODB_URL, POSTGRES_URL, backend_store, mongo_store, with_database

pytestmark = pytest.mark.asyncio
ROOT = Path(__file__).resolve().parents[2]
PROCESSES, TASKS, APPENDS, LARGEST = 3, 3, 2, 1500


@asynccontextmanager
async def _store(backend: str, folder: Path) -> AsyncIterator[tuple[Store, str, str]]:
    """The store under test, and the URL and schema a worker process opens it with."""
    if backend in ("mongodb", "motor"):
        database = f"qmcp_test_{uuid.uuid4().hex[:10]}"
        async with mongo_store(database) as mongo:
            yield mongo, with_database(MONGODB_URL, database), "-"
        return
    async with backend_store(backend, folder) as store:
        url = f"sqlite:///{folder / 'store.db'}" if backend == "sqlite" else POSTGRES_URL
        yield store, url, str(getattr(store, "schema", None) or "-")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mongodb", "motor"])
async def test_every_append_is_one_contiguous_block_under_concurrent_processes(
    backend: str, tmp_path: Path
) -> None:
    async with _store(backend, tmp_path) as (store, url, schema):
        world = await World(store).build()
        fixed = [url, schema, str(world.execution.id), str(world.instance.id), str(APPENDS), str(LARGEST)]
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.stores.append_worker",
                *fixed,
                str(TASKS),
                str(seed),
                *(["motor"] if backend == "motor" else []),
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for seed in range(PROCESSES)
        ]
        outputs = [await worker.communicate() for worker in workers]
        assert all(w.returncode == 0 for w in workers), [err.decode()[-2000:] for _, err in outputs]
        blocks: list[list[int]] = [block for out, _ in outputs for block in json.loads(out)]
        assert len(blocks) == PROCESSES * TASKS * APPENDS
        assert any(len(block) > 1000 for block in blocks)  # the case that used to split
        split = [(b[0], b[-1], len(b)) for b in blocks if b != list(range(b[0], b[0] + len(b)))]
        assert split == [], "appends that did not get one contiguous block"
        total = sum(len(b) for b in blocks)
        assert sorted(n for b in blocks for n in b) == list(range(1, total + 1))
        stored = await all_pages(lambda a: store.messages.list(world.execution.id, limit=1000, after=a))
        assert [m.sequence_number for m in stored] == list(range(1, total + 1))
        for block in blocks:  # a block holds one append's messages, in the order given
            contents = [m.content for m in stored[block[0] - 1 : block[-1]]]
            assert len({(c["pid"], c["batch"]) for c in contents}) == 1
            assert [c["k"] for c in contents] == list(range(len(block)))

"""``copy`` across backends: memory -> SQLite -> PostgreSQL -> MongoDB, ending with equal
stores, and again after being interrupted half-way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import pytest_asyncio
from pydantic import ValidationError
from sqlalchemy import text

from qmcp_agents.adapters import open_store
from qmcp_agents.adapters.mongo import MongoStore
from qmcp_agents.adapters.sql import SqlStore
from qmcp_agents.adapters.transfer import ExportRefused, copy_store, fingerprint
from qmcp_agents.domain.engine import Engine, ScriptedAgent, reply
from qmcp_agents.domain.ports import Store
from qmcp_agents.testing.builders import agent_type
from qmcp_agents.testing.builders import register_topology as build
from qmcp_agents.testing.inspect import dump_store

from .servers import backend_store, mongo_store, postgres_store

pytestmark = pytest.mark.asyncio


class Interrupted(Exception):
    pass


@pytest_asyncio.fixture
async def populated() -> AsyncIterator[Store]:
    async with open_store("memory://") as store:
        await build(store, "debate", "debate", ["pro", "con", "judge"], {"mediator_agent_name": "judge"})
        await build(store, "panel", "ensemble", ["pro", "con"], {"aggregation_method": "vote"})
        agents = {
            "pro": ScriptedAgent([reply({"answer": "a"}, 0.9)]),
            "con": ScriptedAgent([reply({"answer": "b"}, 0.4)]),
            "judge": ScriptedAgent([reply({"answer": "a"}, 1.0)]),
        }
        engine = Engine(store, agents)
        for i in range(3):
            await engine.run("debate", {"i": i})
            await engine.run("panel", {"i": i})
        yield store


@pytest_asyncio.fixture
async def postgres() -> AsyncIterator[SqlStore]:
    async with postgres_store() as store:
        yield store


@pytest_asyncio.fixture
async def mongo() -> AsyncIterator[MongoStore]:
    async with mongo_store() as store:
        yield store


@pytest_asyncio.fixture(params=["postgresql", "mongodb", "mongodb-standalone"])
async def resumable_target(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "postgresql":
        async with postgres_store() as postgres:
            yield postgres
        return
    async with mongo_store(standalone=request.param == "mongodb-standalone") as store:
        yield store


async def test_copy_through_every_backend(
    populated: Store, postgres: SqlStore, mongo: MongoStore, tmp_path: Path
) -> None:
    expected = await dump_store(populated)
    assert len(expected["messages"]) > 10
    async with open_store(f"sqlite:///{tmp_path / 'copy.db'}") as sqlite:
        await sqlite.create_schema()
        checksums = set()
        for source, target in ((populated, sqlite), (sqlite, postgres), (postgres, mongo)):
            summary = await copy_store(source, target, batch_size=4)
            assert summary.written == summary.counts
            assert await dump_store(target) == expected
            checksums.add(summary.checksum)
        assert len(checksums) == 1


async def test_interrupted_copy_resumes_without_duplicates(populated: Store, resumable_target: Store) -> None:
    """With transactions an interrupted copy leaves nothing; without, what was written stays
    (docs/backends.md); either way a rerun completes it without duplicates."""
    expected = await dump_store(populated)
    target = resumable_target
    batches = 0

    def stop_half_way(kind: str, count: int) -> None:
        nonlocal batches
        batches += 1
        if batches == 6:
            raise Interrupted

    with pytest.raises(Interrupted):
        await copy_store(populated, target, batch_size=3, progress=stop_half_way)
    partial = await dump_store(target)
    written = sum(len(v) for v in partial.values())
    if target.capabilities.transactions:  # one transaction: an interrupted copy leaves nothing
        assert written == 0
    else:  # documented in docs/backends.md: what was written stays, a rerun completes it
        assert 0 < written < sum(len(v) for v in expected.values())
    summary = await copy_store(populated, target, batch_size=3)
    assert sum(summary.written.values()) == sum(summary.counts.values()) - written
    assert await dump_store(target) == expected


async def _unchanged(target: Store, refused: type[BaseException], match: str, source: Store) -> None:
    before = await fingerprint(target)
    with pytest.raises(refused, match=match):
        await copy_store(source, target, batch_size=3)
    after = await fingerprint(target)
    assert (after.counts, after.checksum) == (before.counts, before.checksum)


async def test_a_source_value_the_domain_refuses_stops_the_copy_before_any_write(
    populated: Store, postgres: SqlStore, tmp_path: Path
) -> None:
    """A round_number PostgreSQL's integer column cannot hold (written into SQLite behind the
    library's back) is refused by the domain while reading, never half-way into the target."""
    async with open_store(f"sqlite:///{tmp_path / 'source.db'}") as sqlite:
        await sqlite.create_schema()
        await copy_store(populated, sqlite)
        assert isinstance(sqlite, SqlStore)
        async with sqlite.engine.begin() as conn:
            await conn.execute(text("UPDATE qmcp_messages SET round_number = 2147483648"))
        await _unchanged(postgres, ValidationError, "round_number", sqlite)


@asynccontextmanager
async def any_target(kind: str, folder: Path) -> AsyncIterator[Store]:
    await asyncio.to_thread(folder.mkdir, exist_ok=True)
    if kind.startswith("mongodb"):
        async with mongo_store(standalone=kind == "mongodb-standalone") as mongo:
            yield mongo
        return
    async with backend_store(kind, folder) as store:
        yield store


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mongodb", "mongodb-standalone"])
async def test_a_refused_copy_leaves_the_target_as_it_was(
    populated: Store, kind: str, tmp_path: Path
) -> None:
    """Refusals come before the first write, so they hold on MongoDB without transactions too."""
    async with any_target(kind, tmp_path / "clash") as target:
        await build(target, "other", "ensemble", ["x", "y"], {"aggregation_method": "vote"})
        # ids 1 and 2 of the target are other agent types than the source's
        await _unchanged(target, ExportRefused, r"conflict: the target's agent_type 1 'x'", populated)
    async with any_target(kind, tmp_path / "extras") as target:
        await copy_store(populated, target)
        extra = await target.agent_types.add(agent_type("extra"))
        assert extra.id is not None
        await _unchanged(target, ExportRefused, r"records the source does not have \(1 agent_type", populated)

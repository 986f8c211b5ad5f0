"""An answered call recorded in one statement on PostgreSQL (``adapters/sql/record.py``);
that it stores and refuses exactly what the composed path does is checked on every backend
by ``testing/conformance_record.py``. Here: that the one statement is what is sent, that a
refusal comes back as ``None`` with nothing changed, and that SQLite composes."""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import pytest_asyncio

from benchmarks.worker_statements import counting
from qmcp_agents.adapters.sql import SqlStore
from qmcp_agents.domain.ports import CallRecorder
from qmcp_agents.domain.recording import record_call
from qmcp_agents.domain.transactions import whole
from qmcp_agents.testing.builders import World
from qmcp_agents.testing.conformance_record import FAULTS, Recording

from .servers import postgres_store

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def store() -> AsyncIterator[SqlStore]:
    async with postgres_store() as sql_store:
        yield sql_store


@contextmanager
def sent() -> Iterator[collections.Counter[str]]:
    """The first word of every statement asyncpg sends meanwhile, counted (filled in when
    the block ends)."""
    verbs: collections.Counter[str] = collections.Counter()
    with counting() as counts:
        yield verbs
    for (_, _, verb), n in counts.items():
        verbs[verb.split()[0].split("(")[0].rstrip(";").upper()] += n


async def test_a_recorded_call_is_one_statement(store: SqlStore) -> None:
    world = await World(store).build()
    for leased, attempt_given in ((True, True), (True, False), (False, False)):
        recording = await Recording(world).build(1, leased, attempt_given, frozenset(), {"answer": 1})
        with sent() as counts:
            recorded = await store.record_call(*recording.arguments())
        assert recorded is not None
        assert counts == {"WITH": 1}, counts
        assert recorded.message.sequence_number == 2
        assert await store.agent_instances.get(recorded.instance.id) == recorded.instance


async def test_in_a_whole_transaction_the_call_is_one_statement_in_it(store: SqlStore) -> None:
    world = await World(store).build()
    recording = await Recording(world).build(0, True, True, frozenset(), {"answer": 1})
    with sent() as counts:
        async with whole(store):
            await record_call(store, *recording.arguments())
    assert counts == {"BEGIN": 1, "WITH": 1, "COMMIT": 1}, counts


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_refused_call_is_none_and_changes_nothing(store: SqlStore, fault: str) -> None:
    """Refused by the statement's checks (or, for arguments it does not take as they are,
    before it): ``None``, the store and the lease entries as they were, so the composed
    path can say why."""
    world = await World(store).build()
    recording = await Recording(world).build(1, True, True, frozenset({fault}), {"answer": 1})
    before = await recording.state()
    assert await store.record_call(*recording.arguments()) is None
    assert await recording.state() == before


async def test_sqlite_composes(tmp_path: Path) -> None:
    async with SqlStore(f"sqlite:///{tmp_path / 'store.db'}") as sqlite:
        await sqlite.create_schema()
        world = await World(sqlite).build()
        recording = await Recording(world).build(0, True, True, frozenset(), {"answer": 1})
        assert isinstance(sqlite, CallRecorder)
        assert await sqlite.record_call(*recording.arguments()) is None
        recorded = await record_call(sqlite, *recording.arguments())
        assert recorded.message.sequence_number == 1

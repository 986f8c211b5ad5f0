"""An execution updated under a worker's lease in one statement on PostgreSQL
(``adapters/sql/fenced.py``); that it stores and refuses exactly what the composed path does
is checked on every backend by ``testing/conformance_fenced.py``. Here: that the one
statement is what is sent, that a refusal comes back as ``None`` with nothing changed, and
that SQLite composes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from benchmarks.worker_statements import answering, counting, labelled
from qmcp_agents.adapters.sql import SqlStore
from qmcp_agents.domain import AgentInstance
from qmcp_agents.domain.engine import Engine, ScriptedAgent
from qmcp_agents.domain.engine.worker import Worker
from qmcp_agents.domain.leases import LeaseHold
from qmcp_agents.domain.ports import FencedUpdater
from qmcp_agents.domain.recording import update_execution_fenced
from qmcp_agents.domain.transactions import whole
from qmcp_agents.testing.builders import World, register_topology
from qmcp_agents.testing.conformance_fenced import FAULTS, MOVES, Fenced

from .servers import postgres_store
from .test_sql_record import sent

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def store() -> AsyncIterator[SqlStore]:
    async with postgres_store() as sql_store:
        yield sql_store


@pytest.mark.parametrize("move", MOVES)
async def test_a_fenced_update_is_one_statement(store: SqlStore, move: str) -> None:
    world = await World(store).build()
    for release, attempt_given in ((True, True), (True, False), (False, True), (False, False)):
        fenced = await Fenced(world).build(move, release, attempt_given, frozenset())
        with sent() as counts:
            updated = await store.update_execution_fenced(*fenced.arguments())
        assert updated is not None
        assert counts == {"WITH": 1}, counts
        assert await store.executions.get(updated.id) == updated
        assert (await store.leases.find(fenced.lease.execution_id) is None) == release


async def test_a_workers_drive_starts_and_ends_in_one_statement_each(store: SqlStore) -> None:
    """The engine writes a worker's start and end through the one statement: two of them
    per drive (start; end in its transaction), and no lease hold or release of their own."""
    await register_topology(store, "one", "pipeline", ["s0"])
    labelled(store)
    engine = Engine(store, {"s0": ScriptedAgent([answering])})
    submitted = await engine.submit("one", {"n": 1})
    with counting() as counts:
        stats = await Worker(engine, name="w", poll_seconds=0.01).run(until_idle=True)
    assert stats.finished.get("completed") == 1, stats
    fenced = [(verb, n) for (_, label, verb), n in counts.items() if label == "update_execution_fenced"]
    assert fenced == [("WITH(append)", 2)], counts
    assert not [key for key in counts if key[1] == "leases.release"], counts
    assert (await store.executions.get(submitted)).status.value == "completed"
    assert await store.leases.find(submitted) is None


async def test_in_a_whole_transaction_the_fenced_update_is_one_statement_in_it(store: SqlStore) -> None:
    world = await World(store).build()
    fenced = await Fenced(world).build("complete", True, True, frozenset())
    with sent() as counts:
        async with whole(store):
            await update_execution_fenced(store, *fenced.arguments())
    assert counts == {"BEGIN": 1, "WITH": 1, "COMMIT": 1}, counts


@pytest.mark.parametrize("release", [True, False])
@pytest.mark.parametrize("fault", FAULTS)
async def test_a_refused_fenced_update_is_none_and_changes_nothing(
    store: SqlStore, fault: str, release: bool
) -> None:
    """Refused by the statement's checks (or, for an execution it does not take as it is,
    before it): ``None``, the store and the lease entries as they were, so the composed
    path can say why."""
    world = await World(store).build()
    move = "start" if fault in ("stale_revision", "final") else "complete"
    fenced = await Fenced(world).build(move, release, True, frozenset({fault}))
    before = await fenced.state()
    assert await store.update_execution_fenced(*fenced.arguments()) is None
    assert await fenced.state() == before


async def test_sqlite_composes(tmp_path: Path) -> None:
    async with SqlStore(f"sqlite:///{tmp_path / 'store.db'}") as sqlite:
        await sqlite.create_schema()
        world = await World(sqlite).build()
        fenced = await Fenced(world).build("complete", True, True, frozenset())
        assert isinstance(sqlite, FencedUpdater)
        assert await sqlite.update_execution_fenced(*fenced.arguments()) is None
        done = await update_execution_fenced(sqlite, *fenced.arguments())
        assert await sqlite.leases.find(fenced.execution.id) is None
        assert await sqlite.executions.get(done.id) == done


async def test_a_workers_drive_of_three_members_sends_nine_statements(store: SqlStore) -> None:
    """What one drive of a three-stage pipeline sends (decision "16: fewer statements per
    drive"): the claim; the start (read, fenced update); the topology with its agent types
    (one statement for all three); the instances (list, then the fenced insert); one
    statement per answer; the finish (its fenced update, from the drive's own copy)."""
    await register_topology(store, "three", "pipeline", ["s0", "s1", "s2"])
    labelled(store)
    engine = Engine(store, {f"s{i}": ScriptedAgent([answering]) for i in range(3)})
    submitted = await engine.submit("three", {"n": 1})
    with counting() as counts:
        stats = await Worker(engine, name="w", poll_seconds=0.01).run(until_idle=True)
    assert stats.finished.get("completed") == 1, stats
    by_store_call: dict[str, int] = {}
    for (_, label, _), n in counts.items():
        by_store_call[label] = by_store_call.get(label, 0) + n
    by_store_call.pop("leases.claim")  # (and more, finding nothing, until idle)
    assert by_store_call == {
        "executions.find": 1,
        "update_execution_fenced": 2,
        "topologies.with_agent_types": 1,
        "agent_instances.list": 1,
        "add_instances_fenced": 1,
        "record_call": 3,
    }, counts
    assert (await store.executions.get(submitted)).status.value == "completed"


async def test_instances_added_under_a_lease_are_one_statement(store: SqlStore) -> None:
    world = await World(store).build()
    await store.leases.enqueue(world.execution.id)
    (lease,) = await store.leases.claim("w1", limit=1, lease_seconds=60)
    hold = LeaseHold(world.execution.id, "w1", lease.attempts)
    assert world.agent_type.id is not None
    seat = {"agent_type_id": world.agent_type.id, "execution_id": world.execution.id}
    fresh = [AgentInstance(**seat) for _ in range(3)]
    with sent() as counts:
        added = await store.add_instances_fenced(fresh, hold)
    assert counts == {"WITH": 1}, counts
    assert added is not None
    assert [a.id for a in added] == [f.id for f in fresh]
    lost = LeaseHold(world.execution.id, "w2", lease.attempts)
    refused = [AgentInstance(**seat)]
    assert await store.add_instances_fenced(refused, lost) is None
    assert await store.agent_instances.find(refused[0].id) is None

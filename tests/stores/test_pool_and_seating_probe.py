"""A hostile probe of the bounded pool and close() (decision "16: a pool that does not
churn"), of the one-statement fenced seating and of the one-statement topology read
(decision "16: fewer statements per drive"). Every wait is bounded, so a hang fails fast."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import text

from qmcp_agents.adapters.sql import SqlStore
from qmcp_agents.domain import AgentInstance, AlreadyExists, IntegrityError, NotFound, StoreUnavailable
from qmcp_agents.domain.engine import Engine
from qmcp_agents.domain.leases import LeaseHold, LeaseLost
from qmcp_agents.domain.reading import topology_with_agent_types, topology_with_agent_types_composed
from qmcp_agents.domain.recording import add_instances_fenced
from qmcp_agents.domain.transactions import whole
from qmcp_agents.testing.builders import World, agent_type, message, topology
from qmcp_agents.testing.inspect import dump_store

from .servers import POSTGRES_URL, sql_store

pytestmark = pytest.mark.asyncio
KINDS = ["sqlite", "postgresql"]
T = TypeVar("T")


async def bounded(step: Awaitable[T], seconds: float = 4.0) -> T:
    return await asyncio.wait_for(step, seconds)


async def server_connections(label: str) -> int:
    """The PostgreSQL connections open under ``label`` (a store's application_name)."""
    observer = SqlStore(POSTGRES_URL, pool_size=1)
    try:
        async with observer.engine.connect() as conn:
            found = await conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :label"),
                {"label": label},
            )
            return int(found.scalar_one())
    finally:
        await observer.close()


def checked_out(engine: Any) -> int:
    return int(engine.sync_engine.pool.checkedout())


async def closed_and_let_go(store: SqlStore, engine: Any) -> None:
    """Only the kept SQLite connection still out; then closed, and everything let go."""
    assert checked_out(engine) == len(store._spare)
    await bounded(store.close())
    await all_let_go(store, engine)


async def all_let_go(store: SqlStore, engine: Any) -> None:
    """No call uses ``engine`` any more, its pool is empty, and (PostgreSQL) no server
    connection of the store is left."""
    assert engine not in store._users, store._users
    pool = engine.sync_engine.pool
    assert pool.checkedout() == 0
    assert pool.checkedin() == 0  # disposed: nothing kept
    if store.dialect == "postgresql":
        for _ in range(20):  # a closed backend leaves pg_stat_activity a moment later
            if await server_connections(store.label) == 0:
                return
            await asyncio.sleep(0.05)
        assert await server_connections(store.label) == 0


async def holding(store: SqlStore, started: asyncio.Event, release: asyncio.Event) -> None:
    """A transaction on one pooled connection, kept open until ``release``."""
    async with store.transaction():
        await store.agent_types.count()
        started.set()
        await release.wait()


async def holding_driver(store: SqlStore, started: asyncio.Event, release: asyncio.Event) -> None:
    """A driver-level connection (no SQLite write lock), kept until ``release``."""
    async with store.driver():
        started.set()
        await release.wait()


async def held(store: SqlStore, hold: Any = holding) -> tuple[asyncio.Future[None], asyncio.Event]:
    """One pooled connection taken by ``hold`` (:func:`holding`, or :func:`holding_driver`)
    and kept until the event returned is set: the holding task, once it holds it, and that
    event."""
    started, release = asyncio.Event(), asyncio.Event()
    holder = asyncio.ensure_future(hold(store, started, release))
    await bounded(started.wait())
    return holder, release


# --- 1. the pool and close() ------------------------------------------------------------------


@pytest.mark.parametrize("pool_size", [1, 2])
@pytest.mark.parametrize("kind", KINDS)
async def test_close_while_calls_wait_on_an_exhausted_pool_lets_them_finish_then_disposes(
    kind: str, pool_size: int, tmp_path: Path
) -> None:
    async with sql_store(kind, tmp_path, pool_size=pool_size, pool_timeout=3.0) as store:
        world = await World(store).build()
        execution_id, sender = world.execution.id, world.instance.id
        await store.close()  # no spare SQLite connection: the holders below take every one
        engine = store.engine
        release = asyncio.Event()
        starts = [asyncio.Event() for _ in range(pool_size)]
        holders = [asyncio.ensure_future(holding_driver(store, s, release)) for s in starts]
        await bounded(asyncio.gather(*(s.wait() for s in starts)))
        assert checked_out(engine) == pool_size
        waiting = [
            asyncio.ensure_future(store.agent_types.count()),
            asyncio.ensure_future(store.messages.last(execution_id, 3)),
            asyncio.ensure_future(store.messages.append(execution_id, [message(sender, {"w": 1})])),
            asyncio.ensure_future(store.executions.get(execution_id)),
        ]
        await asyncio.sleep(0.1)
        assert not any(w.done() for w in waiting)
        await bounded(store.close())
        release.set()
        await bounded(asyncio.gather(*holders))
        results: list[Any] = list(await bounded(asyncio.gather(*waiting)))
        count, last, appended, got = results
        assert count == 1
        assert got.id == execution_id
        assert [m.sequence_number for m in last] in ([], [1])
        assert [m.sequence_number for m in appended] == [1]
        await all_let_go(store, engine)
        # the store opens again
        assert [m.sequence_number for m in await store.messages.last(execution_id, 3)] == [1]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_call_cancelled_while_waiting_for_a_connection_leaves_the_count_and_no_connection(
    kind: str, tmp_path: Path
) -> None:
    async with sql_store(kind, tmp_path, pool_size=1, pool_timeout=3.0) as store:
        world = await World(store).build()
        execution_id, sender = world.execution.id, world.instance.id
        before = await dump_store(store)
        await store.close()
        engine = store.engine
        holder, release = await held(store)
        waiting = [
            asyncio.ensure_future(store.agent_types.add(agent_type("late"))),
            asyncio.ensure_future(store.messages.last(execution_id, 3)),
            asyncio.ensure_future(store.messages.append(execution_id, [message(sender, {"w": 1})])),
        ]
        await asyncio.sleep(0.1)
        for w in waiting:
            w.cancel()
        await asyncio.sleep(0.1)
        release.set()
        await bounded(holder)
        outcomes = await bounded(asyncio.gather(*waiting, return_exceptions=True))
        # A settled call runs to its end (issue 14): each write was made whole or not at all.
        assert all(isinstance(o, asyncio.CancelledError) for o in outcomes), outcomes
        assert store._users.get(engine, 0) == 0, store._users
        await closed_and_let_go(store, engine)
        after = await dump_store(store)
        assert len(after["messages"]) in (0, 1)
        assert len(after["agent_types"]) in (1, 2)
        assert {k: v for k, v in after.items() if k not in ("messages", "agent_types")} == {
            k: v for k, v in before.items() if k not in ("messages", "agent_types")
        }


@pytest.mark.parametrize("kind", KINDS)
async def test_a_waiter_cancelled_just_as_a_connection_comes_free_does_not_lose_it(
    kind: str, tmp_path: Path
) -> None:
    """The holder gives its connection back in the same loop turn as the waiter is
    cancelled: the connection must go back to the pool (else the pool of one is empty for
    good and every later call waits out pool_timeout)."""
    async with sql_store(kind, tmp_path, pool_size=1, pool_timeout=1.0) as store:
        world = await World(store).build()
        await store.close()
        engine = store.engine
        for _ in range(5):
            holder, release = await held(store)
            waiter = asyncio.ensure_future(store.messages.last(world.execution.id, 1))
            other = asyncio.ensure_future(store.agent_types.count())
            await asyncio.sleep(0.05)
            release.set()
            await asyncio.sleep(0)
            waiter.cancel()
            other.cancel()
            await bounded(asyncio.gather(holder, waiter, other, return_exceptions=True))
            assert await bounded(store.agent_types.count()) == 1
        await closed_and_let_go(store, engine)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_transaction_cancelled_while_waiting_for_a_connection_leaves_nothing(
    kind: str, tmp_path: Path
) -> None:
    async with sql_store(kind, tmp_path, pool_size=1, pool_timeout=3.0) as store:
        await World(store).build()
        before = await dump_store(store)
        await store.close()
        engine = store.engine
        holder, release = await held(store, holding_driver)
        entered = asyncio.Event()

        async def late() -> None:
            async with store.transaction():
                entered.set()
                await store.agent_types.add(agent_type("late"))

        waiters = [asyncio.ensure_future(late()) for _ in range(2)]
        await asyncio.sleep(0.1)
        assert store._users[engine] in (2, 3)  # (SQLite: the second queues on the writer lock first)
        for w in waiters:
            w.cancel()
        await bounded(store.close())
        release.set()
        outcomes = await bounded(asyncio.gather(holder, *waiters, return_exceptions=True))
        assert outcomes[0] is None
        assert all(isinstance(o, asyncio.CancelledError) for o in outcomes[1:]), outcomes
        assert not entered.is_set()
        await all_let_go(store, engine)
        assert await dump_store(store) == before


@pytest.mark.parametrize("kind", KINDS)
async def test_close_twice_and_concurrently_under_waiting_calls(kind: str, tmp_path: Path) -> None:
    async with sql_store(kind, tmp_path, pool_size=1, pool_timeout=3.0) as store:
        world = await World(store).build()
        await store.close()
        engine = store.engine
        holder, release = await held(store)
        waiting = [asyncio.ensure_future(store.messages.last(world.execution.id, 1)) for _ in range(3)]
        await asyncio.sleep(0.05)
        await bounded(asyncio.gather(store.close(), store.close()))
        await bounded(store.close())
        release.set()
        await bounded(asyncio.gather(holder, *waiting))
        await bounded(asyncio.gather(store.close(), store.close()))
        await all_let_go(store, engine)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_transaction_open_while_close_runs_commits_and_the_engine_goes_after(
    kind: str, tmp_path: Path
) -> None:
    async with sql_store(kind, tmp_path, pool_size=1, pool_timeout=3.0) as store:
        world = await World(store).build()
        execution_id, sender = world.execution.id, world.instance.id
        await store.close()
        engine = store.engine
        async with whole(store):
            await store.messages.append(execution_id, [message(sender, {"n": 1})])
            await bounded(store.close())
            await store.messages.append(execution_id, [message(sender, {"n": 2})])
            assert len(await store.messages.last(execution_id, 5)) == 2
        async with store.transaction():
            await store.agent_types.add(agent_type("during"))
            await bounded(store.close())
            await store.agent_types.count()
        await all_let_go(store, engine)
        assert sorted(m.content["n"] for m in await store.messages.last(execution_id, 5)) == [1, 2]
        assert await store.agent_types.count() == 2


@pytest.mark.parametrize("kind", KINDS)
async def test_a_pool_of_one_with_a_transaction_and_concurrent_driver_calls_does_not_deadlock(
    kind: str, tmp_path: Path
) -> None:
    async with sql_store(kind, tmp_path, pool_size=1, pool_timeout=2.0) as store:
        world = await World(store).build()
        execution_id, sender = world.execution.id, world.instance.id

        async def inside() -> None:
            async with store.transaction():
                await asyncio.gather(
                    *(store.messages.append(execution_id, [message(sender, {"i": i})]) for i in range(5)),
                    *(store.messages.last(execution_id, 2) for _ in range(5)),
                    store.agent_types.count(),
                )

        async def outside() -> None:
            await asyncio.gather(
                *(store.messages.append(execution_id, [message(sender, {"o": i})]) for i in range(5)),
                *(store.messages.last(execution_id, 2) for _ in range(5)),
            )

        await bounded(asyncio.gather(inside(), outside(), inside(), outside()))
        listed = await store.messages.list(execution_id, limit=100)
        assert [m.sequence_number for m in listed.items] == list(range(1, 21))


@pytest.mark.parametrize("kind", KINDS)
async def test_a_read_beside_a_transaction_gets_the_second_connection_of_a_pool_of_two(
    kind: str, tmp_path: Path
) -> None:
    """pool_size=2, one transaction open: a read made meanwhile by another task gets the
    other connection at once (WAL lets it run beside the writer), not after the
    transaction (or after pool_timeout)."""
    async with sql_store(kind, tmp_path, pool_size=2, pool_timeout=0.5) as store:
        world = await World(store).build()
        await store.messages.last(world.execution.id, 1)  # SQLite keeps its spare now
        holder, release = await held(store)
        try:
            assert await bounded(store.executions.get(world.execution.id)) == world.execution
            assert await bounded(store.agent_types.count()) == 1
        finally:
            release.set()
            await bounded(holder)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_read_in_a_context_of_its_own_while_a_transaction_waits_for_it(
    kind: str, tmp_path: Path
) -> None:
    """A transaction's body waits for a read made outside it (a fresh context: e.g. a
    callback scheduled by another library). With pool_size=2 the transaction holds one
    connection; the read must get the other (SQLite keeps a spare one checked out for its
    driver-level calls: is it the other?)."""
    async with sql_store(kind, tmp_path, pool_size=2, pool_timeout=1.5) as store:
        world = await World(store).build()
        await store.messages.last(world.execution.id, 1)  # SQLite keeps its spare now
        async with store.transaction():
            await store.agent_types.count()
            read = contextvars.Context().run(asyncio.ensure_future, store.agent_types.count())
            assert await bounded(read) == 1


# --- 2. instances seated under a lease in one statement (PostgreSQL) ---------------------------


ALLOWED = (LeaseLost, AlreadyExists, IntegrityError, NotFound)


async def leased(store: SqlStore, world: World, owner: str = "w1", seconds: float = 60) -> LeaseHold:
    execution = await world.new_execution()
    await store.leases.enqueue(execution.id)
    (lease,) = await store.leases.claim(owner, limit=1, lease_seconds=seconds)
    assert lease.execution_id == execution.id
    return LeaseHold(execution.id, owner, lease.attempts)


def seats(world: World, hold: LeaseHold, n: int = 3) -> list[AgentInstance]:
    assert world.agent_type.id is not None
    return [
        AgentInstance(agent_type_id=world.agent_type.id, execution_id=hold.execution_id) for _ in range(n)
    ]


async def seated(store: SqlStore, instances: list[AgentInstance]) -> int:
    return sum([await store.agent_instances.find(i.id) is not None for i in instances])


async def test_seating_races_a_cancel(tmp_path: Path) -> None:
    async with sql_store("postgresql", tmp_path, pool_size=6) as store:
        world = await World(store).build()
        engine = Engine(store, {})
        for _ in range(8):
            hold = await leased(store, world)
            fresh = seats(world, hold)
            added, cancelled = await bounded(
                asyncio.gather(
                    add_instances_fenced(store, fresh, hold),
                    engine.cancel(hold.execution_id),
                    return_exceptions=True,
                )
            )
            assert not isinstance(cancelled, BaseException), cancelled
            if isinstance(added, BaseException):
                assert isinstance(added, LeaseLost), repr(added)
                assert await seated(store, fresh) == 0
            else:
                assert [a.id for a in added] == [f.id for f in fresh]
                assert await seated(store, fresh) == 3
            assert (await store.executions.get(hold.execution_id)).status.value == "cancelled"
            # (a claimed entry stays for its worker to see: the composed path seats too)


async def test_seating_races_a_delete_of_the_execution(tmp_path: Path) -> None:
    async with sql_store("postgresql", tmp_path, pool_size=6) as store:
        world = await World(store).build()
        for _ in range(8):
            hold = await leased(store, world)
            fresh = seats(world, hold)
            added, deleted = await bounded(
                asyncio.gather(
                    add_instances_fenced(store, fresh, hold),
                    store.executions.delete(hold.execution_id),
                    return_exceptions=True,
                )
            )
            for outcome in (added, deleted):
                if isinstance(outcome, BaseException):
                    assert isinstance(outcome, ALLOWED), repr(outcome)
            gone = not isinstance(deleted, BaseException)
            if isinstance(added, BaseException):
                assert await seated(store, fresh) == 0
            elif not gone:
                assert await seated(store, fresh) == 3
            if gone:
                with pytest.raises(NotFound):
                    await store.executions.get(hold.execution_id)


async def test_seating_after_the_lease_expired_and_another_worker_claimed_is_refused(tmp_path: Path) -> None:
    async with sql_store("postgresql", tmp_path, pool_size=6) as store:
        world = await World(store).build()
        for _ in range(4):
            hold = await leased(store, world, "w1", seconds=0.05)
            await asyncio.sleep(0.12)
            fresh = seats(world, hold)
            before = await dump_store(store)
            added, claimed = await bounded(
                asyncio.gather(
                    add_instances_fenced(store, fresh, hold),
                    store.leases.claim("w2", limit=1, lease_seconds=60),
                    return_exceptions=True,
                )
            )
            assert not isinstance(claimed, BaseException), claimed
            if [c.execution_id for c in claimed] == [hold.execution_id]:
                if isinstance(added, BaseException):
                    assert isinstance(added, LeaseLost), repr(added)
                    assert await seated(store, fresh) == 0
                else:  # seated before the claim: w1's lease was still there, expired or not
                    assert await seated(store, fresh) == 3
            else:  # the claim skipped the entry the seating had locked: w1 seated, w2 claims now
                assert claimed == []
                assert not isinstance(added, BaseException), added
                assert await seated(store, fresh) == 3
                (claim,) = await store.leases.claim("w2", limit=1, lease_seconds=60)
                assert claim.execution_id == hold.execution_id
            late = seats(world, hold, 2)
            before = await dump_store(store)
            with pytest.raises(LeaseLost):
                await bounded(add_instances_fenced(store, late, hold))
            assert await dump_store(store) == before
            await store.leases.release(hold.execution_id, "w2")


async def test_seating_the_same_instances_twice_at_once_seats_them_once(tmp_path: Path) -> None:
    async with sql_store("postgresql", tmp_path, pool_size=6) as store:
        world = await World(store).build()
        for _ in range(8):
            hold = await leased(store, world)
            fresh = seats(world, hold)
            outcomes = await bounded(
                asyncio.gather(
                    *(add_instances_fenced(store, fresh, hold) for _ in range(3)), return_exceptions=True
                )
            )
            won = [o for o in outcomes if not isinstance(o, BaseException)]
            lost = [o for o in outcomes if isinstance(o, BaseException)]
            assert len(won) == 1, outcomes
            assert all(isinstance(o, AlreadyExists) for o in lost), outcomes
            assert await seated(store, fresh) == 3
            # overlapping sets: all or nothing
            overlap = [fresh[0], *seats(world, hold, 2)]
            before = await dump_store(store)
            with pytest.raises(AlreadyExists):
                await add_instances_fenced(store, overlap, hold)
            assert await dump_store(store) == before


# --- 3. the topology read with its agent types ---------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_the_topology_read_races_updates_and_gives_only_committed_pairs(
    kind: str, tmp_path: Path
) -> None:
    async with sql_store(kind, tmp_path, pool_size=4) as store:
        types = [await store.agent_types.add(agent_type(f"t{i}")) for i in range(4)]
        team = await store.topologies.add(topology("team", members=types[:2]))
        assert team.id is not None
        committed = [await topology_with_agent_types_composed(store, team.id)]
        stop = asyncio.Event()
        seen: list[Any] = []

        async def read() -> None:
            assert team.id is not None
            while not stop.is_set():
                seen.append(await topology_with_agent_types(store, team.id))

        async def write() -> None:
            assert team.id is not None
            current = team
            for round_ in range(12):
                members = [types[(round_ + k) % 4] for k in range(1 + round_ % 3)]
                fresh = topology("team", members=members)
                current = current.model_copy(update={"memberships": fresh.memberships})
                current = await store.topologies.update(current)
                committed.append(await topology_with_agent_types_composed(store, team.id))
                t = types[round_ % 4]
                assert t.id is not None
                changed = (await store.agent_types.get(t.id)).model_copy(
                    update={"description": f"round {round_}"}
                )
                await store.agent_types.update(changed)
                committed.append(await topology_with_agent_types_composed(store, team.id))
            stop.set()

        await bounded(asyncio.gather(read(), read(), write()), 8)
        assert seen
        for pair in seen:
            topology_read, agent_types = pair
            ids = {m.agent_type_id for m in topology_read.memberships}
            assert set(agent_types) == ids
            # the memberships are those of a committed topology
            assert any(topology_read == t for t, _ in committed), topology_read
            for type_id, read_type in agent_types.items():
                assert any(read_type == c.get(type_id) for _, c in committed), read_type


@pytest.mark.parametrize("kind", KINDS)
async def test_the_topology_read_races_a_delete(kind: str, tmp_path: Path) -> None:
    async with sql_store(kind, tmp_path, pool_size=4) as store:
        types = [await store.agent_types.add(agent_type(f"t{i}")) for i in range(3)]
        for _ in range(6):
            team = await store.topologies.add(topology("team", members=types))
            assert team.id is not None
            expected = await topology_with_agent_types_composed(store, team.id)
            outcomes = await bounded(
                asyncio.gather(
                    *(topology_with_agent_types(store, team.id) for _ in range(3)),
                    store.topologies.delete(team.id),
                    return_exceptions=True,
                )
            )
            for outcome in outcomes[:3]:
                if isinstance(outcome, BaseException):
                    assert isinstance(outcome, NotFound), repr(outcome)
                else:
                    assert outcome == expected
            with pytest.raises(NotFound):
                await topology_with_agent_types(store, team.id)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_drive_of_a_topology_changed_under_it_never_fails_with_a_key_error(
    kind: str, tmp_path: Path
) -> None:
    """The engine drives with the pair it read; whatever updates race the read, a member
    never misses its agent type (KeyError in _members)."""
    from benchmarks.worker_statements import answering
    from qmcp_agents.domain.engine import ScriptedAgent
    from qmcp_agents.testing.builders import register_topology

    async with sql_store(kind, tmp_path, pool_size=4) as store:
        await register_topology(store, "moving", "pipeline", ["s0", "s1"])
        found = await store.topologies.list(limit=10)
        (moving,) = [t for t in found.items if t.name == "moving"]
        types = [t.id for t in (await store.agent_types.list(limit=10)).items if t.id is not None]

        engine = Engine(store, {name: ScriptedAgent([answering] * 4) for name in ("s0", "s1")})
        stop = asyncio.Event()

        async def churn() -> None:
            current = moving
            while not stop.is_set():
                current = current.model_copy(update={"memberships": list(reversed(current.memberships))})
                current = await store.topologies.update(current)
                for type_id in types:
                    t = await store.agent_types.get(type_id)
                    await store.agent_types.update(t.model_copy(update={"description": "x"}))

        churning = asyncio.ensure_future(churn())
        try:
            for _ in range(3):
                try:
                    await bounded(engine.run("moving", {"n": 1}))
                except KeyError as error:  # pragma: no cover - the defect probed
                    pytest.fail(f"KeyError in a drive: {error!r}")
        finally:
            stop.set()
            await bounded(churning)


async def test_seating_the_same_instances_in_opposite_orders_at_once(tmp_path: Path) -> None:
    """Two drives seat the same two instances, in opposite orders: each insert may wait on
    the other's uncommitted row (a deadlock for the server). Exactly one seats them; the
    other is refused with a library error (AlreadyExists, or a ConcurrencyError to retry),
    never the driver's deadlock error, and nothing is half-written."""
    from qmcp_agents.domain import ConcurrencyError

    async with sql_store("postgresql", tmp_path, pool_size=6) as store:
        world = await World(store).build()
        for _ in range(10):
            hold = await leased(store, world)
            pair = seats(world, hold, 2)
            outcomes = await bounded(
                asyncio.gather(
                    add_instances_fenced(store, pair, hold),
                    add_instances_fenced(store, pair[::-1], hold),
                    return_exceptions=True,
                )
            )
            won = [o for o in outcomes if not isinstance(o, BaseException)]
            lost = [o for o in outcomes if isinstance(o, BaseException)]
            assert len(won) == 1, outcomes
            for error in lost:
                assert isinstance(error, AlreadyExists | ConcurrencyError), repr(error)
            assert await seated(store, pair) == 2 * len(won)


@pytest.mark.parametrize("kind", KINDS)
async def test_the_one_statement_topology_read_equals_the_composed_one_for_odd_shapes(
    kind: str, tmp_path: Path
) -> None:
    """No members; one agent type in several slots; members listed out of position order."""
    async with sql_store(kind, tmp_path) as store:
        a = await store.agent_types.add(agent_type("a"))
        b = await store.agent_types.add(agent_type("b"))
        shapes = [
            topology("empty", members=[]),
            topology("shared", members=[a, a, b, a], slots=["x", "y", "z", "w"]),
        ]
        reordered = topology("reordered", members=[a, b, a], slots=["p", "q", "r"])
        reordered.memberships.reverse()
        for shape in [*shapes, reordered]:
            stored = await store.topologies.add(shape)
            assert stored.id is not None
            one = await store.topology_with_agent_types(stored.id)
            composed = await topology_with_agent_types_composed(store, stored.id)
            assert one == composed, shape.name


@pytest.mark.parametrize("pool_size", [1, 2])
@pytest.mark.parametrize("kind", KINDS)
async def test_workers_on_a_tiny_pool_finish_every_drive_without_a_hang(
    kind: str, pool_size: int, tmp_path: Path
) -> None:
    """Two workers of concurrency 4 (heartbeats, claims, drives with their transactions and
    one-statement writes) on a pool of one or two connections: everything queues, nothing
    waits for a connection held by what waits for it."""
    from benchmarks.worker_statements import answering
    from qmcp_agents.domain.engine import ScriptedAgent
    from qmcp_agents.domain.engine.worker import Worker
    from qmcp_agents.testing.builders import register_topology

    async with sql_store(kind, tmp_path, pool_size=pool_size, pool_timeout=4.0) as store:
        await register_topology(store, "three", "pipeline", ["s0", "s1", "s2"])
        engine = Engine(store, {f"s{i}": ScriptedAgent([answering] * 20) for i in range(3)})
        submitted = [await engine.submit("three", {"n": n}) for n in range(6)]
        await store.close()
        pool_engine = store.engine
        workers = [
            Worker(engine, name=f"w{k}", concurrency=4, poll_seconds=0.01, lease_seconds=5) for k in range(2)
        ]
        await bounded(asyncio.gather(*(w.run(until_idle=True) for w in workers)), 4.5)
        for execution_id in submitted:
            assert (await store.executions.get(execution_id)).status.value == "completed"
            assert await store.leases.find(execution_id) is None
        await closed_and_let_go(store, pool_engine)


@pytest.mark.parametrize("kind", KINDS)
async def test_calls_that_wait_out_pool_timeout_after_close_let_go_and_the_last_user_disposes(
    kind: str, tmp_path: Path
) -> None:
    async with sql_store(kind, tmp_path, pool_size=1, pool_timeout=0.3) as store:
        world = await World(store).build()
        before = await dump_store(store)
        await store.close()
        engine = store.engine
        holder, release = await held(store, holding_driver)
        waiting = [
            asyncio.ensure_future(store.agent_types.add(agent_type("late"))),
            asyncio.ensure_future(store.messages.last(world.execution.id, 1)),
            asyncio.ensure_future(store.executions.get(world.execution.id)),
        ]
        await asyncio.sleep(0.05)
        await bounded(store.close())
        outcomes = await bounded(asyncio.gather(*waiting, return_exceptions=True))
        assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
        assert store._users == {engine: 1}  # the holder only
        assert checked_out(engine) == 1
        release.set()
        await bounded(holder)
        await all_let_go(store, engine)
        assert await dump_store(store) == before


async def test_calls_on_killed_connections_let_go_of_the_engine(tmp_path: Path) -> None:
    """The server ends the store's pooled connections: the calls that meet them fail or
    reconnect, and none of them stays counted as a user of the engine (else a close()
    would never dispose of it)."""
    async with sql_store("postgresql", tmp_path, pool_size=3, pool_timeout=2.0) as store:
        world = await World(store).build()
        await asyncio.gather(*(store.messages.last(world.execution.id, 1) for _ in range(6)))
        await asyncio.gather(*(store.agent_types.count() for _ in range(6)))
        engine = store.engine
        observer = SqlStore(POSTGRES_URL, pool_size=1)
        try:
            async with observer.engine.connect() as conn:
                await conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :l"
                    ),
                    {"l": store.label},
                )
        finally:
            await observer.close()
        await asyncio.sleep(0.1)
        outcomes = await bounded(
            asyncio.gather(
                *(store.messages.last(world.execution.id, 1) for _ in range(3)),
                *(store.agent_types.count() for _ in range(3)),
                *(store.executions.get(world.execution.id) for _ in range(3)),
                return_exceptions=True,
            )
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                assert isinstance(outcome, StoreUnavailable), repr(outcome)
        assert engine not in store._users, store._users
        assert await bounded(store.agent_types.count()) == 1
        await store.close()
        await all_let_go(store, engine)

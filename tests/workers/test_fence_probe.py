"""Hostile probes of the durable-run fencing (issue 16): compound runs stopped mid-child,
stalls longer than the lease, workers that share a name, store outages."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import pytest_asyncio

from qmcp_agents.domain import ExecutionStatus, MessageType, StoreUnavailable
from qmcp_agents.domain.engine import AgentContext, AgentReply, Engine, ScriptedAgent, reply
from qmcp_agents.domain.engine.worker import Worker
from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.queries import MAX_LIMIT
from qmcp_agents.testing.builders import register_topology
from tests.stores.servers import backend_store

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture(params=["memory", "sqlite", "postgresql"])
async def store(request: Any, tmp_path: Path) -> AsyncIterator[Store]:
    async with backend_store(request.param, tmp_path) as opened:
        await register_topology(opened, "chain", "pipeline", ["first", "second", "third"])
        await register_topology(opened, "both", "compound", [], {"sub_topologies": ["chain"]})
        await register_topology(opened, "duet", "ensemble", ["first", "second"], {})
        await register_topology(
            opened,
            "side",
            "compound",
            [],
            {"sub_topologies": ["chain", "duet"], "composition_type": "parallel"},
        )
        yield opened


def answering(context: AgentContext) -> AgentReply:
    return reply({"by": context.slot_name, "call": context.call})


def agents(delay: float = 0.0) -> dict[str, ScriptedAgent]:
    return {slot: ScriptedAgent([answering], delay=delay) for slot in ("first", "second", "third")}


async def check_once(store: Store, execution_id: UUID) -> list[str]:
    """Exactly-once records and gap-free sequence numbers; the calls recorded."""
    page = await store.messages.list(execution_id, limit=MAX_LIMIT)
    assert [m.sequence_number for m in page.items] == list(range(1, len(page.items) + 1))
    calls = [m.content["call"] for m in page.items if m.message_type is MessageType.RESPONSE]
    assert sorted(calls) == sorted(set(calls)), calls
    assert await store.results.count(execution_id=execution_id) == len(calls)
    return calls


async def _swept_by_claims(store: Store, *, tries: int, limit: int) -> None:
    """Claims (by a "sweeper", 50 ms apart, at most ``tries``) clear the entries left: none
    remains afterwards."""
    for _ in range(tries):
        if not await store.leases.list():
            break
        await store.leases.claim("sweeper", limit=limit, lease_seconds=1)
        await asyncio.sleep(0.05)
    assert await store.leases.list() == []


async def _soon(condition: Callable[[], bool | Awaitable[bool]]) -> None:
    """Poll ``condition`` every 10 ms for up to 5 s; the test then checks what it needs."""
    for _ in range(500):
        value = condition()
        if await value if inspect.isawaitable(value) else value:
            return
        await asyncio.sleep(0.01)


async def _has_child(store: Store, execution_id: UUID) -> bool:
    return bool((await store.executions.list(parent_id=execution_id)).items)


async def test_a_compound_handed_back_at_shutdown_is_finished_by_the_next_worker(store: Store) -> None:
    """Graceful shutdown hands back what is running: a compound stopped (grace over) while
    its child runs must be finished by the next worker, not failed because its child was
    cancelled on the way out."""
    slow = agents(delay=0.3)
    engine = Engine(store, slow)
    execution_id = await engine.submit("both", {"task": 1})
    worker = Worker(engine, name="leaving", grace_seconds=0.1, poll_seconds=0.05)
    running = asyncio.create_task(worker.run())
    await _soon(lambda: _has_child(store, execution_id))
    worker.stop()
    stats = await running
    assert stats.handed_back == 1, stats
    [child] = (await store.executions.list(parent_id=execution_id)).items
    assert child.status is ExecutionStatus.RUNNING, child.status  # left for the next worker
    stats = await Worker(Engine(store, agents()), name="next", poll_seconds=0.05).run(until_idle=True)
    assert stats.finished == {"completed": 1}, stats
    assert (await store.executions.get(execution_id)).status is ExecutionStatus.COMPLETED
    assert len(await check_once(store, child.id)) == 3
    assert await store.leases.list() == []


async def test_a_stalled_worker_taken_over_in_a_compound_leaves_the_child_alone(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker A stalls past its lease (its heartbeats renew nothing) while the child of a
    compound runs; the compound is claimed again (by A itself, or B) and its child driven
    on. The earlier drive, stopped, must not cancel the child the new one drives (it did:
    the compound then failed with "sub-topology 'chain' ended cancelled")."""
    real_heartbeat = store.leases.heartbeat
    loop = asyncio.get_running_loop()
    stalled_until = loop.time() + 1.0

    async def stalled(owner: str, ids: Any, *, lease_seconds: float) -> set[Any]:
        if owner == "A" and loop.time() < stalled_until:
            return set(ids)
        return await real_heartbeat(owner, ids, lease_seconds=lease_seconds)

    monkeypatch.setattr(store.leases, "heartbeat", stalled)
    slow = agents(delay=0.25)
    a = Worker(Engine(store, slow), name="A", lease_seconds=0.3, poll_seconds=0.02)
    execution_id = await a.engine.submit("both", {"task": 1})
    running_a = asyncio.create_task(a.run(until_idle=True))
    await _soon(lambda: bool(a.running))
    await asyncio.sleep(0.4)  # A's lease has expired
    b = Worker(Engine(store, agents(delay=0.25)), name="B", lease_seconds=0.3, poll_seconds=0.02)
    stats_b = await b.run(until_idle=True)
    stats_a = await running_a
    [child] = (await store.executions.list(parent_id=execution_id)).items
    parent = await store.executions.get(execution_id)
    assert (parent.status, child.status) == (ExecutionStatus.COMPLETED,) * 2, (stats_a, stats_b, parent.error)
    assert len(await check_once(store, child.id)) == 3
    assert await store.leases.list() == []


async def test_a_compound_cancelled_from_elsewhere_stops_its_child_too(store: Store) -> None:
    """The other side of leaving a child running: when the worker still holds the parent's
    lease (the parent was cancelled, or ran out of time), the child is stopped with it."""
    engine = Engine(store, agents(delay=0.2))
    execution_id = await engine.submit("both", {"task": 1})
    worker = Worker(engine, name="w", lease_seconds=2.0, poll_seconds=0.02)
    running = asyncio.create_task(worker.run())
    await _soon(lambda: _has_child(store, execution_id))
    await Engine(store, {}).cancel(execution_id)
    await _soon(lambda: not worker.running)
    worker.stop()
    await running
    [child] = (await store.executions.list(parent_id=execution_id)).items
    assert child.status is ExecutionStatus.CANCELLED
    assert (await store.executions.get(execution_id)).status is ExecutionStatus.CANCELLED
    await check_once(store, child.id)
    assert await store.leases.list() == []


async def test_a_compound_out_of_time_under_a_worker_stops_its_child(store: Store) -> None:
    engine = Engine(store, agents(delay=0.3))
    execution_id = await engine.submit("both", {"task": 1}, time_limit_seconds=0.4)
    stats = await Worker(engine, name="w", lease_seconds=2.0, poll_seconds=0.02).run(until_idle=True)
    assert stats.finished == {"failed": 1}, stats
    [child] = (await store.executions.list(parent_id=execution_id)).items
    assert child.status is ExecutionStatus.CANCELLED
    await check_once(store, child.id)
    assert await store.leases.list() == []


def blocking(seconds: float, every: int) -> Any:
    """An agent that blocks the whole event loop (time.sleep) on every ``every``-th call."""
    count = [0]

    def step(context: AgentContext) -> AgentReply:
        count[0] += 1
        if count[0] % every == 0:
            time.sleep(seconds)
        return answering(context)

    return step


async def test_event_loop_stalls_longer_than_the_lease_with_two_workers(store: Store) -> None:
    """Agents that block the event loop past the lease, two workers (one same-named pair
    too) in one process: every execution completes, each call recorded once, no entry
    left, no task left running."""
    steps = {slot: ScriptedAgent([blocking(0.35, 4)], delay=0.01) for slot in ("first", "second", "third")}
    engine = Engine(store, steps)
    ids = [await engine.submit("chain", {"task": i}) for i in range(8)]
    ids += [await engine.submit("both", {"task": i}) for i in range(4)]
    before = asyncio.all_tasks()
    workers = [
        Worker(Engine(store, steps), name=name, concurrency=3, lease_seconds=0.3, poll_seconds=0.02)
        for name in ("x", "y", "y")
    ]
    stats = await asyncio.gather(*(w.run(until_idle=True) for w in workers))
    assert asyncio.all_tasks() - before == set()
    for execution_id in ids:
        execution = await store.executions.get(execution_id)
        assert execution.status is ExecutionStatus.COMPLETED, (execution.error, stats)
        await check_once(store, execution_id)
        for child in (await store.executions.list(parent_id=execution_id)).items:
            assert child.status is ExecutionStatus.COMPLETED
            assert len(await check_once(store, child.id)) == 3
    assert await store.leases.list() == []


def asking(context: AgentContext) -> AgentReply:
    if context.human_input is not None:
        return reply({"human": context.human_input, "call": context.call})
    return reply({}, needs_human="which?")


async def test_a_stale_drive_of_a_same_named_worker_is_fenced_after_a_pause(store: Store) -> None:
    """The fencing token is (owner, attempts); the entry's attempts start again at 0 when a
    paused execution is answered (the entry was deleted at the pause). A drive of claim 1
    by a worker named "w" that is still running (stuck in an agent call, its heartbeat
    stuck) passes the fence again once another worker named "w" (a restarted process with a
    configured --name) claims the answered execution: attempt 1 again."""
    stale_agents = {
        "first": ScriptedAgent([answering], delay=1.2),
        "second": ScriptedAgent([asking]),
        "third": ScriptedAgent([answering]),
    }
    a = Worker(Engine(store, stale_agents), name="w", concurrency=1, lease_seconds=0.3, poll_seconds=0.02)

    async def stuck() -> None:
        await asyncio.sleep(3600)

    a._heartbeats = stuck  # type: ignore[method-assign]
    execution_id = await a.engine.submit("chain", {"task": 1})
    running_a = asyncio.create_task(a.run())
    await _soon(lambda: bool(a.running))
    await asyncio.sleep(0.4)  # claim 1's lease is over; its drive is still in "first"
    fresh = {
        "first": ScriptedAgent([answering]),
        "second": ScriptedAgent([asking]),
        "third": ScriptedAgent([answering], delay=1.5),
    }
    b = Worker(Engine(store, fresh), name="w", lease_seconds=0.3, poll_seconds=0.02)
    assert (await b.run(until_idle=True)).finished == {"paused": 1}  # claim 2
    await Engine(store, {}).answer(execution_id, "this one")
    stats = await b.run(until_idle=True)  # claim 1 again, while the stale drive wakes up
    a.stop()
    await running_a
    execution = await store.executions.get(execution_id)
    assert execution.status is ExecutionStatus.COMPLETED, (execution.status, stats, a.stats)
    await check_once(store, execution_id)
    assert await store.leases.list() == []


async def test_lease_outages_lose_nothing_and_record_nothing_twice(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Heartbeats, claims and releases that fail now and then (StoreUnavailable), leases
    short enough to expire meanwhile: the runs still complete, each call recorded once."""
    rng = random.Random(7)
    leases = store.leases
    for verb in ("heartbeat", "claim", "release"):
        real = getattr(leases, verb)

        def flaky(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
            if rng.random() < 0.3:

                async def down() -> Any:
                    raise StoreUnavailable("the store went away")

                return down()
            return _real(*args, **kwargs)

        monkeypatch.setattr(leases, verb, flaky)
    steps = agents(delay=0.05)
    engine = Engine(store, steps)
    ids = [await engine.submit("chain", {"task": i}) for i in range(5)]
    ids += [await engine.submit("both", {"task": i}) for i in range(3)]
    workers = [
        Worker(Engine(store, steps), name=name, concurrency=2, lease_seconds=0.25, poll_seconds=0.02)
        for name in ("x", "y")
    ]
    running = [asyncio.create_task(w.run()) for w in workers]
    for _ in range(3000):
        statuses = {(await store.executions.get(i)).status for i in ids}
        if statuses == {ExecutionStatus.COMPLETED}:
            break
        await asyncio.sleep(0.01)
    for w in workers:
        w.stop()
    await asyncio.gather(*running)
    for execution_id in ids:
        execution = await store.executions.get(execution_id)
        assert execution.status is ExecutionStatus.COMPLETED, execution.error
        await check_once(store, execution_id)
        for child in (await store.executions.list(parent_id=execution_id)).items:
            assert child.status is ExecutionStatus.COMPLETED
            assert len(await check_once(store, child.id)) == 3
    # an entry whose last release failed goes with the next claim
    await _swept_by_claims(store, tries=200, limit=10)


@pytest.mark.parametrize("seed", [1, 2])
async def test_a_soak_of_stalls_cancels_and_restarts(store: Store, seed: int) -> None:
    """Workers (two share a name) stopped and started again at random, agents that block
    the event loop past the lease or pause for a person, cancels from elsewhere at random:
    every execution ends (or waits for its answer), nothing recorded twice, no entry left."""
    rng = random.Random(seed)

    def step(context: AgentContext) -> AgentReply:
        if rng.random() < 0.08:
            time.sleep(0.3)  # past the lease: the event loop stalls
        if context.slot_name == "second" and context.human_input is None and rng.random() < 0.15:
            return reply({}, needs_human="which?")
        return answering(context)

    steps = {slot: ScriptedAgent([step], delay=0.02) for slot in ("first", "second", "third")}
    engine = Engine(store, steps)
    kinds = ["chain", "both", "side"]
    ids = [await engine.submit(kinds[i % 3], {"task": i}) for i in range(12)]
    names = ["a", "b", "b"]
    before = asyncio.all_tasks()
    deadline = asyncio.get_running_loop().time() + 12
    while asyncio.get_running_loop().time() < deadline:
        workers = [
            Worker(
                Engine(store, steps),
                name=name,
                concurrency=3,
                lease_seconds=0.25,
                poll_seconds=0.02,
                grace_seconds=rng.choice([0.0, 0.05, 0.5]),
            )
            for name in names
        ]
        running = [asyncio.create_task(w.run()) for w in workers]
        await asyncio.sleep(rng.uniform(0.2, 1.0))
        if rng.random() < 0.5:
            victim = rng.choice(ids)
            with contextlib.suppress(Exception):
                await Engine(store, {}).cancel(victim)
        for execution in (await store.executions.list(limit=MAX_LIMIT)).items:
            if execution.status is ExecutionStatus.PAUSED and execution.parent_id is None:
                with contextlib.suppress(Exception):
                    await Engine(store, {}).answer(execution.id, "this one")
        for w in workers:
            w.stop()
        await asyncio.gather(*running)
        assert asyncio.all_tasks() - before == set()
        statuses = {(await store.executions.get(i)).status for i in ids}
        if statuses <= {ExecutionStatus.COMPLETED, ExecutionStatus.CANCELLED}:
            break
    final = {ExecutionStatus.COMPLETED, ExecutionStatus.CANCELLED}
    for execution_id in ids:
        execution = await store.executions.get(execution_id)
        assert execution.status in final, (execution.status, execution.error)
        await check_once(store, execution_id)
        for child in (await store.executions.list(parent_id=execution_id)).items:
            assert child.status in final | {ExecutionStatus.PAUSED}, (child.status, child.error)
            if execution.status is ExecutionStatus.COMPLETED:
                assert child.status is ExecutionStatus.COMPLETED
            if execution.status is ExecutionStatus.CANCELLED:
                assert child.is_final, child.status
            await check_once(store, child.id)
    # entries of cancelled executions whose holder stopped go with a claim
    await _swept_by_claims(store, tries=100, limit=20)


async def test_a_cancel_just_before_a_shutdown_leaves_no_entry(store: Store) -> None:
    """Cancelled from elsewhere, then the worker stops before its heartbeat saw it: the
    drive is handed back (requeued) although its execution is final. That entry, ready and
    held by nobody, is never claimed (the execution is final) and never swept."""
    engine = Engine(store, agents(delay=0.3))
    execution_id = await engine.submit("chain", {"task": 1})
    worker = Worker(engine, name="w", lease_seconds=5.0, poll_seconds=0.02, grace_seconds=0.0)
    running = asyncio.create_task(worker.run())
    await _soon(lambda: bool(worker.running))
    await Engine(store, {}).cancel(execution_id)
    worker.stop()
    await running
    assert (await store.executions.get(execution_id)).status is ExecutionStatus.CANCELLED
    assert await store.leases.list() == []


async def test_a_cancel_of_a_queued_compound_stops_its_child_left_running(store: Store) -> None:
    """A compound handed back (or whose worker died) leaves its child running for the next
    driver; cancelled before any worker claims it again, nobody ever drives it: the child
    must not stay running forever."""
    engine = Engine(store, agents(delay=0.3))
    execution_id = await engine.submit("both", {"task": 1})
    worker = Worker(engine, name="leaving", grace_seconds=0.0, poll_seconds=0.02)
    running = asyncio.create_task(worker.run())
    await _soon(lambda: _has_child(store, execution_id))
    worker.stop()
    await running
    await Engine(store, {}).cancel(execution_id)
    [child] = (await store.executions.list(parent_id=execution_id)).items
    assert child.status is ExecutionStatus.CANCELLED, child.status
    assert await store.leases.list() == []


async def test_no_release_is_left_running_once_a_worker_returns(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drive stopped (grace over) while it lets go of its entry: the release, shielded,
    went on as a task of its own after ``Worker.run`` returned (and was cut off when the
    process closed the store)."""
    real_release = store.leases.release
    releasing = asyncio.Event()

    async def slow_release(*args: Any, **kwargs: Any) -> bool:
        if args[1] == "w":
            releasing.set()
            await asyncio.sleep(0.3)
        return await real_release(*args, **kwargs)

    monkeypatch.setattr(store.leases, "release", slow_release)
    engine = Engine(store, agents(delay=0.3))
    execution_id = await engine.submit("chain", {"task": 1})
    worker = Worker(engine, name="w", lease_seconds=0.4, grace_seconds=0.0, poll_seconds=0.02)
    before = asyncio.all_tasks()
    running = asyncio.create_task(worker.run())
    await _soon(lambda: bool(worker.running))
    await Engine(store, {}).cancel(execution_id)  # the heartbeat stops the drive; it lets go
    await asyncio.wait_for(releasing.wait(), 5)
    worker.stop()
    await running
    assert asyncio.all_tasks() - before == set()
    assert await store.leases.list() == []


async def test_until_idle_does_not_stop_on_claims_that_failed(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two failed claims (the store briefly unreachable) are not "nothing to claim": a batch
    worker stopped then, its executions still queued."""
    real_claim = store.leases.claim
    outages = [StoreUnavailable("the store went away")] * 3

    async def flaky_claim(*args: Any, **kwargs: Any) -> Any:
        if outages:
            raise outages.pop()
        return await real_claim(*args, **kwargs)

    monkeypatch.setattr(store.leases, "claim", flaky_claim)
    engine = Engine(store, agents())
    execution_id = await engine.submit("chain", {"task": 1})
    stats = await Worker(engine, name="w", poll_seconds=0.02).run(until_idle=True)
    assert stats.finished == {"completed": 1}, stats
    assert (await store.executions.get(execution_id)).status is ExecutionStatus.COMPLETED

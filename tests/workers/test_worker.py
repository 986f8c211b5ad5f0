"""The worker loop in one process: submit, claim, drive, heartbeat, stop, cancel, answer,
and fencing of a worker that lost its lease (memory, SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio

from qmcp_agents.domain import (
    ConcurrencyError,
    ExecutionStatus,
    MessageType,
    NotFound,
    StoreUnavailable,
    recording,
)
from qmcp_agents.domain.engine import AgentContext, AgentReply, Engine, ScriptedAgent, reply
from qmcp_agents.domain.engine import engine as engine_module
from qmcp_agents.domain.engine import run as run_module
from qmcp_agents.domain.engine.durable import WORKERS_KEY
from qmcp_agents.domain.engine.worker import Worker
from qmcp_agents.domain.errors import InvalidTransition
from qmcp_agents.domain.leases import LeaseLost
from qmcp_agents.domain.ports import CallRecorder, Store
from qmcp_agents.domain.queries import MAX_LIMIT
from qmcp_agents.testing.builders import register_topology
from tests.stores.servers import backend_store

pytestmark = pytest.mark.asyncio
T = TypeVar("T")


@pytest_asyncio.fixture(params=["memory", "sqlite", "postgresql"])
async def store(request: Any, tmp_path: Path) -> AsyncIterator[Store]:
    async with backend_store(request.param, tmp_path) as opened:
        await register_topology(opened, "chain", "pipeline", ["first", "second", "third"])
        yield opened


def answering(context: AgentContext) -> AgentReply:
    return reply({"by": context.slot_name, "call": context.call})


def agents(delay: float = 0.0) -> dict[str, ScriptedAgent]:
    return {slot: ScriptedAgent([answering], delay=delay) for slot in ("first", "second", "third")}


async def until(probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], seconds: float = 10) -> T:
    for _ in range(int(seconds / 0.01)):
        value = await probe()
        if done(value):
            return value
        await asyncio.sleep(0.01)
    raise AssertionError("timed out waiting")


async def responses(store: Store, execution_id: Any) -> list[str]:
    page = await store.messages.list(execution_id, limit=MAX_LIMIT)
    return [m.content["call"] for m in page.items if m.message_type is MessageType.RESPONSE]


async def test_submitted_executions_are_run_by_a_worker_and_their_entries_go(store: Store) -> None:
    engine = Engine(store, agents())
    ids = [await engine.submit("chain", {"task": i}) for i in range(6)]
    assert {e.status for e in (await store.executions.list()).items} == {ExecutionStatus.PENDING}
    stats = await Worker(engine, name="w", concurrency=4, poll_seconds=0.05).run(until_idle=True)
    assert stats.finished == {"completed": 6}
    for execution_id in ids:
        execution = await store.executions.get(execution_id)
        assert execution.status is ExecutionStatus.COMPLETED
        assert [c["owner"] for c in execution.metadata[WORKERS_KEY]] == ["w"]
        assert len(await responses(store, execution_id)) == 3
    assert await store.leases.list() == []


async def test_submit_refuses_bad_input_and_stores_nothing(store: Store) -> None:
    engine = Engine(store, {"first": agents()["first"]})
    with pytest.raises(NotFound, match="nope"):
        await engine.submit("nope", {})
    with pytest.raises(ValueError, match="agents: no agent for chain/second, chain/third"):
        await engine.submit("chain", {})
    full = Engine(store, agents())
    with pytest.raises(ValueError, match=r"^input_data: .*expected a JSON object, got list \[1, 2\]$"):
        await full.submit("chain", [1, 2])
    assert await store.executions.count() == 0
    assert await store.leases.list() == []


async def test_a_run_started_in_process_is_never_claimed(store: Store) -> None:
    engine = Engine(store, agents())
    await engine.run("chain", {"task": 1})
    assert await store.leases.claim("w", limit=10, lease_seconds=5) == []


async def test_a_worker_that_lost_its_lease_writes_nothing_more(store: Store) -> None:
    """Fencing: the lease expires under a stalled worker and another takes over; the stalled
    one's next record is refused (LeaseLost) and the takeover replays the recorded calls."""
    engine = Engine(store, agents())
    execution_id = await engine.submit("chain", {"task": 1})
    await store.leases.claim("stalled", limit=1, lease_seconds=0.2)
    await asyncio.sleep(0.3)
    await store.leases.claim("alive", limit=1, lease_seconds=30)
    with pytest.raises(LeaseLost, match="'stalled'"):
        await engine.drive(execution_id, owner="stalled")
    assert await responses(store, execution_id) == []
    read = await engine.drive(execution_id, owner="alive")
    assert read.status is ExecutionStatus.COMPLETED
    assert len(await responses(store, execution_id)) == 3


async def test_a_takeover_replays_answered_calls_and_asks_only_the_rest(store: Store) -> None:
    slow = agents()
    slow["third"] = ScriptedAgent([reply({"by": "third"})], delay=30)
    engine = Engine(store, slow)
    execution_id = await engine.submit("chain", {"task": 1})
    await store.leases.claim("dead", limit=1, lease_seconds=0.3)
    dying = asyncio.create_task(engine.drive(execution_id, owner="dead"))
    await until(lambda: responses(store, execution_id), lambda calls: len(calls) >= 2)
    dying.cancel()  # the process "dies" while the third call is in flight
    await asyncio.gather(dying, return_exceptions=True)
    await asyncio.sleep(0.35)
    fresh = agents()
    taking_over = Engine(store, fresh)
    stats = await Worker(taking_over, name="live", poll_seconds=0.05).run(until_idle=True)
    assert stats.finished == {"completed": 1}
    assert [len(fresh[s].calls) for s in ("first", "second", "third")] == [0, 0, 1]
    calls = await responses(store, execution_id)
    assert sorted(calls) == sorted(set(calls))
    assert len(calls) == 3
    assert await store.results.count(execution_id=execution_id) == 3
    execution = await store.executions.get(execution_id)
    assert [(c["owner"], c["attempt"]) for c in execution.metadata[WORKERS_KEY]] == [("dead", 1), ("live", 2)]


async def test_a_worker_that_outlived_its_own_lease_and_claimed_again_runs_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stall longer than the lease (here: heartbeats that renew nothing for a while) lets
    the worker claim its own running execution again; the earlier drive, same owner name,
    must be fenced off by the claim's attempt and stopped, not run on beside the new one."""
    # Each call outlasts the lease, and the drive (three calls) outlasts it several times
    # over: a loaded machine slows the claim loop too (a run at 0.15 s per call and 0.5 s
    # of stall once finished before any claim after the expiry got through).
    slow = agents(delay=0.3)
    engine = Engine(store, slow)
    execution_id = await engine.submit("chain", {"task": 1})
    worker = Worker(engine, name="w", lease_seconds=0.2, poll_seconds=0.02)
    real_heartbeat = store.leases.heartbeat
    loop = asyncio.get_running_loop()
    stalled_until = loop.time() + 1.2

    async def stalled(owner: str, ids: Any, *, lease_seconds: float) -> set[Any]:
        if loop.time() < stalled_until:
            return set(ids)  # the worker believes it still holds them; nothing is renewed
        return await real_heartbeat(owner, ids, lease_seconds=lease_seconds)

    monkeypatch.setattr(store.leases, "heartbeat", stalled)
    stats = await worker.run(until_idle=True)
    assert stats.claimed >= 2, stats  # it did claim its own execution again
    assert stats.finished == {"completed": 1}, stats
    assert (await store.executions.get(execution_id)).status is ExecutionStatus.COMPLETED
    calls = await responses(store, execution_id)
    assert sorted(calls) == sorted(set(calls))
    assert len(calls) == 3
    assert await store.results.count(execution_id=execution_id) == 3
    assert await store.agent_instances.count(execution_id=execution_id) == 3  # one per slot
    asked = sum(len(a.calls) for a in slow.values())
    assert asked <= 3 + (stats.claimed - 1)  # at most one call in flight lost per reclaim
    assert await store.leases.list() == []


async def test_a_heartbeat_answer_about_an_earlier_claim_leaves_a_newer_drive_running(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the two-worker stall probe on a loaded machine: while a heartbeat is on its
    way, the drive it asks about ends and the worker claims the execution again. The answer
    (about the earlier claim: not held) must not stop the newer drive; it stopped it before
    its first step, so its slot was never freed and its lease was renewed for ever, the
    execution never run. Here the heartbeat itself makes that happen, at the worst moment."""
    engine = Engine(store, agents(delay=0.05))
    execution_id = await engine.submit("chain", {"task": 1})
    worker = Worker(engine, name="w", lease_seconds=0.4, poll_seconds=0.02)
    real_heartbeat = store.leases.heartbeat
    raced: list[asyncio.Task[None]] = []

    async def racing(owner: str, ids: Any, *, lease_seconds: float) -> set[Any]:
        if raced or execution_id not in ids:
            return await real_heartbeat(owner, ids, lease_seconds=lease_seconds)
        earlier = worker._running[execution_id]
        earlier.cancel()  # handed back (as at a shutdown): the entry is claimable again
        await asyncio.wait([earlier])
        assert await worker._claim(1) == 1
        raced.append(worker._running[execution_id])
        return set()  # the answer about the earlier claim

    monkeypatch.setattr(store.leases, "heartbeat", racing)
    stats = await asyncio.wait_for(worker.run(until_idle=True), 30)
    assert raced
    assert not raced[0].cancelled()
    assert stats.finished == {"completed": 1}, stats
    assert len(await responses(store, execution_id)) == 3
    assert await store.results.count(execution_id=execution_id) == 3
    assert await store.leases.list() == []


async def test_a_drive_stopped_before_its_first_step_frees_its_slot(store: Store) -> None:
    """A drive's task cancelled before it ever ran (its body, and so any ``finally`` in
    it, never runs): the worker lets go of the slot anyway, and once the claim's lease is
    over the execution is claimed and run."""
    engine = Engine(store, agents())
    execution_id = await engine.submit("chain", {"task": 1})
    worker = Worker(engine, name="w", lease_seconds=0.3, poll_seconds=0.02)
    assert await worker._claim(1) == 1
    task = worker._running[execution_id]
    task.cancel()
    await asyncio.wait([task])
    await asyncio.sleep(0)  # the done callbacks
    assert worker.running == set()
    await asyncio.sleep(0.4)  # the claim's lease is over
    stats = await asyncio.wait_for(worker.run(until_idle=True), 30)
    assert stats.finished == {"completed": 1}, stats
    assert len(await responses(store, execution_id)) == 3
    assert await store.leases.list() == []


async def test_cancel_from_elsewhere_stops_the_run_within_one_step(store: Store) -> None:
    slow = agents(delay=0.1)
    engine = Engine(store, slow)
    execution_id = await engine.submit("chain", {"task": 1})
    # The lease is long enough that a loaded machine's late heartbeat does not let it expire
    # (a reclaim would re-ask the call in flight): the cancellation is seen by the run's
    # next write, which the store refuses for a cancelled execution.
    worker = Worker(engine, name="w", lease_seconds=3.0, poll_seconds=0.05)
    running = asyncio.create_task(worker.run())
    await until(lambda: responses(store, execution_id), bool)
    cancelled = await Engine(store, {}).cancel(execution_id)
    assert cancelled.status is ExecutionStatus.CANCELLED
    recorded = len(await responses(store, execution_id))
    for _ in range(100):
        if execution_id not in worker.running:
            break
        await asyncio.sleep(0.02)
    assert execution_id not in worker.running
    worker.stop()
    await running
    asked = sum(len(a.calls) for a in slow.values())
    assert asked <= recorded + 1  # at most the call in flight when it was cancelled
    assert len(await responses(store, execution_id)) == recorded
    assert (await store.executions.get(execution_id)).status is ExecutionStatus.CANCELLED
    assert await store.leases.list() == []
    with pytest.raises(InvalidTransition, match="already cancelled"):
        await engine.cancel(execution_id)


async def test_a_cancel_between_the_finishs_copy_and_its_write_wins(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The finish's first try starts from the drive's own copy of the execution, unread: a
    cancel that commits after that copy and before the write makes its revision stale; it is
    refused, the retry reads the cancelled execution, and the drive ends with it (not
    completed, entry gone)."""
    answering_agents = agents()
    engine = Engine(store, answering_agents)
    execution_id = await engine.submit("chain", {"task": 1})
    real_update = recording.update_execution_fenced
    fired: list[ExecutionStatus] = []
    reads: list[Any] = []
    real_get = store.executions.get

    async def get(id: Any) -> Any:
        reads.append(id)
        return await real_get(id)

    async def update(target: Store, execution: Any, hold: Any, release: bool) -> Any:
        if execution.id == execution_id and execution.is_final and not fired:
            fired.append(execution.status)
            assert reads.count(execution_id) == 1  # the start's read only: this copy is unread
            await Engine(store, {}).cancel(execution_id)  # commits before this write
            reads.clear()
        return await real_update(target, execution, hold, release)

    monkeypatch.setattr(engine_module, "update_execution_fenced", update)
    monkeypatch.setattr(store.executions, "get", get)
    stats = await Worker(engine, poll_seconds=0.05).run(until_idle=True)
    assert fired == [ExecutionStatus.COMPLETED]
    assert execution_id in reads  # the retry read the execution
    stored = await real_get(execution_id)
    assert stored.status is ExecutionStatus.CANCELLED
    assert stored.output_data is None
    assert stats.claimed == 1
    assert len(await responses(store, execution_id)) == 3  # each recorded once
    assert await store.leases.list() == []


async def test_cancel_of_a_pending_execution_removes_its_entry(store: Store) -> None:
    engine = Engine(store, agents())
    execution_id = await engine.submit("chain", {"task": 1})
    await engine.cancel(execution_id)
    assert await store.leases.list() == []
    stats = await Worker(engine, poll_seconds=0.05).run(until_idle=True)
    assert stats.claimed == 0


async def test_a_stopping_worker_hands_back_what_it_cannot_finish(store: Store) -> None:
    slow = agents(delay=0.3)
    engine = Engine(store, slow)
    execution_id = await engine.submit("chain", {"task": 1})
    worker = Worker(engine, name="leaving", grace_seconds=0.1, poll_seconds=0.05)
    running = asyncio.create_task(worker.run())
    await until(lambda: asyncio.sleep(0, worker.running), bool)
    worker.stop()
    stats = await running
    assert stats.handed_back == 1
    lease = await store.leases.find(execution_id)
    assert lease is not None
    assert (lease.owner, lease.ready) == (None, True)
    stats = await Worker(Engine(store, agents()), name="next", poll_seconds=0.05).run(until_idle=True)
    assert stats.finished == {"completed": 1}


async def test_a_paused_execution_is_answered_and_finished_by_any_worker(store: Store) -> None:
    asking = agents()
    asking["second"] = ScriptedAgent(
        [lambda c: reply({"human": c.human_input}) if c.human_input else reply({}, needs_human="which?")]
    )
    engine = Engine(store, asking)
    execution_id = await engine.submit("chain", {"task": 1})
    first = await Worker(engine, name="one", poll_seconds=0.05).run(until_idle=True)
    assert first.finished == {"paused": 1}
    assert await store.leases.list() == []
    await Engine(store, {}).answer(execution_id, "this one")
    second = await Worker(engine, name="two", poll_seconds=0.05).run(until_idle=True)
    assert second.finished == {"completed": 1}
    execution = await store.executions.get(execution_id)
    assert execution.status is ExecutionStatus.COMPLETED
    assert [c["owner"] for c in execution.metadata[WORKERS_KEY]] == ["one", "two"]


async def test_a_takeover_of_a_compound_drives_on_the_child_left_running(store: Store) -> None:
    await register_topology(store, "both", "compound", [], {"sub_topologies": ["chain"]})
    slow = agents()
    slow["third"] = ScriptedAgent([answering], delay=30)
    engine = Engine(store, slow)
    execution_id = await engine.submit("both", {"task": 1})
    await store.leases.claim("dead", limit=1, lease_seconds=0.3)
    dying = asyncio.create_task(engine.drive(execution_id, owner="dead"))
    children = await until(
        lambda: store.executions.list(parent_id=execution_id), lambda page: bool(page.items)
    )
    child = children.items[0].id
    await until(lambda: responses(store, child), lambda calls: len(calls) >= 2)
    await asyncio.sleep(0.35)  # the "dead" worker stalls in the child's third call; its lease expires
    assert (await store.executions.get(child)).status is ExecutionStatus.RUNNING
    fresh = agents()
    stats = await Worker(Engine(store, fresh), name="live", poll_seconds=0.05).run(until_idle=True)
    dying.cancel()
    await asyncio.gather(dying, return_exceptions=True)
    assert stats.finished == {"completed": 1}
    assert [len(fresh[s].calls) for s in ("first", "second", "third")] == [0, 0, 1]
    assert (await store.executions.get(child)).status is ExecutionStatus.COMPLETED
    assert await store.executions.count(parent_id=execution_id) == 1


@pytest.mark.parametrize("error", [StoreUnavailable, ConcurrencyError])
async def test_a_store_outage_hands_the_run_back_instead_of_failing_it(
    store: Store, monkeypatch: pytest.MonkeyPatch, error: type[Exception]
) -> None:
    engine = Engine(store, agents())
    execution_id = await engine.submit("chain", {"task": 1})
    real_add = store.results.add
    # A lost race is retried within the run (12 times): more than that hands the run back.
    outages = [error("the store went away")] * (12 if error is ConcurrencyError else 1)

    async def flaky_add(result: Any) -> Any:
        if outages:
            raise outages.pop()
        return await real_add(result)

    monkeypatch.setattr(store.results, "add", flaky_add)
    if isinstance(store, CallRecorder):  # PostgreSQL: an answer is recorded in one statement
        real_record = store.record_call

        async def flaky_record(*args: Any) -> Any:
            if outages:
                raise outages.pop()
            return await real_record(*args)

        monkeypatch.setattr(store, "record_call", flaky_record)
    stats = await Worker(engine, name="w", poll_seconds=0.05).run(until_idle=True)
    assert stats.finished == {f"error: {error.__name__}": 1, "completed": 1}
    assert (await store.executions.get(execution_id)).status is ExecutionStatus.COMPLETED
    calls = await responses(store, execution_id)
    assert sorted(calls) == sorted(set(calls))
    assert len(calls) == 3


async def test_a_commit_reported_failed_that_went_through_records_nothing_twice(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ambiguous commit (written, but reported as a lost race): every transaction of the
    run commits and then raises ConcurrencyError once; the retries must see what is stored."""
    engine = Engine(store, agents())
    execution_id = await engine.submit("chain", {"task": 1})
    real = store.transaction
    seen: set[int] = set()

    @contextlib.asynccontextmanager
    async def ambiguous() -> AsyncIterator[None]:
        async with real():
            yield
        number = len(seen)
        if number not in seen and number % 2 == 0:
            seen.add(number)
            raise ConcurrencyError("commit outcome unknown")
        seen.add(number)

    monkeypatch.setattr(store, "transaction", ambiguous)
    stats = await Worker(engine, name="w", poll_seconds=0.05).run(until_idle=True)
    assert stats.finished == {"completed": 1}
    calls = await responses(store, execution_id)
    assert sorted(calls) == sorted(set(calls))
    assert len(calls) == 3
    assert await store.results.count(execution_id=execution_id) == 3


async def test_a_recorded_call_reported_failed_that_went_through_is_not_recorded_again(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one-step record (PostgreSQL: one statement, no transaction around it) written but
    reported as a lost race, every call: the retry reads the instance back, finds the call
    in its replay entries and records nothing twice (on every backend, whatever path the
    record took)."""
    engine = Engine(store, agents())
    execution_id = await engine.submit("chain", {"task": 1})
    real = recording.record_call
    reported: list[str] = []

    async def ambiguous(*args: Any) -> Any:
        recorded = await real(*args)
        call = recorded.message.content["call"]
        if call not in reported:
            reported.append(call)
            raise ConcurrencyError("outcome unknown")
        return recorded

    monkeypatch.setattr(run_module, "record_call", ambiguous)
    stats = await Worker(engine, name="w", poll_seconds=0.05).run(until_idle=True)
    assert stats.finished == {"completed": 1}
    assert len(reported) == 3
    calls = await responses(store, execution_id)
    assert sorted(calls) == sorted(set(calls))
    assert len(calls) == 3
    assert await store.results.count(execution_id=execution_id) == 3

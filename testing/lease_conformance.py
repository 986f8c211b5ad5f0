"""Conformance of the work queue and leases (issue 16): the same claims, expiries and
fencing on every backend. Mixed into :class:`~.conformance.StoreConformance`."""

from __future__ import annotations

import asyncio
from uuid import UUID

import pytest

from qmcp_agents.domain import NotFound, uuid7
from qmcp_agents.domain.leases import LeaseLost
from qmcp_agents.domain.ports import Store

from .builders import World

LONG = 60.0


class LeaseConformance:
    """Uses the ``store`` and ``world`` fixtures of the suite."""

    async def _queued(self, world: World, n: int, running: bool = False) -> list[UUID]:
        ids = []
        for _ in range(n):
            execution = await world.new_execution(running=running)
            await world.store.leases.enqueue(execution.id)
            ids.append(execution.id)
        return ids

    async def test_enqueue_refuses_an_unknown_execution_and_stores_nothing(self, world: World) -> None:
        with pytest.raises(NotFound, match="execution"):
            await world.store.leases.enqueue(uuid7())
        assert await world.store.leases.list() == []

    async def test_a_claim_takes_ready_entries_oldest_first_once(self, world: World) -> None:
        store = world.store
        ids = await self._queued(world, 3)
        first = await store.leases.claim("w1", limit=2, lease_seconds=LONG)
        assert [lease.execution_id for lease in first] == ids[:2]
        assert all(lease.owner == "w1" and lease.attempts == 1 for lease in first)
        assert all(lease.expires_at is not None and lease.claimed_at is not None for lease in first)
        second = await store.leases.claim("w2", limit=5, lease_seconds=LONG)
        assert [lease.execution_id for lease in second] == ids[2:]
        assert await store.leases.claim("w3", limit=5, lease_seconds=LONG) == []
        assert {lease.execution_id for lease in await store.leases.list(owner="w1")} == set(ids[:2])

    async def test_concurrent_claims_never_share_an_entry(self, world: World) -> None:
        ids = await self._queued(world, 12)
        claims = await asyncio.gather(
            *(world.store.leases.claim(f"w{i}", limit=3, lease_seconds=LONG) for i in range(6))
        )
        taken = [lease.execution_id for claim in claims for lease in claim]
        assert sorted(taken) == sorted(ids)
        assert len(set(taken)) == len(taken)

    async def test_an_expired_lease_is_taken_over_and_the_old_holder_is_fenced(self, world: World) -> None:
        store = world.store
        [execution_id] = await self._queued(world, 1)
        await store.leases.claim("dead", limit=1, lease_seconds=0.3)
        assert await store.leases.claim("live", limit=1, lease_seconds=LONG) == []  # not expired yet
        await asyncio.sleep(0.45)
        [taken] = await store.leases.claim("live", limit=1, lease_seconds=LONG)
        assert (taken.execution_id, taken.owner, taken.attempts) == (execution_id, "live", 2)
        with pytest.raises(LeaseLost, match="'dead'"):
            async with store.transaction():
                await store.leases.hold(execution_id, "dead")
        async with store.transaction():
            await store.leases.hold(execution_id, "live")
        assert await store.leases.heartbeat("dead", [execution_id], lease_seconds=LONG) == set()
        assert await store.leases.release(execution_id, "dead") is False
        found = await store.leases.find(execution_id)
        assert found is not None
        assert found.owner == "live"

    async def test_a_reclaim_by_the_same_owner_fences_its_earlier_claim(self, world: World) -> None:
        """A worker that stalled past its lease and claimed the execution again holds it by
        the new attempt only: its first drive (same owner name) can neither write nor
        release."""
        store = world.store
        [execution_id] = await self._queued(world, 1)
        [first] = await store.leases.claim("w", limit=1, lease_seconds=0.3)
        await asyncio.sleep(0.45)
        [second] = await store.leases.claim("w", limit=1, lease_seconds=LONG)
        assert (first.attempts, second.attempts) == (1, 2)
        with pytest.raises(LeaseLost, match="'w'"):
            async with store.transaction():
                await store.leases.hold(execution_id, "w", attempt=first.attempts)
        assert await store.leases.release(execution_id, "w", attempt=first.attempts) is False
        assert await store.leases.release(execution_id, "w", requeue=True, attempt=first.attempts) is False
        found = await store.leases.find(execution_id)
        assert found is not None
        assert (found.owner, found.attempts, found.ready) == ("w", 2, False)
        async with store.transaction():
            await store.leases.hold(execution_id, "w", attempt=second.attempts)
        assert await store.leases.release(execution_id, "w", attempt=second.attempts) is True
        assert await store.leases.find(execution_id) is None

    async def test_a_heartbeat_keeps_a_lease_and_reports_final_executions(self, world: World) -> None:
        store = world.store
        ids = await self._queued(world, 2, running=True)
        await store.leases.claim("w", limit=2, lease_seconds=0.4)
        for _ in range(3):
            await asyncio.sleep(0.2)
            assert await store.leases.heartbeat("w", ids, lease_seconds=0.4) == set(ids)
        assert await store.leases.claim("other", limit=2, lease_seconds=LONG) == []
        cancelled = await store.executions.get(ids[0])
        cancelled.cancel()
        await store.executions.update(cancelled)
        assert await store.leases.heartbeat("w", ids, lease_seconds=0.4) == {ids[1]}

    async def test_entries_of_final_executions_are_never_claimed(self, world: World) -> None:
        store = world.store
        [execution_id] = await self._queued(world, 1)
        execution = await store.executions.get(execution_id)
        execution.cancel()
        await store.executions.update(execution)
        assert await store.leases.claim("w", limit=5, lease_seconds=LONG) == []
        assert await store.leases.list() == []  # nobody would ever claim it: it goes

    async def test_a_claim_clears_an_entry_handed_back_as_its_execution_ended(self, world: World) -> None:
        """A worker hands an execution back (requeue) just as it is cancelled elsewhere."""
        store = world.store
        [execution_id] = await self._queued(world, 1, running=True)
        [lease] = await store.leases.claim("w", limit=1, lease_seconds=LONG)
        execution = await store.executions.get(execution_id)
        execution.cancel()
        await store.executions.update(execution)
        assert await store.leases.release(execution_id, "w", requeue=True, attempt=lease.attempts)
        assert await store.leases.claim("v", limit=1, lease_seconds=LONG) == []
        assert await store.leases.list() == []

    async def test_a_claim_clears_expired_entries_of_ended_executions(self, world: World) -> None:
        store = world.store
        [execution_id] = await self._queued(world, 1)
        await store.leases.claim("dead", limit=1, lease_seconds=0.2)
        execution = await store.executions.get(execution_id)
        execution.cancel()
        await store.executions.update(execution)
        await asyncio.sleep(0.3)
        assert await store.leases.claim("live", limit=1, lease_seconds=LONG) == []
        assert await store.leases.list() == []

    async def test_release_deletes_or_requeues_only_for_its_holder(self, world: World) -> None:
        store = world.store
        first, second = await self._queued(world, 2)
        await store.leases.claim("w", limit=2, lease_seconds=LONG)
        assert await store.leases.release(first, "someone else") is False
        assert await store.leases.release(first, "w") is True
        assert await store.leases.find(first) is None
        assert await store.leases.release(second, "w", requeue=True) is True
        requeued = await store.leases.find(second)
        assert requeued is not None
        assert (requeued.owner, requeued.ready) == (None, True)
        [again] = await store.leases.claim("v", limit=5, lease_seconds=LONG)
        assert (again.execution_id, again.attempts) == (second, 2)

    async def test_enqueue_makes_a_released_entry_ready_again(self, world: World) -> None:
        store = world.store
        [execution_id] = await self._queued(world, 1)
        await store.leases.claim("w", limit=1, lease_seconds=LONG)
        await store.leases.release(execution_id, "w", requeue=False)
        await store.leases.enqueue(execution_id)
        [again] = await store.leases.claim("v", limit=1, lease_seconds=LONG)
        assert again.execution_id == execution_id

    async def test_a_new_entry_counts_on_from_the_attempts_given(self, world: World) -> None:
        """An answered pause's entry counts on from the execution's earlier claims: the
        attempt of a claim (the fencing token) is never handed out twice."""
        store = world.store
        [execution_id] = await self._queued(world, 1)
        [first] = await store.leases.claim("w", limit=1, lease_seconds=LONG)
        assert await store.leases.release(execution_id, "w", attempt=first.attempts) is True
        await store.leases.enqueue(execution_id, attempts=first.attempts)
        [again] = await store.leases.claim("w", limit=1, lease_seconds=LONG)
        assert (first.attempts, again.attempts) == (1, 2)
        with pytest.raises(LeaseLost, match="'w'"):
            async with store.transaction():
                await store.leases.hold(execution_id, "w", attempt=first.attempts)
        await store.leases.enqueue(execution_id, attempts=0)  # an existing entry keeps its count
        found = await store.leases.find(execution_id)
        assert found is not None
        assert found.attempts == 2

    async def test_an_entry_goes_with_its_execution(self, world: World) -> None:
        store = world.store
        [execution_id] = await self._queued(world, 1)
        await store.executions.delete(execution_id)
        assert await store.leases.list() == []

    async def test_a_lease_of_zero_seconds_is_refused(self, store: Store) -> None:
        with pytest.raises(ValueError, match="lease_seconds must be > 0"):
            await store.leases.claim("w", limit=1, lease_seconds=0)


__all__ = ["LeaseConformance"]

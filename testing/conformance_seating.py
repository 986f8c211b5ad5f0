"""Conformance: a drive's new agent instances added under a worker's lease
(:func:`qmcp_agents.domain.recording.add_instances_fenced`), in one step where the store
offers it (:class:`~qmcp_agents.domain.ports.FencedInstanceAdder`), store and refuse what
the repositories' composed form does; mixed into the suite. Needs the ``world`` fixture."""

from __future__ import annotations

from typing import Any

import pytest

from qmcp_agents.domain import AgentInstance, AlreadyExists, IntegrityError
from qmcp_agents.domain.leases import LeaseHold, LeaseLost
from qmcp_agents.domain.recording import add_instances_fenced, add_instances_fenced_composed
from qmcp_agents.domain.transactions import whole

from .builders import World
from .inspect import dump_store


async def _held(world: World, execution_id: Any = None) -> LeaseHold:
    """The execution's entry claimed by ``w1``: its hold."""
    execution_id = execution_id or world.execution.id
    await world.store.leases.enqueue(execution_id)
    claimed = await world.store.leases.claim("w1", limit=10, lease_seconds=60)
    lease = next(c for c in claimed if c.execution_id == execution_id)
    return LeaseHold(execution_id, "w1", lease.attempts)


def _fresh(world: World, count: int = 3, **fields: Any) -> list[AgentInstance]:
    assert world.agent_type.id is not None
    fields.setdefault("agent_type_id", world.agent_type.id)
    fields.setdefault("execution_id", world.execution.id)
    return [AgentInstance(metadata={"slot": f"s{k}"}, **fields) for k in range(count)]


class SeatingConformance:
    @pytest.mark.parametrize("attempt_given", [True, False])
    async def test_instances_added_under_a_lease_are_what_the_composed_path_adds(
        self, world: World, attempt_given: bool
    ) -> None:
        store = world.store
        held = await _held(world)
        hold = held if attempt_given else LeaseHold(held.execution_id, held.owner, None)
        leases = await store.leases.list()
        fresh = _fresh(world)
        added = await add_instances_fenced(store, fresh, hold)
        assert [a.id for a in added] == [f.id for f in fresh]
        assert [a.revision for a in added] == [1, 1, 1]
        for instance in added:
            assert await store.agent_instances.get(instance.id) == instance
        assert await store.leases.list() == leases  # checked, not released
        composed = await add_instances_fenced_composed(store, _fresh(world), hold)
        assert [(a.revision, a.metadata) for a in composed] == [(a.revision, a.metadata) for a in added]

    @pytest.mark.parametrize(
        "fault", ["lost_lease", "another_attempt", "taken_id", "no_agent_type", "no_execution"]
    )
    async def test_a_refused_add_raises_the_composed_error_and_writes_nothing(
        self, world: World, fault: str
    ) -> None:
        store = world.store
        hold = await _held(world)
        fresh = _fresh(world)
        if fault == "lost_lease":
            hold = LeaseHold(hold.execution_id, "someone-else", hold.attempt)
        elif fault == "another_attempt":
            hold = LeaseHold(hold.execution_id, hold.owner, (hold.attempt or 0) + 1)
        elif fault == "taken_id":
            fresh[1] = fresh[1].model_copy(update={"id": world.instance.id})
        elif fault == "no_agent_type":
            fresh[2] = fresh[2].model_copy(update={"agent_type_id": 987_654})
        else:
            other = await world.new_execution()
            await store.executions.delete(other.id)
            fresh = _fresh(world, execution_id=other.id)
        expected_error = {
            "lost_lease": LeaseLost,
            "another_attempt": LeaseLost,
            "taken_id": AlreadyExists,
            "no_agent_type": IntegrityError,
            "no_execution": IntegrityError,
        }[fault]
        before = await dump_store(store)
        leases = await store.leases.list()
        with pytest.raises(expected_error) as composed:
            await add_instances_fenced_composed(store, fresh, hold)
        with pytest.raises(expected_error) as got:
            await add_instances_fenced(store, fresh, hold)
        assert str(got.value) == str(composed.value)
        assert await dump_store(store) == before
        assert await store.leases.list() == leases

    async def test_a_childs_instances_are_added_under_its_parents_lease(self, world: World) -> None:
        store = world.store
        hold = await _held(world)
        child = await world.new_execution(parent_id=world.execution.id)
        added = await add_instances_fenced(store, _fresh(world, 2, execution_id=child.id), hold)
        assert {a.execution_id for a in added} == {child.id}
        page = await store.agent_instances.list(execution_id=child.id)
        assert sorted(i.id for i in page.items) == sorted(a.id for a in added)

    async def test_in_an_open_transaction_the_add_joins_it(self, world: World) -> None:
        store = world.store
        hold = await _held(world)
        if not store.capabilities.transactions:  # the calls run one by one there: nothing to undo
            assert len(await add_instances_fenced(store, _fresh(world), hold)) == 3
            return
        before = await dump_store(store)

        async def added_then_undone() -> None:
            async with whole(store):
                await add_instances_fenced(store, _fresh(world), hold)
                raise RuntimeError("undo")

        with pytest.raises(RuntimeError, match="undo"):
            await added_then_undone()
        assert await dump_store(store) == before


__all__ = ["SeatingConformance"]

"""Conformance: ``update`` checks the stored entity exactly as ``domain.integrity.for_update``
says, however it is sent (issue 16: the SQL store writes in one conditional statement and
falls back to loading the row only when that statement matches nothing). A mixin of
:class:`~qmcp_agents.testing.conformance.StoreConformance`: every test runs on every
backend, on its own, inside a ``whole`` transaction and inside a plain one (where a refusal
is caught and the transaction goes on).

Every refusal is the error the checks give (type and whole message) and leaves the store
as it was; entities forged past Pydantic (``model_copy(update=...)``) with values that
compare differently before and after conversion for the store (a timestamp with
microseconds, a naive one, the same instant in another zone) are judged as the checks judge
the values given, not as the store would have converted them.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, timedelta, timezone
from typing import Any

import pytest

from qmcp_agents.domain import (
    FINAL_STATUSES,
    ConcurrencyError,
    Execution,
    ExecutionStatus,
    IntegrityError,
    InvalidTransition,
    NotFound,
    TopologyMembership,
    TopologyType,
)
from qmcp_agents.domain.clock import utc_now
from qmcp_agents.domain.execution import can_reach
from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.transactions import whole

from .builders import World, agent_type, topology
from .inspect import dump_store

MODES = ("alone", "whole", "transaction")
S = ExecutionStatus


@asynccontextmanager
async def _in(store: Store, mode: str) -> AsyncIterator[None]:
    if mode == "alone":
        yield
    elif mode == "whole":
        async with whole(store):
            yield
    else:
        async with store.transaction():
            yield


async def _refused(
    store: Store, mode: str, call: Callable[[], Awaitable[Any]], error: type[Exception], text: str
) -> None:
    """``call`` raises ``error`` with exactly ``text`` and the store is left as it was; in a
    plain transaction the refusal is caught there and the transaction commits."""
    before = await dump_store(store)
    exact = f"^{re.escape(text)}$"
    if mode == "transaction":
        async with store.transaction():
            with pytest.raises(error, match=exact):
                await call()
    else:
        with pytest.raises(error, match=exact):
            async with _in(store, mode):
                await call()
    assert await dump_store(store) == before


async def _in_status(world: World, status: ExecutionStatus) -> Execution:
    """A stored execution in ``status``, moved there by the domain's methods."""
    execution = await world.new_execution(running=status is not S.PENDING)
    if status in (S.PENDING, S.RUNNING):
        return execution
    if status is S.PAUSED:
        execution.pause()
    elif status is S.COMPLETED:
        execution.mark_complete({"answer": 1})
    elif status is S.FAILED:
        execution.mark_failed("broken")
    else:
        execution.cancel()
    return await world.store.executions.update(execution)


def _forged(execution: Execution, status: ExecutionStatus | str) -> Execution:
    """``execution`` with ``status`` set behind the methods' back (``completed_at`` made to
    fit, so only the status machine can refuse it)."""
    final = ExecutionStatus(status) in FINAL_STATUSES
    stamp = execution.completed_at or max(utc_now(), execution.started_at)
    return execution.model_copy(update={"status": status, "completed_at": stamp if final else None})


class UpdateConformance:
    """Updates checked against the stored entity; mixed into the suite (``world`` fixture)."""

    @pytest.mark.parametrize("mode", MODES)
    async def test_refused_execution_updates_are_the_checks_errors_and_change_nothing(
        self, world: World, mode: str
    ) -> None:
        store = world.store
        stale = await store.executions.get(world.execution.id)
        moved = stale.model_copy(update={"metadata": {"moved": True}})
        current = await store.executions.update(moved)
        key, revision = current.id, current.revision
        update = store.executions.update

        stale.metadata = {"stale": True}
        await _refused(
            store,
            mode,
            lambda: update(stale),
            ConcurrencyError,
            f"Execution {key} was changed by someone else: you have revision {revision - 1}, "
            f"the store has {revision}; re-read and retry",
        )
        back = _forged(current, S.PENDING)
        text = f"execution {key} cannot move from 'running' to 'pending'"
        await _refused(store, mode, lambda: update(back), InvalidTransition, text)
        other = (await store.topologies.add(topology("other", [world.agent_type]))).id
        text = f"Execution {key}: topology_id cannot change ({current.topology_id!r} -> {other!r})"
        moved_topology = current.model_copy(update={"topology_id": other})
        await _refused(store, mode, lambda: update(moved_topology), IntegrityError, text)
        parent = await world.new_execution()
        adopted = current.model_copy(update={"parent_id": parent.id})
        text = f"Execution {key}: parent_id cannot change (None -> {parent.id!r})"
        await _refused(store, mode, lambda: update(adopted), IntegrityError, text)
        # Values the store's conversion would make equal to the stored one (truncated to
        # milliseconds, taken to be UTC) still differ from it as given: refused.
        for started in (
            current.started_at + timedelta(microseconds=5),
            current.started_at.replace(tzinfo=None),
            current.started_at + timedelta(milliseconds=1),
        ):
            shifted = current.model_copy(update={"started_at": started})
            text = f"Execution {key}: started_at cannot change ({current.started_at!r} -> {started!r})"
            await _refused(store, mode, lambda e=shifted: update(e), IntegrityError, text)  # type: ignore[misc]
        gone = await world.new_execution()
        await store.executions.delete(gone.id)
        text = f"execution {gone.id} does not exist"
        await _refused(store, mode, lambda: update(gone), NotFound, text)
        assert await store.executions.get(key) == current

    @pytest.mark.parametrize("mode", MODES)
    async def test_every_forged_status_move_is_judged_by_the_status_machine(
        self, world: World, mode: str
    ) -> None:
        store = world.store
        for source in ExecutionStatus:
            for target in ExecutionStatus:
                stored = await _in_status(world, source)
                forged = _forged(stored, target)
                if can_reach(source, target):
                    async with _in(store, mode):
                        written = await store.executions.update(forged)
                    assert written.status is target
                    assert written.revision == stored.revision + 1
                    assert await store.executions.get(stored.id) == written, (source, target)
                    continue
                text = f"execution {stored.id} cannot move from {source.value!r} to {target.value!r}"
                with pytest.raises(InvalidTransition, match=f"^{re.escape(text)}$"):
                    async with _in(store, mode):
                        await store.executions.update(forged)
                assert await store.executions.get(stored.id) == stored, (source, target)

    @pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")  # the status forged as text
    @pytest.mark.parametrize("mode", MODES)
    async def test_forged_values_equal_to_the_stored_ones_are_accepted(self, world: World, mode: str) -> None:
        store = world.store
        current = await store.executions.get(world.execution.id)
        elsewhere = current.started_at.astimezone(timezone(timedelta(hours=5, minutes=30)))
        as_text = current.model_copy(update={"started_at": elsewhere, "status": "completed"})
        as_text = as_text.model_copy(update={"completed_at": utc_now(), "output_data": {"answer": 2}})
        async with _in(store, mode):
            written = await store.executions.update(as_text)
        assert written.status is S.COMPLETED
        assert written.started_at == current.started_at
        assert written.started_at.tzinfo is UTC
        assert await store.executions.get(current.id) == written

    @pytest.mark.parametrize("mode", MODES)
    async def test_refused_instance_updates_are_the_checks_errors_and_change_nothing(
        self, world: World, mode: str
    ) -> None:
        store = world.store
        update = store.agent_instances.update
        stale = await store.agent_instances.get(world.instance.id)
        current = await update(stale.model_copy(update={"state": {"moved": True}}))
        key, revision = current.id, current.revision
        stale.update_state({"stale": True})
        text = (
            f"AgentInstance {key} was changed by someone else: you have revision {revision - 1}, "
            f"the store has {revision}; re-read and retry"
        )
        await _refused(store, mode, lambda: update(stale), ConcurrencyError, text)
        unbound = current.model_copy(update={"execution_id": None})
        text = f"AgentInstance {key}: execution_id cannot change ({world.execution.id!r} -> None)"
        await _refused(store, mode, lambda: update(unbound), IntegrityError, text)
        later = current.created_at + timedelta(milliseconds=1)
        reborn = current.model_copy(update={"created_at": later})
        text = f"AgentInstance {key}: created_at cannot change ({current.created_at!r} -> {later!r})"
        await _refused(store, mode, lambda: update(reborn), IntegrityError, text)
        assert world.agent_type.id is not None
        missing = world.agent_type.id + 999
        retyped = current.model_copy(update={"agent_type_id": missing})
        text = f"AgentInstance {key}: agent_type_id {missing} does not exist"
        await _refused(store, mode, lambda: update(retyped), IntegrityError, text)
        gone = await world.new_instance()
        await store.agent_instances.delete(gone.id)
        text = f"agent instance {gone.id} does not exist"
        await _refused(store, mode, lambda: update(gone), NotFound, text)
        assert await store.agent_instances.get(key) == current

        other = await store.agent_types.add(agent_type("other"))
        async with _in(store, mode):
            retyped = await update(current.model_copy(update={"agent_type_id": other.id}))
        assert retyped.agent_type_id == other.id
        assert retyped.revision == revision + 1
        assert await store.agent_instances.get(key) == retyped

    @pytest.mark.parametrize("mode", MODES)
    async def test_updated_at_never_goes_back(self, store: Store, mode: str) -> None:
        """A stored ``updated_at`` ahead of this machine's clock (another machine's) is kept:
        the written one is the later of the two."""
        ahead = utc_now() + timedelta(hours=1)
        made = agent_type("ahead", id=7, revision=1, created_at=ahead, updated_at=ahead)
        await store.agent_types.restore_many([made])
        stored = await store.agent_types.get(7)
        stored.description = "changed"
        async with _in(store, mode):
            written = await store.agent_types.update(stored)
        assert written.updated_at == ahead
        assert await store.agent_types.get(7) == written
        written.description = "again"
        async with _in(store, mode):
            again = await store.agent_types.update(written)
        assert again.updated_at == ahead
        assert again.revision == 3

    async def test_a_topology_read_is_its_listed_form_with_memberships_in_order(self, world: World) -> None:
        """``get``, ``find`` and ``find_by_name`` give what a page lists (memberships in the
        same order: on SQL by position, then id, whatever order they were saved in); none
        for a topology without members."""
        store = world.store
        a, b = await store.agent_types.add_many([agent_type("a"), agent_type("b")])
        shuffled = topology("shuffled", [a, b, world.agent_type])
        shuffled.memberships = [
            TopologyMembership(agent_type_id=m.agent_type_id, slot_name=m.slot_name, position=p)
            for m, p in zip(shuffled.memberships, (2, 0, 1), strict=True)
        ]
        saved = await store.topologies.add(shuffled)
        compound = topology("compound", [], TopologyType.COMPOUND, {"sub_topologies": ["shuffled"]})
        empty = await store.topologies.add(compound)
        listed = {t.id: t for t in (await store.topologies.list()).items}
        for made in (saved, empty, world.topology):
            assert made.id is not None
            found = await store.topologies.get(made.id)
            assert found == listed[made.id]
            assert await store.topologies.find(made.id) == found
            assert await store.topologies.find_by_name(made.name.upper()) == found
        assert sorted(m.position for m in listed[saved.id].memberships) == [0, 1, 2]
        assert listed[empty.id].memberships == []
        assert await store.topologies.find(10_000) is None
        assert await store.topologies.find_by_name("nobody") is None
        with pytest.raises(NotFound, match=r"^topology 10000 does not exist$"):
            await store.topologies.get(10_000)

    async def test_a_topology_read_in_a_transaction_sees_its_writes(self, world: World) -> None:
        store = world.store
        assert world.topology.id is not None
        async with store.transaction():
            current = await store.topologies.get(world.topology.id)
            current.description = "changed in the transaction"
            written = await store.topologies.update(current)
            assert await store.topologies.get(world.topology.id) == written
            assert await store.topologies.find_by_name(written.name) == written
        assert await store.topologies.get(world.topology.id) == written

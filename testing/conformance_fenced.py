"""Conformance: an execution updated under a worker's lease
(:func:`qmcp_agents.domain.recording.update_execution_fenced`) is exactly its composed form,
on every backend. A mixin of :class:`~qmcp_agents.testing.conformance.StoreConformance`.

A store may do it in one step of its own (PostgreSQL: one statement); it must store and
return what ``executions.update`` and the lease's hold or release store and return, refuse
what they refuse with the same error, and then leave the store and the lease entries as
they were. The composed form's answer is found on the same state, in a transaction that is
undone afterwards.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from qmcp_agents.domain import (
    AgentInstance,
    Execution,
    ExecutionStatus,
    InvalidTransition,
    MessageCreate,
    MessageType,
    Result,
)
from qmcp_agents.domain.engine.retry import retried
from qmcp_agents.domain.leases import LeaseHold, LeaseLost
from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.recording import (
    record_call,
    update_execution_fenced,
    update_execution_fenced_composed,
)
from qmcp_agents.domain.transactions import whole

from .builders import World
from .conformance_record import Undo, answer_undone
from .inspect import dump_store

FAULTS = (
    "stale_revision",  # the execution changed since it was read
    "illegal_transition",  # a status the stored one cannot reach
    "final",  # the execution ended meanwhile (and the read is stale)
    "lost_lease",  # another owner's name
    "wrong_attempt",  # an earlier claim of the same owner
    "no_entry",  # the entry is gone (released, or handed back and finished)
    "deleted",  # the execution is gone (and its entry with it)
)
"""Ways a fenced update can be refused: each one alone makes the composed path raise."""

MOVES = ("start", "complete", "pause", "metadata")
"""What the update writes: the drive's start (pending to running, the claim noted), its
end (completed, paused), or only the metadata of a running execution."""


class Fenced:
    """One fenced update to make: an execution claimed by ``w1``, read and moved by
    ``move``, with ``faults`` applied to the store or to the arguments. ``child``: the
    execution is a compound's child and the lease its parent's."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.store: Store = world.store

    async def build(
        self, move: str, release: bool, attempt_given: bool, faults: frozenset[str], child: bool = False
    ) -> Fenced:
        world, store = self.world, self.store
        parent = await world.new_execution() if child else None
        self.execution = await world.new_execution(
            running=move != "start", parent_id=None if parent is None else parent.id
        )
        leased = self.execution if parent is None else parent
        await store.leases.enqueue(leased.id)
        claimed = await store.leases.claim("w1", limit=1, lease_seconds=600)
        assert [c.execution_id for c in claimed] == [leased.id]
        self.lease = LeaseHold(leased.id, "w1", claimed[0].attempts if attempt_given else None)
        self.release = release
        read = self.execution.model_copy(deep=True)
        if "stale_revision" in faults:
            changed = await store.executions.get(self.execution.id)
            changed.metadata = {**changed.metadata, "changed": True}
            await store.executions.update(changed)
        if "final" in faults:
            done = await store.executions.get(self.execution.id)
            if done.status is ExecutionStatus.PENDING:
                done.start()
            done.mark_complete({"answer": 0})
            await store.executions.update(done)
        if move == "start":
            read.start()
            read.metadata = {**read.metadata, "workers": [{"owner": "w1", "attempt": self.lease.attempt}]}
        elif move == "complete":
            read.mark_complete({"answer": 42})
        elif move == "pause":
            read.metadata = {**read.metadata, "awaiting": {"question": "?"}}
            read.pause()
        else:
            read.metadata = {**read.metadata, "note": "n"}
        if "illegal_transition" in faults:  # behind Pydantic's back, as a bug would
            read.__dict__["status"] = ExecutionStatus.PENDING
        if "lost_lease" in faults:
            self.lease = replace(self.lease, owner="w2")
        if "wrong_attempt" in faults:
            self.lease = replace(self.lease, attempt=(claimed[0].attempts or 0) + 1)
        if "no_entry" in faults:
            assert await store.leases.release(leased.id, "w1")
        if "deleted" in faults:
            await store.executions.delete(self.execution.id)
        self.read = read
        return self

    def arguments(self) -> tuple[Execution, LeaseHold, bool]:
        return (self.read.model_copy(deep=True), self.lease, self.release)

    async def composed(self) -> Execution | BaseException:
        """What the composed path returns or raises on the current state, undone after."""
        return await answer_undone(
            self.store, lambda: update_execution_fenced_composed(self.store, *self.arguments())
        )

    async def state(self) -> tuple[Any, ...]:
        return (await dump_store(self.store), await self.store.leases.list())


def _but_its_time(execution: Execution) -> dict[str, Any]:
    return execution.model_dump(exclude={"updated_at"})


async def check_against_composed(fenced: Fenced) -> Execution | None:
    """``update_execution_fenced`` against the composed path on the same state: the same
    error and an unchanged store, or the same stored execution (as the store then reads it)
    and the lease entry gone (released) or as it was (held). The stored execution, if any."""
    store = fenced.store
    expected = await fenced.composed()
    before = await fenced.state()
    try:
        got: Execution | BaseException = await update_execution_fenced(store, *fenced.arguments())
    except Exception as error:  # compared below
        got = error
    if isinstance(expected, BaseException):
        assert isinstance(got, BaseException), (
            f"the fenced update wrote what the composed path refuses: {expected!r}"
        )
        assert (type(got), str(got)) == (type(expected), str(expected))
        assert await fenced.state() == before
        return None
    assert not isinstance(got, BaseException), (
        f"the fenced update refused what the composed path writes: {got!r}"
    )
    assert _but_its_time(got) == _but_its_time(expected)
    assert await store.executions.get(got.id) == got
    leases = await store.leases.list()
    if fenced.release:
        assert leases == [e for e in before[1] if e.execution_id != fenced.lease.execution_id]
    else:
        assert leases == before[1]
    return got


class FencedConformance:
    """Fenced execution updates; mixed into the suite. Needs the ``world`` fixture."""

    @pytest.mark.parametrize("move", MOVES)
    @pytest.mark.parametrize("release", [True, False])
    @pytest.mark.parametrize("attempt_given", [True, False])
    async def test_fenced_update_stores_what_the_composed_path_stores(
        self, world: World, move: str, release: bool, attempt_given: bool
    ) -> None:
        fenced = await Fenced(world).build(move, release, attempt_given, frozenset())
        got = await check_against_composed(fenced)
        assert got is not None
        assert got.revision == fenced.execution.revision + 1

    @pytest.mark.parametrize("move", ["complete", "metadata"])
    async def test_a_childs_fenced_update_holds_its_parents_lease(self, world: World, move: str) -> None:
        fenced = await Fenced(world).build(move, False, True, frozenset(), child=True)
        assert await check_against_composed(fenced) is not None
        lost = await Fenced(world).build(move, False, True, frozenset({"lost_lease"}), child=True)
        assert await check_against_composed(lost) is None

    @pytest.mark.parametrize("fault", FAULTS)
    @pytest.mark.parametrize("release", [True, False])
    async def test_fenced_update_refuses_as_the_composed_path_does(
        self, world: World, fault: str, release: bool
    ) -> None:
        move = "start" if fault in ("stale_revision", "final") else "complete"
        fenced = await Fenced(world).build(move, release, True, frozenset({fault}))
        expected = await fenced.composed()
        assert isinstance(expected, Exception), fault
        assert await check_against_composed(fenced) is None

    async def test_fenced_update_in_an_open_transaction_joins_it(self, world: World) -> None:
        store = world.store
        fenced = await Fenced(world).build("complete", True, True, frozenset())
        before = await fenced.state()

        async def undone() -> None:
            async with whole(store):
                await update_execution_fenced(store, *fenced.arguments())
                raise Undo

        with pytest.raises(Undo):
            await undone()
        assert await fenced.state() == before
        async with whole(store):
            done = await update_execution_fenced(store, *fenced.arguments())
        assert await store.executions.get(fenced.execution.id) == done
        assert await store.leases.find(fenced.execution.id) is None

    async def test_fenced_update_racing_a_cancel_and_recorded_calls(self, world: World) -> None:
        """Drives ending (``complete``, release) while a cancel (the execution cancelled,
        its entry released from elsewhere) and answered calls into the same execution
        under the same lease race them: no deadlock or other error, and each execution
        ends all or nothing: completed with its entry gone, or cancelled and the drive's
        end refused (its entry as the cancel left it), and every call recorded whole
        (message, result and instance) or not at all."""
        store = world.store
        runs = [await Fenced(world).build("complete", True, True, frozenset()) for _ in range(4)]
        members = [await world.new_instance(fenced.execution.id) for fenced in runs]
        outcomes: dict[int, str] = {}
        refusals: list[str] = []

        async def finish(i: int, fenced: Fenced) -> None:
            await asyncio.sleep(0.004 * i)  # the answers first for some, the end first for others

            async def write() -> None:
                current = await store.executions.get(fenced.execution.id)
                if current.is_final:
                    outcomes[i] = "refused"
                    return
                current.mark_complete({"answer": i})
                await update_execution_fenced(store, current, fenced.lease, True)
                outcomes[i] = "completed"

            await retried(write)

        async def cancel(i: int, fenced: Fenced) -> None:
            await asyncio.sleep(0.004 * (3 - i))

            async def write() -> None:
                current = await store.executions.get(fenced.execution.id)
                if current.is_final:
                    return
                current.cancel()
                async with whole(store):
                    await store.executions.update(current)
                    # as ``cancel`` releases it (an unclaimed entry only), or as a worker
                    # handing the run back would (the claimed entry)
                    await store.leases.release(fenced.execution.id, "w1" if i % 2 else None)

            await retried(write)

        async def answer(fenced: Fenced, member: AgentInstance, k: int) -> None:
            async def write() -> None:
                instance = await store.agent_instances.get(member.id)
                instance.update_state({"calls": {**instance.state.get("calls", {}), f"c{k}": k}})
                message = MessageCreate(
                    sender_id=member.id, message_type=MessageType.RESPONSE, content={"k": k}, round_number=1
                )
                result = Result(
                    execution_id=fenced.execution.id, agent_instance_id=member.id, output={"k": k}
                )
                try:
                    await record_call(store, fenced.execution.id, message, result, instance, fenced.lease)
                except (LeaseLost, InvalidTransition) as error:  # the run ended first
                    refusals.append(type(error).__name__)

            await retried(write)

        tasks = []
        for i, (fenced, member) in enumerate(zip(runs, members, strict=True)):
            tasks += [finish(i, fenced), cancel(i, fenced)]
            tasks += [answer(fenced, member, k) for k in range(3)]
        assert len(tasks) == 20
        await asyncio.gather(*tasks)
        recorded = 0
        for i, (fenced, member) in enumerate(zip(runs, members, strict=True)):
            stored = await store.executions.get(fenced.execution.id)
            entry = await store.leases.find(fenced.execution.id)
            if outcomes[i] == "completed":
                assert stored.status is ExecutionStatus.COMPLETED
                assert stored.output_data == {"answer": i}
                assert entry is None
            else:
                assert stored.status is ExecutionStatus.CANCELLED
                assert stored.output_data is None
                assert (entry is None) == bool(i % 2)  # a claimed entry stays for its worker
            calls = (await store.agent_instances.get(member.id)).state.get("calls", {})
            messages = (await store.messages.list(fenced.execution.id)).items
            assert len(messages) == len(calls) == await store.results.count(execution_id=fenced.execution.id)
            assert stored.revision == fenced.execution.revision + 1
            recorded += len(messages)
        assert len(refusals) + recorded == 12


__all__ = ["FAULTS", "FencedConformance", "Fenced", "check_against_composed"]

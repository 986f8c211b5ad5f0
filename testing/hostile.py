"""Conformance under hostile values, concurrency and cancellation (issue 14).

A mixin of :class:`~qmcp_agents.testing.conformance.StoreConformance`: every test runs on
every backend. Where a backend's capabilities exclude a behaviour (no transactions, no
savepoints), the test asserts what ``docs/backends.md`` documents for it instead.
"""

from __future__ import annotations

import asyncio
import random
from contextlib import AbstractAsyncContextManager, suppress
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from pydantic import ValidationError

from qmcp_agents.domain import (
    AgentInstance,
    AgentType,
    Execution,
    ExecutionStatus,
    IntegrityError,
    InvalidTransition,
    MessageCreate,
    MessageType,
    NotFound,
    Result,
    TopologyMembership,
    TransactionClosed,
    TransactionRolledBack,
    uuid7,
)
from qmcp_agents.domain.ports import Store

from .builders import World, agent_type, message, topology
from .differential import run_differential
from .inspect import dump_store

INT32 = 2**31
INT64 = 2**63
#: Values that are not ids of any kind (the store must refuse them before any I/O).
NOT_INT_IDS: list[Any] = [True, "1", 1.0, {"$gt": 0}, [1], INT32, INT64, 0, -1, None]
NOT_UUID_IDS: list[Any] = [True, 1, {"$gt": 0}, [1], b"x" * 16, None]
TAMPERED_INT_CURSORS = ["-3", " 2", "2 ", "+2", "\u0663", "1_0", "0", "01", "99999999999", "", "2.0", "0x2"]
OFFSET_EDGES = [
    datetime.max.replace(tzinfo=timezone(-timedelta(hours=5))),
    datetime.min.replace(tzinfo=timezone(timedelta(hours=5))),
    datetime.max.replace(tzinfo=timezone(-timedelta(minutes=1))),
]


class HostileConformance:
    """Issue 14's cases; mixed into the suite. Needs ``store``/``world`` fixtures."""

    def make_store(self) -> AbstractAsyncContextManager[Store]:
        raise NotImplementedError

    # --- 12: ids of the wrong type or out of range ------------------------------------------

    async def test_wrong_ids_are_validation_errors_before_any_io(self, world: World) -> None:
        store = world.store
        before = await dump_store(store)
        for bad in NOT_INT_IDS:
            if bad is None:
                continue
            for call in (
                store.agent_types.get,
                store.agent_types.find,
                store.agent_types.delete,
                store.topologies.get,
                store.topologies.find,
                store.topologies.delete,
            ):
                with pytest.raises(ValidationError, match="id"):
                    await call(bad)
        for bad in [*NOT_UUID_IDS, str(world.execution.id), str(world.execution.id).upper()]:
            if bad is None:
                continue
            for call in (  # type: ignore[assignment]
                store.executions.get,
                store.executions.find,
                store.executions.delete,
                store.agent_instances.get,
                store.agent_instances.delete,
                store.results.find,
                store.messages.get,
                store.messages.find,
            ):
                with pytest.raises(ValidationError, match="id"):
                    await call(bad)
            with pytest.raises(ValidationError, match="execution_id"):
                await store.messages.list(bad)
            with pytest.raises(ValidationError, match="execution_id"):
                await store.messages.last(bad, 5)
            with pytest.raises(ValidationError, match="execution_id"):
                await store.messages.count(bad)
            with pytest.raises(ValidationError, match="execution_id"):
                await store.messages.append(bad, [message(world.instance.id)])
        assert await dump_store(store) == before

    async def test_out_of_range_and_wrong_type_filters_are_validation_errors(self, world: World) -> None:
        store = world.store
        execution_id = world.execution.id
        await store.messages.append(execution_id, [message(world.instance.id)])
        before = await dump_store(store)
        for bad_round in (-1, "1", INT32, INT64, True, 1.0):
            with pytest.raises(ValidationError, match="round_number"):
                await store.messages.list(execution_id, round_number=bad_round)  # type: ignore[arg-type]
        for bad_int in (INT32, INT64, -1, 0, "1", True):
            with pytest.raises(ValidationError, match="topology_id"):
                await store.executions.count(topology_id=bad_int)  # type: ignore[arg-type]
            with pytest.raises(ValidationError, match="agent_type_id"):
                await store.agent_instances.list(agent_type_id=bad_int)  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="correlation_id"):
            await store.executions.list(correlation_id="a\x00b")
        with pytest.raises(ValidationError, match="correlation_id"):
            await store.executions.count(correlation_id="\udc80")
        for bad_uuid in (str(execution_id), {"$ne": None}, 5):
            with pytest.raises(ValidationError, match="parent_id"):
                await store.executions.list(parent_id=bad_uuid)  # type: ignore[arg-type]
            with pytest.raises(ValidationError, match="execution_id"):
                await store.results.count(execution_id=bad_uuid)  # type: ignore[arg-type]
            with pytest.raises(ValidationError, match="sender_id"):
                await store.messages.list(execution_id, sender_id=bad_uuid)  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="role"):
            await store.agent_types.list(role={"$ne": None})  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="topology_type"):
            await store.topologies.count(topology_type="nope")  # type: ignore[arg-type]
        for edge in OFFSET_EDGES:
            with pytest.raises(ValidationError, match="started_after"):
                await store.executions.count(started_after=edge)
            with pytest.raises(ValidationError, match="older_than"):
                await store.executions.purge(older_than=edge)
        # The edges that do fit in UTC are answered, the same everywhere.
        top = datetime.max.replace(tzinfo=timezone(timedelta(hours=5)))
        bottom = datetime.min.replace(tzinfo=UTC)
        assert await store.executions.count(started_after=top) == 0
        assert await store.executions.count(started_before=bottom) == 0
        assert await store.executions.count(started_after=bottom, started_before=top) == 1
        page = await store.messages.list(execution_id, round_number=INT32 - 1)
        assert page.items == []
        assert await dump_store(store) == before

    # --- 9: cursors ------------------------------------------------------------------------

    async def test_a_cursor_is_exactly_what_a_page_returned(self, world: World) -> None:
        store = world.store
        for i in range(3):
            await store.agent_types.add(agent_type(f"extra{i}"))
        await store.messages.append(world.execution.id, [message(world.instance.id) for _ in range(5)])
        for bad in TAMPERED_INT_CURSORS:
            with pytest.raises(ValidationError, match="after"):
                await store.agent_types.list(after=bad)
            with pytest.raises(ValidationError, match="after"):
                await store.messages.list(world.execution.id, after=bad)
        for bad_type in (2, b"2", {"$gt": 1}):
            with pytest.raises(ValidationError, match="after"):
                await store.agent_types.list(after=bad_type)  # type: ignore[arg-type]
        page = await store.executions.list(limit=1)
        key = str(page.items[0].id)
        for bad in (key.upper(), "{" + key + "}", key.replace("-", ""), "urn:uuid:" + key, " " + key):
            with pytest.raises(ValidationError, match="after"):
                await store.executions.list(after=bad)
            with pytest.raises(ValidationError, match="after"):
                await store.results.list(after=bad)
        assert (await store.executions.list(after=key)).items == []
        first = await store.messages.list(world.execution.id, limit=2)
        assert first.next_cursor == "2"
        rest = await store.messages.list(world.execution.id, limit=10, after=first.next_cursor)
        assert [m.sequence_number for m in rest.items] == [3, 4, 5]
        types = await store.agent_types.list(limit=2)
        assert types.next_cursor is not None
        assert len((await store.agent_types.list(after=types.next_cursor)).items) == 2

    # --- 10: names -----------------------------------------------------------------------------

    async def test_name_lookups_are_ascii_and_never_reach_the_driver_with_junk(self, store: Store) -> None:
        await store.agent_types.add(agent_type("kelvin"))
        await store.topologies.add(topology("kelvin"))
        for repository in (store.agent_types, store.topologies):
            assert await repository.find_by_name("KELVIN") is not None
            for junk in ("\u212aELVIN", "kelvin\x00", "kel vin", "", "x" * 65, "\udc80"):
                assert await repository.find_by_name(junk) is None
                with pytest.raises(NotFound):
                    await repository.get_by_name(junk)
            for not_a_name in (5, None, {"$ne": None}, b"kelvin"):
                with pytest.raises(ValidationError, match="name"):
                    await repository.find_by_name(not_a_name)  # type: ignore[arg-type]

    # --- 7, 8: domain bounds match what every backend stores ------------------------------------

    async def test_domain_bounds_match_every_backend(self, world: World) -> None:
        store = world.store
        before = await dump_store(store)
        with pytest.raises(ValidationError, match="round_number"):
            message(world.instance.id, round_number=INT32)
        with pytest.raises(ValidationError, match="position"):
            TopologyMembership(agent_type_id=1, slot_name="s", position=INT32)
        with pytest.raises(ValidationError, match="agent_type_id"):
            TopologyMembership(agent_type_id=INT32, slot_name="s")
        with pytest.raises(ValidationError, match="version"):
            agent_type("long", version="1.0." + "0" * 100)
        with pytest.raises(ValidationError, match="topology_id"):
            Execution(topology_id=INT32, input_data={})
        with pytest.raises(ValidationError, match="revision"):
            agent_type("r", revision=INT32)
        assert await dump_store(store) == before
        # The largest accepted values are stored and read back on every backend.
        edge = await store.messages.append(
            world.execution.id, [message(world.instance.id, round_number=INT32 - 1)]
        )
        assert (await store.messages.get(edge[0].id)).round_number == INT32 - 1
        long_version = await store.agent_types.add(agent_type("long", version="1." + "2" * 60 + ".3"))
        assert (await store.agent_types.get(long_version.id)).version == long_version.version  # type: ignore[arg-type]
        member = TopologyMembership(agent_type_id=world.agent_type.id, slot_name="far", position=INT32 - 1)
        far = await store.topologies.add(topology("far").model_copy(update={"memberships": [member]}))
        assert (await store.topologies.get(far.id)).memberships[0].position == INT32 - 1  # type: ignore[arg-type]

    async def test_lone_surrogates_are_refused_everywhere(self, world: World) -> None:
        store = world.store
        before = await dump_store(store)
        for payload in (
            {"a": "\ud83d"},
            {"\udc00": 1},
            {"a": ["ok", {"b": "x\udfff"}]},
            {"pair": "\ud83d\ude00"},
        ):
            with pytest.raises(ValidationError, match="surrogate"):
                message(world.instance.id, payload)
            with pytest.raises(ValidationError, match="surrogate"):
                AgentInstance(agent_type_id=1, state=payload)
        with pytest.raises(ValidationError, match="surrogate"):
            AgentType(name="s", description="bad \ud800", role="planner")
        with pytest.raises(ValidationError, match="surrogate"):
            Result(execution_id=uuid7(), agent_instance_id=uuid7(), output={}, reasoning="\udfff")
        with pytest.raises(ValidationError, match="surrogate"):
            Result(execution_id=uuid7(), agent_instance_id=uuid7(), output={}, token_usage={"\ud800": 1})
        forged = MessageCreate.model_construct(
            sender_id=world.instance.id,
            recipient_id=None,
            message_type=MessageType.BROADCAST,
            content={"a": "\ud800"},
            round_number=0,
        )
        with pytest.raises(ValidationError, match="surrogate"):
            await store.messages.append(world.execution.id, [forged])
        assert await dump_store(store) == before
        # Real astral characters are fine, and read back equal.
        (stored,) = await store.messages.append(
            world.execution.id, [message(world.instance.id, {"e": "\U0001f600"})]
        )
        assert (await store.messages.get(stored.id)).content == {"e": "\U0001f600"}

    # --- 10: the same answer everywhere -------------------------------------------------------------

    async def test_empty_append_to_a_final_execution_is_refused(self, world: World) -> None:
        store = world.store
        done = await store.executions.get(world.execution.id)
        done.mark_complete({"ok": True})
        await store.executions.update(done)
        with pytest.raises(InvalidTransition, match="completed"):
            await store.messages.append(world.execution.id, [])
        with pytest.raises(NotFound):
            await store.messages.append(uuid7(), [])
        running = await world.new_execution()
        assert await store.messages.append(running.id, []) == []

    # --- 2: re-binding an instance ---------------------------------------------------------------

    async def test_an_instance_cannot_be_rebound_to_another_execution(self, world: World) -> None:
        store = world.store
        await store.messages.append(world.execution.id, [message(world.instance.id)])
        await store.results.add(world.result())
        second = await world.new_execution()
        instance = await store.agent_instances.get(world.instance.id)
        before = await dump_store(store)
        for target in (second.id, None):
            with pytest.raises(IntegrityError, match="execution_id"):
                await store.agent_instances.update(instance.model_copy(update={"execution_id": target}))
        assert await dump_store(store) == before
        roaming = await world.new_instance(None)
        with pytest.raises(IntegrityError, match="execution_id"):
            await store.agent_instances.update(roaming.model_copy(update={"execution_id": second.id}))
        await store.executions.delete(second.id)
        assert await store.messages.count(world.execution.id) == 1
        assert await store.agent_instances.find(world.instance.id) is not None

    # --- 5: purge never deletes a live execution -----------------------------------------------

    async def test_purge_never_deletes_a_live_child_of_a_final_parent(self, world: World) -> None:
        store = world.store
        parent = world.execution
        child = await world.new_execution(parent_id=parent.id)
        speaker = await world.new_instance(child.id)
        await store.messages.append(child.id, [message(speaker.id)])
        done = await store.executions.get(parent.id)
        done.mark_complete({"ok": True})
        await store.executions.update(done)
        with pytest.raises(InvalidTransition, match="child executions"):
            await world.new_execution(parent_id=parent.id)
        old = datetime(2020, 1, 1, tzinfo=UTC)
        eligible = []
        for i in range(5):
            execution = Execution(topology_id=world.topology.id, input_data={"i": i}, started_at=old)
            execution.cancel()
            eligible.append(await store.executions.add(execution))
        cutoff = datetime.now(UTC) + timedelta(minutes=1)
        assert await store.executions.purge(older_than=cutoff, batch_size=2) == 5
        assert (await store.executions.get(child.id)).status is ExecutionStatus.RUNNING
        assert await store.executions.find(parent.id) is not None
        assert await store.messages.count(child.id) == 1
        finished = await store.executions.get(child.id)
        finished.cancel()
        await store.executions.update(finished)
        assert await store.executions.purge(older_than=cutoff) == 2
        assert await store.executions.count() == 0

    # --- 11: membership ids belong to their topology -------------------------------------------

    async def test_membership_ids_are_never_shared_or_taken_from_elsewhere(self, world: World) -> None:
        store = world.store
        source = await store.topologies.get(world.topology.id)  # type: ignore[arg-type]
        clone = await store.topologies.add(
            source.model_copy(update={"id": None, "name": "clone", "revision": 0})
        )
        source_ids = {m.id for m in source.memberships}
        clone_ids = {m.id for m in clone.memberships}
        assert clone_ids
        assert not clone_ids & source_ids
        assert all(m.topology_id == clone.id for m in clone.memberships)
        assert await store.topologies.get(world.topology.id) == source  # type: ignore[arg-type]
        made_up = TopologyMembership(id=9999, agent_type_id=world.agent_type.id, slot_name="x")
        odd = await store.topologies.add(topology("odd").model_copy(update={"memberships": [made_up]}))
        assert odd.memberships[0].id != 9999
        later = await store.topologies.add(topology("later", [world.agent_type]))
        every = [m.id for t in (source, clone, odd, later) for m in t.memberships]
        assert len(every) == len(set(every))
        # An update keeps its own ids and refuses to adopt another topology's.
        stolen = clone.model_copy(update={"memberships": [*clone.memberships, *later.memberships]})
        stolen.memberships[-1] = stolen.memberships[-1].model_copy(update={"slot_name": "extra"})
        updated = await store.topologies.update(stolen)
        kept = [m.id for m in updated.memberships]
        assert kept[: len(clone.memberships)] == [m.id for m in clone.memberships]
        assert not set(kept) & {m.id for m in later.memberships}
        assert await store.topologies.get(later.id) == later  # type: ignore[arg-type]

    # --- 3, 6: concurrent tasks inside one transaction -----------------------------------------

    async def test_concurrent_tasks_share_a_transaction_or_are_refused_clearly(self, world: World) -> None:
        store = world.store
        execution_id, sender = world.execution.id, world.instance.id
        handed: list[int] = []

        async def good() -> None:
            for _ in range(3):
                handed.extend(
                    m.sequence_number for m in await store.messages.append(execution_id, [message(sender)])
                )
                await asyncio.sleep(0)

        async def nested() -> None:
            async with store.transaction():
                await store.messages.append(execution_id, [message(sender)])
                await asyncio.sleep(0.01)
                raise RuntimeError("inner")

        async def bad() -> None:
            with pytest.raises(RuntimeError, match="inner"):
                await nested()

        async def work() -> None:
            async with store.transaction():
                await asyncio.gather(good(), bad(), store.agent_types.add(agent_type("side")))

        caps = store.capabilities
        if not caps.transactions:
            await work()  # documented: the calls run one by one, so the nested block's append stays
            stored = [m.sequence_number for m in await store.messages.last(execution_id, 10)]
            assert stored == [1, 2, 3, 4]
            assert set(handed) < set(stored)
            assert len(handed) == 3
        elif caps.savepoints:
            await work()
            stored = [m.sequence_number for m in await store.messages.last(execution_id, 10)]
            assert sorted(handed) == stored == [1, 2, 3]  # acknowledged writes are all there, once
            assert await store.agent_types.find_by_name("side") is not None
        else:
            with pytest.raises(TransactionRolledBack):
                await work()
            assert await store.messages.count(execution_id) == 0
        # Whatever happened, the store (and its pool) still works for the next caller.
        again = await store.messages.append(execution_id, [message(sender)])
        assert again[0].sequence_number == await store.messages.count(execution_id)

    async def test_gathered_calls_inside_a_transaction_commit_together(self, world: World) -> None:
        store = world.store
        execution_id, sender = world.execution.id, world.instance.id
        if not store.capabilities.transactions:
            return  # documented: no unit of work; test_concurrent_tasks... covers the calls

        async def aborted() -> None:
            async with store.transaction():
                await asyncio.gather(
                    *(store.messages.append(execution_id, [message(sender)]) for _ in range(4)),
                    *(store.agent_types.add(agent_type(f"g{i}")) for i in range(3)),
                    store.executions.count(),
                )
                raise RuntimeError("abort")

        with pytest.raises(RuntimeError, match="abort"):
            await aborted()
        assert await store.messages.count(execution_id) == 0
        assert await store.agent_types.count() == 1
        async with store.transaction():
            got = await asyncio.gather(
                *(store.messages.append(execution_id, [message(sender)]) for _ in range(4))
            )
        assert sorted(batch[0].sequence_number for batch in got) == [1, 2, 3, 4]
        assert await store.agent_types.count() == 1

    async def test_a_task_outliving_its_transaction_is_refused(self, world: World) -> None:
        store = world.store
        gate = asyncio.Event()

        async def late() -> AgentType:
            await gate.wait()
            return await store.agent_types.add(agent_type("late"))

        async with store.transaction():
            leftover = asyncio.ensure_future(late())
            await asyncio.sleep(0)
        gate.set()
        if not store.capabilities.transactions:  # documented: no transaction, the call just runs
            assert (await leftover).name == "late"
            return
        with pytest.raises(TransactionClosed, match="ended"):
            await leftover
        assert await store.agent_types.find_by_name("late") is None
        assert (await store.agent_types.add(agent_type("later"))).name == "later"

    # --- 1: cancellation at any point ----------------------------------------------------------

    async def test_random_cancellations_leave_no_partial_write_and_no_stuck_store(self, world: World) -> None:
        store = world.store
        execution_id, sender = world.execution.id, world.instance.id
        rng = random.Random(14)
        for attempt in range(40):
            before = await store.messages.count(execution_id)
            size = rng.choice((1, 3, 20))
            call = rng.choice(("append", "read", "transaction"))
            if call == "append":
                job: Any = store.messages.append(
                    execution_id, [message(sender, {"a": attempt}) for _ in range(size)]
                )
            elif call == "read":
                job = store.messages.last(execution_id, 50)
            else:
                job = _two_step(store, execution_id, sender, size)
            with suppress(TimeoutError):
                await asyncio.wait_for(job, timeout=rng.uniform(0.0, 0.004))
            after = await store.messages.count(execution_id)
            written = size * (2 if call == "transaction" else 1)
            if call == "read":
                assert after == before
            elif store.capabilities.transactions or call == "append":
                assert after - before in (0, written), (call, before, after)
        numbers = [m.sequence_number for m in await store.messages.last(execution_id, 1000)]
        assert numbers == list(range(1, len(numbers) + 1))
        more = await asyncio.wait_for(store.messages.append(execution_id, [message(sender)]), timeout=5)
        assert more[0].sequence_number == len(numbers) + 1

    async def test_cancelled_deletes_and_final_transitions_are_all_or_nothing(self, world: World) -> None:
        """Issue 15 (the MongoDB closing entries): a delete or a move to "completed" cancelled
        at any moment leaves the execution whole or gone, final or not; and whichever it
        is, the next calls behave at once: no append waits for a transition that will never
        finish, none is refused as "not found" while the execution is there."""
        store = world.store
        rng = random.Random(15)
        for attempt in range(30):
            execution = await world.new_execution()
            instance = await world.new_instance(execution.id)
            await store.messages.append(execution.id, [message(instance.id, {"a": i}) for i in range(3)])
            kind = rng.choice(("delete", "complete"))
            job: Any = (
                store.executions.delete(execution.id) if kind == "delete" else _complete(store, execution.id)
            )
            with suppress(TimeoutError):
                await asyncio.wait_for(job, timeout=rng.uniform(0.0, 0.08))
            found = await store.executions.find(execution.id)
            seen = (attempt, kind, None if found is None else found.status.value)
            if found is None:
                assert kind == "delete", seen
                assert await store.messages.count(execution.id) == 0, seen
                assert await store.agent_instances.find(instance.id) is None, seen
                with pytest.raises(NotFound):
                    await asyncio.wait_for(store.messages.append(execution.id, [message(instance.id)]), 5)
                continue
            assert await store.messages.count(execution.id) == 3, seen
            if found.is_final:
                with pytest.raises(InvalidTransition):
                    await asyncio.wait_for(store.messages.append(execution.id, [message(instance.id)]), 5)
                assert await store.messages.count(execution.id) == 3, seen
                continue
            (more,) = await asyncio.wait_for(store.messages.append(execution.id, [message(instance.id)]), 1.5)
            assert more.sequence_number == 4, seen
            await asyncio.wait_for(_complete(store, execution.id), 1.5)
            with pytest.raises(InvalidTransition):
                await store.messages.append(execution.id, [message(instance.id)])

    # --- the differential property test ---------------------------------------------------------

    async def test_hostile_calls_match_the_memory_store(self) -> None:
        examples = getattr(self, "hypothesis_examples", 20)
        await asyncio.to_thread(run_differential, self.make_store, examples)


async def _complete(store: Store, execution_id: UUID) -> None:
    current = await store.executions.get(execution_id)
    current.mark_complete({"done": True})
    await store.executions.update(current)


async def _two_step(store: Store, execution_id: UUID, sender: UUID, size: int) -> None:
    async with store.transaction():
        await store.messages.append(execution_id, [message(sender) for _ in range(size)])
        await asyncio.sleep(0)
        await store.messages.append(execution_id, [message(sender) for _ in range(size)])


__all__ = ["HostileConformance"]

"""Conformance: ``domain.transactions.whole`` transactions (issue 16's fast path) keep the
store's promise however their body behaves. A mixin of
:class:`~qmcp_agents.testing.conformance.StoreConformance`: every test runs on every backend.

A store may skip its per-call protection inside a whole transaction (SQL: no savepoint), on
the word that any failure leaves the block. These tests hold it to what that word cannot
guarantee: a failure that leaves the block undoes everything, and a body that catches a
failure and goes on anyway (the misuse the word rules out) never commits half a call: the
failed call left nothing, or the transaction is refused as a whole
(``TransactionRolledBack``), never a counter bumped without its messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Coroutine
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qmcp_agents.domain import (
    AgentInstance,
    ConcurrencyError,
    Execution,
    IntegrityError,
    InvalidTransition,
    NotFound,
    TransactionRolledBack,
)
from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.transactions import guarded, whole

from .builders import World, agent_type, message
from .inspect import dump_store
from .runner import StoreSession, with_store_session


def _numbers(dump: dict[str, list[dict[str, Any]]], execution_id: Any) -> list[int]:
    return [m["sequence_number"] for m in dump["messages"] if m["execution_id"] == str(execution_id)]


class WholeConformance:
    """Whole transactions; mixed into the suite. Needs ``store``/``world`` fixtures."""

    async def test_a_failure_leaving_a_whole_transaction_undoes_every_write(self, world: World) -> None:
        store, sender = world.store, world.instance.id
        await store.messages.append(world.execution.id, [message(sender)])
        before = await dump_store(store)

        async def body() -> None:
            async with whole(store):
                await store.messages.append(world.execution.id, [message(sender)])
                await store.messages.append(world.execution.id, [message(sender), message(sender)])
                await store.results.add(world.result())
                await store.agent_instances.add(AgentInstance(agent_type_id=world.agent_type.id))
                await store.messages.append(world.execution.id, [message(uuid.uuid4())])

        with pytest.raises(IntegrityError):
            await body()
        assert await dump_store(store) == before
        stored = await store.messages.append(world.execution.id, [message(sender)])
        assert stored[0].sequence_number == 2  # no number was taken by the undone appends

    @pytest.mark.parametrize("drafts", [1, 2])
    async def test_a_refusal_caught_inside_a_whole_transaction_never_commits_half(
        self, world: World, drafts: int
    ) -> None:
        store, sender = world.store, world.instance.id
        await store.messages.append(world.execution.id, [message(sender)])
        before = await dump_store(store)
        refused = [message(sender) for _ in range(drafts - 1)] + [message(uuid.uuid4())]
        try:
            async with whole(store):
                await store.messages.append(world.execution.id, [message(sender)])
                with pytest.raises(IntegrityError):
                    await store.messages.append(world.execution.id, refused)
                await store.messages.append(world.execution.id, [message(sender)])
        except TransactionRolledBack:  # refused as a whole: nothing of it is stored
            assert await dump_store(store) == before
            assert (await store.messages.append(world.execution.id, [message(sender)]))[
                0
            ].sequence_number == 2
            return
        after = await dump_store(store)
        numbers = _numbers(after, world.execution.id)
        assert numbers == [1, 2, 3], numbers  # the refused append left no gap
        assert (await store.messages.append(world.execution.id, [message(sender)]))[0].sequence_number == 4

    async def test_a_read_failure_caught_inside_a_whole_transaction(self, store: Store) -> None:
        """A body that catches a failed read and goes on: its writes are either committed
        (the read wrote nothing) or refused as a whole, never half."""
        before = await dump_store(store)
        try:
            async with whole(store):
                with pytest.raises(NotFound):
                    await store.executions.get(uuid.uuid4())
                await store.agent_types.add(agent_type("after-a-miss"))
        except TransactionRolledBack:
            assert await dump_store(store) == before
            return
        assert [t.name for t in (await store.agent_types.list()).items] == ["after-a-miss"]

    async def test_concurrent_whole_appends_some_refused_leave_no_gap(self, world: World) -> None:
        """Writers racing, each in a whole transaction of its own (a message and a result,
        as the engine records an answer); every fourth names a sender that is no instance
        and is undone whole: the numbers taken are exactly 1..n for the n that committed."""
        store, sender = world.store, world.instance.id

        async def writer(i: int) -> bool:
            while True:  # a store may refuse a transaction that met a concurrent write: retried
                try:
                    async with whole(store):
                        await store.messages.append(world.execution.id, [message(sender, {"i": i})])
                        await store.results.add(world.result(output={"i": i}))
                        if i % 4 == 3:
                            await store.messages.append(world.execution.id, [message(uuid.uuid4())])
                except IntegrityError:
                    return False
                except ConcurrencyError:
                    continue
                return True

        outcomes = await asyncio.gather(*(writer(i) for i in range(24)))
        committed = sorted(i for i, done in enumerate(outcomes) if done)
        assert committed == [i for i in range(24) if i % 4 != 3]
        stored = await dump_store(store)
        assert _numbers(stored, world.execution.id) == list(range(1, len(committed) + 1))
        assert sorted(m["content"]["i"] for m in stored["messages"]) == committed
        assert sorted(r["output"]["i"] for r in stored["results"]) == committed

    async def test_add_many_instances_is_add_one_by_one_or_nothing(self) -> None:
        """``agent_instances.add_many`` (SQL: checked in three queries, one insert) against
        ``add`` one by one: a batch mixing new instances, ids repeated in the batch, an id
        already stored, an unknown agent type or execution, an instance bound to a final
        execution: the same error as the first ``add`` that fails, and nothing written; or
        all of them written."""
        examples: int = getattr(self, "hypothesis_examples", 20)
        make_store = self.make_store  # type: ignore[attr-defined]

        def body(session: StoreSession) -> None:
            world = session.run(World(session.store).build())
            store = world.store

            async def finished() -> Execution:
                done = await world.new_execution()
                done.mark_complete({"answer": 1})
                return await store.executions.update(done)

            final = session.run(finished())
            kinds = ("new", "free", "again", "taken", "no_type", "no_execution", "final")

            def build(picked: list[str]) -> list[AgentInstance]:
                assert world.agent_type.id is not None
                batch: list[AgentInstance] = []
                for kind in picked:
                    fields: dict[str, Any] = {"agent_type_id": world.agent_type.id}
                    if kind == "again" and batch:
                        batch.append(batch[-1].model_copy())
                        continue
                    if kind == "new":
                        fields["execution_id"] = world.execution.id
                    elif kind == "taken":
                        fields["id"] = world.instance.id
                    elif kind == "no_type":
                        fields["agent_type_id"] = world.agent_type.id + 1000
                    elif kind == "no_execution":
                        fields["execution_id"] = uuid.uuid4()
                    elif kind == "final":
                        fields["execution_id"] = final.id
                    batch.append(AgentInstance(**fields))
                return batch

            async def one_by_one(batch: list[AgentInstance]) -> BaseException | None:
                class Undo(Exception):
                    pass

                failure: BaseException | None = None
                try:
                    async with store.transaction():
                        for entity in batch:
                            try:
                                await store.agent_instances.add(entity)
                            except Exception as error:  # the answer to compare
                                failure = error
                                break
                        raise Undo
                except Undo:
                    pass
                return failure

            @settings(max_examples=examples, suppress_health_check=list(HealthCheck), deadline=None)
            @given(picked=st.lists(st.sampled_from(kinds), max_size=6))
            def check(picked: list[str]) -> None:
                batch = build(picked)
                expected = session.run(one_by_one(batch))
                before = session.run(dump_store(store))
                refused: Exception | None = None
                try:
                    added = session.run(store.agent_instances.add_many(batch))
                except Exception as error:  # compared below
                    refused = error
                if refused is not None:
                    assert expected is not None, f"add_many refused what add accepts: {refused!r}"
                    assert (type(refused), str(refused)) == (type(expected), str(expected))
                    assert session.run(dump_store(store)) == before
                    return
                assert expected is None, f"add_many accepted what add refuses: {expected!r}"
                assert [a.id for a in added] == [b.id for b in batch]
                for entity in added:
                    assert session.run(store.agent_instances.get(entity.id)) == entity

            check()

        await asyncio.to_thread(with_store_session, make_store, body)

    async def test_a_whole_transaction_cancelled_part_way_is_all_or_nothing(self, world: World) -> None:
        """A task cancelled at once, then at 40 points spread over the time the transaction
        takes uncancelled, and after it ended, anywhere in a whole transaction
        (in a call, between calls, in the commit): the store has all of it or none of it,
        no number taken, and the next writer is not held up (no lock or transaction left on
        a connection)."""
        store = world.store

        async def fresh() -> tuple[uuid.UUID, uuid.UUID]:
            execution = await world.new_execution()
            return execution.id, (await world.new_instance(execution.id)).id

        def writing(execution_id: uuid.UUID, sender: uuid.UUID) -> Coroutine[Any, Any, None]:
            async def body() -> None:
                async with whole(store):
                    for i in range(3):
                        await store.messages.append(execution_id, [message(sender, {"i": i})])
                    await store.results.add(world.result(execution_id=execution_id, agent_instance_id=sender))
                    await store.messages.append(execution_id, [message(sender), message(sender)])

            return body()

        loop = asyncio.get_running_loop()
        started = loop.time()
        await writing(*await fresh())
        took = loop.time() - started
        seen = set()
        for point in range(46):
            execution_id, sender = await fresh()
            before = (await store.messages.count(), await store.results.count())
            task = asyncio.ensure_future(writing(execution_id, sender))
            if point == 45:  # too late: done by now
                await asyncio.wait({task})
            elif point:
                await asyncio.sleep(took * (point - 1) / 40)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            numbers = [m.sequence_number for m in (await store.messages.list(execution_id)).items]
            written = len(numbers)
            results = await store.results.count(execution_id=execution_id)
            assert (written, results) in ((0, 0), (5, 1)), point
            assert (await store.messages.count(), await store.results.count()) == (
                before[0] + written,
                before[1] + results,
            )
            seen.add(written)
            assert numbers == list(range(1, written + 1))
            following = await asyncio.wait_for(
                store.messages.append(execution_id, [message(sender)]), timeout=10
            )
            assert following[0].sequence_number == written + 1
        assert seen == {0, 5}  # cancelled before it began, and too late

    async def test_a_refusal_caught_under_guarded_inside_a_whole_transaction_is_undone_alone(
        self, world: World
    ) -> None:
        """Code that may catch a store call's failure and go on (a capability hook) runs
        ``guarded()`` inside a whole transaction: its failed call is undone on its own (SQL:
        a savepoint again), and the rest of the transaction commits, without a gap."""
        store, sender = world.store, world.instance.id
        await store.messages.append(world.execution.id, [message(sender)])
        async with whole(store):
            await store.messages.append(world.execution.id, [message(sender)])
            with guarded(), pytest.raises(IntegrityError):
                await store.messages.append(world.execution.id, [message(sender), message(uuid.uuid4())])
            await store.messages.append(world.execution.id, [message(sender)])
        assert _numbers(await dump_store(store), world.execution.id) == [1, 2, 3]

    @pytest.mark.parametrize("call", ["append", "append two", "result"])
    async def test_a_write_to_a_final_execution_in_a_whole_transaction_undoes_it_all(
        self, world: World, call: str
    ) -> None:
        """The one-statement append and result add (PostgreSQL) refuse a final execution
        inside a whole transaction as outside one, after writes of the same transaction that
        the refusal undoes too."""
        store, sender = world.store, world.instance.id
        done = await world.new_execution()
        member = await world.new_instance(done.id)
        await store.messages.append(done.id, [message(member.id)])
        done.mark_complete({"answer": 1})
        await store.executions.update(done)
        before = await dump_store(store)

        async def body() -> None:
            async with whole(store):
                await store.messages.append(world.execution.id, [message(sender)])
                await store.results.add(world.result())
                if call == "result":
                    await store.results.add(world.result(execution_id=done.id, agent_instance_id=member.id))
                else:
                    drafts = [message(member.id) for _ in range(1 if call == "append" else 2)]
                    await store.messages.append(done.id, drafts)

        with pytest.raises(InvalidTransition):
            await body()
        assert await dump_store(store) == before

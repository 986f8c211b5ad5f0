"""Conformance: recording an answered call (:func:`qmcp_agents.domain.recording.record_call`)
is exactly its composed form, on every backend. A mixin of
:class:`~qmcp_agents.testing.conformance.StoreConformance`.

A store may record a call in one step of its own (PostgreSQL: one statement); it must store
and return what the four repository calls store and return, refuse what they refuse with
the same error, and then leave the store as it was. The composed form's answer is found on
the same state, in a transaction that is undone afterwards.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qmcp_agents.domain import AgentInstance, MessageCreate, MessageType, Result
from qmcp_agents.domain.engine.retry import retried
from qmcp_agents.domain.leases import LeaseHold, LeaseLost
from qmcp_agents.domain.ports import RecordedCall, Store
from qmcp_agents.domain.recording import record_call, record_call_composed
from qmcp_agents.domain.transactions import whole

from .builders import World
from .inspect import dump_store
from .runner import StoreSession, with_store_session
from .strategies import json_objects

FAULTS = (
    "lost_lease",  # another owner's name
    "wrong_attempt",  # an earlier claim of the same owner
    "no_entry",  # the entry is gone (the execution was handed back and finished)
    "stale_revision",  # the instance changed since it was read
    "created_at",  # a field update() may not change
    "naive_created_at",  # the same instant, set behind Pydantic's back without its zone
    "execution_id",  # the instance's binding, which update() may not change
    "final",  # the execution ended meanwhile
    "unknown_sender",  # no such instance
    "foreign_sender",  # an instance of another execution
    "result_taken",  # the result's id is stored already
    "unknown_result_instance",
)
"""Ways a call can be refused: each one alone makes the composed path raise."""

VARIATIONS = ("result_elsewhere",)
"""Calls the composed path takes though a one-step form may not: the result names another
(running) execution, with an instance of its own."""

Shape = tuple[int, bool, bool]
T = TypeVar("T")


class Undo(Exception):
    """Raised to undo the transaction a composed path ran in."""


async def answer_undone(store: Store, call: Callable[[], Awaitable[T]]) -> T | BaseException:
    """What ``call`` returns or raises on the store's current state, its writes undone after
    (it runs in a transaction that is then rolled back): the composed path's answer, to
    compare a one-step form with."""
    answer: T | BaseException
    try:
        async with store.transaction():
            try:
                answer = await call()
            except Exception as error:  # the answer to compare
                answer = error
            raise Undo
    except Undo:
        pass
    return answer


class Recording:
    """One call to record: a running execution claimed by ``w1``, its instance, and the
    arguments, with ``faults`` applied to the store or to the arguments."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.store: Store = world.store

    async def build(
        self, earlier: int, leased: bool, attempt_given: bool, faults: frozenset[str], output: dict[str, Any]
    ) -> Recording:
        world, store = self.world, self.store
        self.execution = await world.new_execution()
        self.instance = await world.new_instance(self.execution.id)
        for n in range(earlier):
            await store.messages.append(self.execution.id, [_message(self.instance.id, {"earlier": n})])
        await store.leases.enqueue(self.execution.id)
        claimed = await store.leases.claim("w1", limit=1, lease_seconds=600)
        assert [c.execution_id for c in claimed] == [self.execution.id]
        attempt = claimed[0].attempts if attempt_given else None
        self.lease = LeaseHold(self.execution.id, "w1", attempt) if leased else None
        read = self.instance.model_copy()
        if "stale_revision" in faults:
            changed = await store.agent_instances.get(self.instance.id)
            changed.metadata = {"changed": True}
            await store.agent_instances.update(changed)
        if "created_at" in faults:
            read.created_at = read.created_at - timedelta(seconds=5)
        if "naive_created_at" in faults:
            read.__dict__["created_at"] = read.created_at.replace(tzinfo=None)
        if "execution_id" in faults:
            read.execution_id = (await world.new_execution()).id
        read.update_state({"calls": {"c1": {"output": output}}})
        self.read = read
        sender = self.instance.id
        if "unknown_sender" in faults:
            sender = uuid.UUID(int=12345)
        if "foreign_sender" in faults:
            sender = (await world.new_instance((await world.new_execution()).id)).id
        self.message = _message(sender, {"call": "c1", "output": output}, MessageType.RESPONSE)
        result = Result(execution_id=self.execution.id, agent_instance_id=self.instance.id, output=output)
        if "result_taken" in faults:
            taken = await store.results.add(
                Result(execution_id=self.execution.id, agent_instance_id=self.instance.id, output={})
            )
            result = result.model_copy(update={"id": taken.id})
        if "unknown_result_instance" in faults:
            result = result.model_copy(update={"agent_instance_id": uuid.UUID(int=54321)})
        if "result_elsewhere" in faults:
            elsewhere = await world.new_execution()
            owner = await world.new_instance(elsewhere.id)
            result = result.model_copy(update={"execution_id": elsewhere.id, "agent_instance_id": owner.id})
        self.result = result
        if "final" in faults:
            done = await store.executions.get(self.execution.id)
            done.mark_complete({"answer": 1})
            await store.executions.update(done)
        if self.lease is not None:
            if "lost_lease" in faults:
                self.lease = replace(self.lease, owner="w2")
            if "wrong_attempt" in faults:
                self.lease = replace(self.lease, attempt=(claimed[0].attempts or 0) + 1)
            if "no_entry" in faults:
                assert await store.leases.release(self.execution.id, "w1")
        return self

    def arguments(self) -> tuple[Any, ...]:
        return (self.execution.id, self.message, self.result, self.read.model_copy(), self.lease)

    async def composed(self) -> RecordedCall | BaseException:
        """What the composed path returns or raises on the current state, undone after."""
        return await answer_undone(self.store, lambda: record_call_composed(self.store, *self.arguments()))

    async def state(self) -> tuple[Any, ...]:
        return (await dump_store(self.store), await self.store.leases.list())


def _message(
    sender: uuid.UUID, content: dict[str, Any], kind: MessageType = MessageType.SYSTEM
) -> MessageCreate:
    return MessageCreate(sender_id=sender, message_type=kind, content=content, round_number=1)


def _same_message_but_its_id_and_time(one: Any, other: Any) -> None:
    skip = {"id", "created_at"}
    assert one.model_dump(exclude=skip) == other.model_dump(exclude=skip)


async def check_against_composed(recording: Recording) -> None:
    """``record_call`` against the composed path on the same state: the same error and an
    unchanged store, or the same stored message (numbered alike), result and instance,
    each as the store then reads it."""
    store = recording.store
    expected = await recording.composed()
    before = await recording.state()
    try:
        got: RecordedCall | BaseException = await record_call(store, *recording.arguments())
    except Exception as error:  # compared below
        got = error
    if isinstance(expected, BaseException):
        assert isinstance(got, BaseException), (
            f"record_call wrote what the composed path refuses: {expected!r}"
        )
        assert (type(got), str(got)) == (type(expected), str(expected))
        assert await recording.state() == before
        return
    assert not isinstance(got, BaseException), f"record_call refused what the composed path writes: {got!r}"
    _same_message_but_its_id_and_time(got.message, expected.message)
    assert got.message.sequence_number == expected.message.sequence_number
    assert (got.result, got.instance) == (expected.result, expected.instance)
    assert await store.messages.get(got.message.id) == got.message
    assert await store.results.get(got.result.id) == got.result
    assert await store.agent_instances.get(got.instance.id) == got.instance
    after = await recording.state()
    assert after[1] == before[1]  # the lease entries are as they were
    added = {k: [r for r in rows if r not in before[0][k]] for k, rows in after[0].items()}
    assert {k: len(v) for k, v in added.items() if v} == {"messages": 1, "results": 1, "agent_instances": 1}


class RecordConformance:
    """Recording answered calls; mixed into the suite. Needs the ``world`` fixture."""

    @pytest.mark.parametrize("leased", [True, False])
    async def test_record_call_stores_what_the_composed_path_stores(self, world: World, leased: bool) -> None:
        recording = await Recording(world).build(2, leased, True, frozenset(), {"answer": 42})
        await check_against_composed(recording)
        recorded = await store_call(recording)
        assert recorded.message.sequence_number == 4  # 2 earlier, 1 by the call above, this one
        assert recorded.instance.revision == recording.read.revision + 2

    @pytest.mark.parametrize("fault", FAULTS)
    async def test_record_call_refuses_as_the_composed_path_does(self, world: World, fault: str) -> None:
        recording = await Recording(world).build(1, True, True, frozenset({fault}), {"answer": 1})
        expected = await recording.composed()
        assert isinstance(expected, Exception), fault
        await check_against_composed(recording)

    async def test_record_call_in_an_open_transaction_joins_it(self, world: World) -> None:
        store = world.store
        recording = await Recording(world).build(0, True, True, frozenset(), {"answer": 1})
        before = await recording.state()

        async def undone() -> None:
            async with whole(store):
                await record_call(store, *recording.arguments())
                raise Undo

        with pytest.raises(Undo):
            await undone()
        assert await recording.state() == before
        async with whole(store):
            recorded = await record_call(store, *recording.arguments())
            await store.messages.append(recording.execution.id, [_message(recording.instance.id, {})])
        assert recorded.message.sequence_number == 1
        assert (await store.agent_instances.get(recording.instance.id)) == recorded.instance
        assert [m.sequence_number for m in (await store.messages.list(recording.execution.id)).items] == [
            1,
            2,
        ]
        stale = await Recording(world).build(0, True, True, frozenset({"wrong_attempt"}), {"answer": 1})
        before = await stale.state()

        async def fenced_off() -> None:
            async with whole(store):
                await store.messages.append(stale.execution.id, [_message(stale.instance.id, {})])
                await record_call(store, *stale.arguments())

        with pytest.raises(LeaseLost):
            await fenced_off()
        assert await stale.state() == before

    async def test_concurrent_record_calls_number_without_gaps(self, world: World) -> None:
        """Members of one execution recording at once (an ensemble), with other messages
        between: every call lands once, numbers are 1..n, each instance at revision 2."""
        store = world.store
        recording = await Recording(world).build(0, True, True, frozenset(), {"answer": 1})
        instances = [await world.new_instance(recording.execution.id) for _ in range(4)]

        async def member(instance: AgentInstance, i: int) -> None:
            read = instance.model_copy()
            read.update_state({"calls": {f"c{i}": i}})
            result = Result(
                execution_id=recording.execution.id, agent_instance_id=instance.id, output={"i": i}
            )
            message = _message(instance.id, {"i": i}, MessageType.RESPONSE)
            # A store may refuse a transaction that met a concurrent write: run again.
            await retried(
                lambda: record_call(store, recording.execution.id, message, result, read, recording.lease)
            )

        async def other(i: int) -> None:
            async def write() -> None:
                async with whole(store):
                    draft = _message(recording.instance.id, {"o": i})
                    await store.messages.append(recording.execution.id, [draft])
                    await store.leases.hold(recording.execution.id, "w1")

            await retried(write)

        await asyncio.gather(*(member(m, i) for i, m in enumerate(instances)), *(other(i) for i in range(3)))
        messages = (await store.messages.list(recording.execution.id)).items
        assert [m.sequence_number for m in messages] == list(range(1, 8))
        for instance in instances:
            assert (await store.agent_instances.get(instance.id)).revision == 2
        assert await store.results.count(execution_id=recording.execution.id) == 4

    async def test_record_call_is_the_composed_path_for_any_call(self) -> None:
        """Hypothesis: earlier messages, with or without a lease (and its claim), any
        output, and any set of faults: ``record_call`` gives what the composed path gives."""
        examples: int = getattr(self, "hypothesis_examples", 20)
        make_store = self.make_store  # type: ignore[attr-defined]

        def body(session: StoreSession) -> None:
            world = session.run(World(session.store).build())

            @settings(max_examples=examples, suppress_health_check=list(HealthCheck), deadline=None)
            @given(
                earlier=st.integers(min_value=0, max_value=3),
                leased=st.booleans(),
                attempt_given=st.booleans(),
                faults=st.frozensets(st.sampled_from(FAULTS + VARIATIONS), max_size=2),
                output=json_objects,
            )
            def check(
                earlier: int,
                leased: bool,
                attempt_given: bool,
                faults: frozenset[str],
                output: dict[str, Any],
            ) -> None:
                recording = session.run(
                    Recording(world).build(earlier, leased, attempt_given, faults, output)
                )
                session.run(check_against_composed(recording))

            check()

        await asyncio.to_thread(with_store_session, make_store, body)


async def store_call(recording: Recording) -> RecordedCall:
    """The call recorded again, from the stored instance (a second answer of the member)."""
    store = recording.store
    read = await store.agent_instances.get(recording.instance.id)
    read.update_state({"calls": {**read.state.get("calls", {}), "c2": 2}})
    result = Result(execution_id=recording.execution.id, agent_instance_id=recording.instance.id, output={})
    message = _message(recording.instance.id, {"call": "c2"}, MessageType.RESPONSE)
    return await record_call(store, recording.execution.id, message, result, read, recording.lease)


__all__ = ["FAULTS", "VARIATIONS", "RecordConformance", "Recording", "check_against_composed"]

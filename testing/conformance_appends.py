"""Conformance: appends of any size, integrity inside transactions, deletes racing writes
(issue 18). A mixin of :class:`~qmcp_agents.testing.conformance.StoreConformance`: every
test runs on every backend, each found first on MongoDB and held to what memory and SQL do.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import pytest
from pydantic import ValidationError

from qmcp_agents.domain import (
    AgentInstance,
    AlreadyExists,
    IntegrityError,
    InvalidTransition,
    MessageCreate,
    MessageType,
    NotFound,
    Result,
)
from qmcp_agents.domain.json_payload import MAX_MESSAGE_BYTES
from qmcp_agents.domain.message import build_messages
from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.queries import all_pages

from .builders import World, agent_type, message
from .inspect import dump_store


def bypassing(sender: UUID, content: dict[str, Any]) -> MessageCreate:
    """A draft built without validation (as a caller's ``model_construct`` would): the
    store's own validation must refuse it before anything is written."""
    return MessageCreate.model_construct(
        sender_id=sender,
        recipient_id=None,
        message_type=MessageType.BROADCAST,
        content=content,
        round_number=0,
    )


async def stored_messages(store: Store, execution_id: UUID) -> list[Any]:
    return await all_pages(lambda a: store.messages.list(execution_id, limit=1000, after=a))


class AppendConformance:
    """Issue 18's cases; mixed into the suite. Needs ``store``/``world`` fixtures."""

    # --- 1, 5, 6: an append is all or nothing, whatever its size ---------------------------

    async def test_a_refused_large_append_writes_nothing(self, world: World) -> None:
        store, sender = world.store, world.instance.id
        await store.messages.append(world.execution.id, [message(sender)])
        before = await dump_store(store)
        poisons: list[tuple[dict[str, Any], str]] = [
            ({"text": "\udc80"}, "surrogate"),
            ({"\ud800": 1}, "surrogate"),
            ({"big": "x" * (MAX_MESSAGE_BYTES + 1)}, "content"),
            (
                {"nested": [{"deep": "y" * (MAX_MESSAGE_BYTES // 2)}, "z" * (MAX_MESSAGE_BYTES // 2)]},
                "content",
            ),
        ]
        for poison, match in poisons:
            drafts = [message(sender, {"k": i}) for i in range(1500)]
            drafts[1200] = bypassing(sender, poison)
            with pytest.raises(ValidationError, match=match):
                await store.messages.append(world.execution.id, drafts)
            assert await store.messages.count() == 1, match
        assert await dump_store(store) == before

    async def test_a_message_over_the_size_limit_is_refused_by_the_domain(self, world: World) -> None:
        store, sender = world.store, world.instance.id
        with pytest.raises(ValidationError, match=f"content.*limit is {MAX_MESSAGE_BYTES:,}"):
            message(sender, {"x": "a" * MAX_MESSAGE_BYTES})
        with pytest.raises(ValidationError, match="content"):
            await store.messages.append(world.execution.id, [bypassing(sender, {"x": "a" * 17_000_000})])
        assert await store.messages.count() == 0
        # Just under the limit (counted as compact UTF-8 JSON) is stored and read back.
        text = "\u00e9" * ((MAX_MESSAGE_BYTES - 32) // 2)
        (stored,) = await store.messages.append(world.execution.id, [message(sender, {"x": text})])
        assert (await store.messages.get(stored.id)).content == {"x": text}

    async def test_appends_larger_than_one_document_are_stored_whole(self, world: World) -> None:
        store, sender = world.store, world.instance.id
        other = await world.new_instance(world.execution.id)
        # 2,000 drafts whose second thousand are 20 KB each (20 MB in all); then 1,000 of
        # 17.5 KB (more than one MongoDB document holds); then 1,500 small ones.
        plans = [
            [message(sender, {"k": i, "pad": "x" * 20_000 if i >= 1000 else ""}) for i in range(2000)],
            [message(sender, {"k": i, "pad": "y" * 17_500}) for i in range(1000)],
            [
                message(other.id if i % 7 == 0 else sender, {"k": i}, round_number=i // 500)
                for i in range(1500)
            ],
        ]
        appended: list[Any] = []
        for drafts in plans:
            out = await store.messages.append(world.execution.id, drafts)
            start = len(appended) + 1
            assert [m.sequence_number for m in out] == list(range(start, start + len(drafts)))
            assert [m.content for m in out] == [d.content for d in drafts]
            appended.extend(out)
        assert await store.messages.count(world.execution.id) == 4500
        assert await store.messages.count() == 4500
        assert await stored_messages(store, world.execution.id) == appended
        assert await store.messages.last(world.execution.id, 1000) == appended[-1000:]
        probe = appended[3000 + 1400]  # deep inside the last append
        assert await store.messages.get(probe.id) == probe
        by_other = [m for m in appended if m.sender_id == other.id]
        listed = await all_pages(
            lambda a: store.messages.list(world.execution.id, sender_id=other.id, limit=100, after=a)
        )
        assert listed == by_other
        round_two = await all_pages(
            lambda a: store.messages.list(world.execution.id, round_number=2, limit=100, after=a)
        )
        assert round_two == [m for m in appended[3000:] if m.round_number == 2]
        assert len(round_two) == 500

    async def test_a_large_append_in_a_transaction_commits_or_rolls_back_whole(self, world: World) -> None:
        store, sender = world.store, world.instance.id
        before = await dump_store(store)
        drafts = [message(sender, {"k": i, "pad": "z" * 18_000}) for i in range(1200)]

        async def append_then_fail() -> None:
            async with store.transaction():
                await store.messages.append(world.execution.id, drafts)
                raise RuntimeError("abort after a 21 MB append")

        with pytest.raises(RuntimeError, match="abort"):
            await append_then_fail()
        if not store.capabilities.transactions:  # documented: the calls ran one by one
            assert await store.messages.count() == 1200
            return
        assert await dump_store(store) == before
        assert await store.messages.count() == 0
        async with store.transaction():
            appended = await store.messages.append(world.execution.id, drafts)
        assert [m.sequence_number for m in appended] == list(range(1, 1201))
        assert await stored_messages(store, world.execution.id) == appended

    # --- 4: one append, one contiguous block -------------------------------------------------

    async def test_concurrent_large_appends_are_each_one_contiguous_block(self, world: World) -> None:
        store = world.store
        senders = [world.instance.id] + [(await world.new_instance(world.execution.id)).id for _ in range(2)]
        rng = random.Random(18)
        sizes = [[rng.choice([1, 7, 400, 1001, 1500]) for _ in range(2)] for _ in range(9)]

        async def writer(task: int) -> list[list[int]]:
            blocks = []
            for size in sizes[task]:
                drafts = [message(senders[task % 3], {"task": task, "k": k}) for k in range(size)]
                blocks.append(
                    [m.sequence_number for m in await store.messages.append(world.execution.id, drafts)]
                )
            return blocks

        results = await asyncio.gather(*(writer(t) for t in range(9)))
        blocks = [block for task in results for block in task]
        for block in blocks:
            assert block == list(range(block[0], block[0] + len(block))), "an append was split"
        total = sum(len(b) for b in blocks)
        assert sorted(n for b in blocks for n in b) == list(range(1, total + 1))
        stored = await stored_messages(store, world.execution.id)
        assert [m.sequence_number for m in stored] == list(range(1, total + 1))
        for block in blocks:  # each block holds one task's messages, in order
            contents = [m.content for m in stored[block[0] - 1 : block[-1]]]
            assert len({c["task"] for c in contents}) == 1
            assert [c["k"] for c in contents] == list(range(len(block)))

    # --- 3: integrity checks see the transaction's own writes -------------------------------

    async def test_integrity_checks_inside_a_transaction_see_its_own_writes(self, world: World) -> None:
        store = world.store
        x = await world.new_instance(world.execution.id)
        before = await dump_store(store)

        async def append_then_delete_the_sender() -> None:
            async with store.transaction():
                await store.messages.append(world.execution.id, [message(x.id)])
                await store.agent_instances.delete(x.id)

        with pytest.raises(IntegrityError, match="referenced by 1 message"):
            await append_then_delete_the_sender()
        if store.capabilities.transactions:
            assert await dump_store(store) == before
        else:  # documented: the calls ran one by one; the delete saw the committed message
            assert await store.messages.count(world.execution.id) == 1
        assert await store.agent_instances.get(x.id) == x
        lonely = await store.agent_types.add(agent_type("lonely"))
        assert lonely.id is not None
        lonely_id = lonely.id

        async def use_then_delete_the_type() -> None:
            async with store.transaction():
                await store.agent_instances.add(AgentInstance(agent_type_id=lonely_id))
                await store.agent_types.delete(lonely_id)

        with pytest.raises(IntegrityError, match="in use"):
            await use_then_delete_the_type()
        assert await store.agent_types.get(lonely_id) == lonely
        if store.capabilities.transactions:
            assert await store.agent_instances.count(agent_type_id=lonely_id) == 0

    # --- 7: a delete racing an append leaves no orphans --------------------------------------

    async def test_an_append_racing_a_delete_leaves_no_orphans(self, world: World) -> None:
        store = world.store
        for trial in range(6):
            execution = await world.new_execution()
            instance = await world.new_instance(execution.id)
            await store.messages.append(execution.id, [message(instance.id)])
            drafts = [message(instance.id, {"trial": trial, "k": k}) for k in range(5)]
            result = world.result(execution_id=execution.id, agent_instance_id=instance.id)
            racers: list[Any] = [
                store.messages.append(execution.id, drafts),
                store.results.add(result),
                store.executions.delete(execution.id),
            ]
            if trial % 2:
                racers.reverse()
            outcomes = await asyncio.gather(*racers, return_exceptions=True)
            for outcome in outcomes:  # a write may lose the race (NotFound, IntegrityError)
                assert outcome is None or isinstance(outcome, (list, Result, NotFound, IntegrityError)), repr(
                    outcome
                )
            assert await store.executions.find(execution.id) is None
            assert await store.messages.count(execution.id) == 0
            assert (await store.messages.list(execution.id)).items == []
            with pytest.raises(NotFound):
                await store.executions.delete(execution.id)
        assert await store.messages.count() == 0
        assert await store.results.count() == 0
        assert await store.agent_instances.count() == 1  # the world's own
        assert [e.id for e in (await store.executions.list()).items] == [world.execution.id]

    # --- issue 15: appends racing a move to a final status ----------------------------------

    async def test_appends_racing_a_final_transition_never_land_after_it(self, world: World) -> None:
        """Appenders keep appending while the execution is completed: every append either
        lands before the transition (numbered without gaps) or is refused as final, and
        once ``update`` has returned no message appears any more (on MongoDB the
        transition closes the chain before writing the status: issue 15)."""
        store = world.store
        for trial in range(4):
            execution = await world.new_execution()
            instance = await world.new_instance(execution.id)
            await store.messages.append(execution.id, [message(instance.id)])
            counted_at_final: list[int] = []

            async def appender(k: int, execution_id: UUID = execution.id, sender: UUID = instance.id) -> int:
                for i in range(8):
                    try:
                        await store.messages.append(execution_id, [message(sender, {"k": k, "i": i})])
                    except InvalidTransition:
                        return i
                    await asyncio.sleep(0)
                return 8

            async def complete(
                execution_id: UUID = execution.id,
                delay: int = trial + 1,
                counted: list[int] = counted_at_final,
            ) -> None:
                for _ in range(delay):
                    await asyncio.sleep(0)
                current = await store.executions.get(execution_id)
                current.mark_complete({"done": True})
                await store.executions.update(current)
                counted.append(await store.messages.count(execution_id))

            await asyncio.gather(appender(0), appender(1), appender(2), complete())
            stored = await stored_messages(store, execution.id)
            assert [m.sequence_number for m in stored] == list(range(1, len(stored) + 1))
            assert len(stored) == counted_at_final[0], (trial, len(stored), counted_at_final)
            with pytest.raises(InvalidTransition):
                await store.messages.append(execution.id, [message(instance.id)])
            assert await store.messages.count(execution.id) == len(stored)

    async def test_restoring_more_messages_into_a_completed_execution_continues_its_sequence(
        self, world: World
    ) -> None:
        """A restore bypasses "final" (it puts back what was stored): on MongoDB the closing
        entry the transition wrote on top of the chain moves up rather than block it."""
        store = world.store
        execution = await world.new_execution()
        instance = await world.new_instance(execution.id)
        appended = await store.messages.append(
            execution.id, [message(instance.id, {"i": i}) for i in range(2)]
        )
        current = await store.executions.get(execution.id)
        current.mark_complete({"done": True})
        await store.executions.update(current)
        later = build_messages(execution.id, [message(instance.id, {"i": i}) for i in range(2, 4)], 3)
        assert await store.messages.restore_many(later) == 2
        stored = await stored_messages(store, execution.id)
        assert stored == [*appended, *later]
        with pytest.raises(InvalidTransition):
            await store.messages.append(execution.id, [message(instance.id)])
        assert await store.messages.count(execution.id) == 4

    # --- 2: arguments of the wrong type never reach a query ----------------------------------

    async def test_operator_dicts_and_wrong_types_are_refused_by_every_verb(self, world: World) -> None:
        store = world.store
        execution_id = world.execution.id
        await store.messages.append(execution_id, [message(world.instance.id)])
        await store.results.add(world.result())
        before = await dump_store(store)
        s, e = store, execution_id
        verbs: list[tuple[str, Callable[[Any], Awaitable[Any]]]] = [
            ("id", s.agent_types.get),
            ("id", s.agent_types.delete),
            ("id", s.topologies.find),
            ("id", s.executions.get),
            ("id", s.executions.delete),
            ("id", s.agent_instances.find),
            ("id", s.results.get),
            ("id", s.results.delete),
            ("id", s.messages.find),
            ("name", s.agent_types.find_by_name),
            ("role", lambda v: s.agent_types.list(role=v)),
            ("topology_type", lambda v: s.topologies.count(topology_type=v)),
            ("execution_id", lambda v: s.agent_instances.list(execution_id=v)),
            ("agent_type_id", lambda v: s.agent_instances.count(agent_type_id=v)),
            ("status", lambda v: s.executions.list(status=v)),
            ("parent_id", lambda v: s.executions.count(parent_id=v)),
            ("topology_id", lambda v: s.executions.list(topology_id=v)),
            ("started_after", lambda v: s.executions.count(started_after=v)),
            ("older_than", lambda v: s.executions.purge(older_than=v)),
            ("sender_id", lambda v: s.messages.list(e, sender_id=v)),
            ("round_number", lambda v: s.messages.list(e, round_number=v)),
            ("execution_id", s.messages.count),
            ("execution_id", lambda v: s.messages.last(v, 5)),
            ("execution_id", lambda v: s.results.list(execution_id=v)),
            ("agent_instance_id", lambda v: s.results.count(agent_instance_id=v)),
            ("after", lambda v: s.results.list(after=v)),
            ("limit", lambda v: s.agent_types.list(limit=v)),
            ("agent_type", s.agent_types.add),
            ("topology", s.topologies.update),
            ("execution", s.executions.add),
            ("agent_instance", s.agent_instances.update),
            ("result", s.results.add),
            ("results", s.results.add_many),
            ("messages", lambda v: s.messages.append(e, v)),
            ("messages", s.messages.restore_many),
            ("agent_types", s.agent_types.restore_many),
        ]
        hostile: list[Any] = [{"$gt": 1}, {"$exists": True}, {"$ne": None}, True, b"\x00" * 16]
        for field, call in verbs:
            for value in hostile:
                with pytest.raises(ValidationError, match=field):
                    await call(value)
        deletes: list[Callable[[Any], Awaitable[None]]] = [  # None is a wrong argument, not an unknown id
            s.agent_types.delete,
            s.topologies.delete,
            s.agent_instances.delete,
            s.executions.delete,
            s.results.delete,
        ]
        for delete in deletes:
            with pytest.raises(ValidationError, match="id must be"):
                await delete(None)
        with pytest.raises(ValidationError, match="sender_id"):  # a string is not a UUID
            await store.messages.list(execution_id, sender_id="not-a-uuid")  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="id must be an int, got bool True"):
            await store.agent_types.get(True)
        with pytest.raises(ValidationError, match="agent_types\\[\\]"):
            await store.agent_types.add_many([agent_type("fine"), {"name": "x"}])  # type: ignore[list-item]
        assert await dump_store(store) == before

    async def test_a_sender_deleted_with_its_execution_is_refused_after_a_restore(self, world: World) -> None:
        store = world.store
        await store.messages.append(world.execution.id, [message(world.instance.id)])
        await store.messages.append(world.execution.id, [message(world.instance.id)])
        exported = await store.executions.get(world.execution.id)
        await store.executions.delete(world.execution.id)  # takes the bound instance along
        assert await store.executions.restore_many([exported]) == 1
        with pytest.raises(IntegrityError, match=f"sender_id {world.instance.id} is not an agent instance"):
            await store.messages.append(world.execution.id, [message(world.instance.id)])
        assert await store.messages.count() == 0

    # --- 8: a restore never takes an id that is already stored -------------------------------

    async def test_restoring_a_message_id_stored_elsewhere_is_already_exists(self, world: World) -> None:
        store = world.store
        (original,) = await store.messages.append(world.execution.id, [message(world.instance.id)])
        other = await world.new_execution()
        speaker = await world.new_instance(other.id)
        before = await dump_store(store)
        clone = original.model_copy(
            update={"execution_id": other.id, "sender_id": speaker.id, "sequence_number": 1}
        )
        with pytest.raises(AlreadyExists, match=str(original.id)):
            await store.messages.restore_many([clone])
        assert await dump_store(store) == before
        assert await store.messages.count() == 1
        twice = [
            clone.model_copy(update={"id": world.instance.id}),
            clone.model_copy(update={"id": world.instance.id, "sequence_number": 2}),
        ]
        with pytest.raises(AlreadyExists):
            await store.messages.restore_many(twice)
        assert await dump_store(store) == before
        assert await store.messages.get(original.id) == original


__all__ = ["AppendConformance"]

"""What only the MongoDB adapter has: its storage model, indexes, faults, several clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bson
import pytest
import pytest_asyncio
from bson.binary import Binary
from pymongo import AsyncMongoClient, monitoring

from qmcp_agents.adapters import open_store
from qmcp_agents.adapters.mongo import MongoStore, closing, documents
from qmcp_agents.adapters.mongo.messages import MAX_BATCH_BYTES
from qmcp_agents.adapters.transfer import copy_store
from qmcp_agents.domain import (
    AgentInstance,
    ConcurrencyError,
    ExecutionStatus,
    IntegrityError,
    InvalidTransition,
    Message,
    NotFound,
    StoreUnavailable,
    TopologyType,
)
from qmcp_agents.domain.queries import all_pages
from qmcp_agents.testing.builders import World, agent_type, message, topology
from qmcp_agents.testing.inspect import dump_store

from .servers import MONGODB_URL, mongo_store, with_database

pytestmark = pytest.mark.asyncio
ROOT = Path(__file__).resolve().parents[2]


@pytest_asyncio.fixture
async def store() -> AsyncIterator[MongoStore]:
    async with mongo_store() as mongo:
        yield mongo


async def _raw(store: MongoStore, collection: str) -> list[dict[str, object]]:
    """Documents as stored, read with a plain client (no UUID decoding, naive dates)."""
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(MONGODB_URL)
    try:
        return await client[store.database.name]["qmcp_" + collection].find({}).to_list(None)
    finally:
        await client.close()


async def test_storage_model_is_native_bson(store: MongoStore) -> None:
    world = await World(store).build()
    instance = await store.agent_instances.add(
        AgentInstance(
            agent_type_id=world.agent_type.id,
            execution_id=world.execution.id,
            state={"$set": {"a.b": 1}, "": "empty", "100%": True},
        )
    )
    (topology_doc,) = await _raw(store, "topologies")
    assert topology_doc["memberships"][0]["agent_type_id"] == world.agent_type.id  # type: ignore[index]
    executions = await _raw(store, "executions")
    assert isinstance(executions[0]["_id"], Binary)
    assert executions[0]["_id"].subtype == 4  # standard UUID representation
    assert isinstance(executions[0]["started_at"], datetime)
    stored = next(
        d for d in await _raw(store, "agent_instances") if d["_id"] == Binary.from_uuid(instance.id)
    )
    assert stored["state"] == {"%24set": {"a%2Eb": 1}, "%": "empty", "100%25": True}
    assert (await store.agent_instances.get(instance.id)).state == {
        "$set": {"a.b": 1},
        "": "empty",
        "100%": True,
    }
    assert "schema_version" in stored


async def test_store_on_an_existing_pymongo_database_handle(store: MongoStore) -> None:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(MONGODB_URL)  # default codec options
    try:
        borrowed = MongoStore.from_database(client[store.database.name])
        added = await borrowed.agent_types.add(agent_type("borrowed"))
        assert (await store.agent_types.get(added.id)).created_at.tzinfo is not None  # type: ignore[arg-type]
        await borrowed.close()  # the client stays the caller's
        assert await client[store.database.name].list_collection_names()
    finally:
        await client.close()


async def test_create_schema_makes_the_unique_indexes(store: MongoStore) -> None:
    await store.create_schema()  # idempotent
    names = await store.collection("agent_types").index_information()
    assert any(info.get("unique") and info["key"] == [("name", 1)] for info in names.values())
    batches = await store.collection("messages").index_information()
    assert any(
        info.get("unique") and info["key"] == [("execution_id", 1), ("first", 1)] for info in batches.values()
    )


async def test_transactions_are_probed(store: MongoStore) -> None:
    capabilities = store.capabilities
    assert capabilities.backend == "mongodb"
    assert capabilities.savepoints is False
    assert isinstance(capabilities.transactions, bool)


async def test_two_clients_append_concurrently_without_gaps(store: MongoStore) -> None:
    world = await World(store).build()
    other = MongoStore.from_url(with_database(MONGODB_URL, store.database.name))
    try:

        async def writer(target: MongoStore, task: int) -> list[int]:
            numbers: list[int] = []
            for batch in range(4):
                drafts = [
                    message(world.instance.id, {"task": task, "batch": batch, "k": k}) for k in range(3)
                ]
                numbers.extend(
                    m.sequence_number for m in await target.messages.append(world.execution.id, drafts)
                )
            return numbers

        results = await asyncio.gather(*(writer(store if t % 2 else other, t) for t in range(16)))
    finally:
        await other.close()
    numbers = sorted(n for r in results for n in r)
    assert numbers == list(range(1, 16 * 12 + 1))
    stored = await all_pages(lambda a: store.messages.list(world.execution.id, limit=50, after=a))
    assert [m.sequence_number for m in stored] == numbers


async def test_a_single_append_is_one_command_and_the_remembered_top_is_a_hint(
    store: MongoStore,
) -> None:
    """Issue 15: once a store has appended to an execution, its next single append is one
    command (the upsert of the head that would find the execution's closing entry); the
    chain's top it remembers is only a hint, corrected by the unique ``(execution_id,
    first)`` when another client appended meanwhile."""
    commands: list[str] = []

    class Listener(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            commands.append(f"{event.command_name} {event.command.get(event.command_name)}")

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    counted = MongoStore.from_url(
        with_database(MONGODB_URL, store.database.name), event_listeners=[Listener()]
    )
    try:
        world = await World(store).build()
        execution_id = world.execution.id
        assert [
            m.sequence_number
            for m in await counted.messages.append(execution_id, [message(world.instance.id)])
        ] == [1]
        commands.clear()
        assert [
            m.sequence_number
            for m in await counted.messages.append(execution_id, [message(world.instance.id)])
        ] == [2]
        assert commands == ["update qmcp_messages"]
        await store.messages.append(execution_id, [message(world.instance.id) for _ in range(3)])  # 3..5
        commands.clear()
        (late,) = await counted.messages.append(execution_id, [message(world.instance.id)])
        assert late.sequence_number == 6  # collided with 3..5, read the top, chained after it
        assert commands == ["update qmcp_messages", "find qmcp_messages", "update qmcp_messages"]
        (next_,) = await counted.messages.append(execution_id, [message(world.instance.id)])
        assert next_.sequence_number == 7
    finally:
        await counted.close()
    stored = await all_pages(lambda a: store.messages.list(execution_id, limit=50, after=a))
    assert [m.sequence_number for m in stored] == list(range(1, 8))
    assert await store.messages.count(execution_id) == 7


async def test_a_remembered_top_is_not_used_for_a_restored_execution(store: MongoStore) -> None:
    """A deleted and restored execution is a new incarnation: its chain is read again, so
    the next append neither leaves a gap nor overlaps the restored messages."""
    world = await World(store).build()
    first = await store.messages.append(world.execution.id, [message(world.instance.id)])
    await store.messages.append(world.execution.id, [message(world.instance.id) for _ in range(2)])
    exported = await store.executions.get(world.execution.id)
    instance = await store.agent_instances.get(world.instance.id)
    await store.executions.delete(world.execution.id)
    await store.executions.restore_many([exported])
    await store.agent_instances.restore_many([instance])
    await store.messages.restore_many(first)
    (after,) = await store.messages.append(world.execution.id, [message(world.instance.id)])
    assert after.sequence_number == 2
    stored = await all_pages(lambda a: store.messages.list(world.execution.id, limit=50, after=a))
    assert [m.sequence_number for m in stored] == [1, 2]


async def test_large_append_is_one_head_document_and_its_parts(store: MongoStore) -> None:
    world = await World(store).build()
    appended = await store.messages.append(
        world.execution.id, [message(world.instance.id, {"i": i}) for i in range(2500)]
    )
    assert [m.sequence_number for m in appended] == list(range(1, 2501))
    (head,) = await _raw(store, "messages")  # one append, one chained document: one block
    parts = sorted(await _raw(store, "message_parts"), key=lambda p: int(p["offset"]))  # type: ignore[call-overload]
    assert (head["first"], head["last"], len(head["items"])) == (1, 2500, 1000)  # type: ignore[arg-type]
    assert [(p["offset"], len(p["items"])) for p in parts] == [(1000, 1000), (2000, 500)]  # type: ignore[arg-type]
    assert head["parts"] == [p["_id"] for p in parts]
    newest = await store.messages.last(world.execution.id, 1000)
    assert [m.content["i"] for m in newest] == list(range(1500, 2500))
    assert await store.messages.count(world.execution.id) == 2500
    assert await store.messages.get(appended[2222].id) == appended[2222]


async def test_batch_documents_are_split_by_size(store: MongoStore) -> None:
    world = await World(store).build()
    drafts = [message(world.instance.id, {"i": i, "pad": "y" * 17_500}) for i in range(1000)]
    appended = await store.messages.append(world.execution.id, drafts)
    assert [m.sequence_number for m in appended] == list(range(1, 1001))
    documents = [*await _raw(store, "messages"), *await _raw(store, "message_parts")]
    assert len(documents) == 3
    assert all(len(bson.encode(d)) <= MAX_BATCH_BYTES + 4096 for d in documents)
    assert sum(len(d["items"]) for d in documents if isinstance(d["items"], list)) == 1000
    stored = await all_pages(lambda a: store.messages.list(world.execution.id, limit=300, after=a))
    assert stored == appended


async def test_parts_without_their_head_are_invisible_and_go_with_the_execution(store: MongoStore) -> None:
    world = await World(store).build()
    (kept,) = await store.messages.append(world.execution.id, [message(world.instance.id)])
    drafts = [message(world.instance.id, {"i": i}) for i in range(1500)]
    original = store.messages._chain

    async def crash(*args: object, **kwargs: object) -> list[Message]:
        raise StoreUnavailable("the connection was lost between the parts and the head")

    store.messages._chain = crash  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailable):
        await store.messages.append(world.execution.id, drafts)
    store.messages._chain = original  # type: ignore[method-assign]
    # The lost connection may have come after the head was applied, so the parts stay
    # (removing them could cut a stored append short); no head names them: unread.
    assert len(await _raw(store, "message_parts")) == 1
    orphan = {"_id": uuid.uuid4(), "execution_id": world.execution.id, "head": uuid.uuid4(), "offset": 1}
    await store.collection("message_parts").insert_one({**orphan, "items": []})
    assert await store.messages.count(world.execution.id) == 1
    assert [m.id for m in (await store.messages.list(world.execution.id)).items] == [kept.id]
    more = await store.messages.append(world.execution.id, drafts)
    assert [m.sequence_number for m in more] == list(range(2, 1502))
    await store.executions.delete(world.execution.id)
    assert await _raw(store, "message_parts") == []
    # What stays is the deleted incarnation's closing entry, with no message in it.
    (tombstone,) = await _raw(store, "messages")
    assert tombstone["closing"] == "deleted"
    assert tombstone["items"] == [{"id": tombstone["_id"]}]


class _Commands(monitoring.CommandListener):
    """The commands a client sends, as "<name> <collection>"."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.seen.append(f"{event.command_name} {event.command.get(event.command_name)}")

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest_asyncio.fixture
async def other(store: MongoStore) -> AsyncIterator[tuple[MongoStore, _Commands]]:
    """A second store on the same database (another process), its commands recorded."""
    commands = _Commands()
    second = MongoStore.from_url(with_database(MONGODB_URL, store.database.name), event_listeners=[commands])
    yield second, commands
    await second.close()


async def _complete(store: MongoStore, execution_id: uuid.UUID) -> None:
    current = await store.executions.get(execution_id)
    current.mark_complete({"done": True})
    await store.executions.update(current)


async def test_a_remembered_top_meets_the_closing_entry_of_a_final_execution(
    store: MongoStore, other: tuple[MongoStore, _Commands]
) -> None:
    """Issue 15: another process completed the execution; this store's next append is still
    one write, which finds the closing entry instead of inserting, and then the refusal
    every backend gives."""
    second, commands = other
    world = await World(store).build()
    for _ in range(2):
        await second.messages.append(world.execution.id, [message(world.instance.id)])
    await _complete(store, world.execution.id)
    commands.seen.clear()
    with pytest.raises(InvalidTransition, match="is completed; it takes no more messages"):
        await second.messages.append(world.execution.id, [message(world.instance.id)])
    assert commands.seen == ["update qmcp_messages", "find qmcp_executions"]
    assert await store.messages.count(world.execution.id) == 2
    assert await store.messages.count() == 2


async def test_a_remembered_top_meets_the_closing_entry_of_a_deleted_then_restored_execution(
    store: MongoStore, other: tuple[MongoStore, _Commands]
) -> None:
    """Issue 15: after a delete no chain is left to collide with, but the closing entry of
    the deleted incarnation is: a remembered top is refused (NotFound, nothing written),
    and once the execution is restored (a new incarnation) it is read again, so the append
    follows the restored messages without a gap."""
    second, _ = other
    world = await World(store).build()
    first = await second.messages.append(world.execution.id, [message(world.instance.id)])
    await second.messages.append(world.execution.id, [message(world.instance.id) for _ in range(3)])
    exported = await store.executions.get(world.execution.id)
    instance = await store.agent_instances.get(world.instance.id)
    await store.executions.delete(world.execution.id)
    with pytest.raises(NotFound):
        await second.messages.append(world.execution.id, [message(world.instance.id)])
    assert await store.messages.count() == 0
    await store.executions.restore_many([exported])
    await store.agent_instances.restore_many([instance])
    await store.messages.restore_many(first)
    (after,) = await second.messages.append(world.execution.id, [message(world.instance.id)])
    assert after.sequence_number == 2
    stored = await all_pages(lambda a: store.messages.list(world.execution.id, limit=50, after=a))
    assert [m.sequence_number for m in stored] == [1, 2]


async def test_a_closing_entry_a_cut_short_delete_left_in_place_does_not_hold_the_restored_chain(
    store: MongoStore,
) -> None:
    """A delete that stopped before retiring its closing entry (crash) leaves it at the
    chain's next position; after a restore, the append that collides with it retires it."""
    world = await World(store).build()
    appended = await store.messages.append(world.execution.id, [message(world.instance.id) for _ in range(3)])
    exported = await store.executions.get(world.execution.id)
    instance = await store.agent_instances.get(world.instance.id)
    await store.executions.delete(world.execution.id)
    (tombstone,) = await _raw(store, "messages")
    await store.collection("messages").update_one({"_id": tombstone["_id"]}, {"$set": {"first": 4}})
    await store.executions.restore_many([exported])
    await store.agent_instances.restore_many([instance])
    await store.messages.restore_many(appended)
    fresh = MongoStore.from_url(with_database(MONGODB_URL, store.database.name))
    try:
        (after,) = await asyncio.wait_for(
            fresh.messages.append(world.execution.id, [message(world.instance.id)]), 10
        )
    finally:
        await fresh.close()
    assert after.sequence_number == 4
    assert await store.messages.count(world.execution.id) == 4


async def test_an_append_racing_a_delete_writes_nothing(
    store: MongoStore, other: tuple[MongoStore, _Commands]
) -> None:
    """The delete (by another process) runs between this append's reads and its write, and
    sweeps before the write lands: the write finds the closing entry, the append's parts are
    removed, and nothing of it is stored."""
    second, _ = other
    world = await World(store).build()
    original = store.messages._write

    async def lose_the_race(*args: Any, **kwargs: Any) -> list[Message]:
        await second.executions.delete(world.execution.id)
        return await original(*args, **kwargs)

    store.messages._write = lose_the_race  # type: ignore[method-assign]
    with pytest.raises(NotFound):
        await store.messages.append(
            world.execution.id, [message(world.instance.id, {"i": i}) for i in range(1500)]
        )
    assert await _raw(store, "message_parts") == []
    (tombstone,) = await _raw(store, "messages")
    assert tombstone["closing"] == "deleted"
    assert await store.messages.count() == 0


async def test_an_append_racing_a_final_transition_is_refused(
    store: MongoStore, other: tuple[MongoStore, _Commands]
) -> None:
    """The transition (by another process) completes between this append's read of the
    status and its write: the write collides with the closing entry on top of the chain."""
    second, _ = other
    world = await World(store).build()
    await store.messages.append(world.execution.id, [message(world.instance.id)])
    fresh = MongoStore.from_url(with_database(MONGODB_URL, store.database.name))  # no remembered top
    original = fresh.messages._write

    async def lose_the_race(*args: Any, **kwargs: Any) -> list[Message]:
        await _complete(second, world.execution.id)
        return await original(*args, **kwargs)

    fresh.messages._write = lose_the_race  # type: ignore[method-assign]
    try:
        with pytest.raises(InvalidTransition, match="is completed"):
            await fresh.messages.append(world.execution.id, [message(world.instance.id)])
    finally:
        await fresh.close()
    assert await store.messages.count(world.execution.id) == 1


async def test_two_stores_with_remembered_tops_racing_a_completion_stop_at_it(
    store: MongoStore, other: tuple[MongoStore, _Commands]
) -> None:
    """Two processes keep appending (each after its own remembered top, so one command per
    append) while a third completes the execution: the chain stays gap-free and nothing
    lands after ``update`` has returned."""
    second, _ = other
    world = await World(store).build()
    for trial in range(3):
        execution = await world.new_execution()
        instance = await world.new_instance(execution.id)
        for target in (store, second):  # both remember the top
            await target.messages.append(execution.id, [message(instance.id)])
        completer = MongoStore.from_url(with_database(MONGODB_URL, store.database.name))
        counted: list[int] = []

        async def appender(target: MongoStore, execution_id: uuid.UUID, sender: uuid.UUID) -> None:
            for i in range(10):
                try:
                    await target.messages.append(execution_id, [message(sender, {"i": i})])
                except InvalidTransition:
                    return

        async def complete(by: MongoStore, execution_id: uuid.UUID, delay: int, counts: list[int]) -> None:
            for _ in range(delay):
                await asyncio.sleep(0.002)
            await _complete(by, execution_id)
            counts.append(await by.messages.count(execution_id))

        try:
            await asyncio.gather(
                appender(store, execution.id, instance.id),
                appender(second, execution.id, instance.id),
                complete(completer, execution.id, trial * 3, counted),
            )
        finally:
            await completer.close()
        stored = await all_pages(lambda a, e=execution.id: store.messages.list(e, limit=100, after=a))  # type: ignore[misc]
        assert [m.sequence_number for m in stored] == list(range(1, len(stored) + 1))
        assert len(stored) == counted[0], (trial, len(stored), counted)


async def test_a_transition_cut_short_is_waited_for_then_killed(
    store: MongoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transition that wrote its closing entry but not its status (crashed, or slow): an
    append waits for it, then kills it (its status update can no longer match) and
    appends; a closing entry whose revision is already outdated is removed at once."""
    monkeypatch.setattr(closing, "PENDING_WAIT", 0.05)
    world = await World(store).build()
    execution_id = world.execution.id
    await store.messages.append(execution_id, [message(world.instance.id)])
    current = await store.executions.get(execution_id)
    closed = await closing.close(store, execution_id, "completed", current.revision, None)
    assert closed is not None
    (appended,) = await asyncio.wait_for(
        store.messages.append(execution_id, [message(world.instance.id)]), 10
    )
    assert appended.sequence_number == 2
    late = await store.collection("executions").update_one(
        {"_id": execution_id, "revision": current.revision, closing.KILLED: {"$ne": closed[1]}},
        {"$set": {"status": "completed"}},
    )
    assert late.matched_count == 0  # the killed transition cannot complete any more
    assert await store.collection("messages").find_one({"_id": closed[0]}) is None
    # A transition whose update was refused and that crashed before removing its entry.
    dead = await closing.close(store, execution_id, "completed", current.revision - 1, None)
    assert dead is not None
    monkeypatch.setattr(closing, "PENDING_WAIT", 60.0)
    (third,) = await asyncio.wait_for(store.messages.append(execution_id, [message(world.instance.id)]), 10)
    assert third.sequence_number == 3
    assert (await store.executions.get(execution_id)).status.value == "running"


async def test_a_transition_killed_by_an_append_is_a_concurrency_error(
    store: MongoStore, other: tuple[MongoStore, _Commands], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other side of the kill: the transition's status update is refused, its closing
    entry gone, the execution still running with the append stored."""
    monkeypatch.setattr(closing, "PENDING_WAIT", 0.0)
    second, _ = other
    world = await World(store).build()
    execution_id = world.execution.id
    original = closing.close

    async def stall(*args: Any, **kwargs: Any) -> Any:
        closed = await original(*args, **kwargs)
        await second.messages.append(execution_id, [message(world.instance.id)])  # kills it
        return closed

    monkeypatch.setattr(closing, "close", stall)
    with pytest.raises(ConcurrencyError, match="changed by someone else"):
        await _complete(store, execution_id)
    monkeypatch.setattr(closing, "close", original)
    assert (await store.executions.get(execution_id)).status.value == "running"
    assert await store.messages.count(execution_id) == 1
    await _complete(store, execution_id)  # a retry completes it
    with pytest.raises(InvalidTransition):
        await second.messages.append(execution_id, [message(world.instance.id)])


async def test_a_result_that_finds_its_execution_deleted_removes_itself(store: MongoStore) -> None:
    world = await World(store).build()
    original = store.results._write_new

    async def write_then_lose_the_race(document: dict[str, Any], session: Any) -> None:
        await original(document, session)
        await store.collection("executions").delete_one({"_id": world.execution.id})

    store.results._write_new = write_then_lose_the_race  # type: ignore[method-assign]
    with pytest.raises(IntegrityError, match="was deleted meanwhile"):
        await store.results.add(world.result())
    assert await _raw(store, "results") == []


async def test_a_delete_finishes_orphans_of_an_execution_already_gone(store: MongoStore) -> None:
    world = await World(store).build()
    await store.messages.append(world.execution.id, [message(world.instance.id) for _ in range(5)])
    await store.results.add(world.result())
    # What an append racing a delete left before issue 18: the execution gone, messages not.
    await store.collection("executions").delete_one({"_id": world.execution.id})
    assert await store.messages.count() == 5
    await store.executions.delete(world.execution.id)
    assert await store.messages.count() == 0
    assert await store.results.count() == 0
    assert await store.agent_instances.find(world.instance.id) is None
    with pytest.raises(NotFound):
        await store.executions.delete(world.execution.id)


async def test_interrupted_cascade_is_finished_by_deleting_again(store: MongoStore) -> None:
    world = await World(store).build()
    await store.messages.append(world.execution.id, [message(world.instance.id)])
    # What a crash half-way through a cascade leaves: the owned data gone, the execution not.
    await store.collection("messages").delete_many({})
    await store.collection("agent_instances").delete_many({"execution_id": world.execution.id})
    assert await store.executions.find(world.execution.id) is not None
    await store.executions.delete(world.execution.id)
    assert await store.executions.find(world.execution.id) is None


async def test_compound_sub_topologies_are_found_through_escaped_config(store: MongoStore) -> None:
    child = await store.topologies.add(topology("child"))
    await store.topologies.add(topology("parent", [], TopologyType.COMPOUND, {"sub_topologies": ["child"]}))
    with pytest.raises(Exception, match="sub-topology of \\['parent'\\]"):
        await store.topologies.delete(child.id)  # type: ignore[arg-type]


async def test_unreachable_server_raises_store_unavailable() -> None:
    with pytest.raises(StoreUnavailable, match="unreachable") as failure:
        async with open_store("mongodb://127.0.0.1:1/none", server_selection_timeout_ms=300) as store:
            await store.agent_types.count()
    assert str(failure.value).startswith("store mongodb://127.0.0.1:1/none: MongoDB is unreachable")
    assert len(str(failure.value)) < 250  # not PyMongo's 600-character topology description


# --- write conflicts between transactions ------------------------------------------------


async def test_two_transactions_writing_one_document_one_wins_the_other_is_a_concurrency_error(
    store: MongoStore,
) -> None:
    """Two transactions update the same agent type: exactly one commits, the other raises
    ConcurrencyError and leaves nothing. Which one loses depends on the server: a real
    replica set refuses the second writer at once (write conflict on the locked document);
    the test server makes the second wait (one transaction at a time), aborts the first at
    its lifetime limit (5 s: the first waits for the second) and refuses its commit. Both keep
    the port's promise, and what is stored is the winner's write, read back afterwards by
    the same client (whose pooled sessions include the loser's)."""
    assert store.capabilities.transactions
    stored = await store.agent_types.add(agent_type("contended"))
    started = asyncio.Event()
    release = asyncio.Event()

    async def write(description: str) -> str:
        async with store.transaction():
            current = await store.agent_types.get(stored.id)  # type: ignore[arg-type]
            current.description = description
            await store.agent_types.update(current)
            if description == "first":
                started.set()
                await release.wait()
        return description

    async def second() -> str:
        await started.wait()
        try:
            return await write("second")
        finally:
            release.set()

    outcomes = await asyncio.gather(write("first"), second(), return_exceptions=True)
    assert sum(isinstance(o, ConcurrencyError) for o in outcomes) == 1, outcomes
    (winner,) = [o for o in outcomes if isinstance(o, str)]
    for _ in range(3):  # later calls reuse the pooled server sessions, the loser's included
        stored_now = await store.agent_types.get(stored.id)  # type: ignore[arg-type]
        assert stored_now.description == winner, (outcomes, stored_now)
        assert stored_now.revision == (stored.revision or 0) + 1  # one update, not two
    await store.agent_types.update(stored_now)  # and a later write is committed, not lost
    assert (await store.agent_types.get(stored.id)).revision == (stored.revision or 0) + 2  # type: ignore[arg-type]


# --- hostile probe of the closing entries (issue 15) ---------------------------------------


async def test_a_large_append_cancelled_after_its_head_landed_keeps_its_parts(
    store: MongoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The head's write reached the server and was applied, and then the caller's
    cancellation arrived (Motor's settled calls deliver it exactly there; PyMongo's client
    can too, once the command is sent). The append's clean-up must not remove the parts a
    stored head names: ``list`` would skip their numbers (a gap) and ``get`` lose them."""
    world = await World(store).build()
    execution_id = world.execution.id
    original = store.settled

    async def landed_then_cancelled(operation: Any) -> Any:
        await original(operation)
        raise asyncio.CancelledError

    monkeypatch.setattr(store, "settled", landed_then_cancelled)
    drafts = [message(world.instance.id, {"i": i}) for i in range(1500)]
    with pytest.raises(asyncio.CancelledError):
        await store.messages.append(execution_id, drafts)
    monkeypatch.setattr(store, "settled", original)
    count = await store.messages.count(execution_id)
    stored = await all_pages(lambda a: store.messages.list(execution_id, limit=500, after=a))
    assert [m.sequence_number for m in stored] == list(range(1, count + 1))
    (after,) = await store.messages.append(execution_id, [message(world.instance.id)])
    assert after.sequence_number == count + 1


async def test_an_entry_read_after_a_stale_status_is_not_taken_for_dead(
    store: MongoStore, other: tuple[MongoStore, _Commands], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append resolving a dead closing entry read the execution (revision r, running),
    and before it read the entry: the dead entry was removed, the execution paused (r+1)
    and a transition to "failed" wrote its entry (revision r+1) and stalled before its
    status update. The append must not judge that fresh entry against the revision it read
    before it existed: removing it lets the transition complete with no closing entry, and
    every append with a remembered top then lands after "failed"."""
    monkeypatch.setattr(closing, "PENDING_WAIT", 5.0)
    second, _ = other
    world = await World(store).build()
    execution_id = world.execution.id
    await store.messages.append(execution_id, [message(world.instance.id)])  # remembers the top
    current = await store.executions.get(execution_id)
    dead = await closing.close(store, execution_id, "completed", current.revision - 1, None)
    assert dead is not None
    entry_written = asyncio.Event()
    go = asyncio.Event()
    original_close = closing.close
    original_read = closing.read_execution
    armed = [True]
    transition: list[asyncio.Task[None]] = []

    async def stalled_close(*args: Any, **kwargs: Any) -> Any:
        closed = await original_close(*args, **kwargs)
        entry_written.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(go.wait(), 0.5)
        return closed

    async def fail(by: MongoStore) -> None:
        execution = await by.executions.get(execution_id)
        execution.mark_failed("stopped")
        await by.executions.update(execution)

    async def stale_read(*args: Any, **kwargs: Any) -> Any:
        execution = await original_read(*args, **kwargs)
        if armed[0] and args[0] is store:
            armed[0] = False
            await store.collection("messages").delete_one({"_id": dead[0]})  # another appender
            paused = await second.executions.get(execution_id)
            paused.pause()
            await second.executions.update(paused)
            transition.append(asyncio.ensure_future(fail(second)))
            await entry_written.wait()
        return execution

    monkeypatch.setattr(closing, "close", stalled_close)
    monkeypatch.setattr(closing, "read_execution", stale_read)
    with contextlib.suppress(InvalidTransition):
        await asyncio.wait_for(store.messages.append(execution_id, [message(world.instance.id)]), 10)
    go.set()
    await asyncio.wait_for(transition[0], 10)
    monkeypatch.setattr(closing, "read_execution", original_read)
    assert (await store.executions.get(execution_id)).status.value == "failed"
    counted = await store.messages.count(execution_id)
    with pytest.raises(InvalidTransition):
        await store.messages.append(execution_id, [message(world.instance.id)])
    assert await store.messages.count(execution_id) == counted


class _CancelAfter:
    """A collection whose first ``update_one`` is applied and then the caller is cancelled
    (the reply lost to a cancellation), or cancelled before it is sent; all else passes."""

    def __init__(self, inner: Any, applied: bool) -> None:
        self._inner = inner
        self._applied = applied
        self._done = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def update_one(self, *args: Any, **kwargs: Any) -> Any:
        if self._done:  # once: the clean-up after the cancellation runs as usual
            return await self._inner.update_one(*args, **kwargs)
        self._done = True
        if self._applied:
            await self._inner.update_one(*args, **kwargs)
        raise asyncio.CancelledError


@pytest.mark.parametrize("applied", [False, True], ids=["before-the-status", "after-the-status"])
async def test_a_transition_cancelled_at_its_status_update_leaves_no_pending_entry(
    store: MongoStore, monkeypatch: pytest.MonkeyPatch, applied: bool
) -> None:
    """A transition cancelled after writing its closing entry: if its status update did not
    happen, the entry must not stay pending (every append and the transition's own retry
    would wait ``PENDING_WAIT`` and then kill it); if it did, the entry must stay (appends
    after "completed" are refused)."""
    monkeypatch.setattr(closing, "PENDING_WAIT", 60.0)
    world = await World(store).build()
    execution_id = world.execution.id
    await store.messages.append(execution_id, [message(world.instance.id)])
    executions = store._collections["executions"]
    monkeypatch.setitem(store._collections, "executions", _CancelAfter(executions, applied))
    with pytest.raises(asyncio.CancelledError):
        await _complete(store, execution_id)
    monkeypatch.setitem(store._collections, "executions", executions)
    if applied:
        assert (await store.executions.get(execution_id)).status.value == "completed"
        with pytest.raises(InvalidTransition):
            await asyncio.wait_for(store.messages.append(execution_id, [message(world.instance.id)]), 10)
        assert await store.messages.count(execution_id) == 1
        return
    assert (await store.executions.get(execution_id)).status.value == "running"
    (appended,) = await asyncio.wait_for(store.messages.append(execution_id, [message(world.instance.id)]), 5)
    assert appended.sequence_number == 2
    await asyncio.wait_for(_complete(store, execution_id), 5)  # the retry
    with pytest.raises(InvalidTransition):
        await store.messages.append(execution_id, [message(world.instance.id)])
    assert await store.messages.count(execution_id) == 2


async def test_closing_entries_stay_out_of_copies_counts_and_reads(store: MongoStore) -> None:
    """A store holding every kind of closing entry (a completed execution's, a deleted one's
    tombstone, a dead entry of a refused transition, a killed one's mark on the execution)
    copies to memory and back to MongoDB equal, with equal counts; no read shows an entry;
    and the copies refuse and number appends as the source does."""
    world = await World(store).build()
    sender = world.instance.id
    running = world.execution
    await store.messages.append(running.id, [message(sender, {"i": i}) for i in range(3)])
    done = await world.new_execution()
    done_sender = (await world.new_instance(done.id)).id
    await store.messages.append(done.id, [message(done_sender) for _ in range(2)])
    await _complete(store, done.id)
    gone = await world.new_execution()
    await store.messages.append(gone.id, [message((await world.new_instance(gone.id)).id)])
    await store.executions.delete(gone.id)
    current = await store.executions.get(running.id)
    dead = await closing.close(store, running.id, "completed", current.revision - 1, None)
    assert dead is not None
    entries = [d for d in await _raw(store, "messages") if "closing" in d]
    assert len(entries) == 3
    assert await store.messages.count() == 5
    assert await store.messages.count(running.id) == 3
    assert len(await store.messages.last(running.id, 10)) == 3
    assert await store.messages.find(dead[0]) is None
    source = await dump_store(store)
    assert len(source["messages"]) == 5
    async with open_store("memory://") as memory:
        await memory.create_schema()
        await copy_store(store, memory)
        assert await dump_store(memory) == source
        back = MongoStore.from_url(with_database(MONGODB_URL, f"qmcp_test_{uuid.uuid4().hex[:10]}"))
        try:
            await back.create_schema()
            await copy_store(memory, back)
            assert await dump_store(back) == source
            assert await back.messages.count() == 5
            assert [d for d in await _raw(back, "messages") if "closing" in d] == []
            with pytest.raises(InvalidTransition):
                await back.messages.append(done.id, [message(done_sender)])
            (next_,) = await back.messages.append(running.id, [message(sender)])
            assert next_.sequence_number == 4
            await _complete(back, running.id)
            with pytest.raises(InvalidTransition):
                await back.messages.append(running.id, [message(sender)])
        finally:
            await back.drop_schema()
            await back.close()
    # The source goes on as before: the dead entry is removed by the next append.
    (fourth,) = await store.messages.append(running.id, [message(sender)])
    assert fourth.sequence_number == 4


@pytest.mark.parametrize("seed", range(12))
async def test_random_schedules_of_stale_appenders_against_transitions_deletes_and_restores(
    store: MongoStore, seed: int
) -> None:
    """Three stores (three processes), each with a remembered top, append in random batches
    and at random moments while a fourth completes the execution, pauses then fails it,
    deletes it, or deletes and restores it. Afterwards: numbers 1..N with no gap or
    duplicate, the counts agree, nothing stored after a final status was written, every
    append that returned is stored as returned (unless its execution was deleted)."""
    rng = random.Random(seed)
    world = await World(store).build()
    execution_id = world.execution.id
    sender = world.instance.id
    url = with_database(MONGODB_URL, store.database.name)
    appenders = [MongoStore.from_url(url) for _ in range(3)]
    admin = MongoStore.from_url(url)
    action = ("complete", "fail", "delete", "restore")[seed % 4]
    returned: list[Message] = []
    final_count: list[int] = []
    try:
        for target in appenders:  # each remembers the top
            returned.extend(await target.messages.append(execution_id, [message(sender)]))

        async def append(target: MongoStore, who: int) -> None:
            for i in range(12):
                await asyncio.sleep(rng.uniform(0, 0.004))
                drafts = [message(sender, {"who": who, "i": i, "k": k}) for k in range(rng.randint(1, 3))]
                try:
                    returned.extend(await target.messages.append(execution_id, drafts))
                except InvalidTransition:
                    return
                except (NotFound, IntegrityError):  # deleted; restored but its instance not yet
                    continue

        async def act() -> None:
            await asyncio.sleep(rng.uniform(0, 0.03))
            if action in ("complete", "fail"):
                current = await admin.executions.get(execution_id)
                if action == "fail":
                    current.pause()
                    current = await admin.executions.update(current)
                    current.mark_failed("stopped")
                else:
                    current.mark_complete({"done": True})
                for _ in range(20):  # a concurrent append may kill the transition: retry
                    try:
                        await admin.executions.update(current)
                        break
                    except ConcurrencyError:
                        current = await admin.executions.get(execution_id)
                        if action == "complete":
                            current.mark_complete({"done": True})
                        else:
                            current.mark_failed("stopped")
                final_count.append(await admin.messages.count(execution_id))
                return
            execution = await admin.executions.get(execution_id)
            instance = await admin.agent_instances.get(sender)
            snapshot = await all_pages(lambda a: admin.messages.list(execution_id, limit=500, after=a))
            await admin.executions.delete(execution_id)
            if action == "restore":
                await asyncio.sleep(rng.uniform(0, 0.01))
                await admin.executions.restore_many([execution])
                await admin.agent_instances.restore_many([instance])
                with contextlib.suppress(ConcurrencyError):  # appends to the restored execution came first
                    await admin.messages.restore_many(snapshot)

        await asyncio.wait_for(asyncio.gather(*(append(t, n) for n, t in enumerate(appenders)), act()), 60)
    finally:
        for opened in (*appenders, admin):
            await opened.close()
    stored = await all_pages(lambda a: store.messages.list(execution_id, limit=500, after=a))
    numbers = [m.sequence_number for m in stored]
    assert numbers == list(range(1, len(numbers) + 1)), (seed, action)
    assert await store.messages.count(execution_id) == len(numbers)
    assert len({m.id for m in stored}) == len(stored)
    if action == "delete":
        assert stored == []
        assert await store.messages.count() == 0
        return
    if action in ("complete", "fail"):
        assert final_count == [len(stored)], (seed, action, final_count, len(stored))
        by_id = {m.id: m for m in stored}
        assert all(by_id.get(m.id) == m for m in returned), (seed, action)
        with pytest.raises(InvalidTransition):
            await store.messages.append(execution_id, [message(sender)])
    else:
        (after,) = await store.messages.append(execution_id, [message(sender)])
        assert after.sequence_number == len(stored) + 1


async def test_parts_an_append_left_behind_do_not_keep_an_instance_from_being_deleted(
    store: MongoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large append cancelled before its head was written leaves its parts (its head may
    have been applied, as far as it knows): they name its sender, but no stored message
    does, so the instance can be deleted as on every other backend."""
    world = await World(store).build()
    execution_id = world.execution.id
    instance = await world.new_instance(execution_id)

    async def cancelled(operation: Any) -> Any:
        operation.close()  # never sent
        raise asyncio.CancelledError

    monkeypatch.setattr(store, "settled", cancelled)
    with pytest.raises(asyncio.CancelledError):
        await store.messages.append(execution_id, [message(instance.id, {"i": i}) for i in range(1500)])
    monkeypatch.undo()
    assert await store.messages.count(execution_id) == 0
    assert len(await _raw(store, "message_parts")) == 1
    await store.agent_instances.delete(instance.id)
    assert await store.agent_instances.find(instance.id) is None


async def test_a_waiter_gives_a_new_pending_entry_its_own_wait(
    store: MongoStore, other: tuple[MongoStore, _Commands], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append waited out a crashed transition's entry; meanwhile another process killed
    that entry and the transition was retried, writing a new one. The waiter must give the
    new entry a wait of its own, not kill it at once because it has already waited (the
    retry would fail again, and again, while waiters remain)."""
    monkeypatch.setattr(closing, "PENDING_WAIT", 0.005)
    second, _ = other
    world = await World(store).build()
    execution_id = world.execution.id
    await store.messages.append(execution_id, [message(world.instance.id)])
    current = await store.executions.get(execution_id)
    crashed = await closing.close(store, execution_id, "completed", current.revision, None)
    assert crashed is not None
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 1:  # another process kills the crashed entry; the retry writes its own
            executions = second.collection("executions")
            await executions.update_one({"_id": execution_id}, {"$set": {closing.KILLED: crashed[1]}})
            await closing.unclose(second, crashed, None)
            retry = await closing.close(second, execution_id, "completed", current.revision, None)
            assert retry is not None
            retries.append(retry)
        elif len(sleeps) == 2:  # the retry's status update, a moment later
            done = current.model_copy()
            done.mark_complete({"done": True})
            document = {**documents.execution_document(done), "revision": current.revision + 1}
            await second.collection("executions").update_one(
                {"_id": execution_id, "revision": current.revision, closing.KILLED: {"$ne": retries[0][1]}},
                {"$set": document},
            )
        await real_sleep(seconds)

    retries: list[tuple[uuid.UUID, uuid.UUID]] = []
    monkeypatch.setattr(closing, "asyncio", type("Shim", (), {"sleep": staticmethod(sleep)}))
    with pytest.raises(InvalidTransition):
        await asyncio.wait_for(store.messages.append(execution_id, [message(world.instance.id)]), 10)
    assert (await store.executions.get(execution_id)).status.value == "completed"
    assert await store.messages.count(execution_id) == 1


async def test_a_restore_meets_the_closing_entry_a_cut_short_delete_left_in_the_chain(
    store: MongoStore,
) -> None:
    """A delete that stopped before retiring its closing entry left it at the chain's next
    position (4); the execution is then restored with more messages than it had (an export
    taken later elsewhere): the restore retires the old incarnation's entry instead of
    saying "messages were appended while restoring" on every rerun."""
    world = await World(store).build()
    execution_id = world.execution.id
    appended = await store.messages.append(execution_id, [message(world.instance.id) for _ in range(3)])
    appended += await store.messages.append(execution_id, [message(world.instance.id) for _ in range(2)])
    exported = await store.executions.get(execution_id)
    instance = await store.agent_instances.get(world.instance.id)
    await store.executions.delete(execution_id)
    (tombstone,) = await _raw(store, "messages")
    await store.collection("messages").update_one({"_id": tombstone["_id"]}, {"$set": {"first": 4}})
    await store.executions.restore_many([exported])
    await store.agent_instances.restore_many([instance])
    assert await store.messages.restore_many(appended) == 5
    stored = await all_pages(lambda a: store.messages.list(execution_id, limit=50, after=a))
    assert stored == appended
    (after,) = await store.messages.append(execution_id, [message(world.instance.id)])
    assert after.sequence_number == 6


async def test_an_append_in_a_transaction_meeting_a_pending_transition_is_retried_not_waited(
    store: MongoStore, other: tuple[MongoStore, _Commands], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's transition has written its closing entry and not yet its status: an
    append inside a transaction cannot watch it finish (its snapshot), so it is a prompt
    ConcurrencyError and writes nothing; once the status is written, the retried
    transaction gets the refusal every backend gives."""
    assert store.capabilities.transactions
    monkeypatch.setattr(closing, "PENDING_WAIT", 60.0)
    second, _ = other
    world = await World(store).build()
    execution_id = world.execution.id
    await store.messages.append(execution_id, [message(world.instance.id)])
    entry_written = asyncio.Event()
    go = asyncio.Event()
    original = closing.close

    async def stalled(*args: Any, **kwargs: Any) -> Any:
        closed = await original(*args, **kwargs)
        entry_written.set()
        await go.wait()
        return closed

    monkeypatch.setattr(closing, "close", stalled)
    transition = asyncio.ensure_future(_complete(second, execution_id))
    await entry_written.wait()

    async def in_transaction() -> None:
        async with store.transaction():
            await store.messages.append(execution_id, [message(world.instance.id)])

    with pytest.raises(ConcurrencyError, match="retry the transaction"):
        await asyncio.wait_for(in_transaction(), 5)
    go.set()
    await asyncio.wait_for(transition, 10)
    with pytest.raises(InvalidTransition):
        await asyncio.wait_for(in_transaction(), 5)
    assert await store.messages.count(execution_id) == 1


async def test_a_final_execution_updated_again_still_refuses_remembered_tops_then_deletes_clean(
    store: MongoStore, other: tuple[MongoStore, _Commands]
) -> None:
    """A completed execution whose other fields are updated afterwards (its closing entry's
    revision is then outdated) still refuses an append after a remembered top, and is not
    taken for a dead entry; deleted, the same append is NotFound and one tombstone stays."""
    second, _ = other
    world = await World(store).build()
    execution_id = world.execution.id
    await second.messages.append(execution_id, [message(world.instance.id) for _ in range(2)])
    await _complete(store, execution_id)
    done = await store.executions.get(execution_id)
    done.metadata = {"note": "reviewed"}
    await store.executions.update(done)
    assert (await store.executions.get(execution_id)).revision == done.revision + 1
    with pytest.raises(InvalidTransition):
        await asyncio.wait_for(second.messages.append(execution_id, [message(world.instance.id)]), 5)
    entries = [d for d in await _raw(store, "messages") if "closing" in d]
    assert [e["closing"] for e in entries] == ["completed"]
    await store.executions.delete(execution_id)
    with pytest.raises(NotFound):
        await second.messages.append(execution_id, [message(world.instance.id)])
    (tombstone,) = await _raw(store, "messages")
    assert tombstone["closing"] == "deleted"
    assert await store.messages.count() == 0


async def test_refused_transitions_leave_the_messages_collection_as_it_was(
    store: MongoStore, other: tuple[MongoStore, _Commands]
) -> None:
    """A move to "completed" with an outdated revision (ConcurrencyError) and a move out of
    a final status (InvalidTransition) leave ``qmcp_messages`` byte for byte as it was: no
    closing entry added or left behind, the final one kept; appends after a remembered top
    go on after the first refusal in one command."""
    second, commands = other
    world = await World(store).build()
    execution_id = world.execution.id
    await second.messages.append(execution_id, [message(world.instance.id)])
    stale = await store.executions.get(execution_id)
    paused = await store.executions.get(execution_id)
    paused.pause()
    await store.executions.update(paused)
    before = await _raw(store, "messages")
    stale.mark_complete({"done": True})
    with pytest.raises(ConcurrencyError):
        await store.executions.update(stale)
    assert await _raw(store, "messages") == before
    commands.seen.clear()
    (appended,) = await second.messages.append(execution_id, [message(world.instance.id)])
    assert appended.sequence_number == 2
    assert commands.seen == ["update qmcp_messages"]
    resumed = await store.executions.get(execution_id)
    resumed.resume()
    await store.executions.update(resumed)
    await _complete(store, execution_id)
    before = await _raw(store, "messages")
    reopened = (await store.executions.get(execution_id)).model_copy(
        update={"status": ExecutionStatus.RUNNING}
    )
    with pytest.raises(InvalidTransition):
        await store.executions.update(reopened)
    assert await _raw(store, "messages") == before
    with pytest.raises(InvalidTransition):
        await second.messages.append(execution_id, [message(world.instance.id)])


async def test_a_purge_racing_stale_appenders_leaves_only_tombstones(
    store: MongoStore, other: tuple[MongoStore, _Commands]
) -> None:
    """Completed executions purged while another process keeps appending after remembered
    tops to them (refused: final) and to a running one (kept): afterwards the purged ones
    have no message, the stale appends say NotFound, each purged incarnation left exactly
    one retired tombstone (outside the numbers), and the running chain is intact."""
    second, _ = other
    world = await World(store).build()
    live = world.execution
    finished = []
    for _ in range(4):
        execution = await world.new_execution()
        instance = await world.new_instance(execution.id)
        await second.messages.append(execution.id, [message(instance.id) for _ in range(2)])
        await _complete(store, execution.id)
        finished.append((execution.id, instance.id))
    await second.messages.append(live.id, [message(world.instance.id)])
    stop = asyncio.Event()

    async def keep_appending() -> int:
        written = 0
        while not stop.is_set():
            for execution_id, sender in finished:
                with contextlib.suppress(InvalidTransition, NotFound):
                    await second.messages.append(execution_id, [message(sender)])
                    written += 1_000  # never: each is final or gone
            await second.messages.append(live.id, [message(world.instance.id)])
            written += 1
        return written

    appender = asyncio.ensure_future(keep_appending())
    await asyncio.sleep(0.01)
    purged = await store.executions.purge(older_than=datetime.now(UTC) + timedelta(seconds=1))
    stop.set()
    written = await appender
    assert purged == 4
    assert written < 1_000
    for execution_id, sender in finished:
        with pytest.raises(NotFound):
            await second.messages.append(execution_id, [message(sender)])
        assert await store.messages.count(execution_id) == 0
    stored = await all_pages(lambda a: store.messages.list(live.id, limit=500, after=a))
    assert [m.sequence_number for m in stored] == list(range(1, written + 2))
    assert await store.messages.count() == written + 1
    tombstones = [d for d in await _raw(store, "messages") if "closing" in d]
    assert len(tombstones) == 4
    assert all(t["closing"] == "deleted" and t["first"] == t["_id"] for t in tombstones)


@pytest.mark.parametrize("action", ["complete", "delete"])
async def test_worker_processes_appending_after_remembered_tops_stop_at_a_completion_or_delete(
    store: MongoStore, action: str
) -> None:
    """Three processes append (one command each, after their remembered tops) while this
    one completes or deletes the execution: every process stops with the refusal every
    backend gives; completed, the chain is 1..N with N the count read right after
    ``update`` returned, and every block a process was given is stored as given;
    deleted, nothing of the execution is left but its tombstone."""
    world = await World(store).build()
    execution_id = world.execution.id
    url = with_database(MONGODB_URL, store.database.name)
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.stores.closing_worker",
            url,
            str(execution_id),
            str(world.instance.id),
            str(seed),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for seed in range(3)
    ]
    for worker in workers:  # each has appended once and remembers the top
        assert worker.stderr is not None
        line = await asyncio.wait_for(worker.stderr.readline(), 60)
        assert line.strip() == b"ready", line
    await asyncio.sleep(0.2)  # they append meanwhile
    if action == "complete":
        await _complete(store, execution_id)
        counted = await store.messages.count(execution_id)
    else:
        await store.executions.delete(execution_id)
    outputs = [await asyncio.wait_for(worker.communicate(), 60) for worker in workers]
    assert all(w.returncode == 0 for w in workers), [err.decode()[-2000:] for _, err in outputs]
    results = [json.loads(out) for out, _ in outputs]
    expected = "InvalidTransition" if action == "complete" else "NotFound"
    assert [r["stopped"] for r in results] == [expected] * 3
    blocks = [b for r in results for b in r["blocks"]]
    assert all(b == list(range(b[0], b[0] + len(b))) for b in blocks)
    if action == "delete":
        assert await store.messages.count() == 0
        (tombstone,) = await _raw(store, "messages")
        assert tombstone["closing"] == "deleted"
        return
    stored = await all_pages(lambda a: store.messages.list(execution_id, limit=500, after=a))
    assert [m.sequence_number for m in stored] == list(range(1, counted + 1))
    assert sorted(n for b in blocks for n in b) == list(range(1, counted + 1))
    assert len(blocks) > 3  # they did append after their first


@pytest.mark.parametrize("action", ["complete", "delete"])
async def test_appenders_that_never_pause_do_not_hold_back_a_completion_or_delete(
    store: MongoStore, other: tuple[MongoStore, _Commands], monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    """Two stores append in tight loops after their remembered tops while this one
    completes or deletes the execution. The closing entry used to be inserted only at the
    top's next position, which the writer with the right top took first every time: the
    completion waited as long as the appenders went on (for ever here). Now, having lost
    that race, it is inserted unplaced (appends stop at it) and then placed on top: the
    closer ends, both appenders stop with the refusal, and the chain has no gap."""
    second, _ = other
    third = MongoStore.from_url(with_database(MONGODB_URL, store.database.name))
    world = await World(store).build()
    execution_id, sender = world.execution.id, world.instance.id
    placed: list[uuid.UUID] = []
    place = closing.place

    async def watched_place(*args: Any) -> None:
        placed.append(args[1])
        await place(*args)

    monkeypatch.setattr(closing, "place", watched_place)

    going = asyncio.Event()

    async def append_until_refused(writer: MongoStore) -> str:
        give_up = asyncio.get_running_loop().time() + 30  # the closer is held back: fail, not hang
        try:
            while asyncio.get_running_loop().time() < give_up:
                await writer.messages.append(execution_id, [message(sender)])
                going.set()
        except (InvalidTransition, NotFound) as error:
            return type(error).__name__
        return "none"

    try:
        writers = [asyncio.ensure_future(append_until_refused(s)) for s in (second, third)]
        await going.wait()
        await asyncio.sleep(0.1)  # both going at full speed
        if action == "complete":
            await _complete(store, execution_id)
            counted = await store.messages.count(execution_id)
        else:
            await store.executions.delete(execution_id)
        stopped = await asyncio.gather(*writers)
    finally:
        for writer in writers:
            writer.cancel()
        await third.close()
    assert stopped == ["InvalidTransition" if action == "complete" else "NotFound"] * 2
    assert placed in ([], [execution_id])  # lost the race at most once, then placed
    if action == "delete":
        assert await store.messages.count() == 0
        return
    stored = await all_pages(lambda a: store.messages.list(execution_id, limit=500, after=a))
    assert [m.sequence_number for m in stored] == list(range(1, counted + 1))
    (entry,) = [d for d in await _raw(store, "messages") if "closing" in d]
    assert entry["first"] == counted + 1  # on top of the chain

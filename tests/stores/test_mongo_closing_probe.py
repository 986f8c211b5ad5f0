"""A hostile probe of the *unplaced* closing entries (docs/decisions.md, "15: a busy chain
no longer holds back a completion or a delete"): the closer's first insert is made to lose
its position to an append (deterministically), so it inserts its entry unplaced, and the
window between that insert and :func:`closing.place` is held open while other stores
append, delete, transition, restore, copy and purge."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from bson.binary import Binary
from pymongo import AsyncMongoClient

from qmcp_agents.adapters import open_store
from qmcp_agents.adapters.mongo import MongoStore, closing
from qmcp_agents.adapters.transfer import copy_store
from qmcp_agents.domain import (
    ConcurrencyError,
    ExecutionStatus,
    InvalidTransition,
    NotFound,
    StoreUnavailable,
)
from qmcp_agents.domain.queries import all_pages
from qmcp_agents.testing.builders import World, message

from .servers import MONGODB_URL, mongo_store, with_database

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def store() -> AsyncIterator[MongoStore]:
    async with mongo_store() as mongo:
        yield mongo


@pytest_asyncio.fixture
async def others(store: MongoStore) -> AsyncIterator[tuple[MongoStore, MongoStore]]:
    """Two more stores on the same database (other processes)."""
    second = MongoStore.from_url(with_database(MONGODB_URL, store.database.name))
    third = MongoStore.from_url(with_database(MONGODB_URL, store.database.name))
    yield second, third
    await second.close()
    await third.close()


async def _raw(store: MongoStore, collection: str) -> list[dict[str, Any]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGODB_URL)
    try:
        return await client[store.database.name]["qmcp_" + collection].find({}).to_list(None)
    finally:
        await client.close()


async def _complete(store: MongoStore, execution_id: uuid.UUID) -> None:
    current = await store.executions.get(execution_id)
    current.mark_complete({"done": True})
    await store.executions.update(current)


async def _fail(store: MongoStore, execution_id: uuid.UUID) -> None:
    current = await store.executions.get(execution_id)
    current.mark_failed("no")
    await store.executions.update(current)


class Probe:
    """Forces the closer (``closer``) onto the unplaced path: right after its first read of
    the top, ``appender`` (a store with a remembered top) appends one message, which takes
    the position the closer is about to insert at. Holds the first :func:`closing.place`
    until :attr:`release` is set (:attr:`entered` tells the window is open)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, closer: MongoStore, appender: MongoStore) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.placed: list[tuple[Any, ...]] = []
        self.armed: tuple[uuid.UUID, uuid.UUID] | None = None
        self.fail_place: BaseException | None = None
        self.second_entered = asyncio.Event()
        self.second_release: asyncio.Event | None = None  # set to hold the second place too
        top, place = closing.top, closing.place

        async def racing_top(store: MongoStore, execution_id: uuid.UUID, session: Any) -> int:
            found = await top(store, execution_id, session)
            if self.armed is not None and store is closer and self.armed[0] == execution_id:
                sender, self.armed = self.armed[1], None
                await appender.messages.append(execution_id, [message(sender, {"race": True})])
            return found

        async def held_place(*args: Any) -> None:
            self.placed.append(args)
            if len(self.placed) == 1:
                self.entered.set()
                await self.release.wait()
                if self.fail_place is not None:
                    raise self.fail_place
            elif len(self.placed) == 2 and self.second_release is not None:
                self.second_entered.set()
                await self.second_release.wait()
            await place(*args)

        monkeypatch.setattr(closing, "top", racing_top)
        monkeypatch.setattr(closing, "place", held_place)

    def arm(self, execution_id: uuid.UUID, sender: uuid.UUID) -> None:
        self.armed = (execution_id, sender)


def _mine(documents: list[dict[str, Any]], execution_id: uuid.UUID) -> list[dict[str, Any]]:
    return [d for d in documents if d["execution_id"] == Binary.from_uuid(execution_id)]


async def _entry(store: MongoStore, execution_id: uuid.UUID) -> dict[str, Any]:
    (entry,) = [d for d in _mine(await _raw(store, "messages"), execution_id) if "closing" in d]
    return entry


async def _check_chain(store: MongoStore, execution_id: uuid.UUID) -> int:
    """Messages 1..N without gaps, as listed, counted and stored (heads chained exactly)."""
    stored = await all_pages(lambda a: store.messages.list(execution_id, limit=500, after=a))
    count = len(stored)
    assert [m.sequence_number for m in stored] == list(range(1, count + 1))
    assert await store.messages.count(execution_id) == count
    heads = sorted(
        (d for d in _mine(await _raw(store, "messages"), execution_id) if "closing" not in d),
        key=lambda d: int(d["first"]),
    )
    expected = 1
    for head in heads:
        assert head["first"] == expected
        expected = int(head["last"]) + 1
    assert expected == count + 1
    return count


async def _check_final(
    store: MongoStore, execution_id: uuid.UUID, appenders: list[MongoStore], sender: uuid.UUID
) -> int:
    """Final: gap-free, the closing entry on top, later appends refused (also with a
    remembered top), nothing written by them."""
    assert (await store.executions.get(execution_id)).is_final
    count = await _check_chain(store, execution_id)
    entry = await _entry(store, execution_id)
    assert entry["first"] == count + 1
    assert entry["closing"] == (await store.executions.get(execution_id)).status.value
    fresh = MongoStore.from_url(with_database(MONGODB_URL, store.database.name))
    try:
        for writer in [*appenders, fresh]:
            with pytest.raises(InvalidTransition):
                await asyncio.wait_for(writer.messages.append(execution_id, [message(sender)]), 10)
    finally:
        await fresh.close()
    assert await _check_chain(store, execution_id) == count
    assert (await _entry(store, execution_id))["first"] == count + 1
    return count


async def _check_deleted(
    store: MongoStore, execution_id: uuid.UUID, appenders: list[MongoStore], sender: uuid.UUID
) -> None:
    """Deleted: only (retired) tombstones left, later appends NotFound, nothing written."""
    fresh = MongoStore.from_url(with_database(MONGODB_URL, store.database.name))
    try:
        for writer in [*appenders, fresh]:
            with pytest.raises(NotFound):
                await asyncio.wait_for(writer.messages.append(execution_id, [message(sender)]), 10)
    finally:
        await fresh.close()
    with pytest.raises(NotFound):
        await store.executions.get(execution_id)
    left = _mine(await _raw(store, "messages"), execution_id)
    assert left
    assert all(d.get("closing") == "deleted" and d["first"] == d["_id"] for d in left)
    assert _mine(await _raw(store, "message_parts"), execution_id) == []
    assert await store.messages.count(execution_id) == 0


async def _setup(store: MongoStore, appenders: list[MongoStore]) -> tuple[World, uuid.UUID, uuid.UUID]:
    """A running execution with 3 messages; each of ``appenders`` remembers the top."""
    world = await World(store).build()
    execution_id, sender = world.execution.id, world.instance.id
    await store.messages.append(execution_id, [message(sender) for _ in range(2)])
    for writer in appenders:
        await writer.messages.append(execution_id, [message(sender)])
    return world, execution_id, sender


async def _completion_held_in_the_window(
    monkeypatch: pytest.MonkeyPatch, store: MongoStore, second: MongoStore
) -> tuple[Probe, uuid.UUID, uuid.UUID, asyncio.Future[None]]:
    """A new execution whose completion by ``store`` is forced onto the unplaced path (the
    race taken by ``second``) and held in the window before ``place``: the probe, the
    execution, its sender, and the completion under way."""
    probe = Probe(monkeypatch, store, second)
    _, execution_id, sender = await _setup(store, [second])
    probe.arm(execution_id, sender)
    closer = asyncio.ensure_future(_complete(store, execution_id))
    await asyncio.wait_for(probe.entered.wait(), 10)
    return probe, execution_id, sender, closer


async def _unplaced_now(store: MongoStore, execution_id: uuid.UUID) -> dict[str, Any]:
    entry = await _entry(store, execution_id)
    assert not isinstance(entry["first"], int)  # the window is really open
    assert isinstance(entry["first"], Binary)  # a token (a takeover keeps the first one's)
    return entry


async def test_appends_in_the_window_wait_then_are_refused_and_nothing_lands_after_final(
    store: MongoStore, others: tuple[MongoStore, MongoStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    second, third = others
    probe, execution_id, sender, closer = await _completion_held_in_the_window(monkeypatch, store, second)
    await _unplaced_now(store, execution_id)
    assert await _check_chain(store, execution_id) == 4  # the racing append landed
    waiting = [
        asyncio.ensure_future(w.messages.append(execution_id, [message(sender)])) for w in (second, third)
    ]
    await asyncio.sleep(0.2)  # well inside PENDING_WAIT: they wait for the transition
    assert not any(w.done() for w in waiting)
    probe.release.set()
    await asyncio.wait_for(closer, 10)
    for waiter in waiting:
        with pytest.raises(InvalidTransition):
            await asyncio.wait_for(waiter, 10)
    assert len(probe.placed) == 1
    assert await _check_final(store, execution_id, [second, third], sender) == 4


async def test_a_window_longer_than_the_pending_wait_is_killed_by_an_append(
    store: MongoStore, others: tuple[MongoStore, MongoStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(closing, "PENDING_WAIT", 0.05)
    second, third = others
    probe, execution_id, sender, closer = await _completion_held_in_the_window(monkeypatch, store, second)
    (killer,) = await asyncio.wait_for(third.messages.append(execution_id, [message(sender)]), 10)
    assert killer.sequence_number == 5
    probe.release.set()
    with pytest.raises(ConcurrencyError):
        await asyncio.wait_for(closer, 10)
    assert (await store.executions.get(execution_id)).status == ExecutionStatus.RUNNING
    assert [d for d in _mine(await _raw(store, "messages"), execution_id) if "closing" in d] == []
    assert await _check_chain(store, execution_id) == 5
    (after,) = await second.messages.append(execution_id, [message(sender)])
    assert after.sequence_number == 6
    await _complete(store, execution_id)  # a retry completes it
    assert await _check_final(store, execution_id, [second, third], sender) == 6


async def test_a_delete_takes_over_the_unplaced_entry_of_a_transition(
    store: MongoStore, others: tuple[MongoStore, MongoStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    second, third = others
    probe, execution_id, sender, closer = await _completion_held_in_the_window(monkeypatch, store, second)
    held = await _unplaced_now(store, execution_id)
    await asyncio.wait_for(third.executions.delete(execution_id), 10)
    assert len(probe.placed) == 2  # the delete placed it itself (not held)
    assert probe.placed[1][3] != held["token"]
    probe.release.set()
    with pytest.raises((ConcurrencyError, NotFound)):
        await asyncio.wait_for(closer, 10)
    await _check_deleted(store, execution_id, [second, third], sender)


async def test_a_delete_forced_unplaced_refuses_appends_and_transitions_in_its_window(
    store: MongoStore, others: tuple[MongoStore, MongoStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    second, third = others
    probe = Probe(monkeypatch, store, second)
    _, execution_id, sender = await _setup(store, [second, third])
    probe.arm(execution_id, sender)
    deleter = asyncio.ensure_future(store.executions.delete(execution_id))
    await asyncio.wait_for(probe.entered.wait(), 10)
    entry = await _unplaced_now(store, execution_id)
    assert entry["closing"] == "deleted"
    for writer in (second, third):
        with pytest.raises(NotFound):
            await asyncio.wait_for(writer.messages.append(execution_id, [message(sender)]), 10)
    with pytest.raises((ConcurrencyError, NotFound)):
        await asyncio.wait_for(_complete(third, execution_id), 10)
    assert await _check_chain(store, execution_id) == 5  # nothing landed in the window
    probe.release.set()
    await asyncio.wait_for(deleter, 10)
    await _check_deleted(store, execution_id, [second, third], sender)


async def test_cancelling_the_closer_in_the_window_still_completes_or_leaves_nothing(
    store: MongoStore, others: tuple[MongoStore, MongoStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    second, third = others
    probe, execution_id, sender, closer = await _completion_held_in_the_window(monkeypatch, store, second)
    closer.cancel()
    await asyncio.sleep(0.05)
    probe.release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(closer, 10)
    # Run to its end (settled): final, entry on top; appends refused at once.
    assert await _check_final(store, execution_id, [second, third], sender) == 4


async def test_a_closer_whose_place_fails_leaves_no_pending_entry_to_wait_for(
    store: MongoStore, others: tuple[MongoStore, MongoStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cut off between the unplaced insert and placing it (the connection lost; the status
    update is never sent): the transition fails, and the entry it leaves must not hold every
    append (and its own retry) for PENDING_WAIT, as a status update cut off does not."""
    monkeypatch.setattr(closing, "PENDING_WAIT", 30.0)
    second, third = others
    probe = Probe(monkeypatch, store, second)
    _, execution_id, sender = await _setup(store, [second])
    probe.arm(execution_id, sender)
    probe.fail_place = StoreUnavailable("connection lost")
    probe.release.set()
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(_complete(store, execution_id), 10)
    assert (await store.executions.get(execution_id)).status == ExecutionStatus.RUNNING
    started = time.monotonic()
    (after,) = await asyncio.wait_for(third.messages.append(execution_id, [message(sender)]), 10)
    assert time.monotonic() - started < 1.0
    assert after.sequence_number == 5
    await asyncio.wait_for(_complete(store, execution_id), 10)  # the retry is not held either
    assert await _check_final(store, execution_id, [second, third], sender) == 5


async def test_a_second_transition_in_the_window_is_refused(
    store: MongoStore, others: tuple[MongoStore, MongoStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    second, third = others
    probe, execution_id, sender, closer = await _completion_held_in_the_window(monkeypatch, store, second)
    rival = asyncio.ensure_future(_fail(third, execution_id))
    await asyncio.sleep(0.2)
    assert not rival.done()  # it waits for the pending entry
    probe.release.set()
    await asyncio.wait_for(closer, 10)
    with pytest.raises((ConcurrencyError, InvalidTransition)):
        await asyncio.wait_for(rival, 10)
    assert (await store.executions.get(execution_id)).status == ExecutionStatus.COMPLETED
    assert await _check_final(store, execution_id, [second, third], sender) == 4


async def test_a_second_transition_outlasting_the_window_kills_the_first(
    store: MongoStore, others: tuple[MongoStore, MongoStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(closing, "PENDING_WAIT", 0.05)
    second, third = others
    probe, execution_id, sender, closer = await _completion_held_in_the_window(monkeypatch, store, second)
    await asyncio.wait_for(_fail(third, execution_id), 10)
    probe.release.set()
    with pytest.raises(ConcurrencyError):
        await asyncio.wait_for(closer, 10)
    assert (await store.executions.get(execution_id)).status == ExecutionStatus.FAILED
    assert await _check_final(store, execution_id, [second, third], sender) == 4


async def test_a_restore_in_the_window_is_chained_below_the_entry(
    store: MongoStore, others: tuple[MongoStore, MongoStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    second, third = others
    probe = Probe(monkeypatch, store, second)
    _, execution_id, sender = await _setup(store, [second])
    template = (await store.messages.list(execution_id, limit=1)).items[0]
    probe.arm(execution_id, sender)
    closer = asyncio.ensure_future(_complete(store, execution_id))
    await asyncio.wait_for(probe.entered.wait(), 10)
    await _unplaced_now(store, execution_id)
    restored = [template.model_copy(update={"id": uuid.uuid4(), "sequence_number": n}) for n in (5, 6)]
    written = await asyncio.wait_for(third.messages.restore_many(restored), 10)
    assert written == 2  # the execution is still running, the entry out of the numbers
    probe.release.set()
    await asyncio.wait_for(closer, 10)
    assert await _check_final(store, execution_id, [second, third], sender) == 4 + written


async def test_a_copy_in_the_window_has_no_entry_and_goes_on_appending(
    store: MongoStore, others: tuple[MongoStore, MongoStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    second, third = others
    probe, execution_id, sender, closer = await _completion_held_in_the_window(monkeypatch, store, second)
    await _unplaced_now(store, execution_id)
    try:
        async with open_store("memory://") as memory:
            await memory.create_schema()
            await copy_store(store, memory)
            assert await memory.messages.count(execution_id) == 4
            assert (await memory.executions.get(execution_id)).status == ExecutionStatus.RUNNING
            back = MongoStore.from_url(with_database(MONGODB_URL, f"qmcp_test_{uuid.uuid4().hex[:10]}"))
            try:
                await back.create_schema()
                await copy_store(memory, back)
                assert [d for d in await _raw(back, "messages") if "closing" in d] == []
                (next_,) = await back.messages.append(execution_id, [message(sender)])
                assert next_.sequence_number == 5
                await _complete(back, execution_id)
                assert await _check_final(back, execution_id, [], sender) == 5
            finally:
                await back.drop_schema()
                await back.close()
    finally:
        probe.release.set()
    await asyncio.wait_for(closer, 10)
    assert await _check_final(store, execution_id, [second, third], sender) == 4


async def test_a_purge_around_the_window(
    store: MongoStore, others: tuple[MongoStore, MongoStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the window the execution is not final yet: a purge leaves it alone; right after,
    the purge deletes it (only tombstones), and appends with remembered tops say NotFound."""
    second, third = others
    probe = Probe(monkeypatch, store, second)
    _, execution_id, sender = await _setup(store, [second])
    later = datetime.now(UTC) + timedelta(days=1)
    probe.arm(execution_id, sender)
    closer = asyncio.ensure_future(_complete(store, execution_id))
    await asyncio.wait_for(probe.entered.wait(), 10)
    assert await asyncio.wait_for(third.executions.purge(older_than=later), 10) == 0
    await _unplaced_now(store, execution_id)
    probe.release.set()
    await asyncio.wait_for(closer, 10)
    await _check_final(store, execution_id, [second], sender)
    assert await asyncio.wait_for(third.executions.purge(older_than=later), 10) == 1
    await _check_deleted(store, execution_id, [second, third], sender)


async def test_an_append_already_under_way_takes_the_place_placing_aims_at(
    store: MongoStore, others: tuple[MongoStore, MongoStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append whose write was sent before the unplaced entry existed lands at the
    position ``place`` has just read (simulated by inserting its head there): placing
    collides, reads the top again and puts the entry above it."""
    second, third = others
    probe = Probe(monkeypatch, store, second)
    _, execution_id, sender = await _setup(store, [second])
    racing_top = closing.top
    heads = store.collection("messages")
    landed: list[int] = []

    async def in_flight_top(target: MongoStore, execution_id_: uuid.UUID, session: Any) -> int:
        found = await racing_top(target, execution_id_, session)
        if probe.release.is_set() and target is store and not landed:
            template = await heads.find_one({"execution_id": execution_id_, "last": found})
            assert template is not None
            head_id = uuid.uuid4()
            item = {**template["items"][0], "id": head_id, "sequence_number": found + 1}
            await heads.insert_one(
                {**template, "_id": head_id, "first": found + 1, "last": found + 1, "items": [item]}
            )
            landed.append(found + 1)
        return found

    monkeypatch.setattr(closing, "top", in_flight_top)
    probe.arm(execution_id, sender)
    closer = asyncio.ensure_future(_complete(store, execution_id))
    await asyncio.wait_for(probe.entered.wait(), 10)
    probe.release.set()
    await asyncio.wait_for(closer, 10)
    assert landed == [5]
    assert await _check_final(store, execution_id, [second, third], sender) == 5


async def test_a_delete_cut_off_before_placing_is_finished_by_the_next_delete(
    store: MongoStore, others: tuple[MongoStore, MongoStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    second, third = others
    probe = Probe(monkeypatch, store, second)
    _, execution_id, sender = await _setup(store, [second])
    probe.arm(execution_id, sender)
    probe.fail_place = StoreUnavailable("connection lost")
    probe.release.set()
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(store.executions.delete(execution_id), 10)
    with pytest.raises(NotFound):  # its entry stands: appends say "deleted" at once
        await asyncio.wait_for(third.messages.append(execution_id, [message(sender)]), 10)
    await asyncio.wait_for(store.executions.delete(execution_id), 10)
    await _check_deleted(store, execution_id, [second, third], sender)


async def test_a_transition_completing_while_the_delete_that_took_over_its_entry_places_it(
    store: MongoStore, others: tuple[MongoStore, MongoStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The transition's entry is taken over by a delete whose own ``place`` is held; the
    transition is released and its status update still matches (the execution is there):
    a final execution whose entry is the delete's, unplaced. Appends and a restore in that
    state, then the delete ends: only tombstones."""
    second, third = others
    probe = Probe(monkeypatch, store, second)
    probe.second_release = asyncio.Event()
    _, execution_id, sender = await _setup(store, [second])
    template = (await store.messages.list(execution_id, limit=1)).items[0]
    probe.arm(execution_id, sender)
    closer = asyncio.ensure_future(_complete(store, execution_id))
    await asyncio.wait_for(probe.entered.wait(), 10)
    deleter = asyncio.ensure_future(third.executions.delete(execution_id))
    await asyncio.wait_for(probe.second_entered.wait(), 10)
    probe.release.set()
    await asyncio.wait_for(closer, 10)  # its status update still matched
    entry = await _unplaced_now(store, execution_id)
    assert entry["closing"] == "deleted"
    assert (await store.executions.get(execution_id)).status == ExecutionStatus.COMPLETED
    for writer in (second, third):
        with pytest.raises((InvalidTransition, NotFound)):
            await asyncio.wait_for(writer.messages.append(execution_id, [message(sender)]), 10)
    assert await _check_chain(store, execution_id) == 4
    restored = [template.model_copy(update={"id": uuid.uuid4(), "sequence_number": 5})]
    assert await asyncio.wait_for(second.messages.restore_many(restored), 10) == 1
    assert await _check_chain(store, execution_id) == 5  # below the entry, placed next
    probe.second_release.set()
    await asyncio.wait_for(deleter, 10)
    await _check_deleted(store, execution_id, [second, third], sender)

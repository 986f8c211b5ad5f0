"""A hostile probe of the SQL store's one-statement fast paths (issue 16): ``record_call``,
the one-statement ``update`` of executions, instances and agent types, ``topologies.find``
and ``agent_instances.add_many``. Each scenario runs on the fast path and, where the answer
is compared, on the checked path too (the fast path switched off): the two must store and
raise the same, refusals must leave the store unchanged, and concurrent writers must keep
the message numbering gap-free and every recorded call all-or-nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text

from qmcp_agents.adapters.sql import SqlStore
from qmcp_agents.adapters.sql import record as sql_record
from qmcp_agents.adapters.sql.repositories import SqlAgentInstances, _Repository
from qmcp_agents.domain import (
    AgentInstance,
    ConcurrencyError,
    MessageCreate,
    MessageType,
    Result,
)
from qmcp_agents.domain.enums import ExecutionStatus
from qmcp_agents.domain.leases import LeaseHold
from qmcp_agents.domain.recording import record_call
from qmcp_agents.testing.builders import World
from qmcp_agents.testing.inspect import dump_store

from .servers import sql_store

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    async with sql_store(request.param, tmp_path) as opened:
        yield opened


@pytest_asyncio.fixture
async def postgres(tmp_path: Path) -> AsyncIterator[SqlStore]:
    async with sql_store("postgresql", tmp_path) as opened:
        yield opened


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Switch every fast path off (the checked path's answer, to compare with)."""

    def off() -> None:
        async def no_update(self: Any, *args: Any, **kwargs: Any) -> None:
            return None

        async def no_add(self: Any, *args: Any) -> bool:
            return False

        async def no_record(*args: Any) -> None:
            return None

        monkeypatch.setattr(_Repository, "_update_in_one", no_update)
        monkeypatch.setattr(SqlAgentInstances, "_added_in_one", no_add)
        monkeypatch.setattr(sql_record, "record_call", no_record)

    return off


async def _outcome(call: Callable[[], Awaitable[Any]]) -> str:
    """``ok`` or the error's type name."""
    try:
        await call()
    except Exception as error:
        return type(error).__name__
    return "ok"


def _response(sender: uuid.UUID, output: Any) -> MessageCreate:
    return MessageCreate(
        sender_id=sender, message_type=MessageType.RESPONSE, content={"call": "c", "output": output}
    )


async def _claimed(store: SqlStore, execution_id: uuid.UUID, owner: str = "w1") -> LeaseHold:
    await store.leases.enqueue(execution_id)
    (lease,) = await store.leases.claim(owner, limit=1, lease_seconds=600)
    assert lease.execution_id == execution_id
    return LeaseHold(execution_id, owner, lease.attempts)


# --- bad values the database itself refuses -------------------------------------------

BAD_VALUES: dict[str, Any] = {
    "nul_character": "a\x00b",
    "lone_surrogate": "\ud800",
    "nan": float("nan"),
    "huge_int": 2**80,
    "big_text": "\u00e9\U0001f600" * 300_000,
    "deep": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
}


@pytest.mark.parametrize("bad", sorted(BAD_VALUES))
async def test_a_record_with_a_value_the_database_refuses_raises_as_the_composed_path_does(
    store: SqlStore, checked: Callable[[], None], bad: str
) -> None:
    world = await World(store).build()
    instance = await store.agent_instances.get(world.instance.id)
    value = BAD_VALUES[bad]

    async def call() -> None:
        read = await store.agent_instances.get(instance.id)
        read.update_state({"calls": {"c": value}})
        await record_call(
            store,
            world.execution.id,
            _response(instance.id, value),
            Result(execution_id=world.execution.id, agent_instance_id=instance.id, output={"v": value}),
            read,
        )

    before = await dump_store(store)
    fast = await _outcome(call)
    after_fast = await dump_store(store)
    checked()
    slow = await _outcome(call)
    after_slow = await dump_store(store)
    assert fast == slow
    if fast != "ok":
        assert after_fast == before
        assert after_slow == before


@pytest.mark.parametrize("bad", sorted(BAD_VALUES))
async def test_an_update_with_a_value_the_database_refuses_raises_as_the_checked_path_does(
    store: SqlStore, checked: Callable[[], None], bad: str
) -> None:
    world = await World(store).build()
    value = BAD_VALUES[bad]

    async def instance_update() -> None:
        read = await store.agent_instances.get(world.instance.id)
        read.update_state({"v": value})
        await store.agent_instances.update(read)

    async def execution_update() -> None:
        read = await store.executions.get(world.execution.id)
        read.metadata = {"v": value}
        await store.executions.update(read)

    before = await dump_store(store)
    fast = [await _outcome(instance_update), await _outcome(execution_update)]
    after_fast = await dump_store(store)
    checked()
    slow = [await _outcome(instance_update), await _outcome(execution_update)]
    assert fast == slow
    if fast == ["ok", "ok"]:
        return
    assert after_fast == before


# --- concurrent writers on the same rows ------------------------------------------------

ALLOWED = {"ConcurrencyError", "InvalidTransition", "NotFound", "LeaseLost", "ok"}
"""What a writer may be told when it loses a race: never a deadlock or a database error."""


async def _record_tagged(
    store: SqlStore, execution_id: uuid.UUID, instance_id: uuid.UUID, tag: str, lease: LeaseHold | None
) -> None:
    read = await store.agent_instances.get(instance_id)
    read.update_state({"calls": {**read.state.get("calls", {}), tag: 1}})
    await record_call(
        store,
        execution_id,
        MessageCreate(sender_id=instance_id, message_type=MessageType.RESPONSE, content={"call": tag}),
        Result(execution_id=execution_id, agent_instance_id=instance_id, output={"tag": tag}),
        read,
        lease,
    )


async def _later(call: Awaitable[Any], delay: float = 0.04) -> Any:
    """``call`` once the writers started with it are under way."""
    await asyncio.sleep(delay)
    return await call


async def _touch_instance(store: SqlStore, instance_id: uuid.UUID, n: int) -> None:
    read = await store.agent_instances.get(instance_id)
    read.metadata = {**read.metadata, f"touch{n}": n}
    await store.agent_instances.update(read)


async def _cancel(store: SqlStore, execution_id: uuid.UUID) -> None:
    read = await store.executions.get(execution_id)
    read.cancel()
    await store.executions.update(read)


async def _consistent(store: SqlStore, execution_id: uuid.UUID, instance_ids: list[uuid.UUID]) -> set[str]:
    """The execution's recorded calls, checked all-or-nothing: each tag's message, result
    and instance state all there; the numbering 1..N gap-free; the counter at N."""
    messages = (await store.messages.list(execution_id, limit=1000)).items
    numbers = [m.sequence_number for m in messages]
    assert numbers == list(range(1, len(messages) + 1)), numbers
    execution = await store.executions.get(execution_id)
    async with store.engine.connect() as conn:
        counter = (
            await conn.execute(
                text(
                    f"SELECT last_sequence_number FROM "
                    f"{store.schema + '.' if store.schema else ''}qmcp_executions WHERE id = :id"
                ),
                {"id": execution_id if store.dialect == "postgresql" else execution_id.hex},
            )
        ).scalar_one()
    assert counter == len(messages)
    by_message = [m.content["call"] for m in messages]
    assert len(set(by_message)) == len(by_message), "a call recorded twice"
    results = (await store.results.list(execution_id=execution_id, limit=1000)).items
    by_result = sorted(r.output["tag"] for r in results)
    by_state: list[str] = []
    for instance_id in instance_ids:
        instance = await store.agent_instances.get(instance_id)
        by_state.extend(instance.state.get("calls", {}))
    assert sorted(by_message) == by_result == sorted(by_state)
    assert execution.revision >= 1
    return set(by_message)


@pytest.mark.parametrize("leased", [False, True])
async def test_many_writers_on_one_execution_keep_every_call_whole(store: SqlStore, leased: bool) -> None:
    world = await World(store).build()
    execution = world.execution
    instances = [world.instance.id] + [(await world.new_instance(execution.id)).id for _ in range(4)]
    lease = await _claimed(store, execution.id) if leased else None
    calls: list[Callable[[], Awaitable[Any]]] = []
    for n in range(36):
        instance_id = instances[n % len(instances)]
        if n % 6 == 5:
            calls.append(partial(_touch_instance, store, instance_id, n))
        else:
            calls.append(partial(_record_tagged, store, execution.id, instance_id, f"t{n}", lease))
    calls.insert(20, partial(_later, _cancel(store, execution.id)))
    outcomes = await asyncio.gather(*(_outcome(c) for c in calls))
    assert set(outcomes) <= ALLOWED, outcomes
    recorded = await _consistent(store, execution.id, instances)
    ok_tags = {f"t{n}" for n, o in enumerate(outcomes[:20] + outcomes[21:]) if o == "ok" and n % 6 != 5}
    assert recorded == ok_tags
    assert (await store.executions.get(execution.id)).status is ExecutionStatus.CANCELLED


async def test_records_racing_a_delete_of_their_execution_leave_nothing_half(store: SqlStore) -> None:
    world = await World(store).build()
    doomed = await world.new_execution()
    kept = world.execution
    doomed_instances = [(await world.new_instance(doomed.id)).id for _ in range(3)]
    kept_instances = [world.instance.id, (await world.new_instance(kept.id)).id]
    calls: list[Callable[[], Awaitable[Any]]] = []
    for n in range(30):
        if n % 2:
            calls.append(partial(_record_tagged, store, doomed.id, doomed_instances[n % 3], f"d{n}", None))
        else:
            calls.append(partial(_record_tagged, store, kept.id, kept_instances[n % 2], f"k{n}", None))
    calls.insert(15, partial(_later, store.executions.delete(doomed.id)))
    calls.insert(25, lambda: _touch_instance(store, doomed_instances[0], 99))
    outcomes = await asyncio.gather(*(_outcome(c) for c in calls))
    assert set(outcomes) <= ALLOWED | {"IntegrityError"}, outcomes
    assert await store.executions.find(doomed.id) is None
    for instance_id in doomed_instances:
        assert await store.agent_instances.find(instance_id) is None
    assert await store.results.count(execution_id=doomed.id) == 0
    await _consistent(store, kept.id, kept_instances)


# --- cancellation at every await point --------------------------------------------------


async def test_a_cancelled_record_is_all_or_nothing(store: SqlStore) -> None:
    world = await World(store).build()
    execution = world.execution
    lease = await _claimed(store, execution.id)
    instances = [world.instance.id]
    for steps in range(40):
        instance_id = instances[steps % len(instances)]
        task = asyncio.ensure_future(_record_tagged(store, execution.id, instance_id, f"c{steps}", lease))
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        outcome = await asyncio.gather(task, return_exceptions=True)
        assert outcome[0] is None or isinstance(outcome[0], asyncio.CancelledError), outcome
        await _consistent(store, execution.id, instances)
    # and the store is still usable afterwards
    await _record_tagged(store, execution.id, world.instance.id, "last", lease)
    assert "last" in await _consistent(store, execution.id, instances)


async def test_a_cancelled_update_is_all_or_nothing(store: SqlStore) -> None:
    world = await World(store).build()
    for steps in range(30):
        read = await store.agent_instances.get(world.instance.id)
        read.metadata = {"steps": steps}
        task = asyncio.ensure_future(store.agent_instances.update(read))
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        stored = await store.agent_instances.get(world.instance.id)
        if stored.revision == read.revision + 1:
            assert stored.metadata == {"steps": steps}
        else:
            assert stored.revision == read.revision
            assert stored.metadata == read.metadata or steps == 0


# --- inside a plain transaction ---------------------------------------------------------


async def test_a_refused_record_in_a_plain_transaction_leaves_it_usable(store: SqlStore) -> None:
    world = await World(store).build()
    execution = world.execution
    instance = await store.agent_instances.get(world.instance.id)
    stale = instance.model_copy()
    bump = instance.model_copy()
    bump.metadata = {"bumped": True}
    await store.agent_instances.update(bump)
    before = await dump_store(store)
    async with store.transaction():
        with pytest.raises(ConcurrencyError):
            await record_call(
                store,
                execution.id,
                _response(instance.id, 1),
                Result(execution_id=execution.id, agent_instance_id=instance.id, output={"a": 1}),
                stale,
            )
        with pytest.raises(ConcurrencyError):
            await store.agent_instances.update(stale)
        fresh = await store.agent_instances.get(instance.id)
        fresh.metadata = {"after": True}
        await store.agent_instances.update(fresh)
        ex = await store.executions.get(execution.id)
        ex.metadata = {"after": True}
        await store.executions.update(ex)
        await record_call(
            store,
            execution.id,
            _response(instance.id, 2),
            Result(execution_id=execution.id, agent_instance_id=instance.id, output={"a": 2}),
            await store.agent_instances.get(instance.id),
        )
    after = await dump_store(store)
    messages = after["messages"]
    assert [m["sequence_number"] for m in messages] == [1]
    assert messages[0]["content"]["output"] == 2
    assert len(after["results"]) == 1
    assert after["results"][0]["output"] == {"a": 2}
    instance_after = await store.agent_instances.get(instance.id)
    assert instance_after.metadata == {"after": True}
    assert instance_after.revision == instance.revision + 3
    assert before["messages"] == []


# --- topologies.find: one joined statement ----------------------------------------------


async def test_a_found_topology_is_what_a_page_of_them_holds(store: SqlStore) -> None:
    from qmcp_agents.domain import Topology, TopologyMembership
    from qmcp_agents.testing.builders import agent_type

    types = [await store.agent_types.add(agent_type(f"a{n}")) for n in range(4)]
    # positions out of insertion order, and ties broken by id
    seats = [(3, "x"), (1, "y"), (1, "z"), (0, "w"), (2, "v")]
    topology = await store.topologies.add(
        Topology(
            name="Mixed",
            description="d",
            topology_type="ensemble",
            memberships=[
                TopologyMembership(agent_type_id=types[k % 4].id, slot_name=slot, position=pos)
                for k, (pos, slot) in enumerate(seats)
            ],
        )
    )
    empty = await store.topologies.add(Topology(name="empty", description="d", topology_type="ensemble"))
    listed = {t.id: t for t in (await store.topologies.list(limit=50)).items}
    for stored in (topology, empty):
        assert stored.id is not None
        found = await store.topologies.find(stored.id)
        assert found == listed[stored.id]
        assert await store.topologies.find_by_name(stored.name.upper()) == found
    assert await store.topologies.find(10**6) is None
    assert await store.topologies.find_by_name("nope") is None
    async with store.transaction():  # the open transaction's rows, on its connection
        renamed = await store.topologies.get(topology.id)  # type: ignore[arg-type]
        renamed.description = "changed"
        await store.topologies.update(renamed)
        assert (await store.topologies.get(topology.id)).description == "changed"  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [2**31, 2**63, -1, 0])
async def test_a_topology_key_out_of_range_is_answered_as_before(store: SqlStore, key: int) -> None:
    await World(store).build()
    found = await _outcome(lambda: store.topologies.find(key))
    by_type = await _outcome(lambda: store.agent_types.find(key))
    assert found == by_type


# --- agent_instances.add_many: one INSERT ... SELECT ------------------------------------


async def test_racing_add_many_of_the_same_ids_refuses_one_as_the_checked_path_does(
    store: SqlStore, checked: Callable[[], None]
) -> None:
    world = await World(store).build()
    type_id = world.agent_type.id
    assert type_id is not None

    async def race() -> list[str]:
        batch = [AgentInstance(agent_type_id=type_id, execution_id=world.execution.id) for _ in range(3)]
        outcomes = await asyncio.gather(
            *(_outcome(lambda: store.agent_instances.add_many(batch)) for _ in range(8))
        )
        assert await store.agent_instances.count(execution_id=world.execution.id) >= 4
        return sorted(outcomes)

    fast = await race()
    checked()
    slow = await race()
    assert fast.count("ok") == slow.count("ok") == 1
    assert fast == slow


async def test_add_many_racing_a_delete_of_its_execution_writes_all_or_nothing(
    store: SqlStore, checked: Callable[[], None]
) -> None:
    world = await World(store).build()
    type_id = world.agent_type.id
    assert type_id is not None

    async def race() -> list[str]:
        target = await world.new_execution()
        batches = [
            [AgentInstance(agent_type_id=type_id, execution_id=target.id) for _ in range(4)] for _ in range(6)
        ]
        calls: list[Callable[[], Awaitable[Any]]] = [
            partial(store.agent_instances.add_many, b) for b in batches
        ]
        calls.insert(3, lambda: store.executions.delete(target.id))
        outcomes = await asyncio.gather(*(_outcome(c) for c in calls))
        assert await store.agent_instances.count(execution_id=target.id) == 0
        return sorted(set(outcomes))

    fast = await race()
    checked()
    slow = await race()
    assert set(fast) <= {"ok", "IntegrityError"}, fast
    assert set(slow) <= {"ok", "IntegrityError"}, slow


# --- rows of an older release, and forged entities --------------------------------------


def _table(store: SqlStore, name: str) -> str:
    return f'"{store.schema}".{name}' if store.schema else name


async def _rows(store: SqlStore, table: str) -> list[Any]:
    async with store.engine.connect() as conn:
        return list((await conn.execute(text(f"SELECT * FROM {_table(store, table)} ORDER BY id"))).all())


@pytest.mark.parametrize("fast", [True, False])
async def test_an_older_releases_rows_are_upcast_and_written_as_the_checked_path_does(
    store: SqlStore, checked: Callable[[], None], fast: bool
) -> None:
    """Run once on each path: the stored rows afterwards must be the same but for times."""
    world = await World(store).build()
    if not fast:
        checked()
    execution = await store.executions.get(world.execution.id)
    instance = await store.agent_instances.get(world.instance.id)
    agent = await store.agent_types.get(world.agent_type.id)  # type: ignore[arg-type]
    async with store.engine.begin() as conn:
        for table in ("qmcp_executions", "qmcp_agent_instances", "qmcp_agent_types"):
            await conn.execute(text(f"UPDATE {_table(store, table)} SET schema_version = 0"))
    execution.metadata = {"m": 1}
    instance.metadata = {"m": 1}
    agent.description = "changed"
    written: list[Any] = [
        await store.executions.update(execution),
        await store.agent_instances.update(instance),
        await store.agent_types.update(agent),
    ]
    assert [w.revision for w in written] == [2, 2, 2]
    for table in ("qmcp_executions", "qmcp_agent_instances", "qmcp_agent_types"):
        (row,) = await _rows(store, table)
        assert row._mapping["schema_version"] == 1
        assert row._mapping["revision"] == 2
    fresh = await store.agent_instances.get(instance.id)
    fresh.update_state({"calls": {"c": 1}})
    async with store.engine.begin() as conn:
        await conn.execute(text(f"UPDATE {_table(store, 'qmcp_agent_instances')} SET schema_version = 0"))
    recorded = await record_call(
        store,
        execution.id,
        _response(instance.id, 1),
        Result(execution_id=execution.id, agent_instance_id=instance.id, output={"a": 1}),
        fresh,
    )
    assert recorded.instance.revision == 3
    assert await store.agent_instances.get(instance.id) == recorded.instance


async def test_a_subclassed_instance_cannot_rebind_on_either_path(
    store: SqlStore, checked: Callable[[], None]
) -> None:
    """``IMMUTABLE`` is looked up by class name: a subclass of ``AgentInstance`` must not
    slip a change of ``execution_id`` past ``update``."""

    class Sneaky(AgentInstance):
        pass

    world = await World(store).build()
    other = await world.new_execution()
    instance = await store.agent_instances.get(world.instance.id)

    async def rebind() -> str:
        read = await store.agent_instances.get(instance.id)
        sneaky = Sneaky.model_validate(read.model_dump())
        sneaky.execution_id = other.id
        return await _outcome(lambda: store.agent_instances.update(sneaky))

    fast = await rebind()
    checked()
    slow = await rebind()
    assert (fast, slow) == ("IntegrityError", "IntegrityError")
    assert (await store.agent_instances.get(instance.id)).execution_id == world.execution.id


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")
async def test_a_forged_revision_or_status_is_refused_or_written_as_on_the_checked_path(
    store: SqlStore, checked: Callable[[], None]
) -> None:
    world = await World(store).build()

    async def forged() -> list[str]:
        outcomes = []
        for name, value in (
            ("revision", True),
            ("revision", 1.0),
            ("revision", "1"),
            ("status", "cancelled"),
        ):
            read = await store.executions.get((await world.new_execution()).id)
            if name == "revision":
                value = type(value)(read.revision) if not isinstance(value, bool) else read.revision == 1
            object.__setattr__(read, name, value)
            outcomes.append(await _outcome(partial(store.executions.update, read)))
        return outcomes

    fast = await forged()
    checked()
    slow = await forged()
    assert fast == slow


async def test_a_subclassed_agent_type_cannot_be_renamed_by_update() -> None:
    from qmcp_agents.domain import AgentType, IntegrityError
    from qmcp_agents.domain.integrity import for_update
    from qmcp_agents.testing.builders import agent_type

    class Renamed(AgentType):
        pass

    stored = agent_type("planner").model_copy(update={"id": 1, "revision": 1})
    renamed = Renamed.model_validate({**stored.model_dump(), "name": "other"})
    with pytest.raises(IntegrityError, match="name cannot change"):
        for_update(stored, renamed)


async def test_records_racing_the_loss_of_their_lease_are_each_whole(store: SqlStore) -> None:
    """The lease is handed back (and claimed by another worker) once some calls were
    recorded: every call is then recorded whole or refused whole."""
    world = await World(store).build()
    execution = world.execution
    instances = [world.instance.id] + [(await world.new_instance(execution.id)).id for _ in range(3)]
    lease = await _claimed(store, execution.id)
    some_recorded = asyncio.Event()

    async def record(n: int) -> None:
        await _record_tagged(store, execution.id, instances[n % 4], f"l{n}", lease)
        some_recorded.set()

    async def lose() -> None:
        await some_recorded.wait()
        assert await store.leases.release(execution.id, "w1", requeue=True, attempt=lease.attempt)
        await store.leases.claim("w2", limit=1, lease_seconds=600)

    calls: list[Callable[[], Awaitable[Any]]] = [partial(record, n) for n in range(24)]
    calls.insert(12, lose)
    outcomes = await asyncio.gather(*(_outcome(c) for c in calls))
    assert set(outcomes) <= ALLOWED, outcomes
    assert outcomes[12] == "ok"
    recorded = await _consistent(store, execution.id, instances)
    assert len(recorded) == outcomes.count("ok") - 1 >= 1
    await _record_tagged(store, execution.id, instances[0], "after", None)
    assert "after" in await _consistent(store, execution.id, instances)


@pytest.mark.parametrize("fast", [True, False])
async def test_an_agent_type_stamped_in_the_future_keeps_its_stamp_on_update(
    store: SqlStore, checked: Callable[[], None], fast: bool
) -> None:
    """Another process's clock ran ahead: ``updated_at`` never goes back (``max``)."""
    from datetime import timedelta

    from qmcp_agents.domain.clock import utc_now

    world = await World(store).build()
    if not fast:
        checked()
    assert world.agent_type.id is not None
    ahead = utc_now() + timedelta(hours=1)
    async with store.engine.begin() as conn:
        from qmcp_agents.adapters.sql import schema

        await conn.execute(schema.agent_types.update().values(updated_at=ahead))
    read = await store.agent_types.get(world.agent_type.id)
    assert read.updated_at == ahead
    read.description = "changed"
    written = await store.agent_types.update(read)
    assert written.updated_at == ahead
    assert await store.agent_types.get(world.agent_type.id) == written


async def test_fast_and_composed_writers_on_the_same_rows_never_deadlock(store: SqlStore) -> None:
    """The one statement takes its locks in the composed path's order: the two mixed, on
    the same execution, instances and lease, only ever wait for each other."""
    from qmcp_agents.domain.recording import record_call_composed

    world = await World(store).build()
    execution = world.execution
    instances = [world.instance.id] + [(await world.new_instance(execution.id)).id for _ in range(2)]
    lease = await _claimed(store, execution.id)

    async def composed(instance_id: uuid.UUID, tag: str) -> None:
        read = await store.agent_instances.get(instance_id)
        read.update_state({"calls": {**read.state.get("calls", {}), tag: 1}})
        await record_call_composed(
            store,
            execution.id,
            MessageCreate(sender_id=instance_id, message_type=MessageType.RESPONSE, content={"call": tag}),
            Result(execution_id=execution.id, agent_instance_id=instance_id, output={"tag": tag}),
            read,
            lease,
        )

    calls: list[Callable[[], Awaitable[Any]]] = []
    for n in range(40):
        instance_id = instances[n % 3]
        if n % 2:
            calls.append(partial(composed, instance_id, f"m{n}"))
        else:
            calls.append(partial(_record_tagged, store, execution.id, instance_id, f"m{n}", lease))
        if n % 10 == 9:
            calls.append(partial(_touch_instance, store, instance_id, n))
    outcomes = await asyncio.gather(*(_outcome(c) for c in calls))
    assert set(outcomes) <= ALLOWED, outcomes
    assert "ok" in outcomes
    await _consistent(store, execution.id, instances)


async def test_add_many_of_unbound_and_bound_instances_is_what_the_checked_path_adds(
    store: SqlStore, checked: Callable[[], None]
) -> None:
    world = await World(store).build()
    type_id = world.agent_type.id
    assert type_id is not None

    async def added() -> list[dict[str, Any]]:
        batch = [
            AgentInstance(agent_type_id=type_id),
            AgentInstance(agent_type_id=type_id, execution_id=world.execution.id, state={"k": "é\u2028😀"}),
            AgentInstance(agent_type_id=type_id, metadata={"n": 2**62}),
        ]
        returned = await store.agent_instances.add_many(batch)
        stored = [await store.agent_instances.get(i.id) for i in batch]
        assert stored == returned
        return [s.model_dump(mode="json", exclude={"id", "created_at"}) for s in stored]

    fast = await added()
    checked()
    assert fast == await added()


async def test_updates_from_one_read_let_exactly_one_through(store: SqlStore) -> None:
    """No lost update: of many writers holding the same revision, one writes and the others
    are told ``ConcurrencyError``, whether they write alone or in a transaction."""
    world = await World(store).build()
    assert world.agent_type.id is not None
    repositories: list[Any] = [store.executions, store.agent_instances, store.agent_types]
    ids: list[Any] = [world.execution.id, world.instance.id, world.agent_type.id]

    async def in_transaction(repository: Any, entity: Any) -> None:
        async with store.transaction():
            await repository.update(entity)

    for repository, key in zip(repositories, ids, strict=True):
        read = await repository.get(key)
        calls: list[Callable[[], Awaitable[Any]]] = []
        for n in range(20):
            entity = read.model_copy(deep=True)
            if repository is store.agent_types:
                entity.description = f"writer {n}"
            else:
                entity.metadata = {"writer": n}
            calls.append(
                partial(in_transaction, repository, entity)
                if n % 3 == 0
                else partial(repository.update, entity)
            )
        outcomes = await asyncio.gather(*(_outcome(c) for c in calls))
        assert outcomes.count("ok") == 1, outcomes
        assert set(outcomes) == {"ConcurrencyError", "ok"}, outcomes
        winner = outcomes.index("ok")
        stored = await repository.get(key)
        assert stored.revision == read.revision + 1
        if repository is store.agent_types:
            assert stored.description == f"writer {winner}"
        else:
            assert stored.metadata == {"writer": winner}


async def test_a_cancelled_whole_transaction_of_fast_writes_is_undone_whole(store: SqlStore) -> None:
    from qmcp_agents.domain.transactions import whole

    world = await World(store).build()
    execution_id, instance_id = world.execution.id, world.instance.id

    async def body(steps: int) -> None:
        async with whole(store):
            execution = await store.executions.get(execution_id)
            execution.metadata = {"steps": steps}
            await store.executions.update(execution)
            await _record_tagged(store, execution_id, instance_id, f"w{steps}", None)
            instance = await store.agent_instances.get(instance_id)
            instance.metadata = {"steps": steps}
            await store.agent_instances.update(instance)

    outcomes: list[bool] = []
    for steps in range(40):
        task = asyncio.ensure_future(body(steps))
        await asyncio.sleep(steps * 0.0005)  # from before the first call to after the commit
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        outcome = "cancelled" if task.cancelled() else repr(task.exception())
        assert outcome in ("cancelled", "None"), outcome
        execution = await store.executions.get(execution_id)
        instance = await store.agent_instances.get(instance_id)
        recorded = await _consistent(store, execution_id, [instance_id])
        # A cancellation during the commit is delivered after it: all written, or nothing.
        done = f"w{steps}" in recorded
        assert done or outcome == "cancelled"
        outcomes.append(done)
        assert (execution.metadata == {"steps": steps}) == done
        assert (instance.metadata == {"steps": steps}) == done
    assert not outcomes[0]  # cancelled before it began
    await body(1000)
    assert "w1000" in await _consistent(store, execution_id, [instance_id])


@pytest.mark.parametrize("bad", ["nul_character", "lone_surrogate", "nan"])
async def test_a_forged_message_the_database_refuses_is_refused_as_on_the_composed_path(
    store: SqlStore, checked: Callable[[], None], bad: str
) -> None:
    """``model_construct`` skips validation: the value reaches the database, whose error
    must come back the same from the one statement and from the composed calls."""
    world = await World(store).build()
    value = BAD_VALUES[bad]

    async def call() -> None:
        read = await store.agent_instances.get(world.instance.id)
        read.update_state({"calls": {"c": 1}})
        forged = MessageCreate.model_construct(
            sender_id=world.instance.id,
            recipient_id=None,
            message_type=MessageType.RESPONSE,
            content={"v": value},
            round_number=0,
        )
        await record_call(
            store,
            world.execution.id,
            forged,
            Result(execution_id=world.execution.id, agent_instance_id=world.instance.id, output={"a": 1}),
            read,
        )

    before = await dump_store(store)
    fast = await _outcome(call)
    assert await dump_store(store) == before
    checked()
    slow = await _outcome(call)
    assert await dump_store(store) == before
    assert fast == slow


async def test_a_stored_row_that_does_not_load_is_replaced_by_a_valid_update(store: SqlStore) -> None:
    """Chosen (docs/decisions.md, "h4: hostile probe"): the one-statement update matches the
    stored row on its id, revision, schema_version and every column ``update`` may not
    change; a mutable column spoiled outside the library (here ``metadata`` a JSON array)
    is replaced by the caller's valid entity, as any update replaces it. The checked path
    (which must load the row to compare) refuses instead; either way nothing invalid is
    written and nothing the update may not change is touched."""
    world = await World(store).build()
    read = await store.agent_instances.get(world.instance.id)
    async with store.engine.begin() as conn:
        await conn.execute(text(f"UPDATE {_table(store, 'qmcp_agent_instances')} SET metadata = '[1, 2]'"))
    read.metadata = {"fixed": True}
    written = await store.agent_instances.update(read)
    assert written.revision == read.revision + 1
    assert await store.agent_instances.get(read.id) == written
    assert written.metadata == {"fixed": True}
    assert (written.execution_id, written.agent_type_id, written.created_at) == (
        read.execution_id,
        read.agent_type_id,
        read.created_at,
    )


async def test_a_childs_records_under_its_parents_lease_racing_the_parents_delete(store: SqlStore) -> None:
    """A compound's child is written under its parent's claim: deleting the parent (which
    takes the child, its instances and the parent's lease with it) waits for the records or
    they find it gone, never a deadlock."""
    world = await World(store).build()
    for round_ in range(6):
        parent = await world.new_execution()
        child = await world.new_execution(parent_id=parent.id)
        instances = [(await world.new_instance(child.id)).id for _ in range(3)]
        lease = await _claimed(store, parent.id)
        calls: list[Callable[[], Awaitable[Any]]] = [
            partial(_record_tagged, store, child.id, instances[n % 3], f"x{n}", lease) for n in range(6)
        ]
        calls.insert(round_, partial(store.executions.delete, parent.id))
        outcomes = await asyncio.gather(*(_outcome(c) for c in calls))
        assert set(outcomes) <= ALLOWED, outcomes
        assert outcomes[round_] == "ok"
        assert await store.executions.find(child.id) is None
        assert await store.leases.find(parent.id) is None
        assert await store.results.count(execution_id=child.id) == 0

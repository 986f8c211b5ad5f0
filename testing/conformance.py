"""Repository behaviour, checked the same way on every backend (API.md §4-§5).

One class of tests; each backend's test module subclasses it and implements
:meth:`StoreConformance.make_store`. Nothing here knows which backend it runs on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, example, given, settings
from pydantic import ValidationError

from qmcp_agents.adapters.transfer import copy_store
from qmcp_agents.domain import (
    AgentConfig,
    AgentInstance,
    AgentRole,
    AgentType,
    AgentTypeCreate,
    AgentTypeUpdate,
    AlreadyExists,
    ConcurrencyError,
    Execution,
    ExecutionCreate,
    ExecutionStatus,
    IntegrityError,
    InvalidTransition,
    Message,
    MessageType,
    NotFound,
    Result,
    TopologyCreate,
    TopologyType,
    TopologyUpdate,
    TransactionRolledBack,
    services,
    uuid7,
)
from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.queries import all_pages
from qmcp_agents.domain.transactions import whole

from .builders import World, agent_type, message, topology
from .conformance_appends import AppendConformance
from .conformance_fenced import FencedConformance
from .conformance_parts import TopologyPartsConformance
from .conformance_reading import ReadingConformance
from .conformance_record import RecordConformance
from .conformance_seating import SeatingConformance
from .conformance_updates import UpdateConformance
from .conformance_whole import WholeConformance
from .hostile import HostileConformance
from .inspect import dump_store
from .lease_conformance import LeaseConformance
from .runner import StoreSession, with_store_session
from .stateful import run_state_machine
from .strategies import json_objects


class StoreConformance(
    HostileConformance,
    TopologyPartsConformance,
    AppendConformance,
    LeaseConformance,
    WholeConformance,
    RecordConformance,
    FencedConformance,
    UpdateConformance,
    ReadingConformance,
    SeatingConformance,
):
    """The conformance suite. Subclass it and implement :meth:`make_store`."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]

    #: How many Hypothesis examples the property and stateful tests run on this backend.
    hypothesis_examples = 60

    def make_store(self) -> AbstractAsyncContextManager[Store]:
        """An async context manager yielding a fresh, empty store with its schema created."""
        raise NotImplementedError

    @pytest_asyncio.fixture
    async def store(self) -> AsyncIterator[Store]:
        async with self.make_store() as store:
            yield store

    @pytest_asyncio.fixture
    async def world(self, store: Store) -> World:
        return await World(store).build()

    # --- agent types ------------------------------------------------------------------

    async def test_add_assigns_id_and_first_revision(self, store: Store) -> None:
        draft = agent_type("Planner")
        stored = await store.agent_types.add(draft)
        assert stored.id is not None
        assert stored.revision == 1
        assert stored.name == "planner"
        assert draft.id is None  # the argument is not changed
        assert draft.revision == 0
        assert await store.agent_types.get(stored.id) == stored
        assert await store.agent_types.get_by_name("PLANNER") == stored
        assert await store.agent_types.find_by_name("nobody") is None
        second = await store.agent_types.add(agent_type("critic"))
        assert second.id != stored.id

    async def test_entities_round_trip_exactly(self, world: World) -> None:
        store = world.store
        rich = agent_type(
            "rich",
            role=AgentRole.SYNTHESIZER,
            version="2.3.4",
            config={
                "temperature": 0.25,
                "system_prompt": "Be exact",
                "capabilities": [{"name": "reasoning", "config": {"max_reasoning_steps": 4}}],
            },
        )
        stored = await store.agent_types.add(rich)
        assert (await store.agent_types.get(stored.id)).model_dump() == stored.model_dump()  # type: ignore[arg-type]
        assert stored.config == rich.config
        assert stored.created_at == rich.created_at
        assert await store.topologies.get(world.topology.id) == world.topology  # type: ignore[arg-type]
        assert await store.executions.get(world.execution.id) == world.execution
        assert await store.agent_instances.get(world.instance.id) == world.instance
        assert world.execution.started_at.tzinfo is UTC

    async def test_get_missing_raises_not_found_and_find_returns_none(self, store: Store) -> None:
        with pytest.raises(NotFound, match="agent type 999"):
            await store.agent_types.get(999)
        assert await store.agent_types.find(999) is None
        with pytest.raises(NotFound, match="missing"):
            await store.topologies.get_by_name("missing")
        ghost = uuid7()
        with pytest.raises(NotFound, match=str(ghost)):
            await store.executions.get(ghost)
        assert await store.executions.find(ghost) is None
        assert await store.agent_instances.find(ghost) is None
        assert await store.results.find(ghost) is None
        assert await store.messages.find(ghost) is None
        with pytest.raises(NotFound):
            await store.messages.get(ghost)

    async def test_duplicate_name_is_refused_and_store_unchanged(self, store: Store) -> None:
        await store.agent_types.add(agent_type("planner"))
        before = await dump_store(store)
        with pytest.raises(AlreadyExists, match="planner"):
            await store.agent_types.add(agent_type("PLANNER"))
        assert await dump_store(store) == before

    async def test_add_of_an_entity_with_an_id_is_refused(self, store: Store) -> None:
        with pytest.raises(IntegrityError, match="already has an id"):
            await store.agent_types.add(agent_type(id=5))
        assert await store.agent_types.count() == 0

    async def test_add_many_is_all_or_nothing(self, store: Store) -> None:
        await store.agent_types.add(agent_type("taken"))
        with pytest.raises(AlreadyExists, match="taken"):
            await store.agent_types.add_many([agent_type("a"), agent_type("b"), agent_type("taken")])
        with pytest.raises(AlreadyExists, match="'c'"):
            await store.agent_types.add_many([agent_type("c"), agent_type("C")])
        assert await store.agent_types.count() == 1
        stored = await store.agent_types.add_many([agent_type(f"n{i}") for i in range(5)])
        assert [t.name for t in stored] == [f"n{i}" for i in range(5)]
        assert len({t.id for t in stored}) == 5
        assert await store.agent_types.add_many([]) == []

    async def test_update_bumps_revision_and_refuses_stale_writes(self, store: Store) -> None:
        stored = await store.agent_types.add(agent_type())
        stored.description = "changed"
        updated = await store.agent_types.update(stored)
        assert updated.revision == 2
        assert updated.description == "changed"
        assert updated.updated_at >= stored.updated_at
        stored.description = "stale"
        with pytest.raises(ConcurrencyError, match="revision 1"):
            await store.agent_types.update(stored)
        assert (await store.agent_types.get(updated.id)).description == "changed"  # type: ignore[arg-type]

    async def test_update_of_missing_entity_raises_not_found(self, store: Store) -> None:
        with pytest.raises(NotFound):
            await store.agent_types.update(agent_type(id=42, revision=1))

    async def test_names_cannot_change(self, store: Store) -> None:
        stored = await store.agent_types.add(agent_type("fixed"))
        stored.name = "other"
        with pytest.raises(IntegrityError, match="name cannot change"):
            await store.agent_types.update(stored)
        assert await store.agent_types.find_by_name("fixed") is not None

    async def test_returned_entities_are_copies(self, store: Store) -> None:
        stored = await store.agent_types.add(agent_type(config={"capabilities": [{"name": "memory"}]}))
        stored.description = "mutated locally"
        stored.config.capabilities[0].name = "y"
        again = await store.agent_types.get(stored.id)  # type: ignore[arg-type]
        assert again.description == "planner agent"
        assert again.config.capabilities[0].name == "memory"

    async def test_agent_type_in_use_cannot_be_deleted(self, world: World) -> None:
        store = world.store
        with pytest.raises(IntegrityError, match="in use"):
            await store.agent_types.delete(world.agent_type.id)  # type: ignore[arg-type]
        spare = await store.agent_types.add(agent_type("spare"))
        await store.agent_types.delete(spare.id)  # type: ignore[arg-type]
        assert await store.agent_types.find(spare.id) is None  # type: ignore[arg-type]
        with pytest.raises(NotFound):
            await store.agent_types.delete(spare.id)  # type: ignore[arg-type]

    async def test_list_filters_and_pages_through_many(self, store: Store) -> None:
        roles = [AgentRole.PLANNER, AgentRole.CRITIC, AgentRole.REVIEWER]
        made = await store.agent_types.add_many(
            [agent_type(f"t{i:03d}", role=roles[i % 3]) for i in range(57)]
        )
        everything = await all_pages(lambda a: store.agent_types.list(limit=7, after=a))
        assert [t.id for t in everything] == [t.id for t in made]
        critics = await all_pages(lambda a: store.agent_types.list(role=AgentRole.CRITIC, limit=4, after=a))
        assert [t.name for t in critics] == [t.name for t in made if t.role is AgentRole.CRITIC]
        assert await store.agent_types.count(role=AgentRole.CRITIC) == 19
        assert await store.agent_types.count() == 57
        exact = await store.agent_types.list(role=AgentRole.PLANNER, limit=19)
        assert len(exact.items) == 19
        assert exact.next_cursor is None
        with pytest.raises(ValueError, match="limit"):
            await store.agent_types.list(limit=0)
        with pytest.raises(ValueError, match="cursor"):
            await store.agent_types.list(after="not-a-cursor")

    # --- topologies ---------------------------------------------------------------------

    async def test_topology_is_saved_and_loaded_with_its_memberships(self, store: Store) -> None:
        a, b = await store.agent_types.add_many([agent_type("a"), agent_type("b")])
        draft = topology("duo", members=[a, b], slots=["first", "second"])
        draft.memberships[1].config_overrides = {"temperature": 0.1}
        stored = await store.topologies.add(draft)
        assert stored.id is not None
        assert [m.slot_name for m in stored.memberships] == ["first", "second"]
        assert all(m.topology_id == stored.id and m.id is not None for m in stored.memberships)
        assert stored.memberships[1].config_overrides == {"temperature": 0.1}
        assert draft.memberships[0].topology_id is None
        loaded = await store.topologies.get_by_name("DUO")
        assert loaded == stored
        loaded.memberships = loaded.memberships[:1]
        trimmed = await store.topologies.update(loaded)
        assert [m.slot_name for m in (await store.topologies.get(stored.id)).memberships] == ["first"]
        assert trimmed.revision == 2

    @pytest.mark.parametrize(
        ("kind", "config", "slots", "match"),
        [
            (TopologyType.DEBATE, {"mediator_agent_name": "judge"}, None, "mediator_agent_name 'judge'"),
            (TopologyType.DELEGATION, {"fallback_agent_name": "judge"}, None, "fallback_agent_name 'judge'"),
            (TopologyType.CROSS_CHECK, {"num_checkers": 3}, None, "num_checkers is 3"),
            (TopologyType.PIPELINE, {"stages": ["draft", "edit"]}, ["draft", "other"], r"stages \['edit'\]"),
            (TopologyType.COMPOUND, {"sub_topologies": ["ghost"]}, None, "'ghost', which does not exist"),
        ],
    )
    async def test_topology_rules_are_checked_on_save(
        self, store: Store, kind: TopologyType, config: dict[str, Any], slots: list[str] | None, match: str
    ) -> None:
        a, b = await store.agent_types.add_many([agent_type("a"), agent_type("b")])
        with pytest.raises(IntegrityError, match=match):
            await store.topologies.add(
                topology("t", members=[a, b], topology_type=kind, config=config, slots=slots)
            )
        assert await store.topologies.count() == 0

    async def test_topology_rules_accept_valid_shapes(self, store: Store) -> None:
        a, b = await store.agent_types.add_many([agent_type("a"), agent_type("b")])
        await store.topologies.add(
            topology("d", [a, b], TopologyType.DEBATE, {"mediator_agent_name": "A", "max_rounds": 2})
        )
        await store.topologies.add(
            topology("p", [a, b], TopologyType.PIPELINE, {"stages": ["s1", "s2"]}, slots=["s1", "s2"])
        )
        await store.topologies.add(topology("x", [a, b], TopologyType.CROSS_CHECK, {"num_checkers": 2}))
        nested = await store.topologies.add(
            topology("c", [], TopologyType.COMPOUND, {"sub_topologies": ["d", "p"]})
        )
        assert nested.config == {"sub_topologies": ["d", "p"]}
        assert await store.topologies.count(topology_type=TopologyType.PIPELINE) == 1

    async def test_compound_nesting_must_be_acyclic(self, store: Store) -> None:
        await store.topologies.add(topology("leaf", [], TopologyType.COMPOUND))
        await store.topologies.add(topology("mid", [], TopologyType.COMPOUND, {"sub_topologies": ["leaf"]}))
        await store.topologies.add(topology("top", [], TopologyType.COMPOUND, {"sub_topologies": ["mid"]}))
        leaf = await store.topologies.get_by_name("leaf")
        leaf.config = {"sub_topologies": ["top"]}
        with pytest.raises(IntegrityError, match="cycle: leaf -> top -> mid -> leaf"):
            await store.topologies.update(leaf)
        assert (await store.topologies.get_by_name("leaf")).config == {}

    async def test_membership_of_a_missing_agent_type_is_refused(self, store: Store) -> None:
        ghost = agent_type("ghost", id=404)
        with pytest.raises(IntegrityError, match="404"):
            await store.topologies.add(topology("t", members=[ghost]))

    async def test_topology_with_executions_or_parents_cannot_be_deleted(self, world: World) -> None:
        store = world.store
        with pytest.raises(IntegrityError, match="1 execution"):
            await store.topologies.delete(world.topology.id)  # type: ignore[arg-type]
        child = await store.topologies.add(topology("child", []))
        await store.topologies.add(
            topology("parent", [], TopologyType.COMPOUND, {"sub_topologies": ["child"]})
        )
        with pytest.raises(IntegrityError, match="parent"):
            await store.topologies.delete(child.id)  # type: ignore[arg-type]
        lonely = await store.topologies.add(topology("lonely", [world.agent_type]))
        await store.topologies.delete(lonely.id)  # type: ignore[arg-type]
        assert await store.topologies.find_by_name("lonely") is None

    # --- agent instances -------------------------------------------------------------

    async def test_instance_references_must_exist(self, world: World) -> None:
        store = world.store
        with pytest.raises(IntegrityError, match="agent_type_id 999"):
            await store.agent_instances.add(AgentInstance(agent_type_id=999))
        ghost = uuid7()
        with pytest.raises(IntegrityError, match=f"execution_id {ghost}"):
            await store.agent_instances.add(
                AgentInstance(agent_type_id=world.agent_type.id, execution_id=ghost)
            )
        with pytest.raises(AlreadyExists):
            await store.agent_instances.add(world.instance)

    async def test_instance_state_updates(self, world: World) -> None:
        instance = await world.store.agent_instances.get(world.instance.id)
        instance.update_state({"memory": ["a", "b"], "$set": {"a.b": 1}})
        stored = await world.store.agent_instances.update(instance)
        again = await world.store.agent_instances.get(instance.id)
        assert again == stored
        assert again.state == {"memory": ["a", "b"], "$set": {"a.b": 1}}
        assert again.last_active == instance.last_active
        assert await world.store.agent_instances.count(execution_id=world.execution.id) == 1
        unbound = await world.new_instance()
        page = await world.store.agent_instances.list(agent_type_id=world.agent_type.id)
        assert {i.id for i in page.items} == {world.instance.id, unbound.id}

    async def test_referenced_instance_cannot_be_deleted(self, world: World) -> None:
        await world.store.messages.append(world.execution.id, [message(world.instance.id)])
        with pytest.raises(IntegrityError, match="1 message"):
            await world.store.agent_instances.delete(world.instance.id)
        spare = await world.new_instance()
        await world.store.agent_instances.delete(spare.id)
        assert await world.store.agent_instances.find(spare.id) is None

    # --- executions ----------------------------------------------------------------------

    async def test_execution_needs_its_topology(self, store: Store) -> None:
        with pytest.raises(IntegrityError, match="topology_id 77"):
            await store.executions.add(Execution(topology_id=77, input_data={}))
        assert await store.executions.count() == 0

    async def test_status_moves_are_checked_by_the_store(self, world: World) -> None:
        store = world.store
        execution = await store.executions.get(world.execution.id)
        execution.pause()
        paused = await store.executions.update(execution)
        assert paused.status is ExecutionStatus.PAUSED
        paused.resume()
        paused.mark_complete({"answer": 42})  # two moves between saves are fine
        done = await store.executions.update(paused)
        assert done.status is ExecutionStatus.COMPLETED
        assert done.duration_ms is not None
        loaded = await store.executions.get(done.id)
        assert loaded.completed_at == done.completed_at
        assert loaded.output_data == {"answer": 42}
        # Bypass the methods: build a running copy of the completed execution directly.
        forged = Execution.model_validate({**loaded.model_dump(), "status": "running", "completed_at": None})
        with pytest.raises(InvalidTransition, match="'completed' to 'running'"):
            await store.executions.update(forged)
        running = await world.new_execution()
        pending = Execution.model_validate({**running.model_dump(), "status": "pending"})
        with pytest.raises(InvalidTransition, match="'running' to 'pending'"):
            await store.executions.update(pending)
        assert (await store.executions.get(done.id)).status is ExecutionStatus.COMPLETED
        assert (await store.executions.get(running.id)).status is ExecutionStatus.RUNNING

    async def test_execution_topology_cannot_change(self, world: World) -> None:
        other = await world.store.topologies.add(topology("other", [world.agent_type]))
        execution = await world.store.executions.get(world.execution.id)
        forged = Execution.model_validate({**execution.model_dump(), "topology_id": other.id})
        with pytest.raises(IntegrityError, match="topology_id cannot change"):
            await world.store.executions.update(forged)

    async def test_deleting_an_execution_deletes_what_it_owns(self, world: World) -> None:
        store = world.store
        await store.messages.append(world.execution.id, [message(world.instance.id) for _ in range(3)])
        await store.results.add(world.result())
        child = await world.new_execution(parent_id=world.execution.id)
        child_instance = await world.new_instance(child.id)
        await store.messages.append(child.id, [message(child_instance.id)])
        unbound = await world.new_instance()
        survivor = await world.new_execution()
        await store.executions.delete(world.execution.id)
        assert await store.executions.find(world.execution.id) is None
        assert await store.executions.find(child.id) is None
        assert await store.messages.count() == 0
        assert await store.results.count() == 0
        assert {i.id for i in (await store.agent_instances.list()).items} == {unbound.id}
        assert await store.executions.find(survivor.id) is not None
        with pytest.raises(NotFound):
            await store.executions.delete(world.execution.id)

    async def test_execution_filters(self, world: World) -> None:
        store = world.store
        second_topology = await store.topologies.add(topology("second", [world.agent_type]))
        pending = await store.executions.add(
            Execution(topology_id=second_topology.id, input_data={}, correlation_id="req-7")
        )
        child = await world.new_execution(parent_id=world.execution.id)
        assert {e.id for e in (await store.executions.list(status=ExecutionStatus.PENDING)).items} == {
            pending.id
        }
        assert await store.executions.count(status=ExecutionStatus.RUNNING) == 2
        assert await store.executions.count(topology_id=second_topology.id) == 1
        assert [e.id for e in (await store.executions.list(correlation_id="req-7")).items] == [pending.id]
        assert [e.id for e in (await store.executions.list(parent_id=world.execution.id)).items] == [child.id]
        cut = world.execution.started_at + timedelta(milliseconds=1)
        early = {e.id for e in (await store.executions.list(started_before=cut)).items}
        late = {e.id for e in (await store.executions.list(started_after=cut)).items}
        assert world.execution.id in early
        assert early.isdisjoint(late)
        assert early | late == {world.execution.id, pending.id, child.id}

    async def test_purge_deletes_old_final_executions_only(self, world: World) -> None:
        store = world.store
        old = datetime(2020, 1, 1, tzinfo=UTC)
        finished = []
        for i in range(7):
            execution = Execution(topology_id=world.topology.id, input_data={"i": i}, started_at=old)
            execution.cancel() if i % 2 else execution.mark_failed("x")
            finished.append(await store.executions.add(execution))
        instance = await world.new_instance(finished[0].id)
        assert instance.execution_id == finished[0].id
        await store.messages.append(world.execution.id, [message(world.instance.id)])
        with pytest.raises(ValidationError, match="only final"):
            await store.executions.purge(older_than=old, statuses=frozenset({ExecutionStatus.RUNNING}))
        cutoff = datetime.now(UTC) + timedelta(minutes=1)
        only_cancelled = await store.executions.purge(
            older_than=cutoff, statuses=frozenset({ExecutionStatus.CANCELLED}), batch_size=2
        )
        assert only_cancelled == 3
        assert await store.executions.purge(older_than=cutoff, batch_size=2) == 4
        assert await store.agent_instances.find(instance.id) is None
        assert await store.executions.count() == 1  # the running one stays, with its message
        assert await store.messages.count(world.execution.id) == 1

    # --- messages -----------------------------------------------------------------------

    async def test_append_numbers_messages_without_gaps(self, world: World) -> None:
        store = world.store
        first = await store.messages.append(
            world.execution.id, [message(world.instance.id) for _ in range(3)]
        )
        assert [m.sequence_number for m in first] == [1, 2, 3]
        assert all(m.execution_id == world.execution.id and m.revision == 1 for m in first)
        second = await store.messages.append(
            world.execution.id,
            [
                message(
                    world.instance.id,
                    round_number=1,
                    message_type=MessageType.REQUEST,
                    recipient_id=world.instance.id,
                )
            ],
        )
        assert second[0].sequence_number == 4
        assert await store.messages.get(second[0].id) == second[0]
        assert await store.messages.count(world.execution.id) == 4
        other = await world.new_execution()
        roaming = await world.new_instance()  # unbound instances may speak in any execution
        assert [m.sequence_number for m in await store.messages.append(other.id, [message(roaming.id)])] == [
            1
        ]
        assert await store.messages.count() == 5
        assert await store.messages.append(world.execution.id, []) == []

    async def test_large_batches_are_stored_exactly(self, world: World) -> None:
        store = world.store
        other = await world.new_instance(world.execution.id)
        drafts = [
            message(
                world.instance.id if i % 2 else other.id,
                {
                    "i": i,
                    "f": 1e16 + i,
                    "tiny": 5e-324 * (i + 1),
                    "s": "\u00e9\U0001f600",
                    "$k": {"a.b": [i, None]},
                },
                round_number=i // 100,
                recipient_id=other.id if i % 3 == 0 else None,
                message_type=MessageType.REQUEST if i % 3 == 0 else MessageType.BROADCAST,
            )
            for i in range(500)
        ]
        appended = await store.messages.append(world.execution.id, drafts)
        assert [m.sequence_number for m in appended] == list(range(1, 501))
        stored = await all_pages(lambda a: store.messages.list(world.execution.id, limit=200, after=a))
        assert stored == appended
        assert [m.content for m in stored] == [d.content for d in drafts]
        assert isinstance(stored[0].content["f"], float)
        assert stored[0].created_at.tzinfo is UTC

    async def test_append_refusals_leave_the_store_unchanged(self, world: World) -> None:
        store = world.store
        await store.messages.append(world.execution.id, [message(world.instance.id)])
        other = await world.new_execution()
        foreign = await world.new_instance(other.id)
        before = await dump_store(store)
        ghost = uuid7()
        with pytest.raises(NotFound, match=str(ghost)):
            await store.messages.append(ghost, [message(world.instance.id)])
        with pytest.raises(IntegrityError, match=f"sender_id {ghost}"):
            await store.messages.append(world.execution.id, [message(world.instance.id), message(ghost)])
        with pytest.raises(IntegrityError, match=f"recipient_id {ghost}"):
            await store.messages.append(
                world.execution.id,
                [message(world.instance.id, recipient_id=ghost, message_type=MessageType.REQUEST)],
            )
        with pytest.raises(IntegrityError, match="belongs to execution"):
            await store.messages.append(world.execution.id, [message(foreign.id)])
        with pytest.raises(ValidationError, match="content"):
            await store.messages.append(
                world.execution.id,
                [
                    message(world.instance.id),
                    {"sender_id": world.instance.id, "message_type": "system", "content": 1},  # type: ignore[list-item]
                ],
            )
        assert await dump_store(store) == before

    async def test_final_executions_take_no_messages_or_results(self, world: World) -> None:
        store = world.store
        execution = await store.executions.get(world.execution.id)
        execution.mark_complete({"done": True})
        await store.executions.update(execution)
        with pytest.raises(InvalidTransition, match="completed"):
            await store.messages.append(execution.id, [message(world.instance.id)])
        with pytest.raises(InvalidTransition, match="completed"):
            await store.results.add(world.result())
        assert await store.messages.count(execution.id) == 0

    async def test_message_pages_filters_and_last(self, world: World) -> None:
        store = world.store
        other = await world.new_instance(world.execution.id)
        drafts = [
            message(world.instance.id if i % 3 else other.id, {"i": i}, round_number=i // 10)
            for i in range(45)
        ]
        for start in range(0, 45, 9):
            await store.messages.append(world.execution.id, drafts[start : start + 9])
        pages = []
        after = None
        while True:
            page = await store.messages.list(world.execution.id, limit=10, after=after)
            pages.append(page.items)
            if page.next_cursor is None:
                break
            after = page.next_cursor
        assert [len(p) for p in pages] == [10, 10, 10, 10, 5]
        assert [m.sequence_number for p in pages for m in p] == list(range(1, 46))
        assert [m.content["i"] for p in pages for m in p] == list(range(45))
        round_two = await all_pages(
            lambda a: store.messages.list(world.execution.id, round_number=2, limit=3, after=a)
        )
        assert [m.content["i"] for m in round_two] == list(range(20, 30))
        by_other = await all_pages(
            lambda a: store.messages.list(world.execution.id, sender_id=other.id, limit=4, after=a)
        )
        assert [m.content["i"] for m in by_other] == list(range(0, 45, 3))
        both = await store.messages.list(world.execution.id, sender_id=other.id, round_number=1, limit=50)
        assert [m.content["i"] for m in both.items] == [12, 15, 18]
        assert [m.sequence_number for m in await store.messages.last(world.execution.id, 5)] == [
            41,
            42,
            43,
            44,
            45,
        ]
        assert len(await store.messages.last(world.execution.id, 100)) == 45
        with pytest.raises(ValueError, match="n must be"):
            await store.messages.last(world.execution.id, 0)
        assert (await store.messages.list(uuid7())).items == []

    async def test_concurrent_appends_have_no_gaps_or_duplicates(self, world: World) -> None:
        store = world.store

        async def writer(task: int) -> list[int]:
            numbers: list[int] = []
            for batch in range(5):
                drafts = [
                    message(world.instance.id, {"task": task, "batch": batch, "k": k}) for k in range(5)
                ]
                numbers.extend(
                    m.sequence_number for m in await store.messages.append(world.execution.id, drafts)
                )
            return numbers

        results = await asyncio.gather(*(writer(t) for t in range(16)))
        numbers = sorted(n for r in results for n in r)
        assert numbers == list(range(1, 16 * 25 + 1))
        stored = await all_pages(lambda a: store.messages.list(world.execution.id, limit=100, after=a))
        assert [m.sequence_number for m in stored] == numbers
        assert len({(m.content["task"], m.content["batch"], m.content["k"]) for m in stored}) == 400
        for task_numbers in results:  # each batch got a contiguous block
            for start in range(0, 25, 5):
                block = task_numbers[start : start + 5]
                assert block == list(range(block[0], block[0] + 5))

    async def test_concurrent_updates_one_wins(self, world: World) -> None:
        store = world.store
        first = await store.agent_instances.get(world.instance.id)
        second = await store.agent_instances.get(world.instance.id)
        first.update_state({"writer": "first"})
        second.update_state({"writer": "second"})
        outcomes = await asyncio.gather(
            store.agent_instances.update(first), store.agent_instances.update(second), return_exceptions=True
        )
        winners = [o for o in outcomes if isinstance(o, AgentInstance)]
        losers = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(winners) == 1
        assert len(losers) == 1
        assert isinstance(losers[0], ConcurrencyError)
        stored = await store.agent_instances.get(world.instance.id)
        assert stored.state == winners[0].state
        assert stored.revision == 2

    # --- results ------------------------------------------------------------------------

    async def test_results_are_stored_listed_updated_and_deleted(self, world: World) -> None:
        store = world.store
        result = await store.results.add(
            world.result(confidence=0.75, reasoning="because", token_usage={"input": 10, "output": 5})
        )
        assert await store.results.get(result.id) == result
        with pytest.raises(IntegrityError, match="agent_instance_id"):
            await store.results.add(world.result(agent_instance_id=uuid7()))
        with pytest.raises(IntegrityError, match="execution_id"):
            await store.results.add(world.result(execution_id=uuid7()))
        elsewhere = await world.new_execution()
        with pytest.raises(IntegrityError, match="belongs to execution"):
            await store.results.add(world.result(execution_id=elsewhere.id))
        other = await world.new_instance(world.execution.id)
        await store.results.add_many([world.result(agent_instance_id=other.id) for _ in range(3)])
        assert await store.results.count(execution_id=world.execution.id) == 4
        assert await store.results.count(agent_instance_id=other.id) == 3
        listed = await all_pages(
            lambda a: store.results.list(execution_id=world.execution.id, limit=3, after=a)
        )
        assert len(listed) == 4
        result.confidence = 0.9
        updated = await store.results.update(result)
        assert updated.revision == 2
        assert (await store.results.get(result.id)).confidence == 0.9
        await store.results.delete(result.id)
        assert await store.results.find(result.id) is None
        with pytest.raises(NotFound):
            await store.results.delete(result.id)

    # --- transactions -------------------------------------------------------------------

    async def test_transaction_rolls_back_everything_on_error(self, world: World) -> None:
        store = world.store
        before = await dump_store(store)
        with pytest.raises(RuntimeError, match="abort"):
            async with store.transaction():
                await store.agent_types.add(agent_type("inside"))
                await store.messages.append(world.execution.id, [message(world.instance.id)])
                execution = await store.executions.get(world.execution.id)
                execution.cancel()
                await store.executions.update(execution)
                raise RuntimeError("abort")
        if not store.capabilities.transactions:  # documented: the calls ran one by one
            assert await store.agent_types.find_by_name("inside") is not None
            assert (await store.executions.get(world.execution.id)).status is ExecutionStatus.CANCELLED
            assert await store.messages.count(world.execution.id) == 1
            return
        assert await dump_store(store) == before
        async with store.transaction():
            await store.agent_types.add(agent_type("kept"))
            appended = await store.messages.append(world.execution.id, [message(world.instance.id)])
        assert await store.agent_types.find_by_name("kept") is not None
        assert appended[0].sequence_number == 1

    async def test_whole_transaction_rolls_back_everything_on_error(self, world: World) -> None:
        """The engine's transactions (``domain.transactions.whole``): the per-turn writes,
        made first (PostgreSQL sends them to the driver directly), are undone with the rest."""
        store = world.store
        before = await dump_store(store)
        with pytest.raises(RuntimeError, match="abort"):
            async with whole(store):
                await store.messages.append(world.execution.id, [message(world.instance.id)])
                await store.results.add(world.result())
                instance = await store.agent_instances.get(world.instance.id)
                instance.update_state({"calls": {"c": 1}})
                await store.agent_instances.update(instance)
                raise RuntimeError("abort")
        if not store.capabilities.transactions:  # documented: the calls ran one by one
            assert await store.messages.count(world.execution.id) == 1
            return
        assert await dump_store(store) == before
        async with whole(store):
            appended = await store.messages.append(world.execution.id, [message(world.instance.id)])
            await store.results.add(world.result())
        assert appended[0].sequence_number == 1
        assert await store.results.count(execution_id=world.execution.id) == 1

    async def test_whole_transaction_refusals_are_the_usual_ones(self, world: World) -> None:
        store = world.store
        other = await world.new_execution()
        stranger = await world.new_instance(other.id)
        before = await dump_store(store)
        with pytest.raises(IntegrityError, match=f"agent_instance_id {stranger.id} belongs to execution"):
            async with whole(store):
                await store.results.add(world.result(agent_instance_id=stranger.id))
        with pytest.raises(IntegrityError, match=f"sender_id {stranger.id} belongs to execution"):
            async with whole(store):
                await store.messages.append(world.execution.id, [message(stranger.id)])
        assert await dump_store(store) == before

    async def test_add_many_instances_refuses_the_first_bad_one_and_writes_nothing(
        self, world: World
    ) -> None:
        store = world.store
        assert world.agent_type.id is not None
        good = AgentInstance(agent_type_id=world.agent_type.id, execution_id=world.execution.id)
        no_type = AgentInstance(agent_type_id=world.agent_type.id + 999, execution_id=world.execution.id)
        taken = AgentInstance(id=world.instance.id, agent_type_id=world.agent_type.id)
        before = await dump_store(store)
        with pytest.raises(IntegrityError, match=f"agent_type_id {world.agent_type.id + 999} does not exist"):
            await store.agent_instances.add_many([good, no_type, taken])
        with pytest.raises(AlreadyExists, match=f"agent instance {world.instance.id} already exists"):
            await store.agent_instances.add_many([good, taken, no_type])
        with pytest.raises(AlreadyExists, match=f"agent instance {good.id} already exists"):
            await store.agent_instances.add_many([good, good])
        assert await dump_store(store) == before
        added = await store.agent_instances.add_many([good])
        assert [i.id for i in added] == [good.id]
        assert added[0].revision == 1

    async def test_nested_transaction_is_a_savepoint_or_dooms_the_whole(self, store: Store) -> None:

        async def work() -> None:
            async with store.transaction():
                await store.agent_types.add(agent_type("outer"))
                with pytest.raises(RuntimeError):
                    async with store.transaction():
                        await store.agent_types.add(agent_type("inner"))
                        raise RuntimeError("inner only")
                await store.agent_types.add(agent_type("after"))

        if not store.capabilities.transactions:  # documented: the calls run one by one
            await work()
            expected = {"outer", "inner", "after"}
        elif store.capabilities.savepoints:
            await work()
            expected = {"outer", "after"}
        else:
            with pytest.raises(TransactionRolledBack):
                await work()
            expected = set()
        names = {t.name for t in (await store.agent_types.list()).items}
        assert names == expected

    async def test_store_errors_surface_inside_transactions(self, store: Store) -> None:
        await store.agent_types.add(agent_type("dup"))
        with pytest.raises(AlreadyExists):
            async with store.transaction():
                await store.agent_types.add(agent_type("fresh"))
                await store.agent_types.add(agent_type("dup"))
        # Without transactions (documented) the first call stands.
        kept = not store.capabilities.transactions
        assert (await store.agent_types.find_by_name("fresh") is not None) is kept

    # --- bad input -----------------------------------------------------------------------

    async def test_entities_that_bypassed_validation_are_refused(self, world: World) -> None:
        store = world.store
        before = await dump_store(store)
        forged_type = AgentType.model_construct(
            name="BAD NAME", description="d", role=AgentRole.PLANNER, config=agent_type().config
        )
        with pytest.raises(ValidationError, match="name"):
            await store.agent_types.add(forged_type)
        forged_result = Result.model_construct(
            id=uuid7(),
            execution_id=world.execution.id,
            agent_instance_id=world.instance.id,
            output={"x": float("nan")},
            confidence=None,
            reasoning=None,
            token_usage=None,
            started_at=datetime.now(UTC),
            completed_at=None,
            revision=0,
        )
        with pytest.raises(ValidationError, match="output"):
            await store.results.add(forged_result)
        instance = await store.agent_instances.get(world.instance.id)
        instance.state["bad"] = {1, 2}  # mutated in place, behind Pydantic's back
        with pytest.raises(ValidationError, match="state"):
            await store.agent_instances.update(instance)
        assert await dump_store(store) == before

    # --- schema --------------------------------------------------------------------------

    async def test_create_schema_is_idempotent(self, world: World) -> None:
        before = await dump_store(world.store)
        await world.store.create_schema()
        await world.store.create_schema()
        assert await dump_store(world.store) == before
        assert isinstance(world.store.capabilities.transactions, bool)

    # --- restore and copy between stores --------------------------------------------------

    async def test_copy_restores_everything_exactly_and_can_be_rerun(self, world: World) -> None:
        store = world.store
        await store.messages.append(
            world.execution.id, [message(world.instance.id, {"i": i}) for i in range(3)]
        )
        await asyncio.sleep(0.003)  # a later append has a later created_at, which must survive too
        await store.messages.append(  # copied in batches of 2, so one batch spans both appends
            world.execution.id, [message(world.instance.id, {"j": j}, round_number=1) for j in range(2)]
        )
        await store.results.add(world.result(confidence=0.5, token_usage={"in": 1}))
        child = await world.new_execution(parent_id=world.execution.id)
        done = await store.executions.get(world.execution.id)
        done.mark_complete({"ok": True})
        await store.executions.update(done)
        await store.agent_instances.update(
            (await store.agent_instances.get(world.instance.id)).model_copy(
                update={"state": {"$set": {"a.b": 1}}}
            )
        )
        await store.topologies.add(topology("nest", [], TopologyType.COMPOUND, {"sub_topologies": ["team"]}))
        source = await dump_store(store)
        async with self.make_store() as target:
            summary = await copy_store(store, target, batch_size=2)
            assert summary.written == summary.counts
            assert summary.counts["message"] == 5
            assert await dump_store(target) == source
            again = await copy_store(store, target)
            assert sum(again.written.values()) == 0
            assert await dump_store(target) == source
            newcomer = await target.agent_types.add(agent_type("newcomer"))
            assert newcomer.id is not None
            assert newcomer.id > max(t["id"] for t in source["agent_types"])
            speaker = await target.agent_instances.add(
                AgentInstance(agent_type_id=world.agent_type.id, execution_id=child.id)
            )
            appended = await target.messages.append(child.id, [message(speaker.id)])
            assert appended[0].sequence_number == 1
            stored = await target.messages.list(world.execution.id, limit=10)
            gap = stored.items[-1].model_copy(update={"id": uuid7(), "sequence_number": 9})
            with pytest.raises(IntegrityError, match="continue the sequence at 6"):
                await target.messages.restore_many([gap])

    # --- use cases (domain.services) --------------------------------------------------

    async def test_use_cases_register_create_run_and_read(self, store: Store) -> None:
        for name, role in (("writer", AgentRole.EXECUTOR), ("editor", AgentRole.REVIEWER)):
            read = await services.register_agent_type(
                store, AgentTypeCreate(name=name, description=f"{name}", role=role)
            )
            assert read.config["temperature"] == 0.7
        with pytest.raises(AlreadyExists):
            await services.register_agent_type(
                store, AgentTypeCreate(name="WRITER", description="d", role="critic")
            )
        updated = await services.update_agent_type(
            store, "writer", AgentTypeUpdate(description="writes", config=AgentConfig(temperature=0.3))
        )
        assert (updated.description, updated.config["temperature"], updated.role) == (
            "writes",
            0.3,
            AgentRole.EXECUTOR,
        )
        pipeline = await services.create_topology(
            store,
            TopologyCreate(
                name="article",
                description="write then edit",
                topology_type=TopologyType.PIPELINE,
                config={"stages": ["draft", "review"], "checkpoint_after": ["draft"]},
                agent_names=["writer", "editor"],
            ),
        )
        assert pipeline.agent_count == 2
        stored = await store.topologies.get_by_name("article")
        assert [(m.slot_name, m.position) for m in stored.memberships] == [("draft", 0), ("review", 1)]
        with pytest.raises(IntegrityError, match="'ghost'"):
            await services.create_topology(
                store,
                TopologyCreate(name="bad", description="d", topology_type="ensemble", agent_names=["ghost"]),
            )
        with pytest.raises(IntegrityError, match="need exactly one agent each"):
            await services.create_topology(
                store,
                TopologyCreate(
                    name="bad",
                    description="d",
                    topology_type="pipeline",
                    config={"stages": ["a", "b"]},
                    agent_names=["writer"],
                ),
            )
        assert await store.topologies.find_by_name("bad") is None
        duo = await services.create_topology(
            store,
            TopologyCreate(
                name="duo", description="d", topology_type="ensemble", agent_names=["writer", "writer"]
            ),
        )
        assert [m.slot_name for m in (await store.topologies.get(duo.id)).memberships] == [
            "writer",
            "writer-2",
        ]
        assert (await services.get_topology(store, "duo")).agent_count == 2
        updated_topology = await services.update_topology(
            store, "duo", TopologyUpdate(config={"aggregation_method": "vote"})
        )
        assert updated_topology.config == {"aggregation_method": "vote"}

        execution = await services.start_execution(
            store,
            ExecutionCreate(topology_name="article", input_data={"topic": "owls"}, correlation_id="c-1"),
        )
        assert execution.status is ExecutionStatus.RUNNING
        writer = await store.agent_instances.add(
            AgentInstance(agent_type_id=stored.memberships[0].agent_type_id, execution_id=execution.id)
        )
        sent = await services.append_messages(
            store,
            execution.id,
            [message(writer.id, {"draft": "Owls are..."}, message_type=MessageType.RESPONSE)],
        )
        assert sent[0].sequence_number == 1
        await services.record_result(
            store,
            Result(
                execution_id=execution.id, agent_instance_id=writer.id, output={"ok": True}, confidence=0.8
            ),
        )
        done = await services.finish_execution(store, execution.id, {"article": "Owls are..."})
        assert done.status is ExecutionStatus.COMPLETED
        assert done.duration_ms is not None
        assert (await services.get_execution(store, execution.id)) == done
        assert [m.content for m in await services.list_messages(store, execution.id, limit=1)] == [
            {"draft": "Owls are..."}
        ]
        with pytest.raises(InvalidTransition):
            await services.fail_execution(store, execution.id, "too late")
        second = await services.start_execution(store, ExecutionCreate(topology_name="duo", input_data={}))
        failed = await services.fail_execution(store, second.id, "model timeout", {"after_s": 30})
        assert (failed.status, failed.error, failed.error_details) == (
            ExecutionStatus.FAILED,
            "model timeout",
            {"after_s": 30},
        )
        with pytest.raises(NotFound):
            await services.start_execution(store, ExecutionCreate(topology_name="nope", input_data={}))
        assert (await services.get_agent_type(store, "editor")).role is AgentRole.REVIEWER

    # --- properties (Hypothesis; each runs on a store of its own) --------------------------

    async def test_payloads_round_trip_exactly(self) -> None:
        examples = self.hypothesis_examples

        def body(session: StoreSession) -> None:
            world = session.run(World(session.store).build())

            @settings(max_examples=examples, suppress_health_check=list(HealthCheck), deadline=None)
            @given(payload=json_objects)
            @example(
                payload={
                    "big": 1e16,
                    "odd": 4.748803069642371e16,
                    "tiny": 5e-324,
                    "max": 1.7976931348623157e308,
                }
            )
            @example(payload={"neg": -2.5e-10, "one": 1.0, "zero": -0.0, "i": 2**63 - 1, "j": -(2**63)})
            @example(payload={"$set": {"a.b": {"": [None, True, "\u2028", "\U0001f600"]}}, "$": {"_id": 1}})
            def check(payload: dict[str, Any]) -> None:
                session.run(_round_trip(world, payload))

            check()

        await asyncio.to_thread(with_store_session, self.make_store, body)

    async def test_matches_the_reference_model(self) -> None:
        await asyncio.to_thread(run_state_machine, self.make_store, self.hypothesis_examples)

    # --- capabilities (checked against the registry on save) ----------------------------

    @pytest.mark.parametrize(
        ("capabilities", "field", "value"),
        [
            ([{"name": "memory", "config": {"max_memories": "x"}}], "0.config.max_memories", "'x'"),
            ([{"name": "memory", "config": {"max_memories": 0}}], "capabilities.0.config.max_memories", "0"),
            ([{"name": "memory", "config": {"forget": True}}], "capabilities.0.config.forget", "True"),
            ([{"name": "telepathy"}], "capabilities.0.name", "telepathy"),
            ([{"name": "human_in_loop"}], "capabilities.0.name", "tool_use"),
            (
                [{"name": "tool_use", "enabled": False}, {"name": "human_in_loop"}],
                "capabilities.1.name",
                "disabled",
            ),
            ([{"name": "memory", "version": "2.0.0"}], "capabilities.0.version", "2.0.0"),
            ([{"name": "cycle-a"}, {"name": "cycle-b"}], "config.capabilities", "cycle"),
        ],
    )
    async def test_invalid_capabilities_are_refused_on_save_and_store_unchanged(
        self, store: Store, capabilities: list[dict[str, Any]], field: str, value: str
    ) -> None:
        from qmcp_agents.domain.capabilities import CapabilityConfig, CapabilityDefinition, registry

        cyclic = [
            CapabilityDefinition("cycle-a", "1.0.0", CapabilityConfig, ("cycle-b",)),
            CapabilityDefinition("cycle-b", "1.0.0", CapabilityConfig, ("cycle-a",)),
        ]
        for definition in cyclic:
            registry.register(definition, replace=True)
        try:
            keeper = agent_type("keeper", config={"capabilities": [{"name": "memory"}]})
            existing = await store.agent_types.add(keeper)
            before = await dump_store(store)
            with pytest.raises(ValidationError) as refused:
                await store.agent_types.add(agent_type("bad", config={"capabilities": capabilities}))
            assert field in str(refused.value)
            assert value in str(refused.value)
            assert await dump_store(store) == before
            existing.config = AgentConfig.model_validate({"capabilities": capabilities})
            with pytest.raises(ValidationError, match=field.replace(".", r"\.")):
                await store.agent_types.update(existing)
            assert await dump_store(store) == before
            members = [await store.agent_types.get(existing.id)]  # type: ignore[arg-type]
            team = topology("crew", members)
            team.memberships[0].config_overrides = {"capabilities": capabilities}
            with pytest.raises(ValidationError, match="memberships"):
                await store.topologies.add(team)
            assert await dump_store(store) == before
        finally:
            for definition in cyclic:
                registry.unregister(definition.name)

    async def test_valid_capabilities_are_stored_as_given(self, store: Store) -> None:
        caps: list[dict[str, Any]] = [
            {"name": "tool_use", "config": {"allowed_tools": ["add"], "max_tool_calls_per_turn": 2}},
            {"name": "human_in_loop", "config": {"require_approval_for": ["add"]}},
            {"name": "memory", "enabled": False, "config": {"max_memories": 3, "summary_threshold": 2}},
            {"name": "skills", "config": {"tags": ["sql"]}},
        ]
        stored = await store.agent_types.add(agent_type("capable", config={"capabilities": caps}))
        loaded = await store.agent_types.get(stored.id)  # type: ignore[arg-type]
        expected: list[dict[str, Any]] = [{"version": "1.0.0", "enabled": True, **c} for c in caps]
        assert [c.model_dump() for c in loaded.config.capabilities] == expected
        assert loaded.has_capability("human_in_loop")
        assert not loaded.has_capability("memory")

    async def test_agent_types_stored_before_a_capability_existed_still_load(self, store: Store) -> None:
        legacy = agent_type("legacy", config={"capabilities": [{"name": "search", "config": {"depth": 2}}]})
        legacy.id, legacy.revision = 41, 1
        await store.agent_types.restore_many([legacy])
        loaded = await store.agent_types.get(41)
        assert loaded.config.capabilities[0].name == "search"
        assert loaded.has_capability("search")
        before = await dump_store(store)
        loaded.description = "touched"
        with pytest.raises(ValidationError, match="unknown capability 'search'"):
            await store.agent_types.update(loaded)
        assert await dump_store(store) == before

    # --- issue 15: reads hand out copies; the single-message fast paths keep every rule ----

    async def test_returned_messages_and_executions_are_copies(self, world: World) -> None:
        store = world.store
        nested = {"tags": ["a"], "inner": {"k": [1, {"deep": True}]}}
        (sent,) = await store.messages.append(world.execution.id, [message(world.instance.id, nested)])
        sent.content["tags"].append("returned by append")
        for read in (
            (await store.messages.last(world.execution.id, 50))[0],
            (await store.messages.list(world.execution.id)).items[0],
            await store.messages.get(sent.id),
        ):
            read.content["tags"].append("mutated")
            read.content["inner"]["k"][1]["deep"] = False
        assert (await store.messages.get(sent.id)).content == nested
        got = await store.executions.get(world.execution.id)
        got.input_data["task"] = "changed"
        got.metadata["x"] = [1]
        listed = (await store.executions.list()).items[0]
        listed.input_data["added"] = 1
        again = await store.executions.get(world.execution.id)
        assert (again.input_data, again.metadata) == ({"task": "t"}, {})

    async def test_messages_share_nothing_with_their_writer_or_reader(self, world: World) -> None:
        store = world.store
        nested: dict[str, Any] = {"tags": ["a", []], "inner": {"k": [1, {"deep": True}], "e": {}}}
        # What a caller passes to append stays its own: changing it afterwards changes nothing.
        draft = message(world.instance.id, nested)
        (sent,) = await store.messages.append(world.execution.id, [draft])
        draft.content["tags"][1].append("draft")
        draft.content["inner"]["e"]["x"] = 1
        draft.content["added"] = True
        draft.round_number = 3
        # Nor does changing a read copy: its fields, its content (replaced or changed at any
        # depth, including empty containers), or the record of which fields were set.
        fields_set = set((await store.messages.get(sent.id)).model_fields_set)
        for read in (
            (await store.messages.last(world.execution.id, 1))[0],
            (await store.messages.list(world.execution.id)).items[0],
            await store.messages.get(sent.id),
            sent,
        ):
            read.content["tags"][1].append("read")
            read.content["inner"]["e"]["x"] = 1
            read.content["inner"]["k"][1]["deep"] = False
            del read.content["tags"]
            read.round_number = 5
            read.model_fields_set.clear()
            read.content = {"replaced": True}
        again = await store.messages.get(sent.id)
        assert again.content == nested
        assert (again.round_number, again.model_fields_set) == (0, fields_set)
        # The same for messages written by restore_many.
        other = await world.new_execution()
        speaker = await world.new_instance(other.id)
        restored = Message(
            execution_id=other.id,
            sender_id=speaker.id,
            message_type=MessageType.BROADCAST,
            content={"tags": ["r"], "inner": {"k": [{}]}},
            sequence_number=1,
            revision=1,
        )
        assert await store.messages.restore_many([restored]) == 1
        restored.content["tags"].append("mutated")
        restored.content["inner"]["k"][0]["x"] = 1
        restored.round_number = 9
        back = await store.messages.get(restored.id)
        assert (back.content, back.round_number) == ({"tags": ["r"], "inner": {"k": [{}]}}, 0)

    async def test_single_appends_number_check_and_refuse(self, world: World) -> None:
        store = world.store
        execution_id = world.execution.id
        numbers = [
            (await store.messages.append(execution_id, [message(world.instance.id, {"i": i})]))[
                0
            ].sequence_number
            for i in range(5)
        ]
        assert numbers == [1, 2, 3, 4, 5]
        other = await world.new_execution()
        outsider = await world.new_instance(other.id)
        stranger = uuid7()
        for bad, error in (
            (message(outsider.id), IntegrityError),
            (message(stranger), IntegrityError),
            (
                message(world.instance.id, recipient_id=stranger, message_type=MessageType.REQUEST),
                IntegrityError,
            ),
            (
                message(world.instance.id, recipient_id=outsider.id, message_type=MessageType.REQUEST),
                IntegrityError,
            ),
        ):
            with pytest.raises(error):
                await store.messages.append(execution_id, [bad])
        with pytest.raises(NotFound):
            await store.messages.append(uuid7(), [message(world.instance.id)])
        (sixth,) = await store.messages.append(execution_id, [message(world.instance.id, {"i": 5})])
        assert sixth.sequence_number == 6  # refusals took no numbers
        done = await store.executions.get(execution_id)
        done.mark_complete({"ok": True})
        await store.executions.update(done)
        with pytest.raises(InvalidTransition):
            await store.messages.append(execution_id, [message(world.instance.id)])
        assert [m.sequence_number for m in await store.messages.last(execution_id, 50)] == list(range(1, 7))
        assert await store.messages.count(execution_id) == 6


async def _round_trip(world: World, payload: dict[str, Any]) -> None:
    store = world.store
    instance = await store.agent_instances.add(
        AgentInstance(
            agent_type_id=world.agent_type.id,
            execution_id=world.execution.id,
            state=payload,
            metadata=payload,
        )
    )
    assert (await store.agent_instances.get(instance.id)).state == payload
    assert (await store.agent_instances.get(instance.id)).metadata == payload
    (stored,) = await store.messages.append(world.execution.id, [message(instance.id, payload)])
    assert (await store.messages.get(stored.id)).content == payload
    result = await store.results.add(world.result(agent_instance_id=instance.id, output=payload))
    assert (await store.results.get(result.id)).output == payload
    execution = await store.executions.add(
        Execution(topology_id=world.topology.id, input_data=payload, metadata=payload, error_details=None)
    )
    loaded = await store.executions.get(execution.id)
    assert loaded.input_data == payload
    assert loaded.metadata == payload

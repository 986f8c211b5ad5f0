"""The synchronous API as synchronous code uses it: transactions, threads, a running event
loop in the caller, closing, interruption, the use cases and the engine."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qmcp_agents.domain import (
    AgentInstance,
    AgentTypeCreate,
    AlreadyExists,
    Execution,
    ExecutionCreate,
    ExecutionStatus,
    IntegrityError,
    NotFound,
    TopologyCreate,
)
from qmcp_agents.domain.engine import AgentContext, AgentReply, ScriptedAgent, reply
from qmcp_agents.sync import StoreClosedError, SyncEngine, SyncStore, open_store_sync, services
from qmcp_agents.testing.builders import agent_type, message, register_topology, topology
from qmcp_agents.testing.inspect import dump_store
from tests.stores.servers import backend_store

BACKENDS = ["memory", "sqlite", "postgresql"]  # MongoDB: through the conformance suite


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SyncStore]:
    kind: str = request.param
    with SyncStore(lambda: backend_store(kind, tmp_path)) as opened:
        yield opened


def snapshot(store: SyncStore) -> dict[str, list[dict[str, Any]]]:
    return store.run(dump_store)


def seed(store: SyncStore) -> None:
    """One agent type, one topology, one running execution with an instance and a message."""
    planner = store.agent_types.add(agent_type("planner"))
    team = store.topologies.add(topology("team", members=[planner]))
    execution = services.start_execution(store, ExecutionCreate(topology_name=team.name, input_data={}))
    assert planner.id is not None
    instance = store.agent_instances.add(AgentInstance(agent_type_id=planner.id, execution_id=execution.id))
    store.messages.append(execution.id, [message(instance.id)])


def sync_store_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("qmcp-sync-store-")}


# --- transactions ------------------------------------------------------------------------


def test_a_transaction_commits_what_its_block_wrote(store: SyncStore) -> None:
    with store.transaction():
        planner = store.agent_types.add(agent_type("planner"))
        assert store.agent_types.get(planner.id).name == "planner"  # type: ignore[arg-type]
        store.topologies.add(topology("team", members=[planner]))
    assert store.agent_types.count() == 1
    assert store.topologies.get_by_name("team").memberships[0].agent_type_id == planner.id


def test_an_exception_in_the_block_leaves_the_store_unchanged(store: SyncStore) -> None:
    seed(store)
    before = snapshot(store)
    (execution,) = store.executions.list().items
    with pytest.raises(RuntimeError, match="changed my mind"), store.transaction():
        critic = store.agent_types.add(agent_type("critic"))
        store.topologies.add(topology("review", members=[critic]))
        store.messages.append(execution.id, [message(store.agent_instances.list().items[0].id)])
        services.finish_execution(store, execution.id, {"answer": 42})
        assert store.agent_types.count() == 2  # the block sees its own writes
        raise RuntimeError("changed my mind")
    assert snapshot(store) == before
    assert store.executions.get(execution.id).status is ExecutionStatus.RUNNING


def test_a_refused_call_inside_a_transaction_rolls_back_the_whole_block(store: SyncStore) -> None:
    store.agent_types.add(agent_type("planner"))
    before = snapshot(store)
    with pytest.raises(NotFound), store.transaction():
        store.agent_types.add(agent_type("critic"))
        store.agent_types.get_by_name("nobody")
    assert snapshot(store) == before


def test_a_failed_nested_block_rolls_back_only_its_own_work(store: SyncStore) -> None:
    with store.transaction():
        store.agent_types.add(agent_type("outer"))
        with pytest.raises(RuntimeError, match="inner"), store.transaction():
            store.agent_types.add(agent_type("inner"))
            raise RuntimeError("inner")
        store.agent_types.add(agent_type("after"))
    assert [t.name for t in store.agent_types.list().items] == ["outer", "after"]


def test_each_thread_has_its_own_transaction(store: SyncStore) -> None:
    """A write made by another thread while a transaction is open is not part of it: the
    rollback keeps it (on memory and SQLite it waits for the transaction to end)."""
    opened = threading.Event()
    errors: list[BaseException] = []

    def other() -> None:
        opened.wait(5)
        try:
            store.agent_types.add(agent_type("bystander"))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    helper = threading.Thread(target=other)
    helper.start()
    with pytest.raises(RuntimeError, match="undo"), store.transaction():
        store.agent_types.add(agent_type("mine"))
        opened.set()
        time.sleep(0.2)
        raise RuntimeError("undo")
    helper.join(10)
    assert not errors
    assert [t.name for t in store.agent_types.list().items] == ["bystander"]


def test_add_many_of_every_repository_is_all_or_nothing(store: SyncStore) -> None:
    planner, critic = store.agent_types.add_many([agent_type("planner"), agent_type("critic")])
    teams = store.topologies.add_many([topology("a", members=[planner]), topology("b", members=[critic])])
    assert [t.name for t in teams] == ["a", "b"]
    assert teams[0].id is not None
    runs = store.executions.add_many(
        [Execution(topology_id=teams[0].id, input_data={"n": n}) for n in range(2)]
    )
    assert [r.input_data for r in runs] == [{"n": 0}, {"n": 1}]
    assert store.executions.count(topology_id=teams[0].id) == 2
    execution = services.start_execution(store, ExecutionCreate(topology_name="a", input_data={}))
    assert planner.id is not None
    instances = store.agent_instances.add_many(
        [AgentInstance(agent_type_id=planner.id, execution_id=execution.id) for _ in range(3)]
    )
    assert store.agent_instances.count(execution_id=execution.id) == 3
    assert {i.revision for i in instances} == {1}
    before = snapshot(store)
    with pytest.raises(AlreadyExists):
        store.topologies.add_many([topology("c", members=[planner]), topology("a", members=[planner])])
    with pytest.raises(IntegrityError):
        store.agent_instances.add_many(
            [AgentInstance(agent_type_id=planner.id), AgentInstance(agent_type_id=999)]
        )
    assert snapshot(store) == before


# --- a caller with an event loop of its own (a notebook) ----------------------------------


def test_works_inside_a_running_event_loop(store: SyncStore) -> None:
    async def notebook_cell() -> tuple[int, list[str]]:
        caller_loop = asyncio.get_running_loop()
        store.agent_types.add(agent_type("planner"))
        with pytest.raises(RuntimeError, match="no"), store.transaction():
            store.agent_types.add(agent_type("ghost"))
            raise RuntimeError("no")
        loops = store.run(lambda _: _running_loop())
        assert loops is not caller_loop  # nothing ran on the caller's loop
        await asyncio.sleep(0)  # and the caller's loop still works
        return store.agent_types.count(), [t.name for t in store.agent_types.list().items]

    assert asyncio.run(notebook_cell()) == (1, ["planner"])


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def test_the_store_can_be_opened_and_closed_inside_a_running_loop(tmp_path: Path) -> None:
    async def cell() -> int:
        with open_store_sync(f"sqlite:///{tmp_path / 'cell.db'}") as store:
            store.create_schema()
            store.agent_types.add(agent_type("planner"))
            return store.agent_types.count()

    before = sync_store_threads()
    assert asyncio.run(cell()) == 1
    assert sync_store_threads() == before


# --- opening and closing ------------------------------------------------------------------


def test_closing_ends_the_loop_and_its_thread(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    for url in ("memory://", f"sqlite:///{tmp_path / 'a.db'}"):
        with open_store_sync(url) as store:
            store.create_schema()
            store.agent_types.add(agent_type("planner"))
            assert len(sync_store_threads()) == 1
            loop = store.runner.loop
        assert loop.is_closed()
        assert not store.runner.thread.is_alive()
    plain = open_store_sync("memory://")
    plain.close()
    plain.close()  # idempotent
    assert set(threading.enumerate()) == before
    with pytest.raises(StoreClosedError, match="closed"):
        plain.agent_types.count()


def test_a_store_dropped_without_closing_is_closed_by_the_collector(tmp_path: Path) -> None:
    """A notebook cell run again opens a new store and drops the old one: its loop and
    thread end anyway, and a transaction it left open is rolled back."""
    path = tmp_path / "dropped.db"
    store = open_store_sync(f"sqlite:///{path}")
    store.create_schema()
    store.agent_types.add(agent_type("kept"))
    block = store.transaction()
    block.begin()  # left open, never ended
    with block.bound():
        store.agent_types.add(agent_type("lost"))
    del block
    thread = store.runner.thread
    del store
    gc.collect()
    thread.join(10)
    assert not thread.is_alive()
    with open_store_sync(f"sqlite:///{path}") as again:
        assert [t.name for t in again.agent_types.list().items] == ["kept"]


def test_a_store_that_cannot_be_opened_leaves_no_thread(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    with pytest.raises(ValueError, match="unknown scheme"):
        open_store_sync("nosuch://x")
    with pytest.raises(ValueError, match="not a URL"):
        open_store_sync("agents.db")
    assert set(threading.enumerate()) == before


def test_closing_with_a_transaction_left_open_rolls_it_back(tmp_path: Path) -> None:
    path = tmp_path / "left.db"
    store = open_store_sync(f"sqlite:///{path}")
    store.create_schema()
    block = store.transaction()
    block.__enter__()
    store.agent_types.add(agent_type("abandoned"))
    store.close()
    assert not store.runner.thread.is_alive()
    with open_store_sync(f"sqlite:///{path}") as again:
        assert again.agent_types.count() == 0


def test_leaving_a_block_whose_store_was_closed_says_so(tmp_path: Path) -> None:
    """Closed inside the block (here or by another thread): leaving it is StoreClosedError,
    not the loop's own RuntimeError, and nothing of the block was kept."""
    path = tmp_path / "closed-inside.db"
    store = open_store_sync(f"sqlite:///{path}")
    store.create_schema()
    with pytest.raises(StoreClosedError, match="rolled back"), store.transaction():
        store.agent_types.add(agent_type("closed-inside"))
        threading.Thread(target=store.close).start()
        store.runner.thread.join(10)
    with pytest.raises(StoreClosedError, match="is closed"), store.transaction():
        pass  # pragma: no cover - a closed store opens no block
    with open_store_sync(f"sqlite:///{path}") as again:
        assert again.agent_types.count() == 0


def test_an_interrupted_wait_cancels_the_call_and_rolls_back(store: SyncStore) -> None:
    """Ctrl-C while a call runs (a notebook's interrupt): the call's task is cancelled, the
    open transaction rolled back, and the store goes on working."""
    store.agent_types.add(agent_type("kept"))
    cancelled = threading.Event()

    async def slow(_: object) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))  # as Ctrl-C sends it
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt), store.transaction():
            store.agent_types.add(agent_type("lost"))
            store.run(slow)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 10
    assert cancelled.is_set()  # the call was stopped, not left running on the loop
    assert [t.name for t in store.agent_types.list().items] == ["kept"]
    store.agent_types.add(agent_type("later"))
    assert store.agent_types.count() == 2


# --- use cases and the engine -------------------------------------------------------------


def test_the_use_cases_as_plain_functions(store: SyncStore) -> None:
    created = services.register_agent_type(
        store, AgentTypeCreate(name="writer", description="writes", role="specialist")
    )
    assert services.get_agent_type(store, "writer") == created
    team = services.create_topology(
        store,
        TopologyCreate(name="desk", description="d", topology_type="ensemble", agent_names=["writer"]),
    )
    assert services.get_topology(store, "desk") == team
    execution = services.start_execution(store, ExecutionCreate(topology_name="desk", input_data={"q": 1}))
    assert execution.id is not None
    assert created.id is not None
    instance = store.agent_instances.add(AgentInstance(agent_type_id=created.id, execution_id=execution.id))
    sent = services.append_messages(store, execution.id, [message(instance.id), message(instance.id)])
    assert (
        [m.sequence_number for m in services.list_messages(store, execution.id, limit=1)]
        == [m.sequence_number for m in sent]
        == [1, 2]
    )
    done = services.finish_execution(store, execution.id, {"answer": 1})
    assert done.status is ExecutionStatus.COMPLETED
    assert services.get_execution(store, execution.id) == done


@pytest.fixture
def engine_store(tmp_path: Path) -> Iterator[SyncStore]:
    with open_store_sync(f"sqlite:///{tmp_path / 'engine.db'}") as store:
        store.create_schema()
        yield store


def test_the_engine_runs_and_resumes_from_sync_code(engine_store: SyncStore) -> None:
    store = engine_store
    store.run(
        lambda s: register_topology(s, "e", "ensemble", ["asker", "steady"], {"aggregation_method": "concat"})
    )

    def ask_or_answer(context: AgentContext) -> AgentReply:
        if context.human_input is None:
            return reply({}, needs_human="Which owl?")
        return reply({"answer": f"the {context.human_input}"})

    agents = {"asker": ScriptedAgent([ask_or_answer]), "steady": ScriptedAgent([reply({"answer": "steady"})])}
    engine = SyncEngine(store, agents)
    paused = engine.run("e", {})
    assert paused.status is ExecutionStatus.PAUSED
    done = engine.resume(paused.id, "barn owl")
    assert done.status is ExecutionStatus.COMPLETED
    assert done.output_data is not None
    assert done.output_data["result"] == "the barn owl\n\nsteady"
    assert store.results.count(execution_id=done.id) == 2
    assert store.executions.get(done.id).status is ExecutionStatus.COMPLETED


def test_a_run_inside_a_transaction_is_rolled_back_with_it(engine_store: SyncStore) -> None:
    store = engine_store
    store.run(lambda s: register_topology(s, "solo", "ensemble", ["one"]))
    before = snapshot(store)
    engine = SyncEngine(store, {"one": ScriptedAgent([reply({"answer": 1})])})
    with pytest.raises(RuntimeError, match="not this one"), store.transaction():
        finished = engine.run("solo", {})
        assert store.executions.get(finished.id).status is ExecutionStatus.COMPLETED
        raise RuntimeError("not this one")
    assert snapshot(store) == before


def test_an_agent_calling_the_sync_store_is_refused_not_deadlocked(engine_store: SyncStore) -> None:
    store = engine_store
    store.run(lambda s: register_topology(s, "solo", "ensemble", ["one"]))

    refusals: list[str] = []

    def reentrant(context: AgentContext) -> AgentReply:
        try:
            store.agent_types.count()
        except RuntimeError as error:
            refusals.append(str(error))
        return reply({"answer": "done"})

    done = SyncEngine(store, {"one": ScriptedAgent([reentrant])}).run("solo", {})
    assert done.status is ExecutionStatus.COMPLETED
    assert len(refusals) == 1
    assert "own event loop thread" in refusals[0]
    assert "async_store" in refusals[0]  # and says what to use instead


def test_the_example_in_docs_sync_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "sync.md").read_text()
    example = text.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    before = sync_store_threads()
    exec(compile(example, "docs/sync.md", "exec"), {})
    assert (tmp_path / "agents.db").exists()
    assert sync_store_threads() == before
    with open_store_sync(f"sqlite:///{tmp_path / 'agents.db'}") as store:
        (done,) = store.executions.list().items
        assert done.status is ExecutionStatus.COMPLETED
        assert store.messages.count(done.id) >= 1

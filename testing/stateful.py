"""A Hypothesis state machine that drives a store and a tiny reference model side by side.

Each step applies one random operation to both and compares the answers: success, or the
exact error type; after every step the counts must agree. Any divergence is shrunk by
Hypothesis to a short sequence of operations that reproduces it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from qmcp_agents.domain import (
    FINAL_STATUSES,
    AgentInstance,
    AlreadyExists,
    ConcurrencyError,
    Execution,
    ExecutionStatus,
    IntegrityError,
    InvalidTransition,
    QmcpError,
)
from qmcp_agents.domain.queries import all_pages

from .builders import agent_type, message, topology
from .runner import StoreFactory, StoreSession

TYPE_NAMES = ["alpha", "beta", "gamma", "delta"]
TOPOLOGY_NAMES = ["one", "two", "three"]
S = ExecutionStatus
LEGAL = {
    (S.PENDING, "start"): S.RUNNING,
    (S.PENDING, "cancel"): S.CANCELLED,
    (S.PENDING, "mark_failed"): S.FAILED,
    (S.RUNNING, "pause"): S.PAUSED,
    (S.RUNNING, "cancel"): S.CANCELLED,
    (S.RUNNING, "mark_failed"): S.FAILED,
    (S.RUNNING, "mark_complete"): S.COMPLETED,
    (S.PAUSED, "resume"): S.RUNNING,
    (S.PAUSED, "cancel"): S.CANCELLED,
    (S.PAUSED, "mark_failed"): S.FAILED,
}
MOVES = sorted({move for _, move in LEGAL})
index = st.integers(min_value=0, max_value=1000)


@dataclass
class RunModel:
    topology: str
    status: ExecutionStatus = S.PENDING
    messages: int = 0


@dataclass
class Model:
    types: dict[str, int] = field(default_factory=dict)
    topologies: dict[str, tuple[int, list[str]]] = field(default_factory=dict)
    executions: dict[UUID, RunModel] = field(default_factory=dict)
    instances: dict[UUID, tuple[str, UUID | None]] = field(default_factory=dict)
    results: dict[UUID, tuple[UUID, UUID]] = field(default_factory=dict)
    messages: list[tuple[UUID, UUID]] = field(default_factory=list)  # (execution, sender)

    def pick(self, keys: list[Any], i: int) -> Any:
        return sorted(keys)[i % len(keys)] if keys else None


def _outcome(run: Any, awaitable: Any) -> Any:
    """The store's answer: the value, or the type of the library error it raised."""
    try:
        return run(awaitable)
    except QmcpError as error:
        return type(error)


class StoreMachine(RuleBasedStateMachine):
    make_store: StoreFactory

    def __init__(self) -> None:
        super().__init__()
        self.session = StoreSession(self.make_store)
        self.store = self.session.store
        self.model = Model()

    def teardown(self) -> None:
        self.session.close()

    def _do(self, awaitable: Any) -> Any:
        return _outcome(self.session.run, awaitable)

    # --- agent types and topologies ------------------------------------------------------

    @rule(name=st.sampled_from(TYPE_NAMES))
    def add_type(self, name: str) -> None:
        got = self._do(self.store.agent_types.add(agent_type(name)))
        if name in self.model.types:
            assert got is AlreadyExists, got
        else:
            assert not isinstance(got, type), got
            self.model.types[name] = got.id

    @precondition(lambda self: self.model.types)
    @rule(i=index)
    def delete_type(self, i: int) -> None:
        name = self.model.pick(list(self.model.types), i)
        in_use = any(name in members for _, members in self.model.topologies.values()) or any(
            t == name for t, _ in self.model.instances.values()
        )
        got = self._do(self.store.agent_types.delete(self.model.types[name]))
        if in_use:
            assert got is IntegrityError, got
        else:
            assert got is None, got
            del self.model.types[name]

    @rule(
        name=st.sampled_from(TOPOLOGY_NAMES),
        members=st.lists(st.sampled_from(TYPE_NAMES), max_size=3, unique=True),
    )
    def add_topology(self, name: str, members: list[str]) -> None:
        present = [m for m in members if m in self.model.types]
        drafts = [agent_type(m, id=self.model.types[m]) for m in present]
        got = self._do(self.store.topologies.add(topology(name, drafts)))
        if name in self.model.topologies:
            assert got is AlreadyExists, got
        else:
            assert not isinstance(got, type), got
            assert len(got.memberships) == len(present)
            self.model.topologies[name] = (got.id, present)

    @precondition(lambda self: self.model.topologies)
    @rule(i=index)
    def delete_topology(self, i: int) -> None:
        name = self.model.pick(list(self.model.topologies), i)
        used = any(run.topology == name for run in self.model.executions.values())
        got = self._do(self.store.topologies.delete(self.model.topologies[name][0]))
        if used:
            assert got is IntegrityError, got
        else:
            assert got is None, got
            del self.model.topologies[name]

    # --- executions ----------------------------------------------------------------------

    @precondition(lambda self: self.model.topologies)
    @rule(i=index)
    def add_execution(self, i: int) -> None:
        name = self.model.pick(list(self.model.topologies), i)
        got = self._do(
            self.store.executions.add(Execution(topology_id=self.model.topologies[name][0], input_data={}))
        )
        assert not isinstance(got, type), got
        self.model.executions[got.id] = RunModel(topology=name)

    @precondition(lambda self: self.model.executions)
    @rule(i=index, move=st.sampled_from(MOVES))
    def move_execution(self, i: int, move: str) -> None:
        execution_id = self.model.pick(list(self.model.executions), i)
        if execution_id is None:
            return
        run = self.model.executions[execution_id]
        execution = self.session.run(self.store.executions.get(execution_id))
        assert execution.status is run.status
        expected = LEGAL.get((run.status, move))
        try:
            if move == "mark_complete":
                execution.mark_complete({"done": True})
            elif move == "mark_failed":
                execution.mark_failed("failed")
            else:
                getattr(execution, move)()
        except InvalidTransition:
            assert expected is None
            return
        assert expected is not None
        got = self._do(self.store.executions.update(execution))
        assert not isinstance(got, type), got
        assert got.status is expected
        run.status = expected

    @precondition(lambda self: self.model.executions)
    @rule(i=index)
    def stale_update(self, i: int) -> None:
        execution_id = self.model.pick(list(self.model.executions), i)
        if execution_id is None:
            return
        execution = self.session.run(self.store.executions.get(execution_id))
        stale = execution.model_copy(update={"revision": execution.revision + 1, "metadata": {"stale": True}})
        assert self._do(self.store.executions.update(stale)) is ConcurrencyError

    @precondition(lambda self: self.model.executions)
    @rule(i=index)
    def delete_execution(self, i: int) -> None:
        execution_id = self.model.pick(list(self.model.executions), i)
        if execution_id is None:
            return
        assert self._do(self.store.executions.delete(execution_id)) is None
        del self.model.executions[execution_id]
        self.model.instances = {k: v for k, v in self.model.instances.items() if v[1] != execution_id}
        self.model.results = {k: v for k, v in self.model.results.items() if v[0] != execution_id}
        self.model.messages = [m for m in self.model.messages if m[0] != execution_id]

    # --- instances, messages, results ---------------------------------------------------

    @precondition(lambda self: self.model.types)
    @rule(j=index, i=index, bound=st.booleans())
    def add_instance(self, j: int, i: int, bound: bool) -> None:
        name = self.model.pick(list(self.model.types), j)
        execution_id = self.model.pick(list(self.model.executions), i) if bound else None
        draft = AgentInstance(agent_type_id=self.model.types[name], execution_id=execution_id)
        got = self._do(self.store.agent_instances.add(draft))
        assert not isinstance(got, type), got
        self.model.instances[got.id] = (name, execution_id)

    @precondition(lambda self: self.model.instances)
    @rule(i=index)
    def delete_instance(self, i: int) -> None:
        instance_id = self.model.pick(list(self.model.instances), i)
        if instance_id is None:
            return
        referenced = any(s == instance_id for _, s in self.model.messages) or any(
            r[1] == instance_id for r in self.model.results.values()
        )
        got = self._do(self.store.agent_instances.delete(instance_id))
        if referenced:
            assert got is IntegrityError, got
        else:
            assert got is None, got
            del self.model.instances[instance_id]

    @precondition(lambda self: self.model.executions and self.model.instances)
    @rule(i=index, j=index, n=st.integers(min_value=1, max_value=4))
    def append_messages(self, i: int, j: int, n: int) -> None:
        execution_id = self.model.pick(list(self.model.executions), i)
        sender = self.model.pick(list(self.model.instances), j)
        if execution_id is None or sender is None:
            return
        run = self.model.executions[execution_id]
        got = self._do(
            self.store.messages.append(execution_id, [message(sender, {"k": k}) for k in range(n)])
        )
        if run.status in FINAL_STATUSES:
            assert got is InvalidTransition, got
        elif self.model.instances[sender][1] not in (None, execution_id):
            assert got is IntegrityError, got
        else:
            assert not isinstance(got, type), got
            assert [m.sequence_number for m in got] == list(range(run.messages + 1, run.messages + n + 1))
            run.messages += n
            self.model.messages.extend((execution_id, sender) for _ in range(n))

    @precondition(lambda self: self.model.executions and self.model.instances)
    @rule(i=index, j=index)
    def add_result(self, i: int, j: int) -> None:
        from qmcp_agents.domain import Result

        execution_id = self.model.pick(list(self.model.executions), i)
        instance_id = self.model.pick(list(self.model.instances), j)
        if execution_id is None or instance_id is None:
            return
        got = self._do(
            self.store.results.add(
                Result(execution_id=execution_id, agent_instance_id=instance_id, output={})
            )
        )
        if self.model.instances[instance_id][1] not in (None, execution_id):
            assert got is IntegrityError, got
        elif self.model.executions[execution_id].status in FINAL_STATUSES:
            assert got is InvalidTransition, got
        else:
            assert not isinstance(got, type), got
            self.model.results[got.id] = (execution_id, instance_id)

    @rule(limit=st.integers(min_value=1, max_value=3))
    def compare_listings(self, limit: int) -> None:
        store, run = self.store, self.session.run
        types = run(all_pages(lambda a: store.agent_types.list(limit=limit, after=a)))
        assert [t.id for t in types] == sorted(self.model.types.values())
        executions = run(all_pages(lambda a: store.executions.list(limit=limit, after=a)))
        assert [e.id for e in executions] == sorted(self.model.executions)
        assert {e.id: e.status for e in executions} == {k: v.status for k, v in self.model.executions.items()}
        for execution_id, model_run in self.model.executions.items():
            last = run(store.messages.last(execution_id, 2))
            assert [m.sequence_number for m in last] == list(
                range(max(1, model_run.messages - 1), model_run.messages + 1)
            )

    @invariant()
    def counts_agree(self) -> None:
        store, run = self.store, self.session.run
        assert run(store.agent_types.count()) == len(self.model.types)
        assert run(store.topologies.count()) == len(self.model.topologies)
        assert run(store.executions.count()) == len(self.model.executions)
        assert run(store.agent_instances.count()) == len(self.model.instances)
        assert run(store.results.count()) == len(self.model.results)
        assert run(store.messages.count()) == len(self.model.messages)


def run_state_machine(make_store: StoreFactory, examples: int) -> None:
    machine = type("BoundStoreMachine", (StoreMachine,), {"make_store": staticmethod(make_store)})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )

"""The engine: runs a topology with agents, recording everything through the store's ports.

    engine = Engine(store, agents={"optimist": my_llm_agent, "skeptic": ScriptedAgent([...])})
    result = await engine.run("proposal-debate", {"question": "..."})

Agents are looked up by slot name first, then by agent type name. Every status move,
agent instance, message (with round and sequence numbers), result (with confidence and
token usage) and failure (with ``error_details``) is written through the ports, so a run
can be inspected afterwards on any backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar
from uuid import UUID

from qmcp_agents.domain.agent import AgentInstance, AgentType
from qmcp_agents.domain.aggregation import Synthesizer
from qmcp_agents.domain.capabilities import CapabilityHookFailed
from qmcp_agents.domain.enums import TopologyType
from qmcp_agents.domain.errors import (
    CapabilityError,
    ConcurrencyError,
    InvalidTransition,
    NoAgent,
    StoreUnavailable,
)
from qmcp_agents.domain.execution import Execution, ExecutionRead
from qmcp_agents.domain.leases import LeaseLost
from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.queries import MAX_LIMIT
from qmcp_agents.domain.recording import add_instances_fenced, update_execution_fenced
from qmcp_agents.domain.topology import Topology
from qmcp_agents.domain.transactions import whole

from .agents import Agent
from .budget import LIMITS_KEY, RUNNING_KEY, Budget, Limits, empty_usage, usage_of
from .capable import CapabilitySet, hook_context
from .durable import DurableRuns, LeaseFence
from .retry import retried
from .run import HumanInputNeeded, Member, Run, TopologyFailed
from .topologies import CHILD_ANSWER, execute
from .tracing import NO_TRACER, Tracer

AWAITING = "awaiting_human"

AgentLookup = Mapping[str, Agent] | Callable[[AgentType, str], Agent | None]
Fence = Callable[[bool], Awaitable[None]]
T = TypeVar("T")


class Engine(DurableRuns):
    """Runs topologies. ``timeout_scale`` multiplies every agent's ``timeout_seconds``
    (simulations and tests use a small one); ``weights`` gives members (by slot) their say
    in weighted votes; ``synthesizer`` (a function of the answers, plain or async) is used
    by ``synthesis`` aggregation when the ensemble has no synthesizer member; ``observer``
    is told of every answer and failure as it is recorded (progress displays).
    ``token_budget`` and ``time_limit_seconds`` are the default limits of every run (see
    :mod:`.budget`); ``run`` may set its own."""

    def __init__(
        self,
        store: Store,
        agents: AgentLookup,
        *,
        synthesizer: Synthesizer | None = None,
        weights: Mapping[str, float] | None = None,
        timeout_scale: float = 1.0,
        observer: Callable[[dict[str, Any]], None] | None = None,
        token_budget: int | None = None,
        time_limit_seconds: float | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.limits = Limits(token_budget, time_limit_seconds)
        self.store = store
        self.observer = observer
        self.tracer: Tracer = tracer or NO_TRACER
        self._agents = agents
        self.synthesizer = synthesizer
        self.weights = dict(weights or {})
        self.timeout_scale = timeout_scale

    def _find_agent(self, agent_type: AgentType, slot: str) -> Agent | None:
        if callable(self._agents) and not isinstance(self._agents, Mapping):
            return self._agents(agent_type, slot)
        return self._agents.get(slot) or self._agents.get(agent_type.name)

    def _agent_for(self, agent_type: AgentType, slot: str) -> Agent:
        found = self._find_agent(agent_type, slot)
        if found is None:
            raise TopologyFailed(
                f"no agent for slot {slot!r} (agent type {agent_type.name!r})", {"slot": slot}
            )
        return found

    async def _check_agents(self, topology: Topology, seen: set[str] | None = None) -> None:
        """Every slot (of sub-topologies too) has an agent, or ``NoAgent`` before anything is
        written: a run that cannot start must not leave a failed execution behind."""
        seen = set() if seen is None else seen
        if topology.name in seen:
            return
        seen.add(topology.name)
        missing = []
        for membership in sorted(topology.memberships, key=lambda m: (m.position, m.slot_name)):
            agent_type = await self.store.agent_types.get(membership.agent_type_id)
            if self._find_agent(agent_type, membership.slot_name) is None:
                missing.append(f"{membership.slot_name!r} (agent type {agent_type.name!r})")
        if missing:
            raise NoAgent(
                f"topology {topology.name!r}: no agent for slot {', '.join(missing)}; give each "
                "slot an agent, by slot name or agent type name"
            )
        if topology.topology_type is TopologyType.COMPOUND:
            for name in topology.config.get("sub_topologies", []):
                child = await self.store.topologies.find_by_name(name)
                if child is not None:  # a missing child fails the run as it always has
                    await self._check_agents(child, seen)

    async def _members(
        self,
        topology: Topology,
        execution: Execution,
        fence: Fence | None = None,
        agent_types: Mapping[int, AgentType] | None = None,
    ) -> list[Member]:
        """The run's members, seated in order: their agent types (``agent_types``, when the
        caller read them with the topology) and instances (the execution's, or new ones)."""
        existing = {
            i.metadata.get("slot"): i
            for i in (await self.store.agent_instances.list(execution_id=execution.id, limit=MAX_LIMIT)).items
        }
        seats = []
        for membership in sorted(topology.memberships, key=lambda m: (m.position, m.slot_name)):
            agent_type = (
                agent_types[membership.agent_type_id]
                if agent_types is not None
                else await self.store.agent_types.get(membership.agent_type_id)
            )
            seats.append((membership, agent_type, existing.get(membership.slot_name)))
        fresh = [
            AgentInstance(
                agent_type_id=membership.agent_type_id,
                execution_id=execution.id,
                metadata={"slot": membership.slot_name, "topology": topology.name},
            )
            for membership, _, instance in seats
            if instance is None
        ]
        added = iter(await self._instances_added(fence, execution.id, fresh) if fresh else [])
        members = []
        for membership, agent_type, stored in seats:
            created = stored is None
            instance = next(added) if stored is None else stored
            config = agent_type.config.with_overrides(membership.config_overrides)
            try:
                capabilities = CapabilitySet.build(
                    config,
                    hook_context(
                        self.store, execution.id, topology.name, membership.slot_name, agent_type, instance
                    ),
                )
            except CapabilityError as error:
                raise TopologyFailed(str(error), {"slot": membership.slot_name}) from error
            if created:
                await capabilities.fire("on_create")
            members.append(
                Member(
                    membership=membership,
                    agent_type=agent_type,
                    config=config,
                    instance=instance,
                    agent=self._agent_for(agent_type, membership.slot_name),
                    capabilities=capabilities,
                )
            )
        return members

    async def run(
        self,
        topology_name: str,
        input_data: dict[str, Any],
        *,
        correlation_id: str | None = None,
        parent_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        token_budget: int | None = None,
        time_limit_seconds: float | None = None,
    ) -> ExecutionRead:
        """Start and drive an execution of ``topology_name`` to completion, failure or a pause.

        ``token_budget`` / ``time_limit_seconds`` override the engine's for this run."""
        return await self._run(
            topology_name,
            input_data,
            correlation_id=correlation_id,
            parent_id=parent_id,
            metadata=metadata,
            token_budget=token_budget,
            time_limit_seconds=time_limit_seconds,
        )

    async def _run(
        self,
        topology_name: str,
        input_data: dict[str, Any],
        *,
        correlation_id: str | None = None,
        parent_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        token_budget: int | None = None,
        time_limit_seconds: float | None = None,
        fence: Fence | None = None,
    ) -> ExecutionRead:
        """``run``; with ``fence``, a worker-driven compound's child, written under its
        parent's lease (see :func:`.durable.child_fence`)."""
        limits = Limits(
            self.limits.token_budget if token_budget is None else token_budget,
            self.limits.time_limit_seconds if time_limit_seconds is None else time_limit_seconds,
        )
        topology = await self.store.topologies.get_by_name(topology_name)
        assert topology.id is not None
        await self._check_agents(topology)
        execution = Execution(
            topology_id=topology.id,
            input_data=input_data,
            correlation_id=correlation_id,
            parent_id=parent_id,
            metadata={**(metadata or {}), **({LIMITS_KEY: limits.to_json()} if limits != Limits() else {})},
        )
        execution.start()
        execution = await self._execution_added(fence, execution)
        return await self._drive(topology, execution, fence)

    async def resume(self, execution_id: UUID, human_input: Any) -> ExecutionRead:
        """Give a paused execution the answer a person wrote, and drive it on."""
        return await self._resume(execution_id, human_input)

    async def _resume(
        self, execution_id: UUID, human_input: Any, fence: Fence | None = None
    ) -> ExecutionRead:
        """``resume``; ``fence``: see ``_run``."""

        async def write() -> Execution:
            async with self._fenced(fence):
                return await self.store.executions.update(await self._answered(execution_id, human_input))

        execution = await _written(fence, write)
        topology = await self.store.topologies.get(execution.topology_id)
        return await self._drive(topology, execution, fence)

    async def _answered(self, execution_id: UUID, human_input: Any) -> Execution:
        """The paused execution with the person's answer in, moved to running (not stored)."""
        execution = await self.store.executions.get(execution_id)
        waiting = execution.metadata.get(AWAITING)
        if waiting is None:
            raise InvalidTransition(
                f"execution {execution_id} is {execution.status.value}, not waiting for a person"
            )
        metadata = {k: v for k, v in execution.metadata.items() if k != AWAITING}
        if "execution_id" in waiting:  # a compound's child asked: the answer is passed on to it
            metadata[CHILD_ANSWER] = {"execution_id": waiting["execution_id"], "answer": human_input}
        else:
            metadata["human_answers"] = {**metadata.get("human_answers", {}), waiting["call"]: human_input}
        execution.metadata = metadata
        execution.resume()
        return execution

    async def resume_from_checkpoint(self, execution_id: UUID) -> ExecutionRead:
        """Run a failed pipeline again from its last checkpoint, as a new execution."""
        failed = await self.store.executions.get(execution_id)
        checkpoint = failed.metadata.get("checkpoint")
        if checkpoint is None:
            raise InvalidTransition(f"execution {execution_id} has no checkpoint to resume from")
        topology = await self.store.topologies.get(failed.topology_id)
        limits = Limits.from_metadata(failed.metadata)
        return await self.run(
            topology.name,
            failed.input_data,
            correlation_id=failed.correlation_id,
            parent_id=failed.parent_id,
            token_budget=limits.token_budget,
            time_limit_seconds=limits.time_limit_seconds,
            metadata={
                "resumed_from": str(failed.id),
                "checkpoint": checkpoint,
                "start_stage": checkpoint["stage_index"] + 1,
                "start_input": checkpoint["output"],
            },
        )

    async def checkpoint(self, run: Run, point: dict[str, Any]) -> None:
        async def write() -> None:
            async with self._fenced(run.fence):
                execution = await self.store.executions.get(run.execution.id)
                execution.metadata = {**execution.metadata, "checkpoint": point}
                run.execution = await self.store.executions.update(execution)

        await _written(run.fence, write)

    async def _execution_added(self, fence: Fence | None, execution: Execution) -> Execution:
        """The new execution added; under a worker's ``fence`` (a compound's child) in its
        transaction (a drive taken over starts no child) and retried, finding it first: an
        earlier try's commit may have gone through though it was reported failed."""
        if fence is None:
            return await self.store.executions.add(execution)

        async def write() -> Execution:
            async with self._fenced(fence):
                found = await self.store.executions.find(execution.id)
                return found if found is not None else await self.store.executions.add(execution)

        return await retried(write)

    async def _instances_added(
        self, fence: Fence | None, execution_id: UUID, instances: list[AgentInstance]
    ) -> list[AgentInstance]:
        """The run's new agent instances, added together (one transaction, in the order
        given); under a worker's ``fence`` in its transaction and retried, the execution's
        instances read first: an earlier try's commit may have gone through though it was
        reported failed."""
        if fence is None:
            return await self.store.agent_instances.add_many(instances)

        tries = 0

        async def write() -> list[AgentInstance]:
            nonlocal tries
            tries += 1
            if tries == 1 and isinstance(fence, LeaseFence):  # the first try has no earlier one
                return await add_instances_fenced(self.store, instances, fence.hold)
            async with self._fenced(fence):
                found: dict[UUID, AgentInstance] = {}
                if tries > 1:  # the first try has no earlier one to look for
                    page = await self.store.agent_instances.list(execution_id=execution_id, limit=MAX_LIMIT)
                    found = {i.id: i for i in page.items}
                added = iter(
                    await self.store.agent_instances.add_many([i for i in instances if i.id not in found])
                )
                return [found[i.id] if i.id in found else next(added) for i in instances]

        return await retried(write)

    @contextlib.asynccontextmanager
    async def _fenced(self, fence: Fence | None, last: bool = False) -> AsyncIterator[None]:
        """The writes inside, in one transaction with the worker's fence (when there is one);
        ``last``: the writes end the drive, and the worker's queue entry goes with them."""
        if fence is None:
            yield
            return
        async with whole(self.store):
            yield
            await fence(last)

    def notify(self, event: dict[str, Any]) -> None:
        if self.observer is not None:
            self.observer(event)

    async def _drive(
        self,
        topology: Topology,
        execution: Execution,
        fence: Fence | None = None,
        agent_types: Mapping[int, AgentType] | None = None,
    ) -> ExecutionRead:
        with self.tracer.execution(execution, topology):
            return await self._drive_traced(topology, execution, fence, agent_types)

    async def _drive_traced(
        self,
        topology: Topology,
        execution: Execution,
        fence: Fence | None,
        agent_types: Mapping[int, AgentType] | None,
    ) -> ExecutionRead:
        members: list[Member] = []
        budget = Budget(
            limits=Limits.from_metadata(execution.metadata),
            # A compound's totals are its children's, summed afresh on every drive.
            usage=empty_usage()
            if topology.topology_type is TopologyType.COMPOUND
            else usage_of(execution.metadata),
            earlier_seconds=float(execution.metadata.get(RUNNING_KEY, 0.0)),
        )
        try:
            return await self._drive_members(topology, execution, members, budget, fence, agent_types)
        finally:
            for member in members:
                if member.capabilities:
                    # the run has ended; a release failure must not change its outcome
                    with contextlib.suppress(CapabilityHookFailed):
                        await member.capabilities.fire("on_destroy")

    async def _drive_members(
        self,
        topology: Topology,
        execution: Execution,
        members: list[Member],
        budget: Budget,
        fence: Fence | None,
        agent_types: Mapping[int, AgentType] | None,
    ) -> ExecutionRead:
        run: Run | None = None

        def latest() -> Execution:
            """The drive's last written copy of its execution (a checkpoint writes a newer one)."""
            return execution if run is None else run.execution

        finish = functools.partial(self._finish, fence=fence, latest=latest)
        try:
            members.extend(await self._members(topology, execution, fence, agent_types))
            for member in members:
                if member.capabilities:
                    await member.capabilities.fire("on_start")
            run = Run(
                self.store,
                topology,
                execution,
                members,
                self.timeout_scale,
                self.synthesizer,
                self.weights,
                self,
                budget,
                fence,
            )
            output = await _within_time(budget, lambda: execute(run, topology.get_typed_config()))
            for member in members:
                if member.capabilities:
                    await member.capabilities.fire("on_complete")
        except HumanInputNeeded as question:
            awaiting = question.awaiting()

            def pause(current: Execution) -> None:
                current.metadata = {**current.metadata, AWAITING: awaiting}
                current.pause()

            return await finish(execution.id, budget, pause)
        except TopologyFailed as failure:
            return await finish(execution.id, budget, _failed(str(failure), failure.details))
        except CapabilityHookFailed as failure:
            details = {"capability": failure.capability, "hook": failure.hook}
            return await finish(execution.id, budget, _failed(str(failure), details))
        except LeaseLost:  # another worker has the execution now: nothing more to write
            raise
        except (StoreUnavailable, ConcurrencyError) as error:
            if fence is not None:  # an outage or a lost race does not fail a worker's run: it runs again
                raise
            failed = _failed(f"{type(error).__name__}: {error}", {"exception": type(error).__name__})
            return await finish(execution.id, budget, failed)
        except asyncio.CancelledError:
            if execution.parent_id is not None:
                # A child stopped by its parent (the parent's time limit, a sibling's
                # failure) must not stay running; a top-level run is left to its owner.
                # Under a worker's fence (its parent's lease): a drive the worker abandons
                # (handed back at shutdown, or its lease lost) leaves the child running for
                # the parent's next driver, which drives it on.
                with contextlib.suppress(Exception):  # the cancellation is what must go on
                    await self._finish(execution.id, budget, lambda current: current.cancel(), fence)
            raise
        except Exception as error:  # a bug in an agent adapter must still end the run cleanly
            failed = _failed(f"{type(error).__name__}: {error}", {"exception": type(error).__name__})
            return await finish(execution.id, budget, failed)
        return await finish(execution.id, budget, lambda current: current.mark_complete(output))

    async def _finish(
        self,
        execution_id: UUID,
        budget: Budget,
        move: Callable[[Execution], None],
        fence: Fence | None = None,
        latest: Callable[[], Execution] | None = None,
    ) -> ExecutionRead:
        """Write the drive's totals and make the status move, in one update. ``latest``: the
        drive's last written copy of the execution, which a worker's first try starts from."""

        tries = 0

        def moved(current: Execution) -> Execution:
            current.metadata = budget.record({k: v for k, v in current.metadata.items() if k != CHILD_ANSWER})
            move(current)
            return current

        async def write() -> ExecutionRead:
            nonlocal tries
            tries += 1
            if fence is not None and tries > 1:  # the first try has no earlier one to look for
                done = await self.store.executions.get(execution_id)
                if done.is_final and await self.store.leases.find(execution_id) is None:
                    return ExecutionRead.from_entity(done)  # an earlier attempt went through
            if isinstance(fence, LeaseFence):  # the update and the lease's end in one step where it can
                # The first try starts from (a copy of) the drive's own last write, unread: the
                # update refuses a revision that changed since (a cancel, a takeover, anyone's
                # update), and the retry reads it (decision "16: a drive's client CPU").
                if tries == 1 and latest is not None:
                    current = moved(latest().model_copy(deep=True))
                else:
                    current = moved(await self.store.executions.get(execution_id))
                release = not fence.child  # a child's last write only checks its parent's lease
                finished = await update_execution_fenced(self.store, current, fence.hold, release)
                return ExecutionRead.from_entity(finished)
            async with self._fenced(fence, last=True):
                current = moved(await self.store.executions.get(execution_id))
                return ExecutionRead.from_entity(await self.store.executions.update(current))

        return await _written(fence, write)


async def _written(fence: Fence | None, write: Callable[[], Awaitable[T]]) -> T:
    """A worker's (fenced) write is run again when it loses a race (see :mod:`.retry`); an
    unfenced one, by a single process, is not."""
    return await (retried(write) if fence is not None else write())


def _failed(error: str, details: dict[str, Any]) -> Callable[[Execution], None]:
    return lambda current: current.mark_failed(error, details)


async def _within_time(budget: Budget, work: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Run ``work`` within what is left of the run's time limit."""
    remaining = budget.remaining_seconds()
    if remaining is None:
        return await work()
    if remaining <= 0:
        raise budget.over_time()
    scope = asyncio.timeout(remaining)
    try:
        async with scope:
            return await work()
    except TimeoutError:
        if scope.expired():
            raise budget.over_time() from None
        raise


__all__ = ["AgentLookup", "Engine"]

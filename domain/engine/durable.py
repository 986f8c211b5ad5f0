"""Runs that outlive a process: submitted to the store, driven by whichever worker claims
them, cancelled or answered from anywhere (issue 16; the worker loop is :mod:`.worker`).

A worker drives an execution with a *fence*: every write of the run goes in a transaction
that also checks, through ``store.leases.hold``, that the worker still holds the lease. A
worker that stalled past its lease (and was taken over) therefore commits nothing more,
and the one that took over replays the answered calls from what was committed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pydantic import ValidationError

from qmcp_agents.domain.agent import AgentType
from qmcp_agents.domain.clock import utc_now
from qmcp_agents.domain.enums import ExecutionStatus, TopologyType
from qmcp_agents.domain.errors import InvalidTransition
from qmcp_agents.domain.execution import Execution, ExecutionRead
from qmcp_agents.domain.leases import LeaseHold, LeaseLost
from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.queries import MAX_LIMIT
from qmcp_agents.domain.reading import topology_with_agent_types
from qmcp_agents.domain.recording import update_execution_fenced
from qmcp_agents.domain.topology import Topology
from qmcp_agents.domain.transactions import whole

from .budget import LIMITS_KEY, Limits
from .retry import retried

if TYPE_CHECKING:
    from .engine import AgentLookup, Fence

WORKERS_KEY = "workers"
"""Metadata key listing who drove the execution: one ``{"owner", "since", "attempt"}`` per
claim, so a takeover can be seen afterwards."""


class DurableRuns:
    """The engine's verbs for executions run by workers (mixed into ``Engine``)."""

    store: Store
    _agents: AgentLookup
    limits: Limits

    if TYPE_CHECKING:

        async def _drive(
            self,
            topology: Topology,
            execution: Execution,
            fence: Fence | None = None,
            agent_types: Mapping[int, AgentType] | None = None,
        ) -> ExecutionRead: ...

        async def _answered(self, execution_id: UUID, human_input: Any) -> Execution: ...

    async def submit(
        self,
        topology_name: str,
        input_data: Any,
        *,
        correlation_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        token_budget: int | None = None,
        time_limit_seconds: float | None = None,
    ) -> UUID:
        """Store a pending execution for workers to run, and return its id.

        Refused before anything is stored (one-line ``ValueError`` or ``NotFound``): an
        unknown topology, an input that is not a JSON object, or, when this engine's agents
        are a mapping, a slot (of the topology or of a compound's sub-topologies) none of
        them plays. The execution and its queue entry are written in one transaction."""
        topology = await self.store.topologies.get_by_name(topology_name)
        assert topology.id is not None
        missing = await self.missing_agents(topology)
        if missing:
            raise ValueError(f"agents: no agent for {', '.join(missing)}")
        limits = Limits(
            self.limits.token_budget if token_budget is None else token_budget,
            self.limits.time_limit_seconds if time_limit_seconds is None else time_limit_seconds,
        )
        try:
            execution = Execution(
                topology_id=topology.id,
                input_data=input_data,
                correlation_id=correlation_id,
                metadata={
                    **(metadata or {}),
                    **({LIMITS_KEY: limits.to_json()} if limits != Limits() else {}),
                },
            )
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "input"
            message = str(first["msg"]).removeprefix("Value error, ")
            given = _short(first.get("input"))
            shown = "" if given in message else f" (got {given})"
            raise ValueError(f"{where}: {message}{shown}") from None
        async with whole(self.store):
            stored = await self.store.executions.add(execution)
            await self.store.leases.enqueue(stored.id)
        return stored.id

    async def missing_agents(self, topology: Topology) -> list[str]:
        """Slots (``topology/slot``) this engine has no agent for; empty when its agents are
        a function (which cannot be asked in advance)."""
        if not isinstance(self._agents, Mapping):
            return []
        missing: list[str] = []
        seen: set[str] = set()
        pending = [topology]
        while pending:
            current = pending.pop()
            if current.name in seen:
                continue
            seen.add(current.name)
            if current.topology_type is TopologyType.COMPOUND:
                for name in getattr(current.get_typed_config(), "sub_topologies", []):
                    pending.append(await self.store.topologies.get_by_name(name))
                continue
            for membership in current.memberships:
                agent_type = await self.store.agent_types.get(membership.agent_type_id)
                if membership.slot_name not in self._agents and agent_type.name not in self._agents:
                    missing.append(f"{current.name}/{membership.slot_name}")
        return missing

    async def drive(
        self, execution_id: UUID, *, owner: str | None = None, attempt: int | None = None
    ) -> ExecutionRead:
        """Drive a submitted execution (pending, or running and taken over) until it ends or
        pauses. With ``owner`` (a worker's name) every write is fenced by its lease
        (``LeaseLost`` once it was taken over) and the claim is noted in the metadata.
        ``attempt`` is the claim's fencing token (``Lease.attempts`` as claimed; by default
        the entry's count when the drive starts): a drive of an earlier claim by the same
        owner, whose lease expired meanwhile, is fenced off too."""
        if owner is not None and attempt is None:
            lease = await self.store.leases.find(execution_id)
            attempt = lease.attempts if lease is not None else 0
        fence = None if owner is None else _fence(self.store, execution_id, owner, attempt)
        return await self._drive_on(execution_id, fence, owner, attempt)

    async def _drive_on(
        self,
        execution_id: UUID,
        fence: Fence | None,
        owner: str | None = None,
        attempt: int | None = None,
    ) -> ExecutionRead:
        """``drive`` with its ``fence``: the owner's (its claim noted in the metadata), or,
        without an owner, a compound's child driven on under its parent's lease."""

        async def start() -> Execution:
            execution = await self.store.executions.get(execution_id)
            if execution.status not in (ExecutionStatus.PENDING, ExecutionStatus.RUNNING):
                raise InvalidTransition(
                    f"execution {execution_id} is {execution.status.value}, not pending or running"
                )
            if execution.status is ExecutionStatus.PENDING:
                execution.start()
            if owner is not None:
                claim = {"owner": owner, "since": utc_now().isoformat(), "attempt": attempt}
                execution.metadata = {
                    **execution.metadata,
                    WORKERS_KEY: [*execution.metadata.get(WORKERS_KEY, []), claim],
                }
            if isinstance(fence, LeaseFence):  # one step where the store can (one statement)
                return await update_execution_fenced(self.store, execution, fence.hold, release=False)
            async with whole(self.store):
                execution = await self.store.executions.update(execution)
                if fence is not None:
                    await fence(False)
            return execution

        execution = await retried(start)
        topology, agent_types = await topology_with_agent_types(self.store, execution.topology_id)
        return await self._drive(topology, execution, fence, agent_types)

    async def cancel(self, execution_id: UUID) -> ExecutionRead:
        """Cancel an execution wherever it runs: the worker running it stops at its next step
        (its writes are refused from now on, and its heartbeat tells it to stop). A
        compound's children still running are cancelled with it: one left running by a
        driver that stopped (handed back, or died) would otherwise never end."""

        async def cancel() -> ExecutionRead:
            execution = await self.store.executions.get(execution_id)
            if execution.is_final:
                raise InvalidTransition(f"execution {execution_id} is already {execution.status.value}")
            execution.cancel()
            async with whole(self.store):
                cancelled = await self.store.executions.update(execution)
                await self.store.leases.release(execution_id, None)  # an unclaimed entry goes
                await self._cancel_children(execution_id)
            return ExecutionRead.from_entity(cancelled)

        return await retried(cancel)

    async def _cancel_children(self, parent_id: UUID) -> None:
        children = await self.store.executions.list(parent_id=parent_id, limit=MAX_LIMIT)
        for child in children.items:
            if not child.is_final:
                child.cancel()
                await self.store.executions.update(child)
            await self._cancel_children(child.id)

    async def answer(self, execution_id: UUID, human_input: Any) -> None:
        """Give a paused execution the answer a person wrote and hand it to the workers
        (any of them drives it on); ``resume`` drives it in this process instead."""
        execution = await self._answered(execution_id, human_input)
        # The pause deleted the entry; the new one counts on from the claims made so far, so
        # a drive of an earlier claim still running (same owner name) stays fenced off.
        claims = [c.get("attempt") or 0 for c in execution.metadata.get(WORKERS_KEY, [])]
        async with whole(self.store):
            await self.store.executions.update(execution)
            await self.store.leases.enqueue(execution_id, attempts=max(claims, default=0))


@dataclass(frozen=True, slots=True)
class LeaseFence:
    """A worker's fence: check (or, for the drive's last write, release) ``hold``'s claim
    in the caller's transaction, so the end of a run and the end of its lease commit
    together and a crash can never leave a finished execution's entry behind. ``child``:
    the fence of a compound's child, whose last write releases nothing (the parent's entry
    goes with the parent's end). The claim is kept in the open so that a write may check
    it in one step with its other work (:func:`qmcp_agents.domain.recording.record_call`,
    :func:`~qmcp_agents.domain.recording.update_execution_fenced`)."""

    store: Store
    hold: LeaseHold
    child: bool = False

    async def __call__(self, last: bool) -> None:
        hold = self.hold
        if not last or self.child:
            await self.store.leases.hold(hold.execution_id, hold.owner, attempt=hold.attempt)
        elif not await self.store.leases.release(hold.execution_id, hold.owner, attempt=hold.attempt):
            raise LeaseLost(f"worker {hold.owner!r} no longer holds execution {hold.execution_id}")


def _fence(store: Store, execution_id: UUID, owner: str, attempt: int | None) -> Fence:
    """``owner``'s fence of its claim ``attempt`` on ``execution_id`` (see :class:`LeaseFence`)."""
    return LeaseFence(store, LeaseHold(execution_id, owner, attempt))


def child_fence(fence: Fence | None) -> Fence | None:
    """The fence of a compound's child: every write of the child checks the parent's lease,
    and its last write releases nothing (the parent's entry goes with the parent's end)."""
    if fence is None:
        return None
    if isinstance(fence, LeaseFence):
        return replace(fence, child=True)
    parent = fence

    async def hold(last: bool) -> None:
        await parent(False)

    return hold


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


__all__ = ["WORKERS_KEY", "DurableRuns", "LeaseFence", "child_fence"]

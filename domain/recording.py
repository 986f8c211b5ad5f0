"""Recording an answered agent call: its message, its result and the instance's new state,
together, under the worker's lease (issue 16).

The engine records every answer this way, so it is the per-call write of a run. The
composed form is four repository calls in one :func:`~.transactions.whole` transaction; a
store that can do the same in one step (:class:`~.ports.CallRecorder`: PostgreSQL, one
statement instead of seven round trips) is asked first. Its step either writes everything
or nothing, and when it writes nothing the composed form runs, so every refusal is raised
by the repositories themselves, with the same error on every backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from .agent import AgentInstance
from .execution import Execution
from .leases import LeaseHold, LeaseLost
from .message import MessageCreate, Result
from .ports import CallRecorder, FencedInstanceAdder, FencedUpdater, RecordedCall, Store, supports
from .transactions import whole


async def record_call(
    store: Store,
    execution_id: UUID,
    message: MessageCreate,
    result: Result,
    instance: AgentInstance,
    lease: LeaseHold | None = None,
) -> RecordedCall:
    """Append ``message`` to the execution, add ``result`` and update ``instance`` (as last
    read: its revision is checked, as ``agent_instances.update`` checks it), all or
    nothing, and with ``lease`` only while that claim still holds the entry (``LeaseLost``
    otherwise). Inside a transaction the writes join it. Returns what was stored."""
    if supports(store, CallRecorder):  # type: ignore[type-abstract]
        recorded = await store.record_call(execution_id, message, result, instance, lease)
        if recorded is not None:
            return recorded
    return await record_call_composed(store, execution_id, message, result, instance, lease)


async def record_call_composed(
    store: Store,
    execution_id: UUID,
    message: MessageCreate,
    result: Result,
    instance: AgentInstance,
    lease: LeaseHold | None = None,
) -> RecordedCall:
    """:func:`record_call` from the repository calls, in one whole transaction: the
    definition the one-step form of a store must match (and the path that names why a
    refused call was refused). The lease is checked last, so its row (locked where the
    backend locks rows) is held for the shortest time."""
    async with whole(store):
        (appended,) = await store.messages.append(execution_id, [message])
        added = await store.results.add(result)
        updated = await store.agent_instances.update(instance)
        if lease is not None:
            await store.leases.hold(lease.execution_id, lease.owner, attempt=lease.attempt)
    return RecordedCall(appended, added, updated)


async def update_execution_fenced(
    store: Store, execution: Execution, lease: LeaseHold, release: bool
) -> Execution:
    """``executions.update(execution)`` under a worker's lease, all or nothing: with
    ``release`` (the drive's last write) the claim's entry goes with it, else the claim is
    only checked; ``LeaseLost`` when ``lease`` no longer holds the entry. The two fenced
    execution transitions of every drive (its start and its end) write this way, so a
    store that can do it in one step (:class:`~.ports.FencedUpdater`: PostgreSQL, one
    statement instead of four or five round trips) is asked first; when it writes nothing
    the composed form runs and raises the precise error. Inside a transaction the writes
    join it. Returns the stored execution."""
    if supports(store, FencedUpdater):  # type: ignore[type-abstract]
        updated = await store.update_execution_fenced(execution, lease, release)
        if updated is not None:
            return updated
    return await update_execution_fenced_composed(store, execution, lease, release)


async def update_execution_fenced_composed(
    store: Store, execution: Execution, lease: LeaseHold, release: bool
) -> Execution:
    """:func:`update_execution_fenced` from the repository calls, in one whole
    transaction: the definition a store's one-step form must match. The execution is
    updated first (its row locked first, as ``cancel`` and :func:`record_call` lock it),
    then the lease is checked or released."""
    async with whole(store):
        updated = await store.executions.update(execution)
        if not release:
            await store.leases.hold(lease.execution_id, lease.owner, attempt=lease.attempt)
        elif not await store.leases.release(lease.execution_id, lease.owner, attempt=lease.attempt):
            raise LeaseLost(f"worker {lease.owner!r} no longer holds execution {lease.execution_id}")
    return updated


async def add_instances_fenced(
    store: Store, instances: Sequence[AgentInstance], lease: LeaseHold
) -> list[AgentInstance]:
    """``agent_instances.add_many(instances)`` under a worker's lease (checked, not
    released), all or nothing; ``LeaseLost`` when ``lease`` no longer holds the entry. A
    drive seats its new members this way; a store that can do it in one step
    (:class:`~.ports.FencedInstanceAdder`: PostgreSQL, one statement instead of four round
    trips) is asked first; when it writes nothing the composed form runs and raises the
    precise error. Inside a transaction the writes join it. Returns the stored instances."""
    if supports(store, FencedInstanceAdder):  # type: ignore[type-abstract]
        added = await store.add_instances_fenced(instances, lease)
        if added is not None:
            return added
    return await add_instances_fenced_composed(store, instances, lease)


async def add_instances_fenced_composed(
    store: Store, instances: Sequence[AgentInstance], lease: LeaseHold
) -> list[AgentInstance]:
    """:func:`add_instances_fenced` from the repository calls, in one whole transaction:
    the definition a store's one-step form must match (the instances first, then the
    lease checked)."""
    async with whole(store):
        added = await store.agent_instances.add_many(instances)
        await store.leases.hold(lease.execution_id, lease.owner, attempt=lease.attempt)
    return added


__all__ = [
    "add_instances_fenced",
    "add_instances_fenced_composed",
    "record_call",
    "record_call_composed",
    "update_execution_fenced",
    "update_execution_fenced_composed",
]

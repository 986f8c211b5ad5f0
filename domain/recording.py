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

from uuid import UUID

from .agent import AgentInstance
from .leases import LeaseHold
from .message import MessageCreate, Result
from .ports import CallRecorder, RecordedCall, Store
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
    if isinstance(store, CallRecorder):
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


__all__ = ["record_call", "record_call_composed"]

"""An execution updated under a worker's lease in one statement on PostgreSQL (issue 16; the
store's side of :func:`qmcp_agents.domain.recording.update_execution_fenced`); likewise a
drive's new agent instances (:func:`add_instances_fenced`, at the end).

Every drive writes its execution twice this way: at its start (the status move and the
claim noted in the metadata, the lease checked) and at its end (the final status, the
lease released). The composed form is four round trips (``BEGIN``, the execution's
``UPDATE``, the lease's no-op ``UPDATE`` or ``DELETE``, ``COMMIT``; five when the
execution's one-statement update is refused and it is read ``FOR UPDATE`` first). Here it
is one data-modifying CTE chain, each step conditioned on the one before (an uncorrelated
``EXISTS`` on the earlier CTE, which PostgreSQL evaluates before the step's own scan, so
the steps also run in this order, as in :mod:`.record`):

1. ``execution``: the execution's row locked ``FOR NO KEY UPDATE`` (the lock its update
   takes, and the one :mod:`.record` takes first) if it passes every check of
   :func:`.driver.checked_update` (revision, this release's schema, the fields an update
   may not change, a status from which the new one can be reached, ``updated_at``).
2. ``fence``: the lease's no-op update of :func:`.leases.held_entry` (hold: it locks the
   entry until the transaction ends), or its delete (release), if the owner holds it by
   that claim.
3. The execution's new row, on step 2.

So the locks are taken in the composed path's order (execution, then lease: as ``cancel``
and :mod:`.record` take them, so no deadlock with them), and once step 2 passed, the row
the write needs is locked by this statement, so the write lands; if a check fails nothing
is written (the lock-only step and the no-op update change nothing, and the delete runs
only after step 1 passed). No row back: the caller runs the composed path, which raises
the precise error (or writes, if a race resolved it).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import Dialect, bindparam, delete, exists, select, update

from qmcp_agents.adapters.concurrency import settled
from qmcp_agents.domain.agent import AgentInstance
from qmcp_agents.domain.execution import Execution
from qmcp_agents.domain.integrity import for_insert
from qmcp_agents.domain.leases import LeaseHold

from . import driver, rows, schema
from .leases import held_entry
from .repositories import CheckedShape, checked_update_binds, instances_in_one_binds

if TYPE_CHECKING:
    from .store import SqlStore


@cache
def fenced_update_postgres(
    dialect: Dialect, shape: CheckedShape, release: bool, with_attempt: bool
) -> driver.Statement:
    """The statement (see the module's docstring), compiled once per shape. Binds: those of
    :func:`.driver.checked_update` for ``shape``, and ``lease_execution_id``, ``held_by``,
    ``claim`` (the lease's execution may be another: a compound's child writes under its
    parent's lease)."""
    e, t = schema.executions, schema.leases
    columns, equal, null, statuses, not_after = shape
    conditions = driver.checked_conditions(e, equal, null, statuses, not_after)
    locked = (
        select(e.c.id)
        .where(*conditions)
        .with_for_update(key_share=True, of=e)  # FOR NO KEY UPDATE
        .cte("execution")
    )
    held = [*held_entry(True, with_attempt, "lease_execution_id"), exists(select(locked.c.id))]
    step: Any = delete(t).where(*held) if release else update(t).where(*held).values(owner=t.c.owner)
    fence = step.returning(t.c.execution_id).cte("fence")
    values = {name: bindparam(name, type_=e.c[name].type) for name in columns}
    updated = (
        update(e)
        .where(conditions[0], exists(select(fence.c.execution_id)))  # conditions[0]: the id
        .values(**values)
        .returning(e.c.id)
        .cte("updated")
    )
    return driver.compile_statement(select(updated.c.id), dialect)


@cache
def fenced_instances_postgres(dialect: Dialect, count: int, with_attempt: bool) -> driver.Statement:
    """``count`` agent instances of one execution added under a worker's lease in one
    statement: the execution's row locked ``FOR KEY SHARE`` (what the insert's foreign key
    takes first in the composed path), then the lease's no-op update (hold) if the owner
    holds it by that claim, then :func:`.driver.add_instances_postgres`'s checked insert on
    it. Binds: those of the insert, ``instances_execution_id``, ``lease_execution_id``,
    ``held_by``, ``claim``. No rows back: nothing was written."""
    e, t, i = schema.executions, schema.leases, schema.agent_instances
    locked = (
        select(e.c.id)
        .where(e.c.id == bindparam("instances_execution_id", type_=e.c.id.type))
        .with_for_update(read=True, key_share=True, of=e)  # FOR KEY SHARE
        .cte("execution")
    )
    held = [*held_entry(True, with_attempt, "lease_execution_id"), exists(select(locked.c.id))]
    fence = update(t).where(*held).values(owner=t.c.owner).returning(t.c.execution_id).cte("fence")
    inserted = (
        driver.instances_insert(count, exists(select(fence.c.execution_id))).returning(i.c.id).cte("inserted")
    )
    return driver.compile_statement(select(inserted.c.id), dialect)


@settled
async def add_instances_fenced(
    store: SqlStore, instances: Sequence[AgentInstance], lease: LeaseHold
) -> list[AgentInstance] | None:
    """:class:`~qmcp_agents.domain.ports.FencedInstanceAdder` on PostgreSQL, where one
    statement may go to the driver: a few new instances of one execution (distinct ids);
    ``None`` for anything else and when the statement's checks refused it."""
    executions = {instance.execution_id for instance in instances}
    if len(executions) != 1 or None in executions:
        return None
    try:
        stored = [for_insert(instance) for instance in instances]
    except Exception:  # refused here: the composed path raises it where it would
        return None
    values = instances_in_one_binds(store, stored)
    if values is None:
        return None
    values.update(
        instances_execution_id=stored[0].execution_id,
        lease_execution_id=lease.execution_id,
        held_by=lease.owner,
        claim=lease.attempt,
    )
    statement = fenced_instances_postgres(store.engine.dialect, len(stored), lease.attempt is not None)
    async with store.driver() as raw:
        found = await driver.fetch(raw, statement, values)
    return stored if found else None


@settled
async def update_execution_fenced(
    store: SqlStore, execution: Execution, lease: LeaseHold, release: bool
) -> Execution | None:
    """The one-statement form on PostgreSQL, where one statement may go to the driver
    (:meth:`.SqlStore.one_statement_fits`); ``None`` elsewhere, for an execution the
    checked path must see (:func:`.repositories.checked_update_binds`), and when the
    statement's checks refused it."""
    if store.dialect != "postgresql" or not store.one_statement_fits():
        return None
    try:
        checked = checked_update_binds(execution, rows.execution_row)
    except Exception:  # refused here: the composed path raises it where it would
        return None
    if checked is None:
        return None
    written, values, shape = checked
    values.update(lease_execution_id=lease.execution_id, held_by=lease.owner, claim=lease.attempt)
    statement = fenced_update_postgres(store.engine.dialect, shape, release, lease.attempt is not None)
    async with store.driver() as raw:
        found = await driver.fetch(raw, statement, values)
    return written if found else None


__all__ = [
    "add_instances_fenced",
    "fenced_instances_postgres",
    "fenced_update_postgres",
    "update_execution_fenced",
]

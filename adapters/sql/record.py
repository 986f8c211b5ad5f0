"""An answered call recorded in one statement on PostgreSQL (issue 16; the store's side of
:func:`qmcp_agents.domain.recording.record_call`).

The composed form is seven round trips: ``BEGIN``, the message append, the result add,
the instance's ``SELECT ... FOR UPDATE`` and ``UPDATE``, the lease's no-op ``UPDATE``
(the fence) and ``COMMIT``. Here it is one data-modifying CTE chain, checks first, then
writes, each step conditioned on the one before (an uncorrelated ``EXISTS`` on the earlier
CTE, which PostgreSQL evaluates before the step's own scan, so the steps also run in this
order):

1. ``execution``: the execution's row locked ``FOR NO KEY UPDATE`` (what the append's
   counter bump takes), if it is not final, the message's sender (and recipient) are
   instances unbound or bound to it, the result's id is free and its instance unbound or
   bound to it: the checks of ``messages.append`` and ``results.add``.
2. ``instance``: the instance's row locked ``FOR UPDATE`` (as ``agent_instances.update``
   locks it), if it passes every check ``agent_instances.update``'s one statement makes
   (:func:`.driver.checked_conditions` of :func:`.repositories.checked_update_binds`: its
   revision is the expected one, it was written by this release (an older row is upcast on
   the composed path), the fields the update may not change and the agent type are as
   given), one definition for both.
3. ``fence`` (with a lease): the lease's no-op update of :func:`.leases.held_entry`, which
   locks the entry until the transaction ends, if the owner holds it by that claim.
4. The writes, each on the one before: the instance's new row (revision + 1), the counter
   bump, the message numbered by it, the result.

So the locks are taken in the composed path's order (execution, instance, lease: no
deadlock with a composed writer), and once step 3 passed every row a write needs is
locked by this statement, so every write lands; if a check fails nothing is written (the
lock-only steps and the no-op update change nothing). No row back: the caller runs the
composed path, which raises the precise error (or writes, if a race resolved it).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy import Dialect, bindparam, exists, insert, literal_column, or_, select, update

from qmcp_agents.adapters.concurrency import settled
from qmcp_agents.domain import AgentInstance, Message, MessageCreate, Result
from qmcp_agents.domain.arguments import uuid_id
from qmcp_agents.domain.integrity import for_insert
from qmcp_agents.domain.leases import LeaseHold
from qmcp_agents.domain.message import build_messages
from qmcp_agents.domain.ports import RecordedCall

from . import bulk, driver, rows, schema
from .leases import held_entry
from .repositories import CheckedShape, checked_update_binds

if TYPE_CHECKING:
    from .store import SqlStore

_INSTANCE_VALUES = (
    "id",
    "agent_type_id",
    "execution_id",
    "state",
    "metadata",
    "created_at",
    "last_active",
    "revision",
    "schema_version",
)
_RESULT_VALUES = tuple(name for name in driver._RESULT_VALUES if name != "execution_id")


@cache
def record_call_postgres(
    dialect: Dialect, checked: CheckedShape, with_lease: bool, with_attempt: bool
) -> driver.Statement:
    """The statement (see the module's docstring), compiled once per shape of the
    instance's check (``checked``: :func:`.repositories.checked_update_binds`) and of the
    lease. Binds: the message's as :func:`.driver.append_one_postgres` names them
    (``execution_id`` is also the result's), ``result_*``, ``instance_*`` (the new row),
    the ``where_*`` of :func:`.driver.checked_conditions`, and ``lease_execution_id``,
    ``held_by``, ``claim``."""
    e, i, m, r, t = schema.executions, schema.agent_instances, schema.messages, schema.results, schema.leases
    message = driver._message_binds()
    execution_id = message["execution_id"]
    result = {name: bindparam(f"result_{name}", type_=r.c[name].type) for name in _RESULT_VALUES}
    instance = {name: bindparam(f"instance_{name}", type_=i.c[name].type) for name in _INSTANCE_VALUES}
    _, equal, null, statuses, not_after = checked

    execution = (
        select(e.c.id)
        .where(
            e.c.id == execution_id,
            *(e.c.status != literal_column(f"'{status}'") for status in driver._FINAL),
            driver._participants_ok(),
            ~exists().where(r.c.id == result["id"]),
            exists().where(
                i.c.id == result["agent_instance_id"],
                or_(i.c.execution_id.is_(None), i.c.execution_id == execution_id),
            ),
        )
        .with_for_update(key_share=True, of=e)  # FOR NO KEY UPDATE
        .cte("execution")
    )
    locked = (
        select(i.c.id)
        .where(
            # What agent_instances.update checks of the stored row, as its one statement does.
            *driver.checked_conditions(i, equal, null, statuses, not_after),
            exists(select(execution.c.id)),
        )
        .with_for_update(of=i)
        .cte("instance")
    )
    gate: Any = locked
    if with_lease:
        gate = (
            update(t)
            .where(*held_entry(True, with_attempt, "lease_execution_id"), exists(select(locked.c.id)))
            .values(owner=t.c.owner)
            .returning(t.c.execution_id)
            .cte("fence")
        )
    updated = (
        update(i)
        .where(i.c.id == instance["id"], exists(select(gate.c[0])))
        .values(**{name: bind for name, bind in instance.items() if name != "id"})
        .returning(i.c.id)
        .cte("instance_updated")
    )
    bumped = (
        update(e)
        .where(e.c.id == execution_id, exists(select(updated.c.id)))
        .values(last_sequence_number=e.c.last_sequence_number + 1)
        .returning(e.c.last_sequence_number)
        .cte("bumped")
    )
    appended = (
        insert(m)
        .from_select([*message, "sequence_number"], select(*message.values(), bumped.c.last_sequence_number))
        .returning(m.c.sequence_number)
        .cte("appended")
    )
    added = (
        insert(r)
        .from_select(
            [*result, "execution_id"],
            select(*result.values(), execution_id).where(exists(select(appended.c.sequence_number))),
        )
        .returning(r.c.id)
        .cte("added")
    )
    statement = select(appended.c.sequence_number).where(exists(select(added.c.id)))
    return driver.compile_statement(statement, dialect)


@settled
async def record_call(
    store: SqlStore,
    execution_id: UUID,
    message: MessageCreate,
    result: Result,
    instance: AgentInstance,
    lease: LeaseHold | None,
) -> RecordedCall | None:
    """The one-statement form on PostgreSQL, where one statement may go to the driver
    (:meth:`.SqlStore.one_statement_fits`); ``None`` elsewhere, for arguments it does not
    take as they are (the composed path then refuses them with its own error, in its own
    order), and when the statement's checks refused it."""
    if store.dialect != "postgresql" or not store.one_statement_fits():
        return None
    try:
        prepared = _prepared(execution_id, message, result, instance, lease)
    except Exception:  # refused here: the composed path raises it where it would
        return None
    if prepared is None:
        return None
    values, checked, stored_message, stored_result, stored_instance = prepared
    with_lease, with_attempt = lease is not None, lease is not None and lease.attempt is not None
    statement = record_call_postgres(store.engine.dialect, checked, with_lease, with_attempt)
    async with store.driver() as raw:
        found = await driver.fetch(raw, statement, values)
    if not found:
        return None
    stored_message.__dict__["sequence_number"] = found[0][0]
    return RecordedCall(stored_message, stored_result, stored_instance)


def _prepared(
    execution_id: UUID,
    message: MessageCreate,
    result: Result,
    instance: AgentInstance,
    lease: LeaseHold | None,
) -> tuple[dict[str, Any], CheckedShape, Message, Result, AgentInstance] | None:
    """The statement's values, the shape of the instance's check, and what the
    repositories would return, built as they build them; ``None`` for a call the statement
    does not cover (arguments of another type, a result for another execution)."""
    execution_id = uuid_id(execution_id, "execution_id")
    if not isinstance(instance, AgentInstance) or not isinstance(result, Result):
        return None
    (stored_message,) = build_messages(execution_id, [MessageCreate.model_validate(message)], 0)
    stored_result = for_insert(result)
    # What agent_instances.update writes and checks (its one statement's binds and shape).
    checked = checked_update_binds(instance, rows.instance_row, also=("agent_type_id",))
    if checked is None or stored_result.execution_id != execution_id:
        return None
    stored_instance, instance_values, shape = checked
    values = bulk.row_dict(stored_message)
    values.update({f"result_{k}": v for k, v in rows.result_row(stored_result).items()})
    values.update({f"instance_{k}": v for k, v in rows.instance_row(stored_instance).items()})
    values.update({k: v for k, v in instance_values.items() if k.startswith("where_")})
    if lease is not None:
        values.update(lease_execution_id=lease.execution_id, held_by=lease.owner, claim=lease.attempt)
    return values, shape, stored_message, stored_result, stored_instance


__all__ = ["record_call", "record_call_postgres"]

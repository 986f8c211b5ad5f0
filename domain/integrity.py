"""Write rules shared by every store: revisions, immutable fields, status moves.

Adapters load the stored version, call these, then write; so optimistic concurrency and
the status machine mean the same on every backend.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel

from .agent import AgentType
from .capabilities import check_agent_config, check_overrides
from .capabilities import registry as capability_registry
from .clock import utc_now
from .enums import FINAL_STATUSES, ExecutionStatus
from .errors import AlreadyExists, ConcurrencyError, IntegrityError, InvalidTransition
from .execution import Execution, can_reach
from .message import Message
from .topology import Topology

E = TypeVar("E", bound=BaseModel)

IMMUTABLE: dict[str, tuple[str, ...]] = {
    "AgentType": ("name",),
    "Topology": ("name",),
    "Execution": ("topology_id", "parent_id", "started_at"),
    # Re-binding an instance would strand its messages and results in its first execution
    # (deleting the second one deletes the instance), so the binding is fixed at creation.
    "AgentInstance": ("created_at", "execution_id"),
    "Result": ("execution_id", "agent_instance_id"),
}


def immutable_fields(entity: BaseModel) -> tuple[str, ...]:
    """The fields of ``entity`` that ``update`` may not change, found through its class's
    bases: a subclass of ``AgentInstance`` is an agent instance, and its own name must not
    let it rebind the instance (or rename an agent type) past the checks."""
    for cls in type(entity).__mro__:
        if cls.__name__ in IMMUTABLE:
            return IMMUTABLE[cls.__name__]
    return ()


def describe(entity: BaseModel) -> str:
    """``AgentType 'planner' (id 3)``: how errors name an entity."""
    kind = type(entity).__name__
    name = getattr(entity, "name", None)
    ident = getattr(entity, "id", None)
    return f"{kind} {name!r} (id {ident})" if name is not None else f"{kind} {ident}"


def revalidated(entity: E, **changes: Any) -> E:
    """A private, fully validated copy of ``entity`` with ``changes`` applied.

    Stores write only what passes validation, even for an entity built with
    ``model_construct`` or changed behind Pydantic's back.
    """
    return type(entity).model_validate({**entity.model_dump(by_alias=False), **changes})


def check_capabilities_on_save(entity: BaseModel) -> None:
    """Capabilities are checked against the registry when written, never when read.

    So an agent type stored before a capability was unregistered still loads, and only a
    new write of it must name registered, well-configured capabilities (docs/capabilities.md).
    """
    if isinstance(entity, AgentType):
        check_agent_config(entity.config, capability_registry)
    elif isinstance(entity, Topology):
        for index, membership in enumerate(entity.memberships):
            check_overrides(
                membership.config_overrides, capability_registry, ("memberships", index, "config_overrides")
            )


def for_insert(entity: E, **changes: Any) -> E:
    """The stored form of a new entity: a validated private copy with ``revision=1``."""
    stored = revalidated(entity, revision=1, **changes)
    check_capabilities_on_save(stored)
    return stored


def for_update(stored: E, new: E) -> E:
    """Check ``new`` may replace ``stored``; return what to write (revision + 1).

    Raises ConcurrencyError for a stale revision, IntegrityError for a change to an
    immutable field, InvalidTransition for an illegal status move.
    """
    stored_revision: int = getattr(stored, "revision")  # noqa: B009 - every entity has it
    new_revision: int = getattr(new, "revision")  # noqa: B009
    if new_revision != stored_revision:
        raise ConcurrencyError(
            f"{describe(new)} was changed by someone else: you have revision "
            f"{new_revision}, the store has {stored_revision}; re-read and retry"
        )
    for field in immutable_fields(new):
        if getattr(new, field) != getattr(stored, field):
            raise IntegrityError(
                f"{describe(stored)}: {field} cannot change ({getattr(stored, field)!r} -> "
                f"{getattr(new, field)!r})"
            )
    if (
        isinstance(stored, Execution)
        and isinstance(new, Execution)
        and not can_reach(stored.status, new.status)
    ):
        raise InvalidTransition(
            f"execution {stored.id} cannot move from {stored.status.value!r} to {new.status.value!r}"
        )
    changes: dict[str, Any] = {"revision": stored_revision + 1}
    if "updated_at" in type(new).model_fields:
        changes["updated_at"] = max(utc_now(), getattr(stored, "updated_at"))  # noqa: B009
    written = revalidated(new, **changes)
    check_capabilities_on_save(written)
    return written


@dataclass(frozen=True)
class UpdateMatch:
    """What a stored entity must hold for ``for_update(stored, new)`` to pass and return
    the ``written`` copy :func:`for_update_matching` gave (see there)."""

    id: Any
    revision: int
    """The stored revision must be this one."""
    unchanged: dict[str, Any]
    """Immutable field -> the value the stored one must equal (``None``: must be null)."""
    statuses: frozenset[ExecutionStatus] | None
    """Executions: the stored status must be one of these (those ``new.status`` is
    reachable from)."""
    not_after: datetime | None
    """Entities with ``updated_at``: the stored one must be at most this (the written
    ``updated_at``: ``max(now, stored)`` is then ``now``)."""


def for_update_matching(new: E) -> tuple[E, UpdateMatch] | None:
    """What :func:`for_update` would write for ``new`` and what it checks of the stored
    entity, for a store that writes in one conditional statement (``UPDATE ... WHERE``
    every check holds): for any stored entity satisfying the match, ``for_update(stored,
    new)`` passes and writes ``written`` (``updated_at`` aside, which is the time of the
    call). When the stored entity does not match, the store falls back to loading it and
    calling :func:`for_update`, which raises the precise error, or writes if the match was
    only stricter than the checks.

    ``None`` when ``new`` itself needs that checked path: it fails validation or the
    capability check (refused there, in the checks' order), or a checked value is not
    already of its stored type (an id or a timestamp changed behind Pydantic's back, which
    would compare differently once converted for the store).
    """
    key: Any = getattr(new, "id", None)
    revision: Any = getattr(new, "revision")  # noqa: B009
    if type(revision) is not int or key is None:
        return None
    now = utc_now()
    with_updated_at = "updated_at" in type(new).model_fields
    changes: dict[str, Any] = {"revision": revision + 1}
    if with_updated_at:
        changes["updated_at"] = now
    try:
        written = revalidated(new, **changes)
        check_capabilities_on_save(written)
    except Exception:
        return None
    unchanged: dict[str, Any] = {}
    for field in ("id", *immutable_fields(new)):
        given, stored_form = getattr(new, field), getattr(written, field)
        if type(given) is not type(stored_form) or given != stored_form:
            return None
        unchanged[field] = stored_form
    statuses = None
    if isinstance(new, Execution):
        target: Any = new.status
        if type(target) is not ExecutionStatus:
            return None
        statuses = frozenset(s for s in ExecutionStatus if can_reach(s, target))
    match = UpdateMatch(unchanged.pop("id"), revision, unchanged, statuses, now if with_updated_at else None)
    return written, match


def with_own_membership_ids(topology: Topology, owned: Iterable[int]) -> Topology:
    """``topology`` with only the membership ids it may keep: those of its own stored
    memberships (``owned``), once each. Others (copied from another topology, made up) are
    cleared, so the store assigns fresh ones instead of sharing or colliding with ids."""
    own = set(owned)
    members = []
    for membership in topology.memberships:
        keep = membership.id in own
        own.discard(membership.id or 0)
        cleared = {"id": None, "topology_id": None}
        members.append(membership if keep else membership.model_copy(update=cleared))
    return topology.model_copy(update={"memberships": members})


def refuse_child_of_final(parent_id: UUID | None, parent_status: ExecutionStatus | None) -> None:
    """A final execution takes no new child executions: ``purge`` deletes a final parent
    with its children, and must never delete one still running."""
    if parent_id is not None and parent_status is not None:
        refuse_if_final(parent_id, parent_status, "child executions")


def check_instance_binding(instance_id: UUID, bound_to: UUID | None, execution_id: UUID, role: str) -> None:
    """An instance bound to one execution takes part in no other (unbound ones may roam).

    Deleting an execution deletes its bound instances, so a message or result elsewhere
    that named one would be left dangling.
    """
    if bound_to is not None and bound_to != execution_id:
        raise IntegrityError(f"{role} {instance_id} belongs to execution {bound_to}, not {execution_id}")


def for_restore(entity: E) -> E:
    """The stored form of an exported entity: validated, everything kept, revision >= 1."""
    stored = revalidated(entity)
    if getattr(stored, "revision") < 1:  # noqa: B009
        raise IntegrityError(f"{describe(stored)}: an exported entity has revision >= 1, got 0")
    return stored


def messages_to_restore(execution_id: UUID, stored_count: int, messages: list[Message]) -> list[Message]:
    """The messages of one execution still to write, checked to continue its sequence.

    ``stored_count`` is how many the execution has; numbers up to it are skipped.
    """
    fresh = sorted(
        (revalidated(m) for m in messages if m.sequence_number > stored_count),
        key=lambda m: m.sequence_number,
    )
    expected = stored_count + 1
    for message in fresh:
        if message.sequence_number != expected:
            raise IntegrityError(
                f"execution {execution_id}: restored messages must continue the sequence at {expected}, "
                f"got sequence_number {message.sequence_number}"
            )
        expected += 1
    return fresh


def refuse_taken_message_ids(messages: Iterable[Message], taken: Iterable[UUID]) -> None:
    """A restore never overwrites or duplicates a message: an id used twice in the call, or
    already stored (in any execution), is ``AlreadyExists`` and nothing is written."""
    seen: set[UUID] = set()
    for message in messages:
        if message.id in seen:
            raise AlreadyExists(f"message {message.id} appears twice in the restore")
        seen.add(message.id)
    for message_id in taken:
        if message_id in seen:
            raise AlreadyExists(f"message {message_id} already exists")


def refuse_if_final(execution_id: UUID, status: ExecutionStatus, what: str) -> None:
    """Final executions take no more messages or results."""
    if status in FINAL_STATUSES:
        raise InvalidTransition(f"execution {execution_id} is {status.value}; it takes no more {what}")


__all__ = [
    "IMMUTABLE",
    "immutable_fields",
    "check_capabilities_on_save",
    "check_instance_binding",
    "describe",
    "for_restore",
    "messages_to_restore",
    "for_insert",
    "UpdateMatch",
    "for_update",
    "for_update_matching",
    "refuse_child_of_final",
    "refuse_if_final",
    "refuse_taken_message_ids",
    "with_own_membership_ids",
    "revalidated",
]

"""Filters and pages: what a ``list`` or ``count`` may ask for, defined once for every backend.

Each filter is a small validated model with a ``matches`` method: the in-memory store uses
it directly, and the SQL and MongoDB adapters translate the same fields into their queries,
so a filter means the same thing everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar
from uuid import UUID

from pydantic import Strict, StrictInt, ValidationError, model_validator

from .agent import AgentInstance, AgentType
from .arguments import invalid_argument, uuid_id
from .base import INT32_MAX, DomainModel, Int32, StoredId, Text
from .clock import UtcDatetime
from .enums import FINAL_STATUSES, AgentRole, ExecutionStatus, TopologyType
from .execution import Execution
from .message import Message, Result
from .topology import Topology

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a keyset-ordered listing; pass ``next_cursor`` as ``after`` for the next.

    ``next_cursor`` is ``None`` on the last page. Cursors are opaque strings.
    """

    items: list[T]
    next_cursor: str | None


async def all_pages(fetch: Callable[[str | None], Awaitable[Page[T]]]) -> list[T]:
    """Every item of a listing: call ``fetch(after)`` following ``next_cursor`` to the end."""
    items: list[T] = []
    after: str | None = None
    while True:
        page = await fetch(after)
        items.extend(page.items)
        if page.next_cursor is None:
            return items
        after = page.next_cursor


def check_limit(limit: int, name: str = "limit") -> int:
    if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:
        raise invalid_argument(name, limit, f"{name} must be an integer from 1 to {MAX_LIMIT}, got {limit!r}")
    return limit


_INT_CURSOR = re.compile(r"[1-9][0-9]{0,9}")


def _not_a_cursor(after: object) -> ValidationError:
    return invalid_argument("after", after, f"after: {after!r} is not a cursor returned by this listing")


def int_cursor(after: str | None) -> int | None:
    """Decode a cursor over integer keys (ids, sequence numbers).

    A cursor is exactly the string a page returned: ASCII digits without sign, spaces,
    underscores or leading zeros, within the stored range. ``int()`` alone would take
    ``" 2"``, ``"+2"``, ``"1_0"``, ``"-3"`` and other scripts' digits (``"\u0663"``).
    """
    if after is None:
        return None
    if type(after) is not str or not _INT_CURSOR.fullmatch(after) or int(after) > INT32_MAX:
        raise _not_a_cursor(after)
    return int(after)


def uuid_cursor(after: str | None) -> UUID | None:
    """Decode a cursor over UUID keys: the canonical lowercase form ``str(uuid)`` only."""
    if after is None:
        return None
    if type(after) is not str or len(after) != 36:
        raise _not_a_cursor(after)
    try:
        key = UUID(after)
    except ValueError:
        raise _not_a_cursor(after) from None
    if str(key) != after:
        raise _not_a_cursor(after)
    return key


StrictUuid = Annotated[UUID, Strict()]
"""A UUID argument: a ``uuid.UUID``, never its string (a string would be found by one
backend and not by another)."""


class AgentTypeFilter(DomainModel):
    role: AgentRole | None = None

    def matches(self, entity: AgentType) -> bool:
        return self.role is None or entity.role is self.role


class TopologyFilter(DomainModel):
    topology_type: TopologyType | None = None

    def matches(self, entity: Topology) -> bool:
        return self.topology_type is None or entity.topology_type is self.topology_type


class AgentInstanceFilter(DomainModel):
    agent_type_id: StoredId | None = None
    execution_id: StrictUuid | None = None

    def matches(self, entity: AgentInstance) -> bool:
        return (self.agent_type_id is None or entity.agent_type_id == self.agent_type_id) and (
            self.execution_id is None or entity.execution_id == self.execution_id
        )


class ExecutionFilter(DomainModel):
    """``started_after`` is inclusive, ``started_before`` exclusive."""

    status: ExecutionStatus | None = None
    topology_id: StoredId | None = None
    correlation_id: Text | None = None
    parent_id: StrictUuid | None = None
    started_after: UtcDatetime | None = None
    started_before: UtcDatetime | None = None

    def matches(self, entity: Execution) -> bool:
        return (
            (self.status is None or entity.status is self.status)
            and (self.topology_id is None or entity.topology_id == self.topology_id)
            and (self.correlation_id is None or entity.correlation_id == self.correlation_id)
            and (self.parent_id is None or entity.parent_id == self.parent_id)
            and (self.started_after is None or entity.started_at >= self.started_after)
            and (self.started_before is None or entity.started_at < self.started_before)
        )


class ResultFilter(DomainModel):
    execution_id: StrictUuid | None = None
    agent_instance_id: StrictUuid | None = None

    def matches(self, entity: Result) -> bool:
        return (self.execution_id is None or entity.execution_id == self.execution_id) and (
            self.agent_instance_id is None or entity.agent_instance_id == self.agent_instance_id
        )


class MessageFilter(DomainModel):
    round_number: Int32 | None = None
    sender_id: StrictUuid | None = None

    def matches(self, entity: Message) -> bool:
        return (self.round_number is None or entity.round_number == self.round_number) and (
            self.sender_id is None or entity.sender_id == self.sender_id
        )


@dataclass(frozen=True, slots=True)
class MessageQuery:
    """The checked arguments of ``messages.list``: every backend reads the same from them."""

    execution_id: UUID
    limit: int
    start: int
    filter: MessageFilter


def message_query(
    execution_id: UUID, limit: int, after: str | None, round_number: int | None, sender_id: UUID | None
) -> MessageQuery:
    """Check ``messages.list``'s arguments (raises ``ValidationError``) before any I/O."""
    return MessageQuery(
        uuid_id(execution_id, "execution_id"),
        check_limit(limit),
        int_cursor(after) or 0,
        MessageFilter(round_number=round_number, sender_id=sender_id),
    )


class PurgeRequest(DomainModel):
    """Executions in ``statuses`` that completed before ``older_than``; only final statuses."""

    older_than: UtcDatetime
    statuses: frozenset[ExecutionStatus] = FINAL_STATUSES
    batch_size: StrictInt = 500

    @model_validator(mode="after")
    def _only_final(self) -> PurgeRequest:
        live = sorted(s.value for s in self.statuses - FINAL_STATUSES)
        if live:
            raise ValueError(f"statuses: purge deletes only final executions, not {live}")
        if not self.statuses:
            raise ValueError("statuses: give at least one final status")
        if not 1 <= self.batch_size <= 10_000:
            raise ValueError(f"batch_size must be from 1 to 10000, got {self.batch_size}")
        return self

    def matches(self, entity: Execution) -> bool:
        return (
            entity.status in self.statuses
            and entity.completed_at is not None
            and entity.completed_at < self.older_than
        )


__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "AgentInstanceFilter",
    "AgentTypeFilter",
    "ExecutionFilter",
    "MessageFilter",
    "MessageQuery",
    "message_query",
    "Page",
    "PurgeRequest",
    "all_pages",
    "ResultFilter",
    "TopologyFilter",
    "check_limit",
    "int_cursor",
    "uuid_cursor",
]

"""Executions and their status machine.

::

    pending --start--> running --pause--> paused --resume--> running
    pending | running | paused --mark_failed / cancel--> failed | cancelled
    running --mark_complete--> completed

``completed``, ``failed`` and ``cancelled`` are final. The methods below are the only way
to move an execution: assigning ``status`` or ``completed_at`` directly raises, so the
invariant "``completed_at`` is set exactly when the status is final" cannot be broken.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from pydantic import AliasChoices, Field, model_validator

from .base import DomainModel, Int32, Name, ShortText, StoredId, Text
from .clock import UtcDatetime, utc_now
from .enums import FINAL_STATUSES, ExecutionStatus
from .errors import InvalidTransition
from .ids import uuid7
from .json_payload import JsonObject

_S = ExecutionStatus
ALLOWED_TRANSITIONS: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    _S.PENDING: frozenset({_S.RUNNING, _S.FAILED, _S.CANCELLED}),
    _S.RUNNING: frozenset({_S.PAUSED, _S.COMPLETED, _S.FAILED, _S.CANCELLED}),
    _S.PAUSED: frozenset({_S.RUNNING, _S.FAILED, _S.CANCELLED}),
    _S.COMPLETED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
}

_GUARDED = frozenset({"status", "completed_at"})
_MILLISECOND = timedelta(milliseconds=1)


def can_transition(source: ExecutionStatus, target: ExecutionStatus) -> bool:
    """Whether the status machine allows ``source -> target`` in one move."""
    return target in ALLOWED_TRANSITIONS[source]


def can_reach(source: ExecutionStatus, target: ExecutionStatus) -> bool:
    """Whether ``target`` is ``source`` or reachable from it by legal moves.

    A store sees only the status it holds and the one it is asked to write, and a client
    may make several moves in between (``resume`` then ``mark_complete``); what must never
    be written is a status the machine cannot reach, such as leaving a final status.
    """
    seen, frontier = {source}, [source]
    while frontier:
        for nxt in ALLOWED_TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return target in seen


class ExecutionCreate(DomainModel):
    """Input for starting an execution of a topology, named by its topology."""

    topology_name: Name
    input_data: JsonObject
    metadata: JsonObject | None = Field(default=None, validation_alias=AliasChoices("metadata", "metadata_"))
    correlation_id: ShortText | None = None
    parent_id: UUID | None = None


class Execution(DomainModel):
    """One run of a topology: input, output, status, timing and error."""

    id: UUID = Field(default_factory=uuid7)
    topology_id: StoredId
    parent_id: UUID | None = None
    status: ExecutionStatus = ExecutionStatus.PENDING
    input_data: JsonObject
    output_data: JsonObject | None = None
    correlation_id: ShortText | None = None
    metadata: JsonObject = Field(default_factory=dict, validation_alias=AliasChoices("metadata", "metadata_"))
    started_at: UtcDatetime = Field(default_factory=utc_now)
    completed_at: UtcDatetime | None = None
    error: Text | None = None
    error_details: JsonObject | None = None
    revision: Int32 = 0

    @model_validator(mode="after")
    def _completed_at_matches_status(self) -> Execution:
        final = self.status in FINAL_STATUSES
        if final and self.completed_at is None:
            raise ValueError(f"completed_at is required when status is {self.status.value!r}")
        if not final and self.completed_at is not None:
            raise ValueError(f"completed_at must be None while status is {self.status.value!r}")
        if self.completed_at is not None and self.completed_at < self.started_at:
            raise ValueError(
                f"completed_at {self.completed_at.isoformat()} is before started_at "
                f"{self.started_at.isoformat()}"
            )
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _GUARDED:
            raise AttributeError(
                f"{name} of execution {self.id} cannot be assigned; use start(), pause(), "
                "resume(), cancel(), mark_complete() or mark_failed()"
            )
        super().__setattr__(name, value)

    @property
    def metadata_(self) -> dict[str, Any]:
        """The specification's spelling of :attr:`metadata`."""
        return self.metadata

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def duration_ms(self) -> int | None:
        """Whole milliseconds from start to completion; ``None`` until final."""
        if self.completed_at is None:
            return None
        return (self.completed_at - self.started_at) // _MILLISECOND

    def _move(self, target: ExecutionStatus, only_from: ExecutionStatus | None = None) -> None:
        if not can_transition(self.status, target) or only_from not in (None, self.status):
            raise InvalidTransition(
                f"execution {self.id} cannot move from {self.status.value!r} to {target.value!r}"
            )
        if target in FINAL_STATUSES:
            # Never before started_at, even if the wall clock stepped back.
            self.__dict__["completed_at"] = max(utc_now(), self.started_at)
        self.__dict__["status"] = target

    def start(self) -> None:
        """pending -> running."""
        self._move(ExecutionStatus.RUNNING, only_from=ExecutionStatus.PENDING)

    def pause(self) -> None:
        """running -> paused (for example, waiting for human input)."""
        self._move(ExecutionStatus.PAUSED)

    def resume(self) -> None:
        """paused -> running."""
        self._move(ExecutionStatus.RUNNING, only_from=ExecutionStatus.PAUSED)

    def cancel(self) -> None:
        """pending | running | paused -> cancelled."""
        self._move(ExecutionStatus.CANCELLED)

    def mark_complete(self, output: dict[str, Any]) -> None:
        """running -> completed, recording ``output``."""
        checked = _validated_payload(self, "output_data", output)
        self._move(ExecutionStatus.COMPLETED)
        self.__dict__["output_data"] = checked

    def mark_failed(self, error: str, details: dict[str, Any] | None = None) -> None:
        """pending | running | paused -> failed, recording the error and its details."""
        checked_error = _validated_payload(self, "error", error)
        checked_details = _validated_payload(self, "error_details", details)
        self._move(ExecutionStatus.FAILED)
        self.__dict__["error"] = checked_error
        self.__dict__["error_details"] = checked_details


def _validated_payload(execution: Execution, field: str, value: Any) -> Any:
    """Validate one field value without touching ``execution`` (so a bad value moves nothing)."""
    probe = execution.model_copy()
    Execution.__pydantic_validator__.validate_assignment(probe, field, value)
    return probe.__dict__[field]


class ExecutionRead(DomainModel):
    """Output view of an execution."""

    id: UUID
    topology_id: int
    parent_id: UUID | None = None
    status: ExecutionStatus
    input_data: dict[str, Any]
    output_data: dict[str, Any] | None
    correlation_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    started_at: UtcDatetime
    completed_at: UtcDatetime | None
    duration_ms: int | None
    error: str | None
    error_details: dict[str, Any] | None = None

    @classmethod
    def from_entity(cls, entity: Execution) -> ExecutionRead:
        data = entity.model_dump(exclude={"revision"})
        return cls(**data, duration_ms=entity.duration_ms)


__all__ = [
    "ALLOWED_TRANSITIONS",
    "Execution",
    "ExecutionCreate",
    "ExecutionRead",
    "can_reach",
    "can_transition",
]

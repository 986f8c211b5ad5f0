"""Messages agents exchange during an execution, and each agent's result."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any
from uuid import UUID

from pydantic import AfterValidator, Field, StrictFloat, StrictInt, model_validator

from .base import DomainModel, Int32, Text
from .clock import UtcDatetime, utc_now
from .enums import MessageType
from .ids import uuid7, uuid7_many
from .json_payload import INT64_MAX, JsonObject, check_message_size


class _Addressed(DomainModel):
    """A broadcast has no recipient: ``recipient_id=None`` means "to everyone"."""

    sender_id: UUID
    recipient_id: UUID | None = None
    message_type: MessageType
    content: Annotated[JsonObject, AfterValidator(check_message_size)]
    round_number: Int32 = 0

    @model_validator(mode="after")
    def _broadcast_has_no_recipient(self) -> Any:
        if self.message_type is MessageType.BROADCAST and self.recipient_id is not None:
            raise ValueError(
                f"a broadcast message must not have a recipient (recipient_id={self.recipient_id})"
            )
        return self


class MessageCreate(_Addressed):
    """Input for appending a message; the store assigns its sequence number."""


class Message(_Addressed):
    """A stored message; ``sequence_number`` is 1, 2, 3... per execution, set by the store."""

    id: UUID = Field(default_factory=uuid7)
    execution_id: UUID
    sequence_number: Int32 = 0
    created_at: UtcDatetime = Field(default_factory=utc_now)
    revision: Int32 = 0


class MessageRead(DomainModel):
    """Output view of a message."""

    id: UUID
    execution_id: UUID
    sender_id: UUID
    recipient_id: UUID | None
    message_type: MessageType
    content: dict[str, Any]
    round_number: int = 0
    sequence_number: int = 0
    created_at: UtcDatetime

    @classmethod
    def from_entity(cls, entity: Message) -> MessageRead:
        return cls(**entity.model_dump(exclude={"revision"}))


_MESSAGE_FIELDS = frozenset(Message.model_fields)


def trusted_message(**fields: Any) -> Message:
    """A ``Message`` from a complete set of already validated values, for stores.

    Stores build the messages of an append from drafts they have just validated; doing it
    with ``Message(...)`` would validate every payload a second time. This is what
    ``Message.model_construct`` does for a complete set of fields, at a fraction of its
    cost, which matters when a batch holds thousands of messages.
    """
    message = Message.__new__(Message)
    object.__setattr__(message, "__dict__", fields)
    object.__setattr__(message, "__pydantic_fields_set__", set(_MESSAGE_FIELDS))
    object.__setattr__(message, "__pydantic_extra__", None)
    object.__setattr__(message, "__pydantic_private__", None)
    return message


def build_messages(execution_id: UUID, drafts: Sequence[MessageCreate], first: int) -> list[Message]:
    """The messages a store writes for validated ``drafts``: new ids, one timestamp, and
    sequence numbers from ``first`` on."""
    now = utc_now()
    ids = uuid7_many(len(drafts))
    return [
        trusted_message(
            id=ids[i],
            execution_id=execution_id,
            sender_id=d.sender_id,
            recipient_id=d.recipient_id,
            message_type=d.message_type,
            content=d.content,
            round_number=d.round_number,
            sequence_number=first + i,
            created_at=now,
            revision=1,
        )
        for i, d in enumerate(drafts)
    ]


TokenCount = StrictInt


class Result(DomainModel):
    """One agent's contribution to an execution: output, confidence, reasoning, usage."""

    id: UUID = Field(default_factory=uuid7)
    execution_id: UUID
    agent_instance_id: UUID
    output: JsonObject
    confidence: StrictFloat | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    reasoning: Text | None = None
    token_usage: dict[Text, TokenCount] | None = None
    started_at: UtcDatetime = Field(default_factory=utc_now)
    completed_at: UtcDatetime | None = None
    revision: Int32 = 0

    @model_validator(mode="after")
    def _usage_and_timing(self) -> Result:
        for key, count in (self.token_usage or {}).items():
            if not 0 <= count <= INT64_MAX:
                raise ValueError(f"token_usage[{key!r}] must be a non-negative 64-bit integer, got {count}")
            if "\x00" in key:
                raise ValueError(f"token_usage key {key!r} contains a NUL character")
        if self.completed_at is not None and self.completed_at < self.started_at:
            raise ValueError(
                f"completed_at {self.completed_at.isoformat()} is before started_at "
                f"{self.started_at.isoformat()}"
            )
        return self

    @property
    def total_tokens(self) -> int:
        return sum((self.token_usage or {}).values())


__all__ = ["Message", "MessageCreate", "MessageRead", "Result", "build_messages", "trusted_message"]

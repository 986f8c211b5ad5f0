"""The models specification's tables as SQLModel ORM classes: the baseline the store's
batch append is compared with (what an application would write straight from the spec)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel


def _now() -> datetime:
    return datetime.now(UTC)


class SpecExecution(SQLModel, table=True):
    __tablename__ = "spec_executions"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    topology_id: int
    status: str = "running"
    input_data: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    started_at: datetime = Field(default_factory=_now)


class SpecAgentInstance(SQLModel, table=True):
    __tablename__ = "spec_agent_instances"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    agent_type_id: int
    execution_id: UUID | None = Field(default=None, foreign_key="spec_executions.id")
    state: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class SpecMessage(SQLModel, table=True):
    __tablename__ = "spec_messages"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    execution_id: UUID = Field(foreign_key="spec_executions.id")
    sender_id: UUID = Field(foreign_key="spec_agent_instances.id")
    recipient_id: UUID | None = Field(default=None, foreign_key="spec_agent_instances.id")
    message_type: str
    content: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    round_number: int = 0
    sequence_number: int = 0
    created_at: datetime = Field(default_factory=_now)

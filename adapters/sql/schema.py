"""The tables, as explicit SQLAlchemy Core definitions: one ``MetaData`` for SQLite and
PostgreSQL. Alembic migrations (``migrations/``) build exactly this; a test compares them.

Every list filter has an index ending in the listing key, so a filtered keyset page is an
index range scan; ``(execution_id, sequence_number)`` is unique and serves "the last n
messages of an execution" from the index's end.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)

from .types import UtcDateTime, json_type

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)
VERSION_TABLE = "qmcp_schema_version"
"""Alembic's version table, named for this library so it never meets an application's own."""


def _stamps() -> list[Column[int]]:
    return [
        Column("revision", Integer, nullable=False),
        Column("schema_version", SmallInteger, nullable=False),
    ]


agent_types = Table(
    "qmcp_agent_types",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("description", String(1024), nullable=False),
    Column("role", String(32), nullable=False),
    Column("version", String(64), nullable=False),
    Column("config", json_type(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    *_stamps(),
    Index(None, "role", "id"),
    sqlite_autoincrement=True,
)

topologies = Table(
    "qmcp_topologies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("description", String(1024), nullable=False),
    Column("topology_type", String(16), nullable=False),
    Column("version", String(64), nullable=False),
    Column("config", json_type(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    *_stamps(),
    Index(None, "topology_type", "id"),
    sqlite_autoincrement=True,
)

memberships = Table(
    "qmcp_topology_memberships",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("topology_id", Integer, ForeignKey(topologies.c.id, ondelete="CASCADE"), nullable=False),
    Column("agent_type_id", Integer, ForeignKey(agent_types.c.id), nullable=False),
    Column("slot_name", String(255), nullable=False),
    Column("position", Integer, nullable=False),
    Column("config_overrides", json_type(), nullable=False),
    UniqueConstraint("topology_id", "slot_name"),
    Index(None, "agent_type_id"),
    sqlite_autoincrement=True,
)

executions = Table(
    "qmcp_executions",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("topology_id", Integer, ForeignKey(topologies.c.id), nullable=False),
    Column("parent_id", Uuid, ForeignKey("qmcp_executions.id", ondelete="CASCADE"), nullable=True),
    Column("status", String(16), nullable=False),
    Column("input_data", json_type(), nullable=False),
    Column("output_data", json_type(nullable=True), nullable=True),
    Column("correlation_id", String(255), nullable=True),
    Column("metadata", json_type(), nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("completed_at", UtcDateTime(), nullable=True),
    Column("error", Text, nullable=True),
    Column("error_details", json_type(nullable=True), nullable=True),
    # The last message sequence number handed out; bumped atomically by every append.
    Column("last_sequence_number", Integer, nullable=False, server_default="0"),
    *_stamps(),
    Index(None, "status", "id"),
    Index(None, "topology_id", "id"),
    Index(None, "correlation_id", "id"),
    Index(None, "parent_id", "id"),
    Index(None, "started_at"),
    Index(None, "status", "completed_at"),
)

agent_instances = Table(
    "qmcp_agent_instances",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("agent_type_id", Integer, ForeignKey(agent_types.c.id), nullable=False),
    Column("execution_id", Uuid, ForeignKey(executions.c.id, ondelete="CASCADE"), nullable=True),
    Column("state", json_type(), nullable=False),
    Column("metadata", json_type(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("last_active", UtcDateTime(), nullable=True),
    *_stamps(),
    Index(None, "agent_type_id", "id"),
    Index(None, "execution_id", "id"),
)

messages = Table(
    "qmcp_messages",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("execution_id", Uuid, ForeignKey(executions.c.id, ondelete="CASCADE"), nullable=False),
    Column("sender_id", Uuid, ForeignKey(agent_instances.c.id), nullable=False),
    Column("recipient_id", Uuid, ForeignKey(agent_instances.c.id), nullable=True),
    Column("message_type", String(16), nullable=False),
    Column("content", json_type(), nullable=False),
    Column("round_number", Integer, nullable=False),
    Column("sequence_number", Integer, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    *_stamps(),
    UniqueConstraint("execution_id", "sequence_number"),
    Index(None, "execution_id", "round_number", "sequence_number"),
    # The sender filter (an equality on both leading columns, then the keyset) and the
    # foreign key's lookups by sender (deleting an instance) share one index; the
    # recipient's lookups need only the messages that have one (docs/decisions.md, issue 15).
    Index(None, "sender_id", "execution_id", "sequence_number"),
    Index(
        None,
        "recipient_id",
        postgresql_where=text("recipient_id IS NOT NULL"),
        sqlite_where=text("recipient_id IS NOT NULL"),
    ),
)

results = Table(
    "qmcp_results",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("execution_id", Uuid, ForeignKey(executions.c.id, ondelete="CASCADE"), nullable=False),
    Column("agent_instance_id", Uuid, ForeignKey(agent_instances.c.id), nullable=False),
    Column("output", json_type(), nullable=False),
    Column("confidence", Double, nullable=True),
    Column("reasoning", Text, nullable=True),
    Column("token_usage", json_type(nullable=True), nullable=True),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("completed_at", UtcDateTime(), nullable=True),
    *_stamps(),
    Index(None, "execution_id", "id"),
    Index(None, "agent_instance_id", "id"),
)

leases = Table(
    "qmcp_leases",
    metadata,
    # The work queue of executions submitted for workers, with each one's lease (issue 16).
    Column("execution_id", Uuid, ForeignKey(executions.c.id, ondelete="CASCADE"), primary_key=True),
    Column("owner", String(255), nullable=True),
    Column("ready", Boolean, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("claimed_at", UtcDateTime(), nullable=True),
    Column("heartbeat_at", UtcDateTime(), nullable=True),
    Column("expires_at", UtcDateTime(), nullable=True),
    Column("schema_version", SmallInteger, nullable=False),
    # A claim scans the ready entries and the expired ones, each in execution order.
    Index(None, "ready", "execution_id"),
    Index(None, "expires_at"),
    Index(None, "owner"),
)

ALL_TABLES = (agent_types, topologies, memberships, executions, agent_instances, messages, results, leases)

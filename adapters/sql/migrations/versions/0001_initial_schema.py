"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26

The tables of adapters/sql/schema.py, as first released.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from qmcp_agents.adapters.sql.types import UtcDateTime, json_type

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "qmcp_agent_types",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=1024), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("config", json_type(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("schema_version", sa.SmallInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qmcp_agent_types")),
        sa.UniqueConstraint("name", name=op.f("uq_qmcp_agent_types_name")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("qmcp_agent_types", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_qmcp_agent_types_role_id"), ["role", "id"], unique=False)

    op.create_table(
        "qmcp_topologies",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=1024), nullable=False),
        sa.Column("topology_type", sa.String(length=16), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("config", json_type(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("schema_version", sa.SmallInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qmcp_topologies")),
        sa.UniqueConstraint("name", name=op.f("uq_qmcp_topologies_name")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("qmcp_topologies", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_qmcp_topologies_topology_type_id"), ["topology_type", "id"], unique=False
        )

    op.create_table(
        "qmcp_executions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("topology_id", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("input_data", json_type(), nullable=False),
        sa.Column("output_data", json_type(nullable=True), nullable=True),
        sa.Column("correlation_id", sa.String(length=255), nullable=True),
        sa.Column("metadata", json_type(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("completed_at", UtcDateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_details", json_type(nullable=True), nullable=True),
        sa.Column("last_sequence_number", sa.Integer(), server_default="0", nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("schema_version", sa.SmallInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["qmcp_executions.id"],
            name=op.f("fk_qmcp_executions_parent_id_qmcp_executions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["topology_id"],
            ["qmcp_topologies.id"],
            name=op.f("fk_qmcp_executions_topology_id_qmcp_topologies"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qmcp_executions")),
    )
    with op.batch_alter_table("qmcp_executions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_qmcp_executions_correlation_id_id"), ["correlation_id", "id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_qmcp_executions_parent_id_id"), ["parent_id", "id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_qmcp_executions_started_at"), ["started_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_qmcp_executions_status_completed_at"), ["status", "completed_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_qmcp_executions_status_id"), ["status", "id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_qmcp_executions_topology_id_id"), ["topology_id", "id"], unique=False
        )

    op.create_table(
        "qmcp_topology_memberships",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("topology_id", sa.Integer(), nullable=False),
        sa.Column("agent_type_id", sa.Integer(), nullable=False),
        sa.Column("slot_name", sa.String(length=255), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("config_overrides", json_type(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_type_id"],
            ["qmcp_agent_types.id"],
            name=op.f("fk_qmcp_topology_memberships_agent_type_id_qmcp_agent_types"),
        ),
        sa.ForeignKeyConstraint(
            ["topology_id"],
            ["qmcp_topologies.id"],
            name=op.f("fk_qmcp_topology_memberships_topology_id_qmcp_topologies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qmcp_topology_memberships")),
        sa.UniqueConstraint(
            "topology_id", "slot_name", name=op.f("uq_qmcp_topology_memberships_topology_id_slot_name")
        ),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("qmcp_topology_memberships", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_qmcp_topology_memberships_agent_type_id"), ["agent_type_id"], unique=False
        )

    op.create_table(
        "qmcp_agent_instances",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("agent_type_id", sa.Integer(), nullable=False),
        sa.Column("execution_id", sa.Uuid(), nullable=True),
        sa.Column("state", json_type(), nullable=False),
        sa.Column("metadata", json_type(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("last_active", UtcDateTime(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("schema_version", sa.SmallInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_type_id"],
            ["qmcp_agent_types.id"],
            name=op.f("fk_qmcp_agent_instances_agent_type_id_qmcp_agent_types"),
        ),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["qmcp_executions.id"],
            name=op.f("fk_qmcp_agent_instances_execution_id_qmcp_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qmcp_agent_instances")),
    )
    with op.batch_alter_table("qmcp_agent_instances", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_qmcp_agent_instances_agent_type_id_id"), ["agent_type_id", "id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_qmcp_agent_instances_execution_id_id"), ["execution_id", "id"], unique=False
        )

    op.create_table(
        "qmcp_messages",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("execution_id", sa.Uuid(), nullable=False),
        sa.Column("sender_id", sa.Uuid(), nullable=False),
        sa.Column("recipient_id", sa.Uuid(), nullable=True),
        sa.Column("message_type", sa.String(length=16), nullable=False),
        sa.Column("content", json_type(), nullable=False),
        sa.Column("round_number", sa.Integer(), nullable=False),
        sa.Column("sequence_number", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("schema_version", sa.SmallInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["qmcp_executions.id"],
            name=op.f("fk_qmcp_messages_execution_id_qmcp_executions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["recipient_id"],
            ["qmcp_agent_instances.id"],
            name=op.f("fk_qmcp_messages_recipient_id_qmcp_agent_instances"),
        ),
        sa.ForeignKeyConstraint(
            ["sender_id"],
            ["qmcp_agent_instances.id"],
            name=op.f("fk_qmcp_messages_sender_id_qmcp_agent_instances"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qmcp_messages")),
        sa.UniqueConstraint(
            "execution_id", "sequence_number", name=op.f("uq_qmcp_messages_execution_id_sequence_number")
        ),
    )
    with op.batch_alter_table("qmcp_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_qmcp_messages_execution_id_round_number_sequence_number"),
            ["execution_id", "round_number", "sequence_number"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_qmcp_messages_execution_id_sender_id_sequence_number"),
            ["execution_id", "sender_id", "sequence_number"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_qmcp_messages_recipient_id"), ["recipient_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_qmcp_messages_sender_id"), ["sender_id"], unique=False)

    op.create_table(
        "qmcp_results",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("execution_id", sa.Uuid(), nullable=False),
        sa.Column("agent_instance_id", sa.Uuid(), nullable=False),
        sa.Column("output", json_type(), nullable=False),
        sa.Column("confidence", sa.Double(), nullable=True),
        sa.Column("reasoning", sa.Text(), nullable=True),
        sa.Column("token_usage", json_type(nullable=True), nullable=True),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("completed_at", UtcDateTime(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("schema_version", sa.SmallInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_instance_id"],
            ["qmcp_agent_instances.id"],
            name=op.f("fk_qmcp_results_agent_instance_id_qmcp_agent_instances"),
        ),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["qmcp_executions.id"],
            name=op.f("fk_qmcp_results_execution_id_qmcp_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qmcp_results")),
    )
    with op.batch_alter_table("qmcp_results", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_qmcp_results_agent_instance_id_id"), ["agent_instance_id", "id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_qmcp_results_execution_id_id"), ["execution_id", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("qmcp_results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_qmcp_results_execution_id_id"))
        batch_op.drop_index(batch_op.f("ix_qmcp_results_agent_instance_id_id"))

    op.drop_table("qmcp_results")
    with op.batch_alter_table("qmcp_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_qmcp_messages_sender_id"))
        batch_op.drop_index(batch_op.f("ix_qmcp_messages_recipient_id"))
        batch_op.drop_index(batch_op.f("ix_qmcp_messages_execution_id_sender_id_sequence_number"))
        batch_op.drop_index(batch_op.f("ix_qmcp_messages_execution_id_round_number_sequence_number"))

    op.drop_table("qmcp_messages")
    with op.batch_alter_table("qmcp_agent_instances", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_qmcp_agent_instances_execution_id_id"))
        batch_op.drop_index(batch_op.f("ix_qmcp_agent_instances_agent_type_id_id"))

    op.drop_table("qmcp_agent_instances")
    with op.batch_alter_table("qmcp_topology_memberships", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_qmcp_topology_memberships_agent_type_id"))

    op.drop_table("qmcp_topology_memberships")
    with op.batch_alter_table("qmcp_executions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_qmcp_executions_topology_id_id"))
        batch_op.drop_index(batch_op.f("ix_qmcp_executions_status_id"))
        batch_op.drop_index(batch_op.f("ix_qmcp_executions_status_completed_at"))
        batch_op.drop_index(batch_op.f("ix_qmcp_executions_started_at"))
        batch_op.drop_index(batch_op.f("ix_qmcp_executions_parent_id_id"))
        batch_op.drop_index(batch_op.f("ix_qmcp_executions_correlation_id_id"))

    op.drop_table("qmcp_executions")
    with op.batch_alter_table("qmcp_topologies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_qmcp_topologies_topology_type_id"))

    op.drop_table("qmcp_topologies")
    with op.batch_alter_table("qmcp_agent_types", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_qmcp_agent_types_role_id"))

    op.drop_table("qmcp_agent_types")

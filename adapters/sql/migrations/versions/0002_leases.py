"""leases

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

The work queue and workers' leases (issue 16): one row per execution submitted for workers.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from qmcp_agents.adapters.sql.types import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "qmcp_leases",
        sa.Column("execution_id", sa.Uuid(), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=True),
        sa.Column("ready", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_at", UtcDateTime(), nullable=True),
        sa.Column("heartbeat_at", UtcDateTime(), nullable=True),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.Column("schema_version", sa.SmallInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["qmcp_executions.id"],
            name=op.f("fk_qmcp_leases_execution_id_qmcp_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("execution_id", name=op.f("pk_qmcp_leases")),
    )
    with op.batch_alter_table("qmcp_leases", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_qmcp_leases_ready_execution_id"), ["ready", "execution_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_qmcp_leases_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_qmcp_leases_owner"), ["owner"], unique=False)


def downgrade() -> None:
    op.drop_table("qmcp_leases")

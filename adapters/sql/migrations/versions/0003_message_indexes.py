"""message indexes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

Fewer and smaller indexes on qmcp_messages (issue 15), serving the same queries:
``(execution_id, sender_id, sequence_number)`` and ``(sender_id)`` become one
``(sender_id, execution_id, sequence_number)`` (the sender filter is an equality on both
leading columns; the foreign key's lookups by sender use the first), and the recipient
index holds only the messages that have a recipient (every lookup by recipient is an
equality, which implies ``IS NOT NULL``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_HAS_RECIPIENT = sa.text("recipient_id IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        op.f("ix_qmcp_messages_sender_id_execution_id_sequence_number"),
        "qmcp_messages",
        ["sender_id", "execution_id", "sequence_number"],
    )
    op.drop_index(op.f("ix_qmcp_messages_execution_id_sender_id_sequence_number"), table_name="qmcp_messages")
    op.drop_index(op.f("ix_qmcp_messages_sender_id"), table_name="qmcp_messages")
    op.drop_index(op.f("ix_qmcp_messages_recipient_id"), table_name="qmcp_messages")
    op.create_index(
        op.f("ix_qmcp_messages_recipient_id"),
        "qmcp_messages",
        ["recipient_id"],
        postgresql_where=_HAS_RECIPIENT,
        sqlite_where=_HAS_RECIPIENT,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_qmcp_messages_recipient_id"), table_name="qmcp_messages")
    op.create_index(op.f("ix_qmcp_messages_recipient_id"), "qmcp_messages", ["recipient_id"])
    op.create_index(op.f("ix_qmcp_messages_sender_id"), "qmcp_messages", ["sender_id"])
    op.create_index(
        op.f("ix_qmcp_messages_execution_id_sender_id_sequence_number"),
        "qmcp_messages",
        ["execution_id", "sender_id", "sequence_number"],
    )
    op.drop_index(op.f("ix_qmcp_messages_sender_id_execution_id_sequence_number"), table_name="qmcp_messages")

"""maintenance reminder slots, and an outbox for messages that must be delivered

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 00:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.models

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

When = bot.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reminder_slots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cadence", sa.String(length=64), nullable=False),
        sa.Column("local_time", sa.String(length=32), nullable=False),
        sa.Column("due_at", When, nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("nudge_at", When, nullable=True),
        sa.Column("escalate_at", When, nullable=True),
        sa.Column("nudged_at", When, nullable=True),
        sa.Column("escalated_at", When, nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("cadence", "local_time"),
    )
    with op.batch_alter_table("reminder_slots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reminder_slots_due_at"), ["due_at"], unique=False)
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("sent_at", When, nullable=True),
        sa.Column("not_before", When, nullable=True),
        sa.Column("lease_until", When, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_sent_at"), ["sent_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_sent_at"))
    op.drop_table("outbox")
    with op.batch_alter_table("reminder_slots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reminder_slots_due_at"))
    op.drop_table("reminder_slots")

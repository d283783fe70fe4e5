"""weekly reviews: one row per channel and slot; outbox messages with blocks, threaded under another;
indexes the insights read a period's runs through

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.models

revision: str = "0013"
# The lead re-chains the batch's migrations; chained after stats' 0013 here so this branch has one head.
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("blocks", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("reply_to", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_outbox_reply_to_outbox", "outbox", ["reply_to"], ["id"], ondelete="CASCADE")
    op.create_table(
        "review_slots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("local_time", sa.String(length=32), nullable=False),
        sa.Column("due_at", bot.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("claimed_at", bot.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("channel_id", "local_time"),
    )
    with op.batch_alter_table("review_slots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_review_slots_due_at"), ["due_at"], unique=False)
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_runs_period", ["started_at", "kind", "environment", "status", "template_id", "finished_at"]
        )
        batch_op.create_index("ix_runs_kind_environment", ["kind", "environment"])


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_kind_environment")
        batch_op.drop_index("ix_runs_period")
    with op.batch_alter_table("review_slots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_review_slots_due_at"))
    op.drop_table("review_slots")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint("fk_outbox_reply_to_outbox", type_="foreignkey")
        batch_op.drop_column("reply_to")
        batch_op.drop_column("blocks")

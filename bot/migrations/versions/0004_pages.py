"""pages with escalation and deliveries; events and messages may belong to a page; rollback runs

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 02:52:14
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.models

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("chain", sa.JSON(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("escalate_at", bot.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("dedup_key", sa.String(length=64), nullable=False),
        sa.Column("paged_by", sa.String(length=32), nullable=False),
        sa.Column("created_at", bot.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("acked_by", sa.String(length=32), nullable=True),
        sa.Column("acked_at", bot.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=32), nullable=True),
        sa.Column("resolved_at", bot.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("rev", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedup_key"),
    )
    with op.batch_alter_table("pages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pages_escalate_at"), ["escalate_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_pages_run_id"), ["run_id"], unique=False)

    op.create_table(
        "page_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("page_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=80), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("created_at", bot.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("not_before", bot.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_until", bot.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("sent_at", bot.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("failed_at", bot.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["page_id"], ["pages.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("page_id", "level", "target", "action"),
    )
    with op.batch_alter_table("page_deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_page_deliveries_page_id"), ["page_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_page_deliveries_sent_at"), ["sent_at"], unique=False)

    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("page_id", sa.Integer(), nullable=True))
        batch_op.alter_column("run_id", existing_type=sa.INTEGER(), nullable=True)
        batch_op.create_index(batch_op.f("ix_events_page_id"), ["page_id"], unique=False)
        batch_op.create_foreign_key("fk_events_page_id", "pages", ["page_id"], ["id"], ondelete="CASCADE")

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("page_id", sa.Integer(), nullable=True))
        batch_op.alter_column("run_id", existing_type=sa.INTEGER(), nullable=True)
        batch_op.create_index(batch_op.f("ix_messages_page_id"), ["page_id"], unique=False)
        batch_op.create_foreign_key("fk_messages_page_id", "pages", ["page_id"], ["id"], ondelete="CASCADE")

    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rollback_of", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("rollback_to", sa.String(length=64), nullable=True))
        batch_op.create_foreign_key("fk_runs_rollback_of", "runs", ["rollback_of"], ["id"], ondelete="SET NULL")


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_constraint("fk_runs_rollback_of", type_="foreignkey")
        batch_op.drop_column("rollback_to")
        batch_op.drop_column("rollback_of")

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_constraint("fk_messages_page_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_messages_page_id"))
        batch_op.alter_column("run_id", existing_type=sa.INTEGER(), nullable=False)
        batch_op.drop_column("page_id")

    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_constraint("fk_events_page_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_events_page_id"))
        batch_op.alter_column("run_id", existing_type=sa.INTEGER(), nullable=False)
        batch_op.drop_column("page_id")

    with op.batch_alter_table("page_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_page_deliveries_sent_at"))
        batch_op.drop_index(batch_op.f("ix_page_deliveries_page_id"))

    op.drop_table("page_deliveries")
    with op.batch_alter_table("pages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pages_run_id"))
        batch_op.drop_index(batch_op.f("ix_pages_escalate_at"))

    op.drop_table("pages")

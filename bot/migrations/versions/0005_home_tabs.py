"""home tabs: who opened deploybot's App Home, and what it last showed them; runs by finish time

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 03:23:29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "home_tabs",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("opened_at", bot.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("not_before", bot.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_until", bot.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("user_id"),
    )
    with op.batch_alter_table("home_tabs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_home_tabs_opened_at"), ["opened_at"], unique=False)
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_runs_finished_at"), ["finished_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_finished_at"))
    with op.batch_alter_table("home_tabs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_home_tabs_opened_at"))

    op.drop_table("home_tabs")

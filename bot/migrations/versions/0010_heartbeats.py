"""heartbeats: each running deploybot replica says it is alive, so the shell knows whether one is

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 00:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.models

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "heartbeats",
        sa.Column("replica", sa.String(length=128), nullable=False),
        sa.Column("started_at", bot.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("beat_at", bot.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("replica", "started_at"),
    )
    with op.batch_alter_table("heartbeats", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_heartbeats_beat_at"), ["beat_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("heartbeats", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_heartbeats_beat_at"))
    op.drop_table("heartbeats")

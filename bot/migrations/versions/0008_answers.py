"""answers through response_url as outbox rows; where each page DM went

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 23:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.models

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("response_url", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("expires_at", bot.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("user_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("thread_ts", sa.String(length=32), nullable=True))
    with op.batch_alter_table("page_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("channel_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("ts", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("page_deliveries", schema=None) as batch_op:
        batch_op.drop_column("ts")
        batch_op.drop_column("channel_id")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("thread_ts")
        batch_op.drop_column("user_id")
        batch_op.drop_column("expires_at")
        batch_op.drop_column("response_url")
        batch_op.drop_column("kind")

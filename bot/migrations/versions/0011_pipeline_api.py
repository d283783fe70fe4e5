"""pipeline API: tokens, a run's pipeline key, items reported by a pipeline

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 00:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.models

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=True),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", bot.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", bot.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", bot.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("secret_hash"),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pipeline_key", sa.String(length=128), nullable=True))
    # An index, not a constraint: SQLite would rebuild the runs table for a constraint, and dropping
    # the old one would cascade to every item of every run.
    op.create_index("uq_runs_channel_pipeline_key", "runs", ["channel_id", "pipeline_key"], unique=True)
    with op.batch_alter_table("item_states", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reported_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("report_status", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("report_by", sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column("report_at", bot.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("report_url", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("report_summary", sa.Text(), nullable=True))


def downgrade() -> None:
    # Dropped in place (SQLite 3.35+): copying `runs` into a new table would drop the old one, and
    # with foreign keys on, SQLite would cascade that to every run's items and events.
    with op.batch_alter_table("item_states", schema=None, recreate="never") as batch_op:
        for column in ("report_summary", "report_url", "report_at", "report_by", "report_status", "reported_by"):
            batch_op.drop_column(column)
    op.drop_index("uq_runs_channel_pipeline_key", table_name="runs")
    with op.batch_alter_table("runs", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("pipeline_key")
    op.drop_table("api_tokens")

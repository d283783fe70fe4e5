"""probe verdicts on items, and the append-only probe_results

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 00:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("item_states", schema=None) as batch_op:
        batch_op.add_column(sa.Column("probe_status", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("probe_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("probe_at", bot.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("probe_lease_until", bot.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_item_states_probe_status"), ["probe_status"], unique=False)
    op.create_table(
        "probe_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("ms", sa.Double(), nullable=False),
        sa.Column("at", bot.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("probe_results", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_probe_results_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("probe_results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_probe_results_run_id"))
    op.drop_table("probe_results")
    with op.batch_alter_table("item_states", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_item_states_probe_status"))
        batch_op.drop_column("probe_lease_until")
        batch_op.drop_column("probe_at")
        batch_op.drop_column("probe_reason")
        batch_op.drop_column("probe_status")

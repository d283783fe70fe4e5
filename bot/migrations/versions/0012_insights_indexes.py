"""insights: items by run, required, phase and change time; runs by the deployment they roll back

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 01:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_item_states_run_phase",
        "item_states",
        ["run_id", "required", "phase", "changed_at", "status"],
    )
    op.create_index("ix_runs_rollback_of", "runs", ["rollback_of"])


def downgrade() -> None:
    op.drop_index("ix_runs_rollback_of", table_name="runs")
    op.drop_index("ix_item_states_run_phase", table_name="item_states")

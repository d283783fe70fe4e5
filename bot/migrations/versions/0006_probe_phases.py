"""probes wait for their item's phase: each item's phase, each run's open phase, and what a verdict was checked against

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 23:20:00
"""

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The tables as this revision knows them: the models move on, this data step must not.
_runs = sa.table(
    "runs",
    sa.column("id", sa.Integer),
    sa.column("kind", sa.String),
    sa.column("status", sa.String),
    sa.column("template_snapshot", sa.JSON),
    sa.column("open_phase", sa.Integer),
)
_items = sa.table(
    "item_states",
    sa.column("run_id", sa.Integer),
    sa.column("item_id", sa.String),
    sa.column("phase", sa.Integer),
    sa.column("required", sa.Boolean),
    sa.column("status", sa.String),
    sa.column("changed_by", sa.String),
    sa.column("changed_at", sa.DateTime),
    sa.column("probe_status", sa.String),
)
_events = sa.table(
    "events",
    sa.column("run_id", sa.Integer),
    sa.column("item_id", sa.String),
    sa.column("kind", sa.String),
    sa.column("user_id", sa.String),
    sa.column("at", sa.DateTime(timezone=True)),
    sa.column("data", sa.JSON),
)


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("open_phase", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("item_states", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phase", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("probe_phase", sa.Integer(), nullable=True))
    with op.batch_alter_table("probe_results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("open_phase", sa.Integer(), nullable=True))
    _place_items_in_phases(op.get_bind())


def downgrade() -> None:
    # Older code knows no waiting probe: hand them to its runner.
    op.execute(_items.update().where(_items.c.probe_status == "waiting").values(probe_status="pending"))
    # Dropped in place (SQLite 3.35+): copying `runs` into a new table would drop the old one, and
    # with foreign keys on, SQLite would cascade that to every run's items and events.
    with op.batch_alter_table("probe_results", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("open_phase")
    with op.batch_alter_table("item_states", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("probe_phase")
        batch_op.drop_column("phase")
    with op.batch_alter_table("runs", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("open_phase")


def _place_items_in_phases(conn: sa.Connection) -> None:
    """Give every item its phase and every run its open phase; active runs' later probes wait again.

    Before this revision every probe ran when its run started, so an item of a later phase may be
    "verified" before anything was deployed: in an active run it is opened again, with an audit event.
    """
    now = datetime.now(UTC)
    for run_id, kind, status, snapshot in conn.execute(
        sa.select(_runs.c.id, _runs.c.kind, _runs.c.status, _runs.c.template_snapshot)
    ):
        phases = _phases(snapshot)
        if not phases:
            continue
        conn.execute(
            _items.update()
            .where(_items.c.run_id == sa.bindparam("run"), _items.c.item_id == sa.bindparam("item"))
            .values(phase=sa.bindparam("to")),
            [{"run": run_id, "item": item, "to": n} for n, ids in enumerate(phases) for item in ids],
        )
        open_phase = _open_phase(conn, run_id, kind, phases)
        conn.execute(_runs.update().where(_runs.c.id == run_id).values(open_phase=open_phase))
        if status != "active":
            continue
        later = sa.and_(_items.c.run_id == run_id, _items.c.phase > open_phase, _items.c.probe_status.is_not(None))
        by_probe = sa.and_(_items.c.status == "done", _items.c.changed_by == "deploybot")
        early = list(conn.execute(sa.select(_items.c.item_id).where(later, by_probe)).scalars())
        conn.execute(
            _items.update()
            .where(later, _items.c.item_id.in_(early))
            .values(status="open", changed_by=None, changed_at=None)
        )
        conn.execute(_items.update().where(later).values(probe_status="waiting"))
        for item in early:
            reason = "verified before its phase opened; its probe runs again when it opens"
            row = {"run_id": run_id, "item_id": item, "kind": "probe.too_early", "user_id": "deploybot", "at": now}
            conn.execute(_events.insert().values(**row, data={"reason": reason}))


def _phases(snapshot: Any) -> list[list[str]]:
    if isinstance(snapshot, str):
        snapshot = json.loads(snapshot)
    if not isinstance(snapshot, dict):
        return []
    return [[i["id"] for g in p.get("groups", []) for i in g.get("items", [])] for p in snapshot.get("phases", [])]


def _open_phase(conn: sa.Connection, run_id: int, kind: str, phases: list[list[str]]) -> int:
    last = len(phases) - 1
    if kind == "maintenance":
        return last
    first_open = conn.execute(
        sa.select(sa.func.min(_items.c.phase)).where(
            _items.c.run_id == run_id, _items.c.required, _items.c.status == "open"
        )
    ).scalar()
    return last if first_open is None else int(first_open)

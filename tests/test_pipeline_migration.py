"""Migration 0011 (pipeline tokens, keys and reports) keeps every run's items, up and down, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command
from sqlalchemy import select

from bot import db
from bot.checklists import load_folder
from bot.models import ItemState, Run
from tests.conftest import ROOT


def test_the_pipeline_migration_keeps_runs_and_items_up_and_down(database_url: str) -> None:
    template = load_folder(ROOT / "checklists")["production-deploy"]
    engine = db.make_engine(database_url)
    config = db._alembic_config(engine)
    command.upgrade(config, "0008")
    at = datetime(2026, 12, 1, 9, tzinfo=UTC)
    with engine.begin() as conn:
        tables = {name: sa.Table(name, sa.MetaData(), autoload_with=conn) for name in ("runs", "item_states")}
        run = {"template_id": template.id, "kind": "deploy", "template_snapshot": template.model_dump(mode="json"),
               "version": "v1", "environment": "production", "channel_id": "C1", "status": "active",
               "started_by": "U1", "started_at": at, "rev": 1, "open_phase": 0}  # fmt: skip
        run_id = conn.execute(tables["runs"].insert().values(**run).returning(tables["runs"].c.id)).scalar_one()
        conn.execute(
            tables["item_states"].insert(),
            [
                {
                    "run_id": run_id,
                    "item_id": i.id,
                    "position": n,
                    "required": i.required,
                    "status": "open",
                    "note_count": 0,
                    "phase": 0,
                }
                for n, i in enumerate(template.items)
            ],
        )
    db.upgrade(engine)
    with db.make_sessions(engine)() as session:
        states = session.scalars(select(ItemState).where(ItemState.run_id == run_id)).all()
        assert len(states) == len(template.items)
        assert {s.reported_by for s in states} == {None}  # a run started before keeps its checklist as it was
        assert session.get_one(Run, run_id).pipeline_key is None
    command.downgrade(config, "0008")
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM item_states WHERE run_id = :r"), {"r": run_id}).scalar()
        assert count == len(template.items)
    engine.dispose()

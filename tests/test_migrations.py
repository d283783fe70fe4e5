"""Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select

from bot import db
from bot.checklists import load_folder
from bot.models import Base, Event, ItemState, Run


def test_migrations_match_the_models(database_url: str) -> None:
    engine = db.make_engine(database_url)
    assert not db.is_current(engine)
    db.upgrade(engine)
    db.upgrade(engine)  # a second upgrade, as when another replica starts, changes nothing
    assert db.is_current(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()


def test_probe_phases_migration_makes_later_probes_of_active_runs_wait_and_downgrades(database_url: str) -> None:
    from datetime import UTC, datetime

    import sqlalchemy as sa
    from alembic import command

    from tests.conftest import ROOT

    templates = load_folder(ROOT / "checklists")
    engine = db.make_engine(database_url)
    config = db._alembic_config(engine)
    command.upgrade(config, "0005")
    at = datetime(2026, 12, 1, 9, tzinfo=UTC)
    pre, post_verified, post_pending = (
        "ssl-certificate-is-obtained-lets-encrypt-or",
        "ssl-certificate-is-valid",
        ("https-redirect-is-working"),
    )
    with engine.begin() as conn:
        tables = {name: sa.Table(name, sa.MetaData(), autoload_with=conn) for name in ("runs", "item_states")}
        snapshot = templates["production-deploy"].model_dump(mode="json")
        run = {"template_id": "production-deploy", "kind": "deploy", "template_snapshot": snapshot, "version": "v1",
               "environment": "production", "channel_id": "C1", "status": "active", "started_by": "U1",
               "started_at": at, "rev": 1}  # fmt: skip
        run_id = conn.execute(tables["runs"].insert().values(**run).returning(tables["runs"].c.id)).scalar_one()
        rows = []
        for n, item in enumerate(templates["production-deploy"].items):
            probe = {pre: "pending", post_verified: "passed", post_pending: "pending"}.get(item.id)
            done = item.id == post_verified
            rows.append({"run_id": run_id, "item_id": item.id, "position": n, "required": item.required,
                         "status": "done" if done else "open", "changed_by": "deploybot" if done else None,
                         "changed_at": at if done else None, "note_count": 0, "probe_status": probe})  # fmt: skip
        conn.execute(tables["item_states"].insert(), rows)

    db.upgrade(engine)
    with db.make_sessions(engine)() as session:
        states = {s.item_id: s for s in session.scalars(select(ItemState))}
        assert (states[pre].phase, states[post_verified].phase, states[pre].probe_status) == (0, 2, "pending")
        # Verified at minute 0, before anything was deployed: that verdict does not count.
        assert (states[post_verified].status, states[post_verified].changed_by) == ("open", None)
        assert {states[post_verified].probe_status, states[post_pending].probe_status} == {"waiting"}
        run_row = session.get(Run, run_id)
        assert run_row is not None and run_row.open_phase == 0
        early = session.scalars(select(Event)).one()
        assert (early.kind, early.item_id, early.user_id) == ("probe.too_early", post_verified, "deploybot")

    command.downgrade(config, "0005")
    with engine.connect() as conn:
        statuses = conn.execute(sa.text("SELECT item_id, probe_status FROM item_states WHERE probe_status IS NOT NULL"))
        assert {row[0]: row[1] for row in statuses} == {
            pre: "pending",
            post_verified: "pending",
            post_pending: "pending",
        }
    db.upgrade(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()

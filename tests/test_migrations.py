"""Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from bot import db
from bot.models import Base


def test_migrations_match_the_models(database_url: str) -> None:
    engine = db.make_engine(database_url)
    assert not db.is_current(engine)
    db.upgrade(engine)
    db.upgrade(engine)  # a second upgrade, as when another replica starts, changes nothing
    assert db.is_current(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()

"""Alembic environment: runs migrations on the engine or connection handed over by bot.db."""

from alembic import context

from bot.models import Base

config = context.config


def run_migrations() -> None:
    """Run migrations online; render_as_batch lets ALTERs work on SQLite too."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    with config.attributes["engine"].connect() as conn:
        _run(conn)
        conn.commit()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations()

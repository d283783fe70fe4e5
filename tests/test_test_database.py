"""The suite's PostgreSQL set-up: a missing `test` database is created; an unreachable server is named as such."""

from __future__ import annotations

import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.conftest import POSTGRES_URL, ensure_database, postgres_schema_url


def test_a_missing_test_database_is_created_when_the_server_answers() -> None:
    name = f"deploybot_t_{uuid.uuid4().hex[:10]}"
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    schemas = postgres_schema_url(url)
    try:
        engine = create_engine(next(schemas))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_database()")).scalar() == name
        engine.dispose()
    finally:
        schemas.close()
        admin = create_engine(make_url(POSTGRES_URL).set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def test_an_unreachable_server_is_named_as_such() -> None:
    problem = ensure_database("postgresql+psycopg://postgres:pw-secret@127.0.0.1:1/test")
    assert problem is not None
    assert problem.startswith("PostgreSQL server not reachable at postgresql+psycopg://postgres:***@127.0.0.1:1/test (")
    assert "Connection refused" in problem and "pw-secret" not in problem

"""Engine and session factories (the only place sessions are made) and schema migrations."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
# Any fixed number works; it only has to be the same in every replica.
_PG_MIGRATION_LOCK = 7_362_881


def make_engine(url: str) -> Engine:
    """Create an engine tuned for concurrent clicks on SQLite or PostgreSQL."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _serialize_sqlite_writers(engine)
        return engine
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def _serialize_sqlite_writers(engine: Engine) -> None:
    # pysqlite starts transactions lazily, so two writers can both read and then deadlock on
    # the upgrade to a write lock. BEGIN IMMEDIATE takes the write lock up front and the
    # busy timeout queues writers instead (SQLAlchemy's documented recipe).
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL still survives a killed process (the WAL is in the OS's hands at commit);
        # only an OS crash may lose the last transactions. FULL would fsync on every click.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    # Writers of this process queue on a lock instead of SQLite's busy handler, which sleeps in
    # growing steps (up to 100 ms) and turns a burst of clicks into long tail latencies.
    writer = threading.Lock()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Readers (see read_only) begin deferred, so they never queue behind or block a writer.
        if connection.get_execution_options().get("deploybot_read_only", False):
            connection.exec_driver_sql("BEGIN")
            return
        if not connection.info.get("deploybot_writer"):
            writer.acquire()
            connection.info["deploybot_writer"] = True
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    # Released when the connection goes back to the pool: by then COMMIT (or ROLLBACK) has run.
    @event.listens_for(engine.pool, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None and record.info.pop("deploybot_writer", False):
            writer.release()


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    """Session factory; callers own the transaction with `with sessions.begin() as session:`."""
    return sessionmaker(engine, expire_on_commit=False)


def read_only(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """A twin factory for sessions that only read: on SQLite they do not take the write lock."""
    engine = sessions.kw["bind"]
    return sessionmaker(engine.execution_options(deploybot_read_only=True), expire_on_commit=False)


def insert_once(session: Session, model: Any, values: dict[str, Any], key: Any = None) -> bool:
    """INSERT … ON CONFLICT DO NOTHING RETURNING: whether this call inserted the row.

    A unique key then decides which of several processes does a thing (posts a slot, sends a
    notification). rowcount is no answer here: psycopg reports -1 for this statement.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        statement: Any = pg_insert(model).values(values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        statement = sqlite_insert(model).values(values).on_conflict_do_nothing()
    else:
        raise RuntimeError(f"deploybot supports SQLite and PostgreSQL, not {dialect}")
    return session.execute(statement.returning(model.id if key is None else key)).scalar_one_or_none() is not None


def load(session: Session, model: Any, key: Any, *, lock: bool = False) -> Any:
    """One row by primary key, or None; with `lock`, held until the transaction ends."""
    query = select(model).where(model.__mapper__.primary_key[0] == key)
    # FOR NO KEY UPDATE: serializes changes of the row, yet never waits on the key-share locks that
    # inserting a row whose foreign key points here (an event) takes.
    return session.scalars(query.with_for_update(key_share=True) if lock else query).one_or_none()


def unleased(model: Any, now: datetime) -> Any:
    """The rows of `model` nobody holds a lease on at `now`."""
    return or_(model.lease_until.is_(None), model.lease_until < now)


def take_lease(session: Session, model: Any, key: Any, now: datetime, until: datetime, *also: Any) -> bool:
    """Lease one row (lease_until) unless another thread or replica holds it; whether this call got it."""
    key_column = model.__mapper__.primary_key[0]
    taken = session.execute(
        update(model).where(key_column == key, unleased(model, now), *also).values(lease_until=until)
    )
    return bool(taken.rowcount)  # type: ignore[attr-defined]


class Leases:
    """Short leases on the rows this process works on, renewed by a heartbeat while the work goes on.

    A dead process stops renewing, so its rows are free again within `ttl` (seconds), while a live
    one keeps a row through work of any length (a Slack call may take its whole 10 s timeout). This
    needs nothing beyond the lease_until columns, unlike leases tied to a replica-liveness table.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Callable[[], datetime],
        ttl: timedelta = timedelta(seconds=5),
    ):
        self._sessions = sessions
        self._clock = clock
        self.ttl = ttl
        self._held: dict[tuple[Any, Any], datetime] = {}  # (model, key) -> the lease_until we wrote
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def take(self, session: Session, model: Any, key: Any, *also: Any) -> bool:
        """Lease one row in the caller's transaction (see take_lease); renewed until dropped."""
        now = self._clock()
        until = now + self.ttl
        if not take_lease(session, model, key, now, until, *also):
            return False
        with self._lock:
            self._held[(model, key)] = until
        return True

    def drop(self, model: Any, key: Any) -> None:
        """Stop renewing a lease (whoever released it in the database, or will)."""
        with self._lock:
            self._held.pop((model, key), None)

    def renew(self) -> None:
        """Extend every lease still ours; forget those released or lost meanwhile."""
        with self._lock:
            held = list(self._held.items())
        for (model, key), until in held:
            renewed = self._clock() + self.ttl
            key_column = model.__mapper__.primary_key[0]
            with self._sessions.begin() as session:
                # Compare-and-set on the value we wrote: a lease released or taken over is left alone.
                result = session.execute(
                    update(model).where(key_column == key, model.lease_until == until).values(lease_until=renewed)
                )
            with self._lock:
                if self._held.get((model, key)) == until:
                    if result.rowcount:  # type: ignore[attr-defined]
                        self._held[(model, key)] = renewed
                    else:
                        del self._held[(model, key)]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="leases", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)

    def _beat(self) -> None:
        interval = self.ttl.total_seconds() / 5
        while not self._stopping.wait(interval):
            try:
                self.renew()
            except Exception:
                log.exception("renewing leases failed; retrying")


def _alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> None:
    """Bring the schema to the latest migration; safe when several replicas start at once."""
    config = _alembic_config(engine)
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            try:
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                conn.commit()
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
                conn.commit()
    else:
        command.upgrade(config, "head")


def is_current(engine: Engine) -> bool:
    """Tell whether the database schema is at the latest migration."""
    head = ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() == head

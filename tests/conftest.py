"""Shared fixtures: SQLite and the real PostgreSQL, the fake Slack, a running deploybot on loopback."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from waitress import create_server

from bot import db
from bot.app import Deploybot, create_app
from bot.config import Settings
from bot.models import Outbox
from bot.services import utcnow
from bot.slack.listeners.actions import wait_for_notices
from tests.fake_slack import FakeSlack
from tests.slack_requests import SlackUser

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("DEPLOYBOT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SIGNING_SECRET = "test-signing-secret-0123456789abcdef"


def ensure_database(url: str) -> str | None:
    """Create the test database if the server answers but lacks it; why PostgreSQL is unusable, if it is."""
    if url in _DATABASES_READY:
        return None
    target = make_url(url)
    shown = target.render_as_string()  # hides the password
    probe = create_engine(target, isolation_level="AUTOCOMMIT")
    try:
        with probe.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        reason = str(exc).split("\n")[0]
        if f'database "{target.database}" does not exist' not in reason:
            return f"PostgreSQL server not reachable at {shown} ({reason})"
        server = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            with server.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{target.database}"'))
        except Exception as exc:
            if "already exists" not in str(exc):  # another test process created it first
                return f"PostgreSQL at {shown} lacks database {target.database!r} and cannot create it: {exc}"
        finally:
            server.dispose()
    finally:
        probe.dispose()
    _DATABASES_READY.add(url)
    return None


_DATABASES_READY: set[str] = set()


def postgres_schema_url(base: str = POSTGRES_URL) -> Iterator[str]:
    """A fresh schema on the real PostgreSQL, dropped afterwards; skip (or fail in CI) without it."""
    problem = ensure_database(base)
    if problem is not None:
        if os.environ.get("DEPLOYBOT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required: {problem}")
        pytest.skip(f"{problem}; set DEPLOYBOT_TEST_POSTGRES_URL to run these tests against another server")
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every test using this runs twice: on SQLite and on the real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'deploybot.db'}"
    else:
        yield from postgres_schema_url()


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    yield fake
    fake.stop()


def settings_for(database_url: str, fake: FakeSlack, **extra: str) -> Settings:
    return Settings.from_env(
        {
            "SLACK_BOT_TOKEN": fake.token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": fake.url,
            "DATABASE_URL": database_url,
            "DEPLOYBOT_CHECKLISTS": str(ROOT / "checklists"),
            "DEPLOYBOT_RENDER_INTERVAL": "0.3",
            "DEPLOYBOT_CONFIG": str(ROOT / "tests" / "fixtures" / "empty-deploybot.yml"),  # probes stay off
            **extra,
        }
    )


def wait_for(condition: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll until `condition()` is truthy; fail with `what` if it never is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Running:
    """A deploybot serving HTTP on loopback, with its fake Slack and a signed-request client."""

    app: Deploybot
    fake: FakeSlack
    url: str
    slack: SlackUser

    def wait_for(self, condition: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
        return wait_for(condition, timeout, what)

    def told(self) -> list[Any]:
        """The private answers people got (response_url or ephemeral), once those kept have gone to Slack."""
        wait_for_notices()
        self.wait_for(self.answers_sent, what="every answer to reach Slack")
        calls = self.fake.calls_of("chat.postEphemeral") + self.fake.calls_of("response_url")
        return sorted(calls, key=lambda c: c.at)

    def answers_sent(self) -> bool:
        """Whether every private answer kept in the database has been delivered."""
        self.app.publisher.wake()
        with self.app.sessions() as session:
            unsent = select(func.count()).select_from(Outbox).where(Outbox.kind == "answer", Outbox.sent_at.is_(None))
            return session.scalar(unsent) == 0

    def settled(self, timeout: float = 15.0) -> None:
        """Wait until every message shows the database state (nothing behind, nothing leased)."""
        self.wait_for(lambda: self.app.publisher.pending() == 0, timeout, "every message to show the database state")


class ShiftedClock:
    """The real time plus an offset a test moves forward: timeouts pass without waiting for them."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, **delta: float) -> datetime:
        self.offset += timedelta(**delta)
        return self()


class Server:
    """Waitress on a loopback port, in a thread, stopped from inside its own loop."""

    def __init__(self, app: Deploybot):
        self._server: Any = create_server(
            app.web,
            host="127.0.0.1",
            port=0,
            threads=app.settings.server_threads,
            channel_timeout=5,
            connection_limit=app.settings.connection_limit,
        )
        self.url = f"http://127.0.0.1:{self._server.effective_port}"
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        def close_everything() -> None:
            for channel in list(self._server._map.values()):
                if channel is not self._server.trigger:
                    channel.close()
            self._server.close()

        try:
            self._server.trigger.pull_trigger(close_everything)
        except OSError:  # the loop already ended and closed its trigger
            self._server.close()
        self._thread.join(10)


@contextmanager
def launched(
    database_url: str,
    fake: FakeSlack,
    *,
    clock_ticks: bool = False,
    clock: Callable[[], datetime] = utcnow,
    **extra: str,
) -> Iterator[Running]:
    """A deploybot serving on loopback like `deploybot run` does, stopped afterwards.

    Reminders tick only when a test calls `app.reminders.tick(now)` with the time it wants,
    unless `clock_ticks` lets the real clock drive them as in production.
    """
    app = create_app(settings_for(database_url, fake, **extra), clock=clock)
    db.upgrade(app.engine)
    app.check_slack()
    app.start_workers(reminders=clock_ticks)
    server = Server(app)
    user = SlackUser(server.url, SIGNING_SECRET, response_urls=fake.response_url)
    try:
        yield Running(app, fake, server.url, user)
    finally:
        user.http.close()
        server.stop()
        app.stop_workers()
        app.engine.dispose()


@pytest.fixture
def running(database_url: str, fake_slack: FakeSlack) -> Iterator[Running]:
    with launched(database_url, fake_slack) as bot:
        yield bot

"""Liveness in the database: each `deploybot run` replica beats every few seconds; anyone can ask who is alive."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.models import Heartbeat

log = logging.getLogger(__name__)

INTERVAL = timedelta(seconds=5)
# Three missed beats and a replica counts as gone: one slow transaction must not make it look dead.
ALIVE_WITHIN = 3 * INTERVAL
# Rows of replicas that stopped without saying so are swept after this long.
FORGET_AFTER = timedelta(days=1)


def replica_name() -> str:
    """host:pid of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Replica:
    """A deploybot replica as its heartbeat shows it."""

    name: str
    started_at: datetime
    beat_at: datetime


def alive(session: Session, now: datetime) -> list[Replica]:
    """The replicas that beat recently, latest first."""
    rows = session.scalars(
        select(Heartbeat).where(Heartbeat.beat_at >= now - ALIVE_WITHIN).order_by(Heartbeat.beat_at.desc())
    )
    return [Replica(row.replica, row.started_at, row.beat_at) for row in rows]


def described(replicas: list[Replica], now: datetime) -> str:
    """One line on who is alive, for an operator."""
    if not replicas:
        return f"no deploybot is running (no heartbeat in the last {ALIVE_WITHIN.total_seconds():.0f} s)"
    newest = replicas[0]
    ago = max(0, int((now - newest.beat_at).total_seconds()))
    others = f" and {len(replicas) - 1} more" if len(replicas) > 1 else ""
    return f"deploybot is running: {newest.name}{others} (last heartbeat {ago} s ago)"


class Beating:
    """Writes this replica's heartbeat every INTERVAL in a thread of its own, and removes it on stop."""

    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], datetime], interval: timedelta = INTERVAL):
        self._sessions = sessions
        self._clock = clock
        self._interval = interval
        self.name = replica_name()
        self.started_at = clock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        """Say this replica is alive now (the row is made again if someone swept it)."""
        now = self._clock()
        with self._sessions.begin() as session:
            mine = (Heartbeat.replica == self.name, Heartbeat.started_at == self.started_at)
            if not session.execute(update(Heartbeat).where(*mine).values(beat_at=now)).rowcount:  # type: ignore[attr-defined]
                session.add(Heartbeat(replica=self.name, started_at=self.started_at, beat_at=now))
            session.execute(delete(Heartbeat).where(Heartbeat.beat_at < now - FORGET_AFTER))

    def start(self) -> None:
        self._beat_logged()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and say so at once: the shell need not wait for the beat to go stale."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            with self._sessions.begin() as session:
                session.execute(
                    delete(Heartbeat).where(Heartbeat.replica == self.name, Heartbeat.started_at == self.started_at)
                )
        except Exception:
            log.warning("could not remove this replica's heartbeat; it goes stale by itself")

    def _loop(self) -> None:
        while not self._stopping.wait(self._interval.total_seconds()):
            self._beat_logged()

    def _beat_logged(self) -> None:
        try:
            self.beat()
        except Exception:
            log.exception("heartbeat failed; retrying")

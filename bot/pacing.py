"""A rate budget for one Slack method, shared by every replica through one database row (a token bucket)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from bot import db
from bot.models import SlackBudget

# Slack's Tier 3 (chat.update) allows about 50 calls a minute per workspace. A bucket of BURST
# tokens refilled at PER_MINUTE grants at most BURST + PER_MINUTE calls in any 60 s: 48, below it.
PER_MINUTE = 40.0
BURST = 8.0


class Budget:
    """Grants calls of one Slack method at a steady rate across all replicas, with a small burst."""

    def __init__(
        self, sessions: sessionmaker[Session], method: str, *, per_minute: float = PER_MINUTE, burst: float = BURST
    ):
        self._sessions = sessions
        self._method = method
        self._rate = per_minute / 60.0
        self._burst = burst

    def take(self, now: datetime) -> datetime | None:
        """Spend one call: None when granted, else the time the next call will be."""
        with self._sessions.begin() as session:
            row = db.load(session, SlackBudget, self._method, lock=True)
            if row is None:
                values = {"method": self._method, "tokens": self._burst, "at": now}
                db.insert_once(session, SlackBudget, values, key=SlackBudget.method)
                row = db.load(session, SlackBudget, self._method, lock=True)
            tokens = self._refilled(row, now)
            if tokens < 1.0:
                return now + timedelta(seconds=(1.0 - tokens) / self._rate)
            row.tokens, row.at = tokens - 1.0, max(now, row.at)
            return None

    def pause(self, now: datetime, seconds: float) -> None:
        """Grant no call to any replica for `seconds` (Slack answered 429 with that Retry-After)."""
        with self._sessions.begin() as session:
            row = db.load(session, SlackBudget, self._method, lock=True)
            if row is not None:
                # Empty the bucket so deep that the refill brings the next token `seconds` from now.
                row.tokens, row.at = min(self._refilled(row, now), 1.0 - seconds * self._rate), max(now, row.at)

    def _refilled(self, row: SlackBudget, now: datetime) -> float:
        elapsed = max(0.0, (now - row.at).total_seconds())
        return min(self._burst, row.tokens + elapsed * self._rate)

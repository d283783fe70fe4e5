"""Who calls the API: the bearer token checked against the database on every request, then its rate budget."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from bot import tokens
from bot.pacing import Budget
from bot.tokens import Caller

MAX_TOKEN = 256  # longer than any token deploybot makes: not worth hashing
PER_MINUTE = 120.0  # a gate re-polls at most every few seconds; a busy pipeline reports dozens of items


@dataclass(frozen=True)
class Refusal:
    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()


UNAUTHORIZED = Refusal(401, {"error": "unauthorized"}, (("WWW-Authenticate", 'Bearer realm="deploybot"'),))


class Auth:
    """Checks a request's token (no cache: a revoke bites on every replica at the next request) and rate."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Callable[[], datetime],
        *,
        per_minute: float = PER_MINUTE,
    ):
        self._sessions = sessions
        self._clock = clock
        self._per_minute = per_minute
        # A pipeline reports its items in a burst after its jobs: a quarter of a minute's worth at once.
        self._burst = max(1.0, per_minute / 4)

    def caller(self, environ: dict[str, Any]) -> Caller | Refusal:
        """The token's holder, or why the request is refused (401, 429)."""
        scheme, _, presented = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
        presented = presented.strip()
        if scheme.lower() != "bearer" or not presented or len(presented) > MAX_TOKEN:
            return UNAUTHORIZED
        now = self._clock()
        with self._sessions.begin() as session:
            caller = tokens.authenticate(session, presented, now)
        if caller is None:
            return UNAUTHORIZED
        # One bucket per token, shared by every replica through its database row. A gate's polls have a
        # bucket of their own, five times larger: many jobs waiting never hold up the pipeline's reports.
        if str(environ.get("PATH_INFO", "")).endswith("/gate"):
            name, per_minute, burst = f"api.gate:{caller.id}", 5 * self._per_minute, 5 * self._burst
        else:
            name, per_minute, burst = f"api.token:{caller.id}", self._per_minute, self._burst
        budget = Budget(self._sessions, name, per_minute=per_minute, burst=burst)
        next_call = budget.take(now)
        if next_call is not None:
            wait = max(1, math.ceil((next_call - now).total_seconds()))
            return Refusal(
                429,
                {"error": f"Too many requests for this token: wait {wait} s (Retry-After) and try again."},
                (("Retry-After", str(wait)),),
            )
        return caller

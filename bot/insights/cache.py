"""A value recomputed at most once per interval: the Home tab and /metrics ask often, the figures change slowly."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from sqlalchemy.orm import Session

T = TypeVar("T")


class Briefly(Generic[T]):
    """Keep what `compute` returned for `ttl`; every replica computes its own from the shared database."""

    def __init__(self, ttl: timedelta, compute: Callable[[Session, datetime], T]):
        self._ttl = ttl
        self._compute = compute
        self._lock = threading.Lock()
        self._kept: tuple[datetime, T] | None = None

    def get(self, session: Session, now: datetime) -> T:
        """The kept value if younger than the interval (and not from the future), else a fresh one."""
        with self._lock:  # one computation at a time: concurrent scrapes wait for it instead of repeating it
            if self._kept is not None and timedelta(0) <= now - self._kept[0] < self._ttl:
                return self._kept[1]
            value = self._compute(session, now)
            self._kept = (now, value)
            return value

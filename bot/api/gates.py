"""Waiting gates: a bounded number of long polls per replica, woken by one watcher reading the runs' revisions."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sqlalchemy import Engine, select

from bot.models import Run

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.2  # seconds between the watcher's reads: a tick elsewhere is seen within this
_KEPT = 1000  # answers shared at most; past that the oldest go
T = TypeVar("T")


@dataclass(eq=False)
class _Waiter:
    run_id: int
    rev: int
    woken: threading.Event = field(default_factory=threading.Event)
    seen: int | None = None  # the revision the watcher read when it woke this waiter


class GateWatcher:
    """Holds long polls without a database connection; one thread per replica reads the revisions they wait on.

    At most `slots` requests wait at once: they run on threads added to the server's pool for them,
    so waiting gates never take the threads Slack's requests need. A gate beyond the bound is
    answered at once (the client polls again).
    """

    def __init__(self, engine: Engine, slots: int, interval: float = POLL_INTERVAL):
        self._engine = engine.execution_options(deploybot_read_only=True)  # on SQLite: no write lock
        self._slots = threading.BoundedSemaphore(slots) if slots > 0 else None
        self._interval = interval
        self._waiting: set[_Waiter] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    def wait(self, run_id: int, rev: int, seconds: float) -> int | None:
        """Wait until the run's revision moves past `rev`, or `seconds` pass; the revision seen, if it moved.

        Returns `rev` at once when no slot is free.
        """
        if self._slots is None or self._stopping.is_set() or not self._slots.acquire(blocking=False):
            return rev
        waiter = _Waiter(run_id, rev)
        try:
            with self._lock:
                self._waiting.add(waiter)
                self._start()
            waiter.woken.wait(seconds)
        finally:
            with self._lock:
                self._waiting.discard(waiter)
            self._slots.release()
        return waiter.seen

    def stop(self) -> None:
        """Answer every waiting gate now and wait no more (the process is stopping)."""
        self._stopping.set()
        with self._lock:
            for waiter in self._waiting:
                waiter.woken.set()

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._watch, name="gates", daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        while not self._stopping.wait(self._interval):
            with self._lock:
                waiters = list(self._waiting)
            if not waiters:
                continue
            try:
                self.check(waiters)
            except Exception:
                log.exception("reading the revisions of waiting gates failed; retrying")

    def check(self, waiters: list[_Waiter]) -> None:
        """One query for every run waited on; wake the waiters whose run moved on (or is gone)."""
        ids = sorted({w.run_id for w in waiters})
        # A connection is taken for this one query and given back: waiting holds none.
        with self._engine.connect() as conn:
            revs: dict[int, int] = {
                row.id: row.rev for row in conn.execute(select(Run.id, Run.rev).where(Run.id.in_(ids)))
            }
        for waiter in waiters:
            seen = revs.get(waiter.run_id)
            if seen != waiter.rev:
                waiter.seen = seen
                waiter.woken.set()


class SharedAnswers(Generic[T]):
    """Gates woken together by one change get one answer: computed once per key and revision, then shared.

    Without it, 200 gates of one run woken at once would each read and render the whole run.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._computing: dict[Hashable, threading.Lock] = {}
        self._latest: dict[Hashable, tuple[int, T]] = {}

    def get(self, key: Hashable, at_least: int, compute: Callable[[], tuple[int, T]]) -> T:
        """The latest answer for `key` if it shows revision `at_least` or later, else a new one from `compute`."""
        with self._lock:
            computing = self._computing.setdefault(key, threading.Lock())
        with computing:  # the others woken by the same change wait for the first one's answer
            with self._lock:
                kept = self._latest.get(key)
            if kept is not None and kept[0] >= at_least:
                return kept[1]
            rev, answer = compute()
            with self._lock:
                if len(self._latest) >= _KEPT:
                    self._latest.pop(next(iter(self._latest)))
                    self._computing.pop(next(iter(self._computing)), None)
                self._latest[key] = (rev, answer)
            return answer

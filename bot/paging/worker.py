"""The paging worker: escalates pages whose timeout passed and sends queued notifications, from rows."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from bot import db, paging
from bot.config import DeployConfig
from bot.models import Page, PageDelivery
from bot.paging.senders import Outcome, Senders
from bot.runs import Actor

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(minutes=1)  # a page is urgent: never wait long between attempts


class PageWorker:
    """Runs in every replica; rows and their unique keys make each step happen once."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        config: DeployConfig,
        senders: Senders,
        clock: Callable[[], datetime],
        on_change: Callable[[], None],
        *,
        poll_interval: float = 1.0,
    ):
        self._sessions = sessions
        self._reader = db.read_only(sessions)
        self._config = config
        self._senders = senders
        self._clock = clock
        self._on_change = on_change
        self._poll_interval = poll_interval
        # Short leases renewed while a send goes on: a killed replica's deliveries are free again in seconds.
        self._leases = db.Leases(sessions, clock)
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        self._wakeup.set()

    def start(self) -> None:
        self._leases.start()
        self._thread = threading.Thread(target=self._loop, name="pager", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._leases.stop()
        self._senders.close()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                busy = self.tick(self._clock())
            except Exception:
                log.exception("paging pass failed; retrying")
                busy = 0
            if not busy:
                self._wakeup.wait(self._poll_interval)
            self._wakeup.clear()

    def tick(self, now: datetime) -> int:
        """Escalate what is due, then send what is due; return how many steps were taken."""
        return self.escalate_due(now) + self.deliver_due(now)

    def escalate_due(self, now: datetime) -> int:
        with self._reader() as session:
            due = paging.due_escalations(session, now)
        escalated = 0
        for page_id in due:
            with self._sessions.begin() as session:
                escalated += paging.escalate(session, self._config, page_id, now)
        if escalated:
            self._on_change()
        return escalated

    def deliver_due(self, now: datetime) -> int:
        with self._reader() as session:
            due = session.scalars(
                select(PageDelivery.id)
                .where(
                    PageDelivery.sent_at.is_(None),
                    PageDelivery.failed_at.is_(None),
                    or_(PageDelivery.not_before.is_(None), PageDelivery.not_before <= now),
                    db.unleased(PageDelivery, now),
                )
                .order_by(PageDelivery.id)
                .limit(50)
            ).all()
        delivered = 0
        for delivery_id in due:
            try:
                delivered += self._deliver(delivery_id, now)
            finally:
                self._leases.drop(PageDelivery, delivery_id)
        return delivered

    def _deliver(self, delivery_id: int, now: datetime) -> bool:
        with self._sessions.begin() as session:
            if not self._leases.take(session, PageDelivery, delivery_id, PageDelivery.sent_at.is_(None)):
                return False
            row = session.get(PageDelivery, delivery_id)
            assert row is not None
            if _waits_for_earlier(session, row):
                # An incident is acknowledged only after it was triggered: keep each target's order.
                row.lease_until = None
                return False
            page = paging.get_page(session, row.page_id)
            session.expunge(page)
            target, action, level = row.target, row.action, row.level
            sent = _first_message(session, row) if action != "trigger" else None
        outcome = self._senders.send(page, target, action, level, sent)
        with self._sessions.begin() as session:
            row = session.get(PageDelivery, delivery_id)
            assert row is not None
            self._record(session, row, page, outcome, now)
        if not outcome.ok and not outcome.retry:
            self._on_change()  # the alert shows the failure
        return outcome.ok

    def _record(self, session: Session, row: PageDelivery, page: Page, outcome: Outcome, now: datetime) -> None:
        row.lease_until = None
        if outcome.look_at is not None:  # not a failure: an earlier attempt is given time to land
            row.not_before = outcome.look_at
            return
        row.attempts += 1
        actor = Actor(paging.BOT, self._clock())
        about = {"target": row.target, "action": row.action, "level": row.level}
        if outcome.ok:
            row.sent_at, row.last_error = actor.at, None
            if outcome.message is not None:
                row.channel_id, row.ts = outcome.message
            for member in outcome.members:
                paging.queue(session, row.page_id, row.level, f"dm:{member}", "trigger", actor.at)
            paging.record(session, page, actor, "page.notified", about)
            if outcome.members:
                self.wake()
            return
        row.last_error = outcome.error
        if not outcome.retry:
            row.failed_at = actor.at
            current = paging.get_page(session, row.page_id, lock=True)
            paging.notify_failed(session, current, actor, {**about, "error": outcome.error})
            log.error("page %s: %s %s failed for good: %s", page.id, row.action, row.target, outcome.error)
            return
        wait = timedelta(seconds=outcome.retry_after) if outcome.retry_after is not None else _backoff(row.attempts)
        row.not_before = actor.at + wait
        log.warning(
            "page %s: %s %s failed (%s); retrying in %.0f s",
            page.id,
            row.action,
            row.target,
            outcome.error,
            wait.total_seconds(),
        )


def _first_message(session: Session, row: PageDelivery) -> tuple[str, str] | None:
    """Where the trigger of this target went (a DM's channel and ts), for updating it in place."""
    found = session.execute(
        select(PageDelivery.channel_id, PageDelivery.ts).where(
            PageDelivery.page_id == row.page_id,
            PageDelivery.level == row.level,
            PageDelivery.target == row.target,
            PageDelivery.action == "trigger",
        )
    ).first()
    return (found[0], found[1]) if found and found[0] and found[1] else None


def _waits_for_earlier(session: Session, row: PageDelivery) -> bool:
    earlier = session.scalar(
        select(PageDelivery.id)
        .where(
            PageDelivery.page_id == row.page_id,
            PageDelivery.target == row.target,
            PageDelivery.level == row.level,
            PageDelivery.id < row.id,
            PageDelivery.sent_at.is_(None),
            PageDelivery.failed_at.is_(None),
        )
        .limit(1)
    )
    return earlier is not None


def _backoff(attempts: int) -> timedelta:
    return min(timedelta(seconds=2 ** min(attempts - 1, 10)), MAX_BACKOFF)

"""Weekly review slots -> outbox messages: each slot claimed once by a unique row, late slots posted once."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from bot import db, insights
from bot.config import DeployConfig
from bot.models import Outbox, ReviewSlot, Run
from bot.reminders import instant, slots, ticking
from bot.review.message import Slot, discuss_text, review_blocks
from bot.review.settings import Schedule

log = logging.getLogger(__name__)

# A slot whose post goes out later than this (deploybot was down) says that it is late.
ON_TIME = timedelta(hours=1)
# Findings about the checklist look this far back: a week alone has too few runs to tell.
HEALTH_WEEKS = 8
SLACK_CHANNEL = re.compile(r"^[CG][A-Z0-9]{4,}$")


class Reviews:
    """Posts each deployment channel's weekly review once per slot, whatever the number of processes."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        config: DeployConfig,
        clock: Callable[[], datetime],
        on_change: Callable[[], None],
        *,
        interval: float = 60.0,
    ):
        self._sessions = sessions
        self._reader = db.read_only(sessions)
        self._settings = config.review
        self.zone = config.zone
        self._clock = clock
        self._on_change = on_change
        self._interval = interval
        self._scheduler: BackgroundScheduler | None = None

    def start(self) -> None:
        """Tick now and every `interval` seconds; the slots table, not this job, is the schedule's truth."""
        self._scheduler = ticking(self.tick_now, self._clock(), self._interval)

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)

    def tick_now(self) -> None:
        try:
            self.tick(self._clock())
        except Exception:
            log.exception("review tick failed; the next one retries")

    def tick(self, now: datetime) -> int:
        """Post every channel's due review (a missed one once, late); return how many were posted."""
        return sum(self._post_due(schedule, now) for schedule in self.schedules(now))

    def schedules(self, now: datetime) -> list[Schedule]:
        """The review of every deployment channel that has one: a deploy run in its window, or listed."""
        with self._reader() as session:
            widest = max([self._settings.weeks, *(c.weeks or 0 for c in self._settings.channels.values())])
            since = now - timedelta(weeks=widest)
            deployed = session.scalars(
                select(Run.channel_id).where(Run.kind == "deploy", Run.started_at >= since).group_by(Run.channel_id)
            ).all()
        channels = sorted({c for c in deployed if SLACK_CHANNEL.match(c)} | set(self._settings.channels))
        found = [self._settings.for_channel(channel) for channel in channels]
        return [s for s in found if s.enabled and (s.listed or s.channel_id in deployed)]

    def _post_due(self, schedule: Schedule, now: datetime) -> int:
        with self._reader() as session:
            last = session.scalar(
                select(ReviewSlot.local_time)
                .where(ReviewSlot.channel_id == schedule.channel_id)
                .order_by(ReviewSlot.due_at.desc())
                .limit(1)
            )
        # Never reviewed: only a slot due right now counts; no past review is invented.
        after = datetime.fromisoformat(last) if last else (now - ON_TIME).astimezone(self.zone).replace(tzinfo=None)
        due = slots(schedule.cron, self.zone, after, now)
        if not due:
            return 0
        # After downtime only the latest slot is posted (late, saying so); the ones before are recorded missed.
        for local, at in due[:-1]:
            self._claim(schedule, local, at, now, "missed")
        local, at = due[-1]
        return int(self._claim(schedule, local, at, now, "late" if now - at > ON_TIME else "posted"))

    def _claim(self, schedule: Schedule, local: datetime, at: datetime, now: datetime, status: str) -> bool:
        """Insert the slot's unique row with its messages in one transaction; whether this call did."""
        blocks, text = self._compose(schedule, local, at, late=status == "late") if status != "missed" else ([], "")
        with self._sessions.begin() as session:
            values = {
                "channel_id": schedule.channel_id,
                "local_time": local.isoformat(),
                "due_at": at,
                "status": status,
                "claimed_at": now,
            }
            if not db.insert_once(session, ReviewSlot, values):
                return False  # another process has it
            if status == "missed":
                log.info("review of %s at %s recorded as missed", schedule.channel_id, local)
                return False
            review = Outbox(channel_id=schedule.channel_id, text=text, blocks=blocks, created_at=now)
            session.add(review)
            session.flush()
            session.add(Outbox(channel_id=schedule.channel_id, text=discuss_text(), created_at=now, reply_to=review.id))
            session.execute(
                update(ReviewSlot)
                .where(ReviewSlot.channel_id == schedule.channel_id, ReviewSlot.local_time == local.isoformat())
                .values(outbox_id=review.id)
            )
        log.info("review of %s at %s queued (%s)", schedule.channel_id, local, status)
        self._on_change()
        return True

    def _compose(
        self, schedule: Schedule, local: datetime, at: datetime, *, late: bool
    ) -> tuple[list[dict[str, object]], str]:
        """The review of the week before the slot, read before the claim so the write stays short."""
        environment = schedule.environment
        with self._reader() as session:
            figures = insights.figures(session, environment=environment, start=at - timedelta(weeks=1), end=at)
            # The chart ends with the last whole week before the slot's own.
            monday = (local - timedelta(days=local.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
            chart_end = instant(monday, self.zone) - timedelta(microseconds=1)
            weeks = insights.weekly(
                session, environment=environment, weeks=schedule.weeks, end=chart_end, zone=self.zone
            )
            health = insights.health(session, environment=environment, start=at - timedelta(weeks=HEALTH_WEEKS), end=at)
            worth = health.worth_a_look(3)
        slot = Slot(schedule.channel_id, local, self.zone.key, environment, late)
        return review_blocks(slot, figures, weeks, worth)

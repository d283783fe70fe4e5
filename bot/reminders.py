"""Maintenance cadences → slots → posted runs, each slot claimed once by a unique row; nudges and escalations."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from bot import db, paging, runs
from bot.checklists import Schedule, Template
from bot.config import DeployConfig
from bot.models import ItemStatus, Outbox, ReminderSlot, Run
from bot.runs import Actor, RunError
from bot.say import Channel, Code, Said, Strong, say
from bot.slack import blocks

log = logging.getLogger(__name__)

REMINDER_ACTOR = "deploybot"
# However long deploybot was down, it looks at most this many slots back per cadence.
MAX_SLOTS_PER_TICK = 500


@dataclass(frozen=True)
class Cadence:
    """One scheduled phase of a maintenance checklist."""

    id: str
    template: Template
    schedule: Schedule
    channel: str | None


def cadences(templates: dict[str, Template], config: DeployConfig) -> dict[str, Cadence]:
    """Every scheduled phase of every maintenance checklist, keyed by phase id."""
    found = {}
    for template in templates.values():
        if template.kind != "maintenance":
            continue
        for phase in template.phases:
            if phase.schedule is not None:
                channel = phase.schedule.channel or config.maintenance_channel
                found[phase.id] = Cadence(phase.id, template.only(phase.id), phase.schedule, channel)
    return found


def duration(text: str) -> timedelta:
    """'30m', '8h' or '3d' as a timedelta."""
    unit = {"m": "minutes", "h": "hours", "d": "days"}[text[-1]]
    return timedelta(**{unit: int(text[:-1])})


def instant(local: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of a wall-clock time. A time skipped by a DST change maps to just after the
    change; a time that happens twice maps to its first occurrence (fold=0) — either way, one instant."""
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


def slots(cron: str, zone: ZoneInfo, after: datetime, until: datetime) -> list[tuple[datetime, datetime]]:
    """(wall-clock time, UTC instant) of every slot with after < wall-clock time and instant <= until."""
    # Cron fields are matched on naive wall-clock times (treated as UTC): each local time is one
    # candidate whatever DST does, so no slot is doubled or lost at a change.
    trigger = CronTrigger.from_crontab(cron, timezone=UTC)
    found: list[tuple[datetime, datetime]] = []
    cursor = after + timedelta(seconds=1)
    while len(found) < MAX_SLOTS_PER_TICK:
        fire = trigger.get_next_fire_time(None, cursor.replace(tzinfo=UTC))
        if fire is None:
            break
        local = fire.replace(tzinfo=None)
        when = instant(local, zone)
        if when > until:
            break
        found.append((local, when))
        cursor = local + timedelta(seconds=1)
    return found


def next_slot(cron: str, zone: ZoneInfo, now: datetime) -> datetime:
    """The next wall-clock slot at or after now."""
    local_now = now.astimezone(zone).replace(tzinfo=None)
    fire = CronTrigger.from_crontab(cron, timezone=UTC).get_next_fire_time(None, local_now.replace(tzinfo=UTC))
    return fire.replace(tzinfo=None)  # type: ignore[no-any-return]


def ticking(job: Callable[[], None], now: datetime, interval: float) -> BackgroundScheduler:
    """Run `job` now and every `interval` seconds, one at a time, skipping ticks it overran."""
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_job(job, "interval", seconds=interval, next_run_time=now, max_instances=1, coalesce=True)
    scheduler.start()
    return scheduler


class Reminders:
    """Posts each cadence on time, once, whatever the number of processes; nudges and escalates."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        templates: dict[str, Template],
        config: DeployConfig,
        clock: Callable[[], datetime],
        on_change: Callable[[], None],
        *,
        interval: float = 30.0,
    ):
        self._sessions = sessions
        self._reader = db.read_only(sessions)
        self.cadences = cadences(templates, config)
        self._config = config
        self.zone = config.zone
        self._clock = clock
        self._on_change = on_change
        self._interval = interval
        self._scheduler: BackgroundScheduler | None = None

    def start(self) -> None:
        """Tick now and every `interval` seconds. The APScheduler job lives in memory only: the
        schedule's truth is the reminder_slots table, so nothing is lost when a process stops."""
        self._scheduler = ticking(self.tick_now, self._clock(), self._interval)

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)

    def tick_now(self) -> None:
        try:
            self.tick(self._clock())
        except Exception:
            log.exception("reminder tick failed; the next one retries")

    def tick(self, now: datetime) -> int:
        """Post due slots, record missed ones, send due nudges; return how many runs were posted."""
        posted = sum(self._post_due(cadence, now) for cadence in self.cadences.values() if cadence.channel)
        self._nudge(now)
        return posted

    def _post_due(self, cadence: Cadence, now: datetime) -> int:
        catch_up = duration(cadence.schedule.catch_up)
        with self._reader() as session:
            last = session.scalar(
                select(ReminderSlot.local_time)
                .where(ReminderSlot.cadence == cadence.id, ReminderSlot.status != "manual")
                .order_by(ReminderSlot.due_at.desc())
                .limit(1)
            )
        if last is None:  # never posted: only the current slot counts, no history is invented
            after = (now - catch_up).astimezone(self.zone).replace(tzinfo=None)
        else:
            after = datetime.fromisoformat(last)
        due = slots(cadence.schedule.cron, self.zone, after, now)
        if not due:
            return 0
        # Only the latest slot may still be posted (if recent enough): a flood helps nobody.
        latest_local, latest_at = due[-1]
        missed = due[:-1] if now - latest_at <= catch_up else due
        for local, at in missed:
            self._claim(cadence, local, at, "missed", None)
        if now - latest_at <= catch_up and self._claim(cadence, latest_local, latest_at, "posted", now):
            return 1
        return 0

    def remind_now(self, cadence_id: str, user_id: str, name: str | None = None) -> int:
        """Post a cadence now, on request of `user_id` (called `name`); returns the run id."""
        cadence = self.cadences.get(cadence_id)
        if cadence is None:
            known = ", ".join(self.cadences) or "none (add schedules to checklists/maintenance.yml)"
            raise RunError(f"There is no cadence '{cadence_id}'. Cadences: {known}.")
        if cadence.channel is None:
            raise RunError(_no_channel(cadence))
        now = self._clock()
        local = now.astimezone(self.zone).replace(tzinfo=None, microsecond=0)
        run_id = self._claim(cadence, local, now, "manual", now, user_id, name)
        if run_id is None:
            raise RunError("That cadence was posted this very second; see the channel.")
        return run_id

    def _claim(
        self,
        cadence: Cadence,
        local: datetime,
        at: datetime,
        status: str,
        now: datetime | None,
        user_id: str = REMINDER_ACTOR,
        name: str | None = None,
    ) -> int | None:
        """Insert the slot's unique row; whoever inserts it posts it (if it is to be posted)."""
        with self._sessions.begin() as session:
            values = {"cadence": cadence.id, "local_time": local.isoformat(), "due_at": at, "status": status}
            if not db.insert_once(session, ReminderSlot, values):
                return None
            if now is None:
                log.info("maintenance %s slot %s recorded as missed", cadence.id, local)
                return 0
            template = cadence.template
            run = runs.start(
                session,
                template,
                version=local.strftime("%a %d %b %Y %H:%M"),
                environment=cadence.schedule.environment,
                channel_id=cadence.channel or "",
                parts=len(blocks.layout(template)),
                actor=Actor(user_id, now, cadence.channel, name=name),
                probes=cadence.schedule.environment in self._config.environments,
            )
            session.execute(
                update(ReminderSlot)
                .where(ReminderSlot.cadence == cadence.id, ReminderSlot.local_time == local.isoformat())
                .values(
                    run_id=run.id,
                    nudge_at=now + duration(cadence.schedule.nudge_after),
                    escalate_at=now + duration(cadence.schedule.escalate_after),
                )
            )
            run_id = run.id
        log.info("maintenance %s slot %s posted as run %s (%s)", cadence.id, local, run_id, status)
        self._on_change()
        return run_id

    def _nudge(self, now: datetime) -> None:
        for stage in ("nudge", "escalate"):
            due_column = ReminderSlot.nudge_at if stage == "nudge" else ReminderSlot.escalate_at
            done_column = ReminderSlot.nudged_at if stage == "nudge" else ReminderSlot.escalated_at
            with self._reader() as session:
                due = session.scalars(
                    select(ReminderSlot.id)
                    .join(Run, Run.id == ReminderSlot.run_id)
                    .where(Run.status == "active", due_column <= now, done_column.is_(None))
                ).all()
            for slot_id in due:
                with self._sessions.begin() as session:
                    claimed = session.execute(
                        update(ReminderSlot)
                        .where(ReminderSlot.id == slot_id, done_column.is_(None))
                        .values({done_column: now})
                    )
                    if not claimed.rowcount:  # type: ignore[attr-defined]
                        continue  # another process sent it
                    slot = session.get(ReminderSlot, slot_id)
                    assert slot is not None and slot.run_id is not None
                    run = runs.get_run(session, slot.run_id)
                    team = self._team_to_page(stage, slot)
                    if team is not None:
                        text = f"The {slot.cadence} maintenance checklist (run #{run.id}) is overdue."
                        paging.raise_page(
                            session, self._config, team, text, Actor(REMINDER_ACTOR, now, run.channel_id), run_id=run.id
                        )
                    session.add(
                        Outbox(
                            channel_id=run.channel_id,
                            run_id=run.id,
                            created_at=now,
                            text=self._overdue_text(stage, run, slot, team),
                        )
                    )
                self._on_change()

    def _team_to_page(self, stage: str, slot: ReminderSlot) -> str | None:
        cadence = self.cadences.get(slot.cadence)
        team = cadence.schedule.escalate_to if cadence and stage == "escalate" else None
        if team is not None and team not in self._config.contacts:
            log.error(
                "maintenance %s escalates to unknown team %r; add it to contacts in deploybot.yml", slot.cadence, team
            )
            return None
        return team

    def _overdue_text(self, stage: str, run: Run, slot: ReminderSlot, team: str | None = None) -> str:
        cadence = self.cadences.get(slot.cadence)
        owners = " ".join(f"<@{u}>" for u in (cadence.schedule.owners if cadence else []))
        open_items = sum(s.required and s.status == ItemStatus.OPEN for s in run.items)
        if stage == "nudge":
            who = owners or "Owners"
            return (
                f":alarm_clock: {who}: this {slot.cadence} checklist is overdue ({open_items} required item(s) open)."
            )
        who = f"paged *{team}*:" if team else "<!here>"
        return (
            f":rotating_light: {who} the {slot.cadence} checklist is still not done, past its second deadline "
            f"({open_items} required item(s) open). {owners}".rstrip()
        )

    def status_lines(self) -> list[Said]:
        """For /deploy reminders: each cadence's next slot and its last run."""
        now = self._clock()
        lines = []
        with self._reader() as session:
            for cadence in self.cadences.values():
                upcoming = next_slot(cadence.schedule.cron, self.zone, now)
                last = session.scalars(
                    select(ReminderSlot)
                    .where(ReminderSlot.cadence == cadence.id, ReminderSlot.run_id.is_not(None))
                    .order_by(ReminderSlot.due_at.desc())
                    .limit(1)
                ).first()
                where = say(Channel(cadence.channel)) if cadence.channel else say(_no_channel(cadence))
                previous = "never posted"
                if last is not None and last.run_id is not None:
                    run = runs.get_run(session, last.run_id)
                    done, na, total = blocks.progress(run)
                    previous = f"last: run #{run.id} {run.version}, {run.status} ({done + na}/{total})"
                lines.append(
                    say(
                        "• ",
                        Strong(cadence.template.phases[0].title),
                        f" — next {upcoming:%a %d %b %H:%M} ",
                        f"{self.zone.key} (",
                        Code(cadence.schedule.cron),
                        ") in ",
                        where,
                        f" · {previous}",
                    )
                )
        return lines


def _no_channel(cadence: Cadence) -> str:
    return (
        f"no channel for '{cadence.id}': set maintenance_channel in deploybot.yml "
        "or schedule.channel in checklists/maintenance.yml"
    )

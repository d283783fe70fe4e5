"""Page rules: raise, acknowledge, resolve, escalate. They take a session, never commit, never call out.

Every notification a page needs is written as a `PageDelivery` row whose unique key (page, level,
target, action) makes it happen once, however many replicas run; the worker sends them.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot import db
from bot.config import DeployConfig
from bot.contacts import escalation_chain, seconds
from bot.models import Message, Page, PageDelivery, PageStatus
from bot.runs import Actor, RunError, add_event, storable
from bot.say import Cmd, Code, Said, Who, say
from bot.slack.mrkdwn import is_slack_channel

BOT = "deploybot"  # who escalations are attributed to
MAX_TEXT = 500
EXTERNAL = ("pagerduty:", "webhook:")  # pagers that hear about acknowledgements and resolutions
FOLLOW = (*EXTERNAL, "dm:")  # targets that follow the page: pagers are told, each DM is updated in place


def raise_page(
    session: Session, config: DeployConfig, team: str, text: str, actor: Actor, *, run_id: int | None = None
) -> Page:
    """Page a team: an alert in the actor's channel, then its people and pagers, escalating until acknowledged."""
    if not config.contacts:
        raise RunError(
            say("No emergency contacts are set up: add ", Code("contacts:"), " to deploybot.yml (README › On call).")
        )
    if team not in config.contacts:
        teams = ", ".join(config.contacts)
        raise RunError(
            say("There is no team ", Code(team, typed=True), f". Teams: {teams} (see ", Cmd("contacts"), ").")
        )
    text = storable(text.strip())
    if not text:
        raise RunError(
            say(
                "Say what is wrong: ",
                Cmd(f"page {team} <message>"),
                ", e.g. ",
                Cmd(f"page {team} migration stuck"),
                ".",
            )
        )
    if len(text) > MAX_TEXT:
        raise RunError(f"Keep the message under {MAX_TEXT} characters (it has {len(text)}).")
    chain = escalation_chain(config.contacts, team)
    channel = actor.channel_id if actor.channel_id and is_slack_channel(actor.channel_id) else None
    page = Page(
        team=team,
        text=text,
        channel_id=channel,
        run_id=run_id,
        chain=chain,
        level=0,
        escalate_at=actor.at + _timeout(config, team),
        status=PageStatus.OPEN,
        dedup_key=f"deploybot-{uuid.uuid4().hex}",
        paged_by=actor.user_id,
        created_at=actor.at,
        rev=1,
    )
    session.add(page)
    session.flush()
    if channel:
        session.add(Message(page_id=page.id, part=0, channel_id=channel))
    record(session, page, actor, "page.raised", {"team": team, "text": text, "chain": chain})
    _notify(session, config, page, actor.at)
    return page


def acknowledge(session: Session, page_id: int, actor: Actor) -> Said:
    """Stop the escalation; the first acknowledgement wins and the answer says who had it."""
    page = get_page(session, page_id, lock=True)
    if page.status != PageStatus.OPEN:
        return _already(page)
    page.status, page.acked_by, page.acked_at, page.escalate_at = (
        PageStatus.ACKNOWLEDGED,
        actor.user_id,
        actor.at,
        None,
    )
    _tell_pagers(session, page, "acknowledge", actor.at)
    _changed(session, page, actor, "page.acknowledged", {"level": page.level})
    return say(f"You acknowledged page #{page.id} ({page.team}): escalation stopped. Resolve it when it is over.")


def resolve(session: Session, page_id: int, actor: Actor) -> Said:
    """Close a page (acknowledged or not) and tell the external pagers."""
    page = get_page(session, page_id, lock=True)
    if page.status == PageStatus.RESOLVED:
        return _already(page)
    if page.acked_by is None:
        page.acked_by, page.acked_at = actor.user_id, actor.at
    page.status, page.resolved_by, page.resolved_at, page.escalate_at = (
        PageStatus.RESOLVED,
        actor.user_id,
        actor.at,
        None,
    )
    _tell_pagers(session, page, "resolve", actor.at)
    _changed(session, page, actor, "page.resolved", {"level": page.level})
    return say(f"You resolved page #{page.id} ({page.team}).")


def escalate(session: Session, config: DeployConfig, page_id: int, now: datetime) -> bool:
    """Page the next level of an unacknowledged page whose timeout passed; False if nothing was due."""
    page = get_page(session, page_id, lock=True)
    # Re-checked under the row lock: of two replicas looking at once, one escalates.
    if page.status != PageStatus.OPEN or page.escalate_at is None or page.escalate_at > now:
        return False
    actor = Actor(BOT, now)
    if page.level + 1 >= len(page.chain):
        page.escalate_at = None
        _changed(session, page, actor, "page.unanswered", {"level": page.level})
        return True
    page.level += 1
    team = page.chain[page.level]
    page.escalate_at = now + _timeout(config, team)
    _changed(session, page, actor, "page.escalated", {"level": page.level, "team": team})
    _notify(session, config, page, now)
    return True


def due_escalations(session: Session, now: datetime) -> list[int]:
    return list(
        session.scalars(
            select(Page.id).where(Page.status == PageStatus.OPEN, Page.escalate_at <= now).order_by(Page.escalate_at)
        )
    )


def get_page(session: Session, page_id: int, *, lock: bool = False) -> Page:
    page: Page | None = db.load(session, Page, page_id, lock=lock)
    if page is None:
        raise RunError(f"Page #{page_id} does not exist.")
    return page


def open_pages(session: Session) -> list[Page]:
    return list(session.scalars(select(Page).where(Page.status != PageStatus.RESOLVED).order_by(Page.id)))


def pages_of_run(session: Session, run_id: int) -> list[Page]:
    return list(session.scalars(select(Page).where(Page.run_id == run_id).order_by(Page.id)))


def record(session: Session, page: Page, actor: Actor, kind: str, data: dict[str, Any] | None = None) -> None:
    add_event(session, actor, kind, data, run_id=page.run_id, page_id=page.id)


# --- internals -------------------------------------------------------------------------------------


def _timeout(config: DeployConfig, team: str) -> timedelta:
    found = config.contacts.get(team)
    return timedelta(seconds=seconds(found.ack_timeout if found else "5m"))


def _notify(session: Session, config: DeployConfig, page: Page, at: datetime) -> None:
    """Queue every notification of the page's current level, each once."""
    team = config.contacts.get(page.chain[page.level])
    if team is None:  # removed from deploybot.yml since the page was raised; the next level follows
        return
    targets = [f"dm:{u}" for u in team.users]
    if team.usergroup:
        targets.append(f"usergroup:{team.usergroup}")
    if team.pagerduty:
        targets.append(f"pagerduty:{page.chain[page.level]}")
    if team.webhook:
        targets.append(f"webhook:{page.chain[page.level]}")
    for target in targets:
        queue(session, page.id, page.level, target, "trigger", at)


def queue(session: Session, page_id: int, level: int, target: str, action: str, at: datetime) -> bool:
    """Add one notification unless it exists already; True if this call added it."""
    values = {"page_id": page_id, "level": level, "target": target, "action": action, "created_at": at, "attempts": 0}
    return db.insert_once(session, PageDelivery, values)


def notify_failed(session: Session, page: Page, actor: Actor, about: dict[str, Any]) -> None:
    """A notification failed for good: record it and show it on the alert."""
    _changed(session, page, actor, "page.notify_failed", about)


def _tell_pagers(session: Session, page: Page, action: str, at: datetime) -> None:
    """Pagers and DMs follow the page: incidents are acknowledged and resolved, DMs show who has it."""
    triggered = session.execute(
        select(PageDelivery.level, PageDelivery.target).where(
            PageDelivery.page_id == page.id, PageDelivery.action == "trigger"
        )
    ).all()
    for level, target in triggered:
        if target.startswith(FOLLOW):
            queue(session, page.id, level, target, action, at)


def _changed(session: Session, page: Page, actor: Actor, kind: str, data: dict[str, Any]) -> None:
    record(session, page, actor, kind, data)
    page.rev += 1
    session.flush()
    session.execute(update(Message).where(Message.page_id == page.id).values(wanted_rev=page.rev))


def _already(page: Page) -> Said:
    if page.status == PageStatus.RESOLVED:
        return say(f"Page #{page.id} was already resolved by ", Who(page.resolved_by), "; nothing changed.")
    return say(Who(page.acked_by), f" already acknowledged page #{page.id} ({page.team}); nothing changed.")

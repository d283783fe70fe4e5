"""The App Home tab: active runs, the last ten finished, delivery figures, upcoming reminders, open pages."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot import paging
from bot.contacts import Team
from bot.models import ItemState, ItemStatus, Page, Run, RunStatus
from bot.paging.render import team_name
from bot.reminders import Reminders, next_slot
from bot.slack import limits
from bot.slack.blocks import Block, bar, duration, kind_title, quote, section, when
from bot.slack.mrkdwn import escape, is_slack_channel, mention

MAX_ACTIVE = 20
MAX_FINISHED = 10
MAX_PAGES = 10
_ENDINGS = {
    RunStatus.COMPLETE: ":white_check_mark: complete",
    RunStatus.ABORTED: ":octagonal_sign: aborted",
    RunStatus.FAILED: ":x: failed",
    RunStatus.ROLLED_BACK: ":leftwards_arrow_with_hook: rolled back",
}


def home_view(
    session: Session,
    now: datetime,
    reminders: Reminders | None,
    contacts: dict[str, Team],
    notices: Sequence[str] = (),
    insights: Sequence[Block] = (),
) -> dict[str, Any]:
    """The Home tab's view; it never shows the current time, so an unchanged state renders identically."""
    active = list(
        session.scalars(
            select(Run).where(Run.status == RunStatus.ACTIVE).order_by(Run.started_at.desc()).limit(MAX_ACTIVE)
        )
    )
    finished = list(
        session.scalars(
            select(Run)
            .where(Run.status != RunStatus.ACTIVE, Run.finished_at.is_not(None))
            .order_by(Run.finished_at.desc())
            .limit(MAX_FINISHED)
        )
    )
    counts = _progress(session, [r.id for r in active])
    blocks: list[Block] = [{"type": "header", "text": {"type": "plain_text", "text": "deploybot"}}]
    blocks += [section(f":warning: {escape(notice)}") for notice in notices]
    blocks.append(
        section("*Active runs*" if active else "*Active runs*\nNone. Start one with `/deploy start <version>`.")
    )
    blocks += [section(_active_line(run, counts[run.id])) for run in active]
    blocks.append({"type": "divider"})
    blocks.append(section("*Last finished*" if finished else "*Last finished*\nNothing yet."))
    if finished:
        blocks.append(section("\n".join(_finished_line(run) for run in finished)))
    blocks += insights  # the delivery figures and what is worth a look (bot/insights/slack.py)
    blocks.append({"type": "divider"})
    blocks.append(section("*Upcoming reminders*\n" + _reminders(reminders, now)))
    pages = paging.open_pages(session)[:MAX_PAGES]
    blocks.append({"type": "divider"})
    blocks.append(section("*Open pages*" + ("" if pages else "\nNone.")))
    blocks += [section(_page_line(page, contacts)) for page in pages]
    return {"type": "home", "blocks": blocks[: limits.BLOCKS_PER_VIEW]}


def _progress(session: Session, run_ids: list[int]) -> dict[int, dict[str, int]]:
    """Per run: items done, N/A, total, and required items still open — counted by the database."""
    found: dict[int, dict[str, int]] = defaultdict(lambda: {"done": 0, "na": 0, "total": 0, "open_required": 0})
    if not run_ids:
        return found
    rows = session.execute(
        select(ItemState.run_id, ItemState.status, ItemState.required, func.count())
        .where(ItemState.run_id.in_(run_ids))
        .group_by(ItemState.run_id, ItemState.status, ItemState.required)
    )
    for run_id, status, required, n in rows:
        counts = found[run_id]
        counts["total"] += n
        if status == ItemStatus.DONE:
            counts["done"] += n
        elif status == ItemStatus.NA:
            counts["na"] += n
        elif required:
            counts["open_required"] += n
    return found


def _active_line(run: Run, counts: dict[str, int]) -> str:
    resolved, total = counts["done"] + counts["na"], counts["total"]
    return (
        f"*#{run.id}* {kind_title(run.kind)} {escape(run.version)} → {escape(run.environment)} "
        f"in {_channel(run.channel_id)}\n{bar(resolved, total)} {resolved}/{total} · "
        f"{counts['open_required']} required open · started by {mention(run.started_by)} {when(run.started_at)}"
    )


def _channel(channel_id: str) -> str:
    """A channel Slack can link to; a run started in the terminal says so instead."""
    return f"<#{channel_id}>" if is_slack_channel(channel_id) else f"the terminal ({escape(channel_id)})"


def _finished_line(run: Run) -> str:
    took = duration(run.started_at, run.finished_at) if run.finished_at else "?"
    ending = _ENDINGS.get(run.status, run.status)
    if run.status == RunStatus.COMPLETE and run.overridden_items:
        ending = f":warning: completed anyway ({len(run.overridden_items)} required open)"
    label = "" if run.kind == "deploy" else f"{kind_title(run.kind)} "  # a rollback never reads as a release
    return (
        f"*#{run.id}* {label}{escape(run.version)} → {escape(run.environment)} · {ending} · "
        f"{took} · {mention(run.finished_by)} {when(run.finished_at) if run.finished_at else ''}"
    )


def _reminders(reminders: Reminders | None, now: datetime) -> str:
    if reminders is None or not reminders.cadences:
        return "No maintenance schedules (add `schedule:` to checklists/maintenance.yml)."
    lines = []
    for cadence in reminders.cadences.values():
        upcoming = next_slot(cadence.schedule.cron, reminders.zone, now)
        where = f"<#{cadence.channel}>" if cadence.channel else "no channel set"
        lines.append(
            f"• {escape(cadence.template.phases[0].title)}: {upcoming:%a %d %b %H:%M} {reminders.zone.key} in {where}"
        )
    return "\n".join(lines)


def _page_line(page: Page, contacts: dict[str, Team]) -> str:
    state = f"acknowledged by {mention(page.acked_by)}" if page.acked_by else "waiting for an acknowledgement"
    return (
        f":rotating_light: *{escape(team_name(contacts, page.team))}*: {quote(page.text, 300)} · {state} · "
        f"paged by {mention(page.paged_by)} {when(page.created_at)}"
    )

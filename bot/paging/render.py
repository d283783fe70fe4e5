"""Block Kit for pages: the channel alert, the DM each contact gets, and `/deploy contacts`."""

from __future__ import annotations

from typing import Any

from bot.contacts import Team
from bot.models import Page, PageStatus
from bot.say import Cmd, Code, Group, Icon, Said, Strong, Typed, Who, join, say, slack
from bot.slack import ids, limits
from bot.slack.blocks import Block, button, context, quote, section, when
from bot.slack.mrkdwn import defuse, escape, mention

Contacts = dict[str, Team]


def team_name(contacts: Contacts, team: str) -> str:
    found = contacts.get(team)
    return found.name if found and found.name else team


def summary(page: Page, contacts: Contacts) -> str:
    """One line for Slack's notifications: a message's `text` is mrkdwn too, so it is escaped like the blocks."""
    return escape(f"Page for {team_name(contacts, page.team)}: {page.text}")


def plain_summary(page: Page, contacts: Contacts) -> str:
    """One line for external pagers: the text as typed, inert should a receiver post it into Slack."""
    return defuse(f"Page for {team_name(contacts, page.team)}: {page.text}")


def details(page: Page, team: str) -> dict[str, Any]:
    """What external pagers receive about a page: no secrets, nothing Slack-only."""
    return {
        "id": page.id,
        "dedup_key": page.dedup_key,
        "team": team,
        "paged_team": page.team,
        "text": page.text,
        "paged_by": page.paged_by,
        "channel": page.channel_id,
        "run": page.run_id,
        "status": page.status,
        "created_at": page.created_at.isoformat(),
    }


def alert(page: Page, contacts: Contacts) -> tuple[list[Block], str]:
    """The alert in the channel: what, who was reached, who has it, what failed, and the buttons."""
    title = f"🚨 Page: {team_name(contacts, page.team)}"[: limits.HEADER_TEXT]
    run = f" · run #{page.run_id}" if page.run_id else ""
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": title}},
        section(f"*{quote(page.text)}*\nPaged by {mention(page.paged_by)} {when(page.created_at)}{run}"),
        section(f"*Status*: {status(page)}\n*Reached*: {_reached(page, contacts)}"),
    ]
    failed = failures(page, contacts)
    if failed:
        blocks.append(context("\n".join(failed)))
    reach = _how_to_reach(contacts.get(page.chain[page.level]))
    if reach:
        blocks.append(context(reach))
    blocks.extend(_buttons(page))
    return blocks, summary(page, contacts)


def dm(page: Page, contacts: Contacts, level: int) -> tuple[list[Block], str]:
    """What each contact receives in a direct message, kept in step with the page: who has it, what is left."""
    where = f" in <#{page.channel_id}>" if page.channel_id else ""
    escalated = f" (escalated: nobody acknowledged level {level})" if level else ""
    team = escape(team_name(contacts, page.team))
    text = f":rotating_light: {mention(page.paged_by)} paged *{team}*{where}{escalated}:\n>{quote(page.text)}"
    blocks = [section(text)]
    if page.status != PageStatus.OPEN:
        blocks.append(section(f"*Status*: {status(page)}"))
    blocks.extend(_buttons(page))
    return blocks, summary(page, contacts)


def status(page: Page) -> str:
    """Who has the page, in one line: waiting, acknowledged by, resolved by."""
    if page.status == PageStatus.ACKNOWLEDGED:
        return f":large_yellow_circle: Acknowledged by {mention(page.acked_by)}" + (
            f" {when(page.acked_at)}" if page.acked_at else ""
        )
    if page.status == PageStatus.RESOLVED:
        return f":white_check_mark: Resolved by {mention(page.resolved_by)}" + (
            f" {when(page.resolved_at)}" if page.resolved_at else ""
        )
    return ":red_circle: Waiting for an acknowledgement"


def failures(page: Page, contacts: Contacts) -> list[str]:
    """One line per pager notification that failed for good: which pager, and Slack-safe words for why."""
    lines = []
    for delivery in page.deliveries:
        kind, _, team = delivery.target.partition(":")
        if delivery.failed_at is None or kind not in PAGERS:
            continue
        action = "" if delivery.action == "trigger" else f" ({delivery.action})"
        lines.append(
            f":warning: *{PAGERS[kind]}* ({escape(team_name(contacts, team))}){action}: failed — "
            f"{escape(_why(kind, delivery.last_error or 'unknown error'))}"
        )
    return lines


def contacts_text(contacts: Contacts) -> str:
    """`/deploy contacts` for Slack."""
    return slack(contacts_said(contacts))


def contacts_said(contacts: Contacts) -> Said:
    """Every team, its people, how to reach them, and where a page escalates."""
    if not contacts:
        return say("No emergency contacts are set up: add ", Code("contacts:"), " to deploybot.yml (README › On call).")
    lines = [say(Strong("Emergency contacts"))]
    for key, team in contacts.items():
        people = join([*(Who(u) for u in team.users), *([Group(team.usergroup)] if team.usergroup else [])], " ")
        pagers = [p for p, on in (("PagerDuty", team.pagerduty), ("webhook", team.webhook)) if on]
        escalation = f"acknowledge within {team.ack_timeout}"
        if team.next:
            escalation += f", then {team_name(contacts, team.next)}"
        if team.repeat:
            escalation += f", repeated {team.repeat}×"
        reach = _reach(team)
        lines.append(
            say(
                "• ",
                Strong(team.name or key, typed=True),
                " (",
                Code(key),
                "): ",
                people if people.parts else "no Slack users",
                f" · {' + '.join(pagers)}" if pagers else "",
                f" · {escalation}",
                say("\n   ", reach) if reach.parts else "",
            )
        )
    lines.append(say("Page one with ", Cmd("page <team> <message>"), "."))
    return join(lines, "\n")


def _reached(page: Page, contacts: Contacts) -> str:
    steps = []
    for level, team in enumerate(page.chain[: page.level + 1]):
        steps.append(f"{escape(team_name(contacts, team))}" + (" (escalated)" if level else ""))
    text = " → ".join(steps)
    if page.status == PageStatus.OPEN and page.escalate_at is not None:
        following = page.chain[page.level + 1] if page.level + 1 < len(page.chain) else None
        then = f"escalates to {escape(team_name(contacts, following))}" if following else "last level"
        text += f" · {then} {when(page.escalate_at)} unless acknowledged"
    elif page.status == PageStatus.OPEN:
        text += " · :warning: nobody acknowledged at any level"
    return text


def _how_to_reach(team: Team | None) -> str:
    return "" if team is None else slack(_reach(team))


def _reach(team: Team) -> Said:
    ways = [
        say(Icon("telephone_receiver"), " ", Typed(team.phone)) if team.phone else None,
        say(Icon("email"), " ", Typed(team.email)) if team.email else None,
    ]
    return join([w for w in ways if w is not None], "  ")


PAGERS = {"pagerduty": "PagerDuty", "webhook": "Webhook"}
_REFUSED = {
    400: "the event or its routing key was refused",
    401: "not authorized",
    403: "refused",
    404: "no such URL",
    410: "the endpoint is gone",
    413: "the event is too large",
}


def _why(kind: str, error: str) -> str:
    """An HTTP refusal in words ("routing key refused (400)"); other errors are deploybot's own words."""
    head, _, code = error.rpartition(" answered ")
    if head and code.isdigit():
        said = _REFUSED.get(int(code), "refused")
        if kind == "webhook" and int(code) == 400:
            said = "the receiver refused the event"
        return f"{said} ({code})"
    return error


def _buttons(page: Page) -> list[Block]:
    """Acknowledge while nobody has it, Resolve until resolved, nothing afterwards."""
    value = {"page": page.id}
    if page.status == PageStatus.OPEN:
        return [_actions(page, [button("Acknowledge", ids.PAGE_ACK, value, "primary"), _resolve(value)])]
    if page.status == PageStatus.ACKNOWLEDGED:
        return [_actions(page, [_resolve(value)])]
    return []


def _resolve(value: dict[str, Any]) -> Block:
    return button("Resolve", ids.PAGE_RESOLVE, value)


def _actions(page: Page, elements: list[Block]) -> Block:
    return {"type": "actions", "block_id": f"page.{page.id}", "elements": elements}

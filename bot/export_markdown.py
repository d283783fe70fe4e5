"""The Markdown record of a run, for the person who asks who checked what: times in the team's zone,
names beside ids, items by number and text, every person's text shown as typed."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot import audit, people
from bot.models import ItemStatus
from bot.printable import visible

_MARKS = {ItemStatus.DONE: "[x]", ItemStatus.NA: "[n/a]", ItemStatus.OPEN: "[ ]"}
_ENDINGS = {
    "aborted": "Aborted",
    "failed": "Declared failed",
    "rolled_back": "Declared failed",
    "complete": "Completed",
}

# Inline Markdown a person's text could start by accident; backslash-escaped, it shows as typed.
_MARKDOWN_INLINE = re.compile(r"([\\`*_\[\]<>|~&])")
# At the start of a later line, these would begin a heading, quote, list or rule.
_MARKDOWN_LINE_START = re.compile(r"(\n[ \t]*)([-+=#]|\d+(?=[.)]))")
# Web addresses a Markdown viewer would turn into live links (GitHub's autolinks): a backslash keeps them text.
_AUTOLINK = re.compile(r"(?i)(?<=[a-z])(:)(?=//)|(?<![\w.])(www)(\.)")


def markdown_text(text: str) -> str:
    """A person's text for the Markdown export: no markup of its own, every line kept, in its list item."""
    escaped = _MARKDOWN_INLINE.sub(r"\\\1", visible(text))
    escaped = _AUTOLINK.sub(lambda m: "\\:" if m.group(1) else f"{m.group(2)}\\.", escaped)
    escaped = _MARKDOWN_LINE_START.sub(_escape_line_start, escaped)
    # A backslash before the newline is a hard line break; the indent keeps the line in its list item.
    return escaped.replace("\n", "\\\n    ")


def _escape_line_start(match: re.Match[str]) -> str:
    indent, mark = match.groups()
    return indent + (mark + "\\" if mark[0].isdigit() else "\\" + mark)


def when(iso: str | None, zone: ZoneInfo, *, seconds: bool = False) -> str:
    """A time as people read it, in the team's zone: Tue 1 Dec 2026, 21:30 CET."""
    if not iso:
        return "—"
    at = datetime.fromisoformat(iso).astimezone(zone)
    return f"{at:%a} {at.day} {at:%b %Y, %H:%M}{at.strftime(':%S') if seconds else ''} {at.tzname()}"


def person(ref: dict[str, Any] | None) -> str:
    """Someone as the record names them: Alice Smith (U0ALICE001)."""
    return markdown_text(people.label(ref["id"], ref.get("name"))) if ref else "nobody"


def code(text: str) -> str:
    """A command as a code span that no backtick inside it can end early."""
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text.replace(chr(10), ' ')}{pad}{fence}"


def render(document: dict[str, Any], zone: ZoneInfo) -> str:
    """The whole record: heading, how the run ended, every item, the audit trail and the footer."""
    run, footer = document["run"], document["footer"]
    items = {item["id"]: item for item in document["items"]}
    lines = [
        f"# {markdown_text(run['title'])}: {markdown_text(run['version'])} → {markdown_text(run['environment'])}",
        "",
        f"Run #{run['id']} · {markdown_text(run['status'].replace('_', ' '))} · started by {person(run['started_by'])} "
        f"on {when(run['started_at'], zone)}",
        "",
        f"Times are in {zone.key}.",
    ]
    if run.get("rollback_of"):
        target = run.get("rollback_to")
        back = f"back to {markdown_text(target)}" if target else "back to the previous version (none on record)"
        lines += ["", f"Rollback of run #{run['rollback_of']}, {back}."]
    lines += _ending(run, items, zone)
    phase = group = None
    for item in document["items"]:
        if item["phase"] != phase:
            phase, group = item["phase"], None
            lines += ["", f"## {markdown_text(phase)}"]
        if item["group"] != group:
            group = item["group"]
            lines += ["", f"### {markdown_text(group)}"]
        lines += _item(item, zone)
    lines += ["", "## Audit trail", ""]
    lines += [
        f"- {when(e['at'], zone, seconds=True)} · {person(e['user'])} · {markdown_text(audit.describe(e, items))}"
        for e in document["events"]
    ]
    lines += [
        "",
        "---",
        "",
        f"**Last Updated**: {when(footer['last_updated'], zone)}",
        f"**Deployed By**: {person(footer['deployed_by'])}",
        f"**Version**: {markdown_text(footer['version'])}",
        "",
    ]
    return "\n".join(lines)


def _ending(run: dict[str, Any], items: dict[str, dict[str, Any]], zone: ZoneInfo) -> list[str]:
    """How the run ended, by whom and why; a run completed anyway lists the items it left open."""
    lines: list[str] = []
    ending = _ENDINGS.get(run["status"])
    open_ids = run["completed_anyway_with_open"]
    if ending and run.get("finished_by"):
        anyway = " anyway" if open_ids else ""
        lines += ["", f"{ending}{anyway} by {person(run['finished_by'])} on {when(run.get('finished_at'), zone)}."]
    if run["finish_reason"]:
        lines += ["", f"Reason: {markdown_text(run['finish_reason'])}"]
    if open_ids:
        lines += ["", f"## Completed anyway with {len(open_ids)} required item(s) open", ""]
        lines += [
            f"- {markdown_text(audit.item_label(items[i]))}" if i in items else f"- {markdown_text(i)}"
            for i in open_ids
        ]
    return lines


def _item(item: dict[str, Any], zone: ZoneInfo) -> list[str]:
    line = f"- {_MARKS[item['status']]} {markdown_text(audit.item_label(item))}"
    if not item["required"]:
        line += " (optional)"
    if item["by"]:
        line += f" — {person(item['by'])}, {when(item['at'], zone)}"
    if item["na_reason"]:
        line += f" — N/A: {markdown_text(item['na_reason'])}"
    if item["probe"]:
        probe = item["probe"]
        line += f" — probe {probe['status']}: {markdown_text(probe['reason'] or '')}"
        if probe["open_phase"]:
            line += f" (checked {when(probe['at'], zone)}, {markdown_text(probe['open_phase'])} open)"
    if item.get("report"):
        report = item["report"]
        line += f" — {markdown_text(report['by'] or 'CI')} reported {report['status']} on {when(report['at'], zone)}"
        line += f": {markdown_text(report['summary'])}" if report["summary"] else ""
        line += f" (evidence: {markdown_text(report['evidence_url'])})" if report["evidence_url"] else ""
    if item["override"]:
        line += f" — OVERRIDE by {person(item['override']['by'])}"
        if item["override"].get("reason"):
            line += f": {markdown_text(item['override']['reason'])}"
    lines = [line]
    if item.get("command"):
        lines.append(f"  - Command: {code(item['command'])}")
    if item.get("help"):
        lines.append(f"  - Help: {markdown_text(item['help'])}")
    lines += [
        f"  - Note by {person(n['by'])} on {when(n['at'], zone)}: {markdown_text(n['text'] or '')}"
        for n in item["notes"]
    ]
    return lines

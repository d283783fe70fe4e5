"""Markdown task-list checklists (# title, ## phase, ### group, - [ ] item) turned into checklist data."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.checklists import ChecklistError

_TASK = re.compile(r"^\s*[-*]\s+\[[ xX]\]\s+(?P<text>.+?)\s*$")
_STEP = re.compile(r"^\s*\d+[.)]\s+(?P<text>.+?)\s*$")
_STEP_COMMAND = re.compile(r"^(?P<text>[^`]+?):\s*`(?P<command>[^`]+)`\s*$")
_CONTACT = re.compile(r"^\s*[-*]\s+(?:\*\*)?(?P<name>[^*:]+?)(?:\*\*)?\s*:\s*(?P<how>.*?)\s*$")

# A maintenance cadence named like this is posted on this schedule unless the YAML says otherwise.
CADENCES: dict[str, dict[str, str]] = {
    "daily": {"cron": "0 9 * * mon-fri", "nudge_after": "8h", "escalate_after": "24h"},
    "weekly": {"cron": "0 10 * * mon", "nudge_after": "3d", "escalate_after": "5d"},
    "monthly": {"cron": "0 9 1 * *", "nudge_after": "7d", "escalate_after": "14d"},
    "quarterly": {"cron": "0 9 1 1,4,7,10 *", "nudge_after": "14d", "escalate_after": "30d"},
}


@dataclass
class Imported:
    """A Markdown checklist as template data, with what was left out and any contacts found."""

    data: dict[str, Any]
    skipped: list[str] = field(default_factory=list)  # one line per section left out, and why
    contacts: dict[str, tuple[str, str]] = field(default_factory=dict)  # team id -> (name, what the Markdown says)

    def contacts_block(self) -> str:
        """The emergency contacts found, as a `contacts:` block to fill in and paste into deploybot.yml."""
        lines = ["contacts:  # for deploybot.yml: give each team its Slack users (U…) or usergroup (S…)"]
        for team, (name, how) in self.contacts.items():
            lines += [f"  {team}:", f"    name: {json.dumps(name, ensure_ascii=False)}"]
            lines.append(f"    users: []  # the Markdown says: {how}" if how else "    users: []")
        return "\n".join(lines) + "\n"


def slugify(text: str, limit: int = 48) -> str:
    """Turn free text into a stable slug id."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower().replace("'", "")).strip("-")
    if len(slug) > limit:
        slug = slug[:limit].rsplit("-", 1)[0]
    return slug or "item"


def import_markdown(markdown: str, *, kind: str = "deploy", phases: Sequence[str] = ()) -> dict[str, Any]:
    """Convert a Markdown task-list checklist into template data."""
    return import_document(markdown, kind=kind, phases=phases).data


def import_document(
    markdown: str, *, kind: str = "deploy", phases: Sequence[str] = (), template_id: str | None = None
) -> Imported:
    """Convert a Markdown checklist; tasks before the first `##` form a phase named after the `#` title.

    The id defaults to the one section imported (else the sections, else the title); `--kind maintenance`
    turns each Daily/Weekly/Monthly/Quarterly part into a cadence with a default schedule.
    """
    title, found, contacts = _sections(markdown)
    wanted = {p.lower() for p in phases}
    chosen = [p for p in found if (not wanted or p["title"].lower() in wanted)]
    if not any("contact" in p["title"].lower() for p in chosen):
        contacts = {}  # the contacts section was not asked for: nothing to offer
    titles = {p["title"].lower() for p in chosen}
    missing = [p for p in phases if p.lower() not in titles]
    if missing:
        known = ", ".join(p["title"] for p in found)
        raise ChecklistError([f"no section named {', '.join(missing)} in the Markdown; its ## sections: {known}"])
    with_tasks = [p["title"] for p in found if _has_tasks(p)]
    empty = [p["title"] for p in chosen if not _has_tasks(p)]
    if not with_tasks:
        raise ChecklistError(
            ["no tasks in the Markdown: expected `- [ ] task` or `1. step` lines under `## section` headings"]
        )
    if phases and empty:
        raise ChecklistError(
            [
                f"section {', '.join(empty)} has no tasks (`- [ ] task` or `1. step` lines); "
                f"sections with tasks: {', '.join(with_tasks)}"
            ]
        )
    skipped = [
        f"## {p['title']}: no tasks (`- [ ] task` or `1. step` lines)"
        + (
            "; its contacts follow as a `contacts:` block for deploybot.yml"
            if "contact" in p["title"].lower() and contacts
            else ""
        )
        for p in chosen
        if not _has_tasks(p)
    ]
    if phases and len(chosen) == 1:
        title = chosen[0]["title"]
    ident = template_id or slugify(" ".join(p["title"] for p in chosen) if phases else title, limit=64)
    if kind == "maintenance":
        chosen = _cadences(chosen)
    data = _assign_ids(ident, title, kind, chosen)
    return Imported(data, skipped, contacts)


def _has_tasks(phase: dict[str, Any]) -> bool:
    return any(g["items"] for g in phase["groups"])


def _sections(markdown: str) -> tuple[str, list[dict[str, Any]], dict[str, tuple[str, str]]]:
    """The `#` title, the `##` sections with their groups and tasks, and the emergency contacts listed."""
    title = "Checklist"
    found: list[dict[str, Any]] = []
    group: dict[str, Any] | None = None
    contacts: dict[str, tuple[str, str]] = {}
    for line in markdown.splitlines():
        if line.startswith("# "):
            title = line[2:].strip()
            if found and found[0].get("leading"):
                found[0]["title"] = title
        elif line.startswith("## "):
            found.append({"title": line[3:].strip(), "groups": []})
            group = None
        elif line.startswith("### ") or _TASK.match(line) or _STEP.match(line):
            if not found:  # tasks before the first `##` are a phase of their own, named after the title
                found.append({"title": title, "groups": [], "leading": True})
            if line.startswith("### "):
                group = {"title": line[4:].strip(), "items": []}
                found[-1]["groups"].append(group)
                continue
            if group is None:
                group = {"title": found[-1]["title"], "items": []}
                found[-1]["groups"].append(group)
            group["items"].append(_import_item(line))
        elif found and "contact" in found[-1]["title"].lower() and (match := _CONTACT.match(line)):
            name = match["name"].strip()
            contacts[slugify(name, limit=64)] = (name, match["how"])
    return title, found, contacts


def _import_item(line: str) -> dict[str, Any]:
    if task := _TASK.match(line):
        return {"text": task["text"]}
    step = _STEP.match(line)
    text = step["text"] if step else line.strip()
    if step := _STEP_COMMAND.match(text):
        return {"text": step["text"].strip(), "command": step["command"].strip()}
    return {"text": text}


def _cadences(phases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Maintenance phases, one per cadence: a section named like a cadence, or each group of one named so."""
    out: list[dict[str, Any]] = []
    unknown: list[str] = []
    for phase in phases:
        if not _has_tasks(phase):
            continue
        if phase["title"].lower() in CADENCES:
            out.append({**phase, "schedule": CADENCES[phase["title"].lower()]})
            continue
        for group in phase["groups"]:
            if group["title"].lower() in CADENCES:
                schedule = CADENCES[group["title"].lower()]
                out.append({"title": group["title"], "groups": [group], "schedule": schedule})
            elif group["items"]:
                unknown.append(f"{phase['title']} › {group['title']}")
    if unknown:
        raise ChecklistError(
            [
                f"--kind maintenance: cannot tell how often {', '.join(unknown)} runs; name each ## section or "
                f"### group {', '.join(c.title() for c in CADENCES)}, or import as --kind deploy and add "
                "`schedule:` to its phases by hand (README › Maintenance reminders)"
            ]
        )
    return out


def _assign_ids(ident: str, title: str, kind: str, phases: list[dict[str, Any]]) -> dict[str, Any]:
    used: set[str] = set()
    out_phases = []
    for phase in phases:
        groups = []
        for group in phase["groups"]:
            if not group["items"]:
                continue
            items = []
            for item in group["items"]:
                slug = slugify(item["text"])
                if slug in used:  # the same wording in two groups, e.g. "Redis password is set"
                    slug = slugify(f"{group['title']} {item['text']}", limit=64)
                while slug in used:
                    slug = f"{slug}-2"
                used.add(slug)
                items.append({"id": slug, **item})
            groups.append({"id": slugify(group["title"]), "title": group["title"], "items": items})
        if groups:
            schedule = {"schedule": phase["schedule"]} if "schedule" in phase else {}
            out_phases.append({"id": slugify(phase["title"]), "title": phase["title"], **schedule, "groups": groups})
    return {"id": ident, "title": title, "kind": kind, "phases": out_phases}

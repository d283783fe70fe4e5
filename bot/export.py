"""The record of a run, to take away (JSON, CSV, Markdown), and how it differs from the last release."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import paging, phases, runs
from bot.checklists import iter_items
from bot.models import ItemStatus, ProbeResult, ProbeStatus, Run
from bot.mrkdwn import escape

SCHEMA = "deploybot.run-export/1"  # documented in docs/export.schema.json
FORMATS = ("md", "csv", "json")


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def record(session: Session, run_id: int) -> dict[str, Any]:
    """Everything deploybot knows about a run, as one JSON-ready document."""
    run = runs.get_run(session, run_id)
    events = runs.events_of(session, run.id)
    latest: dict[str, ProbeResult] = {}
    for result in session.scalars(select(ProbeResult).where(ProbeResult.run_id == run.id).order_by(ProbeResult.id)):
        latest[result.item_id] = result
    notes: dict[str, list[dict[str, Any]]] = {}
    overrides: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.kind == "item.note" and event.item_id:
            notes.setdefault(event.item_id, []).append(
                {"by": event.user_id, "at": _iso(event.at), "text": event.data.get("text")}
            )
        if event.kind == "item.override" and event.item_id:
            overrides[event.item_id] = {
                "by": event.user_id,
                "at": _iso(event.at),
                "probe_reason": event.data.get("probe_reason"),
                **({k: event.data.get(k) for k in ("reported_by", "reason")} if "reported_by" in event.data else {}),
            }
    items = []
    for phase, group, item in iter_items(run.template):
        state = run.state_of(item.id)
        assert state is not None
        probe = latest.get(item.id)
        items.append(
            {
                "phase": phase.title,
                "group": group.title,
                "id": item.id,
                "text": item.text,
                "required": item.required,
                "status": state.status,
                "by": state.changed_by,
                "at": _iso(state.changed_at),
                "na_reason": state.na_reason,
                "notes": notes.get(item.id, []),
                "probe": None
                if state.probe_status is None
                else {
                    "status": state.probe_status,
                    "reason": state.probe_reason,
                    "at": _iso(state.probe_at),
                    "evidence": probe.evidence if probe else None,
                    "ms": probe.ms if probe else None,
                    "open_phase": phases.title(run.template, state.probe_phase),
                },
                "override": overrides.get(item.id) if state.overrode_probe or state.overrode_pipeline else None,
                "report": None
                if state.report_status is None
                else {
                    "reported_by": state.reported_by,
                    "status": state.report_status,
                    "by": state.report_by,
                    "at": _iso(state.report_at),
                    "evidence_url": state.report_url,
                    "summary": state.report_summary,
                },
            }
        )
    duration = (run.finished_at - run.started_at).total_seconds() if run.finished_at else None
    return {
        "schema": SCHEMA,
        "run": {
            "id": run.id, "checklist": run.template_id, "title": run.template.title, "kind": run.kind,
            "version": run.version, "environment": run.environment, "channel": run.channel_id, "status": run.status,
            "started_by": run.started_by, "started_at": _iso(run.started_at), "finished_by": run.finished_by,
            "finished_at": _iso(run.finished_at), "finish_reason": run.finish_reason,
            "duration_seconds": duration, "completed_anyway_with_open": run.overridden_items or [],
        },
        "footer": {"last_updated": _iso(run.finished_at or _last_change(run)), "deployed_by": run.started_by,
                   "version": run.version},
        "items": items,
        "events": [{"id": e.id, "at": _iso(e.at), "user": e.user_id, "kind": e.kind, "item": e.item_id,
                    "channel": e.channel_id, "message_ts": e.message_ts, "data": e.data} for e in events],
        "pages": [{"id": p.id, "team": p.team, "text": p.text, "status": p.status, "paged_by": p.paged_by,
                   "created_at": _iso(p.created_at), "chain": p.chain, "level": p.level, "acknowledged_by": p.acked_by,
                   "acknowledged_at": _iso(p.acked_at), "resolved_by": p.resolved_by,
                   "resolved_at": _iso(p.resolved_at)} for p in paging.pages_of_run(session, run.id)],
    }  # fmt: skip


def _last_change(run: Run) -> datetime:
    return max([run.started_at, *(s.changed_at for s in run.items if s.changed_at)])


def render(document: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        return _csv(document)
    if fmt == "md":
        return _markdown(document)
    raise runs.RunError(f"Unknown export format '{escape(fmt)}': use one of {', '.join(FORMATS)}.")


def filename(document: dict[str, Any], fmt: str) -> str:
    run = document["run"]
    return f"run-{run['id']}-{run['version']}-{run['environment']}.{fmt}".replace("/", "_").replace(" ", "_")


def _csv(document: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "phase",
            "group",
            "item",
            "text",
            "required",
            "status",
            "by",
            "at",
            "na_reason",
            "notes",
            "probe_status",
            "probe_reason",
            "overridden_by",
            "probe_at",
            "probe_open_phase",
            "reported_by",
            "evidence_url",
            "report_summary",
        ]
    )
    for item in document["items"]:
        probe = item["probe"] or {}
        row = [
            item["phase"],
            item["group"],
            item["id"],
            item["text"],
            item["required"],
            item["status"],
            item["by"] or "",
            item["at"] or "",
            item["na_reason"] or "",
            " | ".join(f"{n['by']}: {n['text']}" for n in item["notes"]),
            probe.get("status", ""),
            probe.get("reason", ""),
            (item["override"] or {}).get("by", ""),
            probe.get("at") or "",
            probe.get("open_phase") or "",
            (item.get("report") or {}).get("by") or "",
            (item.get("report") or {}).get("evidence_url") or "",
            (item.get("report") or {}).get("summary") or "",
        ]
        writer.writerow([_cell(value) for value in row])
    return out.getvalue()


# A cell starting with one of these is a formula to a spreadsheet (=SUM(…), @cmd|…); an apostrophe
# in front makes it text, as OWASP advises for CSV exports. JSON keeps the text exactly as typed.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    return f"'{value}" if isinstance(value, str) and value.startswith(_FORMULA_START) else value


# Inline Markdown a person's text could start by accident; backslash-escaped, it shows as typed.
_MARKDOWN_INLINE = re.compile(r"([\\`*_\[\]<>|~&])")
# At the start of a later line, these would begin a heading, quote, list or rule.
_MARKDOWN_LINE_START = re.compile(r"(\n[ \t]*)([-+=#]|\d+(?=[.)]))")


def markdown_text(text: str) -> str:
    """A person's text for the Markdown export: no markup of its own, every line kept, in its list item."""
    escaped = _MARKDOWN_INLINE.sub(r"\\\1", text.replace("\r\n", "\n"))
    escaped = _MARKDOWN_LINE_START.sub(_escape_line_start, escaped)
    # A backslash before the newline is a hard line break; the indent keeps the line in its list item.
    return escaped.replace("\n", "\\\n    ")


def _escape_line_start(match: re.Match[str]) -> str:
    indent, mark = match.groups()
    return indent + (mark + "\\" if mark[0].isdigit() else "\\" + mark)


_MARKS = {ItemStatus.DONE: "[x]", ItemStatus.NA: "[n/a]", ItemStatus.OPEN: "[ ]"}


def _markdown(document: dict[str, Any]) -> str:
    run, footer = document["run"], document["footer"]
    lines = [
        f"# {run['title']}: {run['version']} → {run['environment']}",
        "",
        f"Run #{run['id']} · {run['status']} · started by {run['started_by']} at {run['started_at']}",
    ]
    if run["finish_reason"]:
        lines.append(f"Reason: {markdown_text(run['finish_reason'])}")
    if run["completed_anyway_with_open"]:
        lines.append(
            f"Completed anyway by {run['finished_by']} with open: {', '.join(run['completed_anyway_with_open'])}"
        )
    phase = group = None
    for item in document["items"]:
        if item["phase"] != phase:
            phase, group = item["phase"], None
            lines += ["", f"## {phase}"]
        if item["group"] != group:
            group = item["group"]
            lines += ["", f"### {group}"]
        line = f"- {_MARKS[item['status']]} {item['text']}"
        if item["by"]:
            line += f" — {item['by']}, {item['at']}"
        if item["na_reason"]:
            line += f" — N/A: {markdown_text(item['na_reason'])}"
        if item["probe"]:
            probe = item["probe"]
            line += f" — probe {probe['status']}: {markdown_text(probe['reason'] or '')}"
            if probe["open_phase"]:
                line += f" (checked {probe['at']}, {probe['open_phase']} open)"
        if item.get("report"):
            report = item["report"]
            line += f" — {report['by']} reported {report['status']}"
            line += f": {markdown_text(report['summary'])}" if report["summary"] else ""
            line += f" ({markdown_text(report['evidence_url'])})" if report["evidence_url"] else ""
        if item["override"]:
            line += f" — OVERRIDE by {item['override']['by']}"
        lines.append(line)
        lines += [f"  - note by {n['by']} at {n['at']}: {markdown_text(n['text'] or '')}" for n in item["notes"]]
    lines += ["", "## Audit trail", ""]
    lines += [
        f"- {e['at']} {e['user']} {e['kind']}" + (f" {e['item']}" if e["item"] else "") for e in document["events"]
    ]
    lines += [
        "",
        "---",
        "",
        f"**Last Updated**: {footer['last_updated']}",
        f"**Deployed By**: {footer['deployed_by']}",
        f"**Version**: {footer['version']}",
        "",
    ]
    return "\n".join(lines)


# --- comparison with the last release --------------------------------------------------------------


def _marks(run: Run) -> dict[str, set[str]]:
    skipped = {s.item_id for s in run.items if s.status == ItemStatus.NA}
    failed = {s.item_id for s in run.items if s.probe_status == ProbeStatus.FAILED}
    overridden = {s.item_id for s in run.items if s.overrode_probe or s.overrode_pipeline}
    overridden |= set(run.overridden_items or [])
    return {"N/A": skipped, "probe failed": failed, "overridden": overridden}


def compare(run: Run, other: Run | None) -> dict[str, list[str]]:
    """Items N/A, failed or overridden in `run` but not in `other`, by kind, in checklist order."""
    now, before = _marks(run), _marks(other) if other else {k: set() for k in ("N/A", "probe failed", "overridden")}
    order = [i.id for i in run.template.items]
    return {kind: [i for i in order if i in now[kind] and i not in before[kind]] for kind in now}


def describe_changes(run: Run, other: Run | None, changes: dict[str, list[str]], *, limit: int = 5) -> str:
    """One line for the completion message (mrkdwn)."""
    if other is None:
        return "First completed run of this checklist in this environment: nothing to compare with."
    texts = {i.id: i.text for i in run.template.items}
    parts = []
    for kind, ids in changes.items():
        if ids:
            shown = ", ".join(texts.get(i, i) for i in ids[:limit]) + (
                f" and {len(ids) - limit} more" if len(ids) > limit else ""
            )
            parts.append(f"newly {kind}: {shown}")
    if not parts:
        return f"Compared with {other.version}: nothing newly N/A, failed or overridden."
    return f"Compared with {other.version}: " + "; ".join(parts) + "."

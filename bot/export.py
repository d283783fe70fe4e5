"""The record of a run, to take away (JSON, CSV, Markdown), and how it differs from the last release."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import export_csv, export_markdown, paging, people, phases, runs
from bot.checklists import iter_items
from bot.export_markdown import markdown_text
from bot.models import Event, ItemStatus, ProbeResult, ProbeStatus, Run
from bot.slack.mrkdwn import escape

__all__ = ["FORMATS", "SCHEMA", "compare", "describe_changes", "filename", "markdown_text", "record", "render"]

SCHEMA = "deploybot.run-export/2"  # documented in docs/export.schema.json
FORMATS = ("md", "csv", "json")


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def record(session: Session, run_id: int) -> dict[str, Any]:
    """Everything deploybot knows about a run, as one JSON-ready document."""
    run = runs.get_run(session, run_id)
    events = runs.events_of(session, run.id)
    pages = paging.pages_of_run(session, run.id)
    latest: dict[str, ProbeResult] = {}
    for result in session.scalars(select(ProbeResult).where(ProbeResult.run_id == run.id).order_by(ProbeResult.id)):
        latest[result.item_id] = result
    names = people.names_of(
        session,
        [run.started_by, run.finished_by, *(s.changed_by for s in run.items), *(e.user_id for e in events),
         *(who for p in pages for who in (p.paged_by, p.acked_by, p.resolved_by))],
    )  # fmt: skip

    def who(user_id: str | None, as_then: Event | None = None) -> dict[str, str | None] | None:
        """A person by id and name: the name they had when they acted, where the event kept it."""
        then = as_then.user_name if as_then is not None else None
        return {"id": user_id, "name": then or names.get(user_id)} if user_id else None

    notes: dict[str, list[dict[str, Any]]] = {}
    overrides: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.kind == "item.note" and event.item_id:
            notes.setdefault(event.item_id, []).append(
                {"by": who(event.user_id, event), "at": _iso(event.at), "text": event.data.get("text")}
            )
        if event.kind == "item.override" and event.item_id:
            overrides[event.item_id] = {
                "by": who(event.user_id, event),
                "at": _iso(event.at),
                "probe_reason": event.data.get("probe_reason"),
                **({k: event.data.get(k) for k in ("reported_by", "reason")} if "reported_by" in event.data else {}),
            }
    items = []
    for number, (phase, group, item) in enumerate(iter_items(run.template), 1):
        state = run.state_of(item.id)
        assert state is not None
        probe = latest.get(item.id)
        items.append(
            {
                "number": number,
                "phase": phase.title,
                "group": group.title,
                "id": item.id,
                "text": item.text,
                "required": item.required,
                # The run's own copy of the checklist: commands as Slack shows them (previous version filled in).
                "command": item.command,
                "help": item.help,
                "status": state.status,
                "by": who(state.changed_by),
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
            "started_by": who(run.started_by), "started_at": _iso(run.started_at), "finished_by": who(run.finished_by),
            "finished_at": _iso(run.finished_at), "finish_reason": run.finish_reason,
            "duration_seconds": duration, "completed_anyway_with_open": run.overridden_items or [],
            "rollback_of": run.rollback_of, "rollback_to": run.rollback_to,
        },
        "footer": {"last_updated": _iso(run.finished_at or _last_change(run)), "deployed_by": who(run.started_by),
                   "version": run.version},
        "items": items,
        "events": [{"id": e.id, "at": _iso(e.at), "user": who(e.user_id, e), "kind": e.kind, "item": e.item_id,
                    "page": e.page_id, "channel": e.channel_id, "message_ts": e.message_ts, "data": e.data}
                   for e in events],
        "pages": [{"id": p.id, "team": p.team, "text": p.text, "status": p.status, "paged_by": who(p.paged_by),
                   "created_at": _iso(p.created_at), "chain": p.chain, "level": p.level,
                   "acknowledged_by": who(p.acked_by), "acknowledged_at": _iso(p.acked_at),
                   "resolved_by": who(p.resolved_by), "resolved_at": _iso(p.resolved_at)} for p in pages],
    }  # fmt: skip


def _last_change(run: Run) -> datetime:
    return max([run.started_at, *(s.changed_at for s in run.items if s.changed_at)])


def render(document: dict[str, Any], fmt: str, zone: ZoneInfo | None = None) -> str:
    """The document as a file: JSON as data (UTC), CSV one row per item, Markdown for people (times in `zone`)."""
    if fmt == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        return export_csv.render(document)
    if fmt == "md":
        return export_markdown.render(document, zone or ZoneInfo("UTC"))
    raise runs.RunError(f"Unknown export format '{escape(fmt)}': use one of {', '.join(FORMATS)}.")


def filename(document: dict[str, Any], fmt: str) -> str:
    run = document["run"]
    return f"run-{run['id']}-{run['version']}-{run['environment']}.{fmt}".replace("/", "_").replace(" ", "_")


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

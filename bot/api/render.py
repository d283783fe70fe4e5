"""The API's JSON: RUN, ITEM and GATE as CONTRACTS.md and the README's Pipelines section describe them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import pipeline
from bot.models import PROBE_ACTOR, ItemState, Message, Run, is_pipeline


def run_json(session: Session, run: Run) -> dict[str, Any]:
    """A run with its phases and items, as a pipeline reads it."""
    by_phase: dict[int, list[dict[str, Any]]] = {}
    for number, state in enumerate(run.items, 1):
        by_phase.setdefault(state.phase, []).append(item_json(run, state, number))
    phases = []
    for index, phase in enumerate(run.template.phases):
        listed = by_phase.get(index, [])
        resolved = all(i["status"] in ("done", "na") for i in listed if i["required"])
        phases.append({"id": phase.id, "name": phase.title, "resolved": resolved, "items": listed})
    return {
        "id": run.id,
        "version": run.version,
        "environment": run.environment,
        "channel": run.channel_id,
        "checklist": run.template_id,
        "status": run.status,
        "rev": run.rev,
        "url": permalink(session, run),
        "phases": phases,
    }


def item_json(run: Run, state: ItemState, number: int) -> dict[str, Any]:
    """One item: its state, who resolved it, the pipeline's evidence and the probe's verdict."""
    item = run.template.item(state.item_id)
    return {
        "id": state.item_id,
        "number": number,
        "text": item.text if item else state.item_id,
        "required": state.required,
        "status": "failed" if pipeline.is_failed(state) else state.status,
        "by": _who(state),
        "at": _iso(state.changed_at),
        "reason": state.na_reason,
        "reported_by": state.reported_by,
        "evidence_url": state.report_url,
        "summary": state.report_summary,
        "probe": None if state.probe_status is None else {"status": state.probe_status, "detail": state.probe_reason},
    }


def gate_json(gate: pipeline.Gate, run: Run) -> dict[str, Any]:
    """The gate, its items listed as in the run."""
    numbers = {s.item_id: n for n, s in enumerate(run.items, 1)}
    return {
        "phase": gate.phase,
        "state": gate.state,
        "waiting_for": [item_json(run, s, numbers[s.item_id]) for s in gate.waiting_for],
        "failed": [item_json(run, s, numbers[s.item_id]) for s in gate.failed],
    }


def permalink(session: Session, run: Run) -> str | None:
    """A link to the run's message in Slack, once it is posted (Slack redirects it to the workspace)."""
    ts = session.scalar(select(Message.ts).where(Message.run_id == run.id, Message.part == 0))
    if not ts:
        return None
    return f"https://slack.com/archives/{run.channel_id}/p{ts.replace('.', '')}"


def _who(state: ItemState) -> dict[str, Any] | None:
    if state.changed_by is None:
        return None
    if state.changed_by == PROBE_ACTOR:
        return {"id": PROBE_ACTOR, "name": "deploybot"}
    if is_pipeline(state.changed_by):
        return {"id": state.changed_by, "name": state.report_by}
    return {"id": state.changed_by, "name": None}


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None

"""Prove a checklist fits Slack: render it in its bulkiest states and list every limit it would break."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.checklists import Template
from bot.models import ItemState, ItemStatus, ProbeStatus, Run, RunStatus
from bot.pipeline import MAX_SUMMARY, MAX_URL
from bot.runs import MAX_NOTE, MAX_REASON
from bot.slack import limits
from bot.slack.blocks import layout, parent_blocks, part_blocks
from bot.slack.modals import item_modal


def check_template_limits(template: Template) -> list[str]:
    """Render a template in its bulkiest states and report every Slack limit it would break."""
    parts = layout(template)
    errors: list[str] = []
    for status in (ItemStatus.OPEN, ItemStatus.DONE, ItemStatus.NA):
        run = _bulkiest_run(template, status)
        errors += [f"parent message: {e}" for e in limits.check_blocks(parent_blocks(run))]
        for number, part in enumerate(parts, 1):
            errors += [f"{part.title}: {e}" for e in limits.check_blocks(part_blocks(run, part, number))]
            for na in (True, False):
                errors += [f"{part.title} modal: {e}" for e in limits.check_view(item_modal(run, part, "x", na=na))]
        run.status, run.finished_at, run.finished_by = RunStatus.COMPLETE, run.started_at, run.started_by
        run.overridden_items = [item.id for item in template.items]
        errors += [f"parent message when complete: {e}" for e in limits.check_blocks(parent_blocks(run))]
    return sorted(set(errors))


def _bulkiest_run(template: Template, status: str) -> Run:
    """An unsaved run whose every item shows as much text as the schema allows."""
    now = datetime(2030, 1, 1, tzinfo=UTC)
    long_user = "U" + "0" * 20
    run = Run(
        id=10**9,
        kind=template.kind,
        template_snapshot=template.model_dump(mode="json"),
        version="v" * 64,
        environment="e" * 64,
        channel_id="C0",
        started_by=long_user,
        started_at=now,
        status=RunStatus.ACTIVE,
        rev=1,
        overridden_items=None,
    )
    run.items = [
        ItemState(
            item_id=item.id,
            position=n,
            required=item.required,
            status=status,
            changed_by=long_user,
            changed_at=now,
            na_reason="&" * MAX_REASON,
            note="<" * MAX_NOTE,
            note_by=long_user,
            note_at=now,
            note_count=99,
            # Open items show a failed probe (the longest line), done ones an overridden one.
            probe_status=ProbeStatus.FAILED if item.probe else None,
            probe_reason="&" * 1000,
            probe_at=now,
            # Items a pipeline reports show its evidence: the longest link and summary it may send.
            reported_by=item.reported_by,
            report_status="failed" if status == ItemStatus.OPEN else status,
            report_by="CI: " + "w" * 64,
            report_at=now,
            report_url="https://" + "&" * (MAX_URL - 8),
            report_summary="<" * MAX_SUMMARY,
        )
        for n, item in enumerate(template.items)
    ]
    return run

"""The report for the terminal (a readable table) and for programs (JSON whose keys say what each number is)."""

from __future__ import annotations

import json
import re
from typing import Any

from bot.insights.health import ItemCount
from bot.insights.report import Report
from bot.insights.words import plural, rate, runs_read, span
from bot.printable import visible
from bot.slack.mrkdwn import clip

REASON_TEXT = 60
_TERMINAL_ACTS_ON = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
ITEM_TEXT = 70


def json_text(report: Report) -> str:
    """The report as JSON text for a terminal: readable, with every character a terminal acts on escaped."""
    # JSON escapes C0 controls itself; C1 controls and bidirectional overrides are escaped too
    # (\u009b, \u202e): a program reads the same string, a terminal shows it inert.
    text = json.dumps(as_json(report), indent=2, ensure_ascii=False)
    return _TERMINAL_ACTS_ON.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n"


def as_json(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data; durations in seconds, rates as fractions, None where undefined."""
    f, h = report.figures, report.health
    return {
        "environment": report.environment,
        "period": {"asked": report.period, "start": f.start.isoformat(), "end": f.end.isoformat()},
        "delivery": {
            "deployments": f.deployments,
            "failed_or_rolled_back": f.failures,
            "change_failure_rate": f.change_failure_rate,
            "deployments_per_week": f.deployments_per_week,
            "time_to_restore_median_seconds": f.time_to_restore_median,
            "restored_failures": f.restored,
            "run_duration_median_seconds": f.run_duration_median,
            "run_duration_p90_seconds": f.run_duration_p90,
            "phase_time_median_seconds": [
                {"phase": phase, "title": f.phase_titles.get(phase, phase), "seconds": seconds}
                for phase, seconds in f.phase_time_medians.items()
            ],
            "aborted_runs_not_counted": f.aborted,
            "active_runs_not_counted": f.active,
        },
        "health": {
            "runs_read": h.runs,
            "runs_in_period": h.runs_in_period,
            "not_applicable": [_item(i) for i in h.not_applicable],
            "overridden_against_failed_probe": [_item(i) for i in h.overridden],
            "left_for_last": [_item(i) for i in h.left_for_last],
            "completed_anyway_while_open": [_item(i) for i in h.completed_open],
            "flaky_probes": [
                {
                    "checklist": p.checklist,
                    "item": p.item_id,
                    "text": p.text,
                    "results": p.results,
                    "verdict_changes": p.flips,
                    "runs_with_verdict_changes": p.runs_flipping,
                }
                for p in h.flaky_probes
            ],
            "maintenance": [
                {
                    "cadence": c.cadence,
                    "slots": c.slots,
                    "completed_on_time": c.on_time,
                    "completed_late": c.late,
                    "overdue": c.overdue,
                    "missed": c.missed,
                }
                for c in h.cadences
            ],
            "pages": {
                "raised": h.pages.raised,
                "acknowledged": h.pages.acknowledged,
                "time_to_acknowledge_median_seconds": h.pages.time_to_acknowledge_median,
                "unacknowledged": h.pages.unacknowledged,
            },
        },
        "worth_a_look": report.worth_a_look,
    }


def as_table(report: Report) -> str:
    """The report as aligned text for a terminal; people's text made inert and clipped to one line."""
    f, h = report.figures, report.health
    where = _one_line(report.environment, 40) if report.environment else "every environment"
    lines = [
        f"deploybot stats · {where} · last {report.period} ({f.start:%Y-%m-%d %H:%M} → {f.end:%Y-%m-%d %H:%M} UTC)",
        "",
        "Delivery",
        _row("Deployments", f"{f.deployments}", f"{f.deployments_per_week:.1f} per week"),
        _row("Change failure rate", rate(f.change_failure_rate), f"{f.failures} failed or rolled back"),
        _row("Time to restore", span(f.time_to_restore_median), f"median of {plural(f.restored, 'restored failure')}"),
        _row("Run duration", span(f.run_duration_median), f"median; p90 {span(f.run_duration_p90)}"),
    ]
    if f.aborted or f.active:
        lines.append(_row("Not counted", "", f"{f.aborted} aborted, {f.active} still active"))
    if f.phase_time_medians:
        lines.append("  Time per phase (median)")
        lines += [
            _row("  " + _one_line(f.phase_titles.get(p, p), 24), span(s), "") for p, s in f.phase_time_medians.items()
        ]
    lines += ["", f"Checklist health ({runs_read(h.runs, h.runs_in_period)})"]
    lines += _items("Most often N/A", h.not_applicable, reasons=True)
    lines += _items("Ticked over a failed probe", h.overridden)
    lines += _items("Left for last", h.left_for_last)
    lines += _items("Open when completed anyway", h.completed_open)
    if h.flaky_probes:
        lines.append("  Flaky probes")
        lines += [
            f"    {p.flips} changes in {p.results} results  {_one_line(p.text, ITEM_TEXT)}" for p in h.flaky_probes
        ]
    if h.cadences:
        lines.append("  Maintenance")
        lines += [
            f"    {_one_line(c.cadence, 20)}: {plural(c.slots, 'slot')}, {c.on_time} on time, {c.late} late, "
            f"{c.overdue} overdue, {c.missed} missed"
            for c in h.cadences
        ]
    p = h.pages
    lines.append(
        f"  Pages: {p.raised} raised, {p.acknowledged} acknowledged (median {span(p.time_to_acknowledge_median)}), "
        f"{p.unacknowledged} not acknowledged"
    )
    lines += ["", "Worth a look"]
    lines += [f"  {n}. {_one_line(s, 400)}" for n, s in enumerate(report.worth_a_look, 1)] or ["  Nothing stands out."]
    return "\n".join(lines) + "\n"


def _item(item: ItemCount) -> dict[str, Any]:
    found: dict[str, Any] = {
        "checklist": item.checklist,
        "item": item.item_id,
        "text": item.text,
        "count": item.count,
        "runs_of_its_checklist": item.runs,
    }
    if item.reasons:
        found["reasons"] = [{"reason": r.text, "count": r.count} for r in item.reasons]
    return found


def _row(label: str, value: str, note: str) -> str:
    return f"  {label:<24} {value:>12}  {note}".rstrip()


def _items(title: str, items: tuple[ItemCount, ...], *, reasons: bool = False) -> list[str]:
    if not items:
        return []
    lines = [f"  {title}"]
    for item in items:
        lines.append(f"    {item.count:>3} of {item.runs:<4} {_one_line(item.text, ITEM_TEXT)}")
        if reasons:
            lines += [f"               {r.count:>3}× “{_one_line(r.text, REASON_TEXT)}”" for r in item.reasons]
    return lines


def _one_line(text: str | None, limit: int) -> str:
    """A person's text on one terminal line: spacing folded, control characters shown, clipped."""
    return visible(clip(re.sub(r"\s+", " ", text or "").strip(), limit))

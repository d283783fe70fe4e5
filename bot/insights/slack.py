"""The report in Block Kit: `/deploy stats` (an ephemeral message) and the App Home's section."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from bot.insights.delivery import Figures, figures_by_environment
from bot.insights.health import ItemCount, health
from bot.insights.report import Report
from bot.insights.words import plural, rate, runs_read, span
from bot.slack.blocks import Block, context, quote, section
from bot.slack.limits import SECTION_TEXT
from bot.slack.mrkdwn import escape

HOME_PERIOD = timedelta(days=30)
HOME_ENVIRONMENTS = 6  # lines on the Home tab; the rest are counted
ITEM_TEXT = 90
REASON_TEXT = 60
LISTED = 3  # items per health finding in a message


def stats_blocks(report: Report) -> list[Block]:
    """`/deploy stats` as blocks: the figures, the checklist's health, and what is worth a look (at most 8 blocks)."""
    f, h = report.figures, report.health
    where = _inline(report.environment, 60) if report.environment else "every environment"
    blocks: list[Block] = [
        section(f"*Delivery* · {where} · last {escape(report.period)}"),
        {"type": "section", "fields": [_field(label, value) for label, value in _figure_fields(f)]},
    ]
    notes = []
    if f.phase_time_medians:
        phases = " · ".join(
            f"{_inline(f.phase_titles.get(p, p), 40)} {span(s)}" for p, s in f.phase_time_medians.items()
        )
        notes.append(f"Time per phase (median): {phases}")
    if f.aborted or f.active:
        notes.append(f"Not counted: {f.aborted} aborted, {f.active} still active.")
    if notes:
        blocks.append(context("\n".join(notes)))
    blocks.append({"type": "divider"})
    lines = [
        *_items("Most often N/A", h.not_applicable, reasons=True),
        *_items("Ticked over a failed probe", h.overridden),
        *_items("Left for last", h.left_for_last),
        *_items("Open when completed anyway", h.completed_open),
    ]
    if h.flaky_probes:
        lines.append("_Flaky probes_")
        lines += [
            f"• {_inline(p.text, ITEM_TEXT)}: {p.flips} verdict changes in {p.results} results"
            for p in h.flaky_probes[:LISTED]
        ]
    if h.cadences:
        lines.append("_Maintenance_")
        lines += [
            f"• {_inline(c.cadence, 30)}: {plural(c.slots, 'slot')}, {c.on_time} on time, {c.late} late, "
            f"{c.overdue} overdue, {c.missed} missed"
            for c in h.cadences[:LISTED]
        ]
    p = h.pages
    if p.raised:
        lines.append(
            f"_Pages_: {p.raised} raised, {p.acknowledged} acknowledged "
            f"(median {span(p.time_to_acknowledge_median)}), {p.unacknowledged} not acknowledged"
        )
    body = "\n".join(lines) if lines else "Nothing recorded in this period."
    blocks.append(section(_fit(f"*Checklist health* ({runs_read(h.runs, h.runs_in_period)})\n{body}")))
    blocks.append(section(_worth(report.worth_a_look)))
    return blocks


def stats_text(report: Report) -> str:
    """The notification text of `/deploy stats`: the headline figures, for clients that show no blocks."""
    f = report.figures
    return (
        f"{plural(f.deployments, 'deployment')} in the last {escape(report.period)}, "
        f"change failure rate {rate(f.change_failure_rate)}, time to restore {span(f.time_to_restore_median)}."
    )


def home_section(session: Session, now: datetime) -> list[Block]:
    """The App Home's insights: each environment's last 30 days in one line, and what is worth a look (3 blocks)."""
    start = now - HOME_PERIOD
    by_environment = figures_by_environment(session, start=start, end=now)
    worth = health(session, environment=None, start=start, end=now).worth_a_look()
    shown = sorted(by_environment.values(), key=lambda f: (-f.deployments, f.environment or ""))
    lines = [_home_line(f) for f in shown[:HOME_ENVIRONMENTS]]
    if len(shown) > HOME_ENVIRONMENTS:
        lines.append(
            f"…and {plural(len(shown) - HOME_ENVIRONMENTS, 'more environment')}: `/deploy stats <environment>`"
        )
    body = "\n".join(lines) if lines else "No deployments yet."
    return [
        {"type": "divider"},
        section(_fit(f"*Delivery, last 30 days*\n{body}")),
        section(_worth(worth)),
    ]


def _figure_fields(f: Figures) -> list[tuple[str, str]]:
    return [
        ("Deployments", f"{f.deployments} ({f.deployments_per_week:.1f} per week)"),
        ("Change failure rate", f"{rate(f.change_failure_rate)} ({f.failures} failed or rolled back)"),
        ("Time to restore", f"{span(f.time_to_restore_median)} (median of {f.restored})"),
        ("Run duration", f"{span(f.run_duration_median)} median · {span(f.run_duration_p90)} p90"),
    ]


def _field(label: str, value: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": f"*{label}*\n{value}"}


def _items(title: str, items: tuple[ItemCount, ...], *, reasons: bool = False) -> list[str]:
    if not items:
        return []
    lines = [f"_{title}_"]
    for item in items[:LISTED]:
        why = ""
        if reasons and item.reasons:
            why = " — " + ", ".join(f"“{_inline(r.text, REASON_TEXT)}” ×{r.count}" for r in item.reasons[:2])
        lines.append(f"• {_inline(item.text, ITEM_TEXT)}: {item.count} of {plural(item.runs, 'run')}{why}")
    return lines


def _home_line(f: Figures) -> str:
    return (
        f"*{_inline(f.environment or '', 40)}*: {plural(f.deployments, 'deployment')} "
        f"({f.deployments_per_week:.1f}/week) · {rate(f.change_failure_rate)} failed · "
        f"restore {span(f.time_to_restore_median)} · run {span(f.run_duration_median)}"
    )


def _worth(sentences: list[str]) -> str:
    if not sentences:
        return "*Worth a look*\nNothing stands out."
    return _fit("*Worth a look*\n" + "\n".join(f"• {_inline(s, 900)}" for s in sentences))


def _inline(text: str, limit: int) -> str:
    """Text someone wrote, escaped, on one line, at most `limit` characters once escaped."""
    return quote(" ".join(text.split()), limit)


def _fit(mrkdwn: str, limit: int = SECTION_TEXT) -> str:
    """Cut mrkdwn to a section's limit without leaving half an entity ("&am")."""
    if len(mrkdwn) <= limit:
        return mrkdwn
    return re.sub(r"&[a-z]*$", "", mrkdwn[: limit - 1]) + "…"

"""Compose the weekly review message: pure, (figures, weeks, findings) -> blocks and a notification text."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from bot import chart
from bot.slack.limits import FIELD_TEXT, HEADER_TEXT, SECTION_TEXT
from bot.slack.mrkdwn import clip, escape

# One finding is a sentence or two; a long item text is cut so three always fit one section.
FINDING_TEXT = 600
DISCUSS = (
    ":speech_balloon: *Discuss* this week's review here: what should change in the checklist, "
    "the probes or the way we deploy? Replies stay in this thread."
)


class DeliveryFigures(Protocol):
    """The delivery figures of a period, as `bot.insights.figures` gives them."""

    @property
    def deployments(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def change_failure_rate(self) -> float | None: ...
    @property
    def time_to_restore_median(self) -> float | None: ...
    @property
    def run_duration_median(self) -> float | None: ...
    @property
    def run_duration_p90(self) -> float | None: ...
    @property
    def phase_time_medians(self) -> Mapping[str, float]: ...
    @property
    def phase_titles(self) -> Mapping[str, str]: ...


@dataclass(frozen=True)
class Slot:
    """Which review this is: the channel, the slot's wall-clock time and zone, and how late it goes out."""

    channel_id: str
    local_time: datetime
    zone: str
    environment: str | None
    late: bool = False


def review_blocks(
    slot: Slot, figures: DeliveryFigures, weeks: Sequence[chart.WeekFigures], worth: Sequence[str]
) -> tuple[list[dict[str, Any]], str]:
    """The review's blocks and its notification text; every text from people is escaped."""
    # The figures are the team's: insights counts every channel's deployments (it has no channel filter).
    scope = f"`{escape(slot.environment)}` (every channel)" if slot.environment else "every environment and channel"
    title = f"Weekly deployment review — {slot.local_time:%a %d %b %Y}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(title, HEADER_TEXT), "emoji": True}},
        _context(f"The last 7 days in {scope}, up to {slot.local_time:%a %d %b %H:%M} {escape(slot.zone)}."),
    ]
    if slot.late:
        blocks.append(
            _context(
                f":hourglass: Posted late: deploybot was not running at {slot.local_time:%a %d %b %H:%M} "
                f"{escape(slot.zone)}. Reviews missed before that are not posted."
            )
        )
    blocks.append({"type": "section", "fields": [_field(name, value) for name, value in _figures(figures)]})
    if phases := _phases(figures):
        blocks.append(_context(phases))
    blocks += [
        {"type": "divider"},
        _section(f"*Deployments per week* (the last {len(weeks)}, by the Monday each starts)"),
        *chart.chart_blocks(weeks),
        {"type": "divider"},
        _section(_worth(worth)),
        _context(":thread: Discuss it in this message's thread."),
    ]
    return blocks, _text(slot, figures, weeks)


def discuss_text() -> str:
    """The first reply of the review's thread, which opens the discussion."""
    return DISCUSS


def span(seconds: float | None) -> str:
    """A duration as people say it: 45 s, 42 min, 1 h 12 min, 3 d 4 h; a dash when unknown."""
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _figures(figures: DeliveryFigures) -> list[tuple[str, str]]:
    rate = figures.change_failure_rate
    failed = f"{figures.failures}" + (f" ({rate:.0%} change failure rate)" if rate is not None else "")
    duration = span(figures.run_duration_median)
    if figures.run_duration_p90 is not None:
        duration += f" (p90 {span(figures.run_duration_p90)})"
    return [
        ("Deployments", str(figures.deployments)),
        ("Failed or rolled back", failed),
        ("Time to restore (median)", span(figures.time_to_restore_median)),
        ("Run time (median)", duration),
    ]


def _phases(figures: DeliveryFigures) -> str:
    parts = [
        f"{escape(figures.phase_titles.get(phase, phase))} {span(seconds)}"
        for phase, seconds in figures.phase_time_medians.items()
    ]
    return clip("Time per phase (median): " + " · ".join(parts), SECTION_TEXT) if parts else ""


def _worth(worth: Sequence[str]) -> str:
    if not worth:
        return "*Worth a look*\nNothing in the checklist's record stands out this time."
    lines = [f"• {escape(clip(' '.join(sentence.split()), FINDING_TEXT))}" for sentence in worth[:3]]
    return "*Worth a look*\n" + "\n".join(lines)


def _text(slot: Slot, figures: DeliveryFigures, weeks: Sequence[chart.WeekFigures]) -> str:
    rate = figures.change_failure_rate
    failed = f"{figures.failures} failed" + (f" ({rate:.0%})" if rate is not None else "")
    late = " (posted late)" if slot.late else ""
    return (
        f"Weekly deployment review{late}: {figures.deployments} deployment(s) in the last 7 days, {failed}. "
        + chart.chart_text(weeks)
    )


def _field(name: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": clip(f"*{name}*\n{value}", FIELD_TEXT)}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}

"""Draw deployments, failures and run durations per week as monospace bars in Block Kit: pure, data -> blocks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, Protocol

from bot.slack.limits import SECTION_TEXT

# A phone shows about 40 characters of a code block before it wraps: a line stays within this.
LINE_WIDTH = 34
BAR_WIDTH = 14
DEPLOYED = "█"
FAILED = "▒"
NOTHING = "·"
FENCE = "```"
# Sections the chart may take at most: a year of weeks fits in one; more is cut from the oldest end.
MAX_SECTIONS = 2
LEGEND = f"{DEPLOYED} succeeded · {FAILED} failed · right: deployments, failures, median run time"


class WeekFigures(Protocol):
    """One week of deployments, as `bot.insights.weekly` gives it."""

    @property
    def start(self) -> date: ...
    @property
    def deployments(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def run_duration_median(self) -> float | None: ...


def bar(deployments: int, failures: int, most: int) -> str:
    """One week's bar: its length is deployments scaled to the busiest week, its failed share shaded."""
    if deployments <= 0:
        return NOTHING
    length = max(1, round(BAR_WIDTH * deployments / most))
    failed = min(length, max(1, round(length * failures / deployments))) if failures > 0 else 0
    return DEPLOYED * (length - failed) + FAILED * failed


def duration(seconds: float | None) -> str:
    """A run's duration in at most four characters: 45s, 42m, 3.5h, 2d."""
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 100 * 60:
        return f"{seconds / 60:.0f}m"
    if seconds < 48 * 3600:
        hours = seconds / 3600
        return f"{hours:.1f}h" if hours < 10 else f"{hours:.0f}h"
    return f"{seconds / 86400:.0f}d"


def line(week: WeekFigures, most: int) -> str:
    """One week as a line of the chart: 'Nov 30 ██████▒ 7  1  42m'."""
    failures = str(week.failures) if week.failures else "–"
    return (
        f"{week.start:%b %d} {bar(week.deployments, week.failures, most):<{BAR_WIDTH}} "
        f"{week.deployments:>3} {failures:>2} {duration(week.run_duration_median):>4}"
    )


def chart_blocks(weeks: Sequence[WeekFigures]) -> list[dict[str, Any]]:
    """The chart as a code-block section (or two) and a legend, within Slack's limits, oldest week first."""
    if not weeks:
        return [_section("_No weeks to chart._")]
    if not any(week.deployments for week in weeks):
        return [_section(f"_No deployments in these {len(weeks)} week(s)._")]
    most = max(week.deployments for week in weeks)
    lines = [line(week, most) for week in weeks]
    per_section = (SECTION_TEXT - 2 * len(FENCE) - 2) // (LINE_WIDTH + 1)
    shown = lines[-per_section * MAX_SECTIONS :]
    blocks = [
        _section(f"{FENCE}\n" + "\n".join(shown[n : n + per_section]) + f"\n{FENCE}")
        for n in range(0, len(shown), per_section)
    ]
    legend = LEGEND if len(shown) == len(lines) else f"{LEGEND} · the {len(lines) - len(shown)} oldest weeks left out"
    return [*blocks, {"type": "context", "elements": [{"type": "mrkdwn", "text": legend}]}]


def chart_text(weeks: Sequence[WeekFigures]) -> str:
    """The chart in words, for notifications and screen readers."""
    if not any(week.deployments for week in weeks):
        return f"No deployments in the last {len(weeks)} week(s)."
    counts = ", ".join(str(week.deployments) for week in weeks)
    failed = sum(week.failures for week in weeks)
    return f"Deployments per week, oldest first: {counts} ({failed} failed in all)."


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}

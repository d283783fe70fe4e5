"""The weekly chart and review message: pure renderers, within Slack's limits, readable on a phone, inert text."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from bot import chart
from bot.insights import Figures, Week
from bot.review.message import Slot, review_blocks, span
from bot.slack.limits import BLOCKS_PER_MESSAGE, MESSAGE_TEXT, SECTION_TEXT, check_blocks

HOSTILE: list[str] = json.loads((Path(__file__).parent / "fixtures" / "hostile-text.json").read_text())
MONDAY = date(2026, 11, 30)
# What Slack reads as a mention, a channel link, a special command or a link.
MARKUP = re.compile(r"<(?:[!@#]|[a-zA-Z][\w+.-]*:)[^>]*>?")


def weeks(counts: list[tuple[int, int]], minutes: float | None = 42) -> list[Week]:
    start = MONDAY - timedelta(weeks=len(counts) - 1)
    return [
        Week(start + timedelta(weeks=n), deployed, failed, minutes * 60 if deployed and minutes else None)
        for n, (deployed, failed) in enumerate(counts)
    ]


def code_lines(blocks: list[dict]) -> list[str]:
    texts = [t for b in blocks if (t := b.get("text", {}).get("text", "")).startswith("```")]
    return [line for text in texts for line in text.strip("`\n").split("\n")]


def test_each_week_is_one_line_its_bar_scaled_to_the_busiest_week_and_its_failures_shaded() -> None:
    blocks = chart.chart_blocks(weeks([(2, 0), (0, 0), (8, 2), (4, 4)]))
    lines = code_lines(blocks)
    assert lines == [
        "Nov 09 " + "█" * 4 + " " * 10 + "   2  –  42m",
        "Nov 16 ·                0  –    –",
        "Nov 23 " + "█" * 10 + "▒" * 4 + "   8  2  42m",
        "Nov 30 " + "▒" * 7 + " " * 7 + "   4  4  42m",
    ]
    assert blocks[-1]["type"] == "context" and "▒ failed" in blocks[-1]["elements"][0]["text"]


def test_a_week_with_one_failure_among_many_still_shows_it() -> None:
    assert chart.bar(60, 1, 60).count(chart.FAILED) == 1
    assert chart.bar(1, 0, 60) == chart.DEPLOYED  # a quiet week next to a busy one still shows a bar


def test_zero_data_and_no_weeks_say_so_in_words() -> None:
    assert chart.chart_blocks(weeks([(0, 0)] * 8)) == [
        {"type": "section", "text": {"type": "mrkdwn", "text": "_No deployments in these 8 week(s)._"}}
    ]
    assert chart.chart_blocks([])[0]["text"]["text"] == "_No weeks to chart._"
    assert chart.chart_text(weeks([(0, 0)] * 3)) == "No deployments in the last 3 week(s)."


def test_a_year_of_busy_weeks_fits_one_section_and_lines_stay_phone_width() -> None:
    year = weeks([(n * 37 % 120, n % 9) for n in range(53)], minutes=60 * 30)
    blocks = chart.chart_blocks(year)
    assert check_blocks(blocks) == []
    sections = [b for b in blocks if b["type"] == "section"]
    assert len(sections) == 1 and len(sections[0]["text"]["text"]) <= SECTION_TEXT
    lines = code_lines(blocks)
    assert len(lines) == 53
    assert max(len(line) for line in lines) <= chart.LINE_WIDTH


def test_more_weeks_than_fit_drop_the_oldest_and_say_so() -> None:
    many = weeks([(5, 1)] * 300)
    blocks = chart.chart_blocks(many)
    assert check_blocks(blocks) == []
    assert len(code_lines(blocks)) < 300
    assert code_lines(blocks)[-1].startswith("Nov 30")  # the newest week is kept
    assert "oldest weeks left out" in blocks[-1]["elements"][0]["text"]


def test_the_text_fallback_lists_the_weeks_for_notifications() -> None:
    assert chart.chart_text(weeks([(2, 0), (0, 0), (3, 1)])) == (
        "Deployments per week, oldest first: 2, 0, 3 (1 failed in all)."
    )


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "–"), (45, "45s"), (42 * 60, "42m"), (3.5 * 3600, "3.5h"), (30 * 3600, "30h"), (5 * 86400, "5d")],
)
def test_durations_fit_four_characters(seconds: float | None, shown: str) -> None:
    assert chart.duration(seconds) == shown


def test_spans_read_as_people_say_them() -> None:
    assert [span(s) for s in (None, 30, 600, 3600, 4380, 3 * 86400 + 7200)] == [
        "–",
        "30 s",
        "10 min",
        "1 h",
        "1 h 13 min",
        "3 d 2 h",
    ]


@dataclass(frozen=True)
class Finding:
    sentences: list[str] = field(default_factory=list)


def figures(**values: object) -> Figures:
    start = datetime(2026, 11, 23, 8)
    return Figures(None, start, start + timedelta(weeks=1), **values)  # type: ignore[arg-type]


def test_the_review_has_the_figures_the_chart_and_three_findings_within_limits() -> None:
    shown = figures(
        deployments=7,
        failures=1,
        change_failure_rate=1 / 7,
        time_to_restore_median=2400,
        run_duration_median=2520,
        run_duration_p90=5400,
        phase_time_medians={"pre": 600, "deploy": 1200},
        phase_titles={"pre": "Pre-Deployment", "deploy": "Deployment"},
    )
    slot = Slot("C0DEPLOY1", datetime(2026, 11, 30, 9), "Europe/Berlin", "production")
    found = ["First finding.", "Second finding.", "Third finding.", "Fourth finding."]
    blocks, text = review_blocks(slot, shown, weeks([(3, 0), (7, 1)]), found)
    assert check_blocks(blocks) == [] and len(blocks) <= BLOCKS_PER_MESSAGE
    assert blocks[0]["text"]["text"] == "Weekly deployment review — Mon 30 Nov 2026"
    fields = [f["text"] for b in blocks if "fields" in b for f in b["fields"]]
    assert fields == [
        "*Deployments*\n7",
        "*Failed or rolled back*\n1 (14% change failure rate)",
        "*Time to restore (median)*\n40 min",
        "*Run time (median)*\n42 min (p90 1 h 30 min)",
    ]
    everything = json.dumps(blocks, ensure_ascii=False)
    assert "Pre-Deployment 10 min · Deployment 20 min" in everything
    assert "`production`" in everything
    assert "Third finding." in everything and "Fourth finding." not in everything
    assert "Posted late" not in everything
    assert text.startswith("Weekly deployment review: 7 deployment(s) in the last 7 days, 1 failed (14%).")
    assert "Deployments per week, oldest first: 3, 7" in text


def test_a_late_review_says_so_and_an_empty_record_says_nothing_stands_out() -> None:
    slot = Slot("C0DEPLOY1", datetime(2026, 11, 30, 9), "Europe/Berlin", None, late=True)
    blocks, text = review_blocks(slot, figures(), weeks([(0, 0)] * 8), [])
    everything = json.dumps(blocks, ensure_ascii=False)
    assert "Posted late: deploybot was not running at Mon 30 Nov 09:00 Europe/Berlin" in everything
    assert "every environment" in everything
    assert "Nothing in the checklist's record stands out this time." in everything
    assert "_No deployments in these 8 week(s)._" in everything
    assert "(posted late)" in text and check_blocks(blocks) == []


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_item_text_and_reasons_in_findings_and_phase_titles_stay_inert(hostile: str) -> None:
    slot = Slot("C0DEPLOY1", datetime(2026, 11, 30, 9), "Europe/Berlin", None)
    finding = f"“{hostile}” was marked N/A 3 times: reasons “{hostile}” (2)."
    shown = figures(phase_time_medians={"pre": 60.0}, phase_titles={"pre": hostile})
    blocks, text = review_blocks(slot, shown, weeks([(1, 0)]), [finding, finding, finding])
    assert check_blocks(blocks) == [] and len(text) <= MESSAGE_TEXT
    for block in blocks:
        for value in _strings(block):
            assert MARKUP.findall(value) == [], value
            assert "\x1b" not in value
    worth = next(t for b in blocks if "Worth a look" in (t := b.get("text", {}).get("text", "")))
    assert worth.count("\n") == 3  # one line per finding: a newline typed into a reason cannot break the list


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []

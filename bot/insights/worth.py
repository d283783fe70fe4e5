"""What in the checklist's health is most worth a look: each finding scored, said as a plain sentence.

The score orders findings by how much they say about risk: an override of a failed probe means a
check was overruled, an item open at completion means it was skipped, a flaky probe teaches people
to overrule probes; frequent N/As and items always left for last are about the checklist's shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.insights.words import plural, span, times

if TYPE_CHECKING:
    from bot.insights.health import Health

Finding = tuple[float, str]
SLOW_ACKNOWLEDGEMENT = 15 * 60  # seconds: a page waiting longer than this is worth a look
LAST_SHARE = 0.3  # an item left for last in this share of runs (or more) is worth a look
CAP = 5  # counts past this add nothing: a kind of finding outranks another by what it is, then by how often


def findings(health: Health) -> list[Finding]:
    """Every finding of `health` with its score (higher: more worth a look)."""
    found: list[Finding] = []
    for item in health.overridden:
        found.append(
            (
                40 + 10 * min(item.count, CAP),
                f"“{item.text}” was ticked over a failed probe {times(item.count)}: "
                "check whether the probe or the release is wrong.",
            )
        )
    for item in health.completed_open:
        found.append(
            (
                30 + 8 * min(item.count, CAP),
                f"“{item.text}” was still open when runs were completed anyway ({times(item.count)}).",
            )
        )
    for probe in health.flaky_probes:
        within = f", within {plural(probe.runs_flipping, 'run')}" if probe.runs_flipping else ""
        found.append(
            (
                25 + 3 * min(probe.flips, 2 * CAP),
                f"The probe of “{probe.text}” changed its verdict {times(probe.flips)} in "
                f"{plural(probe.results, 'result')}{within}: a flaky probe teaches people to overrule it.",
            )
        )
    for cadence in health.cadences:
        skipped = cadence.missed + cadence.overdue
        if skipped:
            found.append(
                (
                    20 + 8 * min(skipped, CAP),
                    f"The {cadence.cadence} maintenance checklist was not completed in {skipped} of its "
                    f"{plural(cadence.slots, 'slot')} ({cadence.missed} missed, {cadence.overdue} overdue).",
                )
            )
    for item in health.not_applicable:
        share = item.count / item.runs if item.runs else 0.0
        because = f", most often because “{item.reasons[0].text}”" if item.reasons else ""
        found.append(
            (
                10 + 20 * share + min(item.count, 2 * CAP),
                f"“{item.text}” was marked N/A in {item.count} of {plural(item.runs, 'run')}{because}: "
                "if it rarely applies, make it optional or say when it does.",
            )
        )
    for item in health.left_for_last:
        share = item.count / item.runs if item.runs else 0.0
        if share >= LAST_SHARE and item.count > 1:
            found.append(
                (
                    5 + 10 * share + min(item.count, 2 * CAP) / 2,
                    f"“{item.text}” was the last required item resolved in {item.count} of "
                    f"{plural(item.runs, 'run')}: it may be blocking, or belong later in the checklist.",
                )
            )
    pages = health.pages
    if pages.unacknowledged:
        found.append(
            (
                20 + 5 * min(pages.unacknowledged, CAP),
                f"{pages.unacknowledged} of {plural(pages.raised, 'page')} were not acknowledged.",
            )
        )
    if pages.time_to_acknowledge_median is not None and pages.time_to_acknowledge_median > SLOW_ACKNOWLEDGEMENT:
        found.append(
            (
                15,
                f"Pages took {span(pages.time_to_acknowledge_median)} to be acknowledged (median): "
                "check the escalation chain.",
            )
        )
    return found

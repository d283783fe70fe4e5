"""One report of the figures and checklist health, for every surface: what to read, and how to ask for it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from bot.insights.delivery import Figures, environments, figures
from bot.insights.health import Health, health
from bot.runs import RunError
from bot.say import Typed, join, say
from bot.slack.mrkdwn import clip

DEFAULT_PERIOD = "30d"
MAX_DAYS = 3660  # ten years: a longer period is a typo
_PERIOD = re.compile(r"^(\d{1,5})([dw])$")


@dataclass(frozen=True)
class Report:
    """The delivery figures and checklist health of one environment (or all) over the period up to now."""

    period: str  # as asked, e.g. "30d"
    figures: Figures
    health: Health
    worth_a_look: list[str]

    @property
    def environment(self) -> str | None:
        return self.figures.environment


def is_period(text: str) -> bool:
    """Whether `text` is meant as a period ('30d', '12w', or a mistyped '30x'), not as an environment."""
    return text.strip()[:1].isdigit()


def parse_period(text: str) -> timedelta:
    """'30d' or '12w' as a span of time; anything else is refused, saying what would do."""
    match = _PERIOD.match(text.strip().lower())
    days = int(match.group(1)) * (7 if match.group(2) == "w" else 1) if match else 0
    if not match or not 1 <= days <= MAX_DAYS:
        raise RunError(
            say(
                "The period ",
                Typed(repr(clip(text, 20))),
                f" is not one deploybot reads: give days or weeks, from 1d to {MAX_DAYS}d, e.g. 30d or 12w.",
            )
        )
    return timedelta(days=days)


def build(session: Session, *, environment: str | None, period: str, now: datetime) -> Report:
    """The report of `environment` (None: every environment) over `period` ending `now`."""
    span = parse_period(period)
    if environment is not None:
        known = environments(session)
        if environment not in known:
            listed = join([Typed(name) for name in known], ", ") if known else say("none yet")
            asked = Typed(repr(clip(environment, 40)))  # repr: a control character shows as \x1b, inert
            raise RunError(
                say("No deployment ever ran in environment ", asked, ". Environments with deployments: ", listed, ".")
            )
    start = now - span
    found = health(session, environment=environment, start=start, end=now)
    return Report(
        period.strip().lower(),
        figures(session, environment=environment, start=start, end=now),
        found,
        found.worth_a_look(),
    )

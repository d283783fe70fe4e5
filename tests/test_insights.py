"""Each delivery figure and health finding against tests/insight_history.py, whose answers are worked out by hand."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import db, insights, items, runs
from bot.checklists import load_template
from bot.insights.delivery import Week
from bot.insights.health import CadenceHealth, FlakyProbe, ItemCount, Pages, Reason, normalize
from bot.models import Event
from bot.runs import Actor
from tests.conftest import ROOT
from tests.insight_history import END, START, History, at, build

HOUR = 3600.0


@pytest.fixture
def session(database_url: str) -> Iterator[Session]:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    with db.make_sessions(engine).begin() as session:
        build(session)
        yield session
    engine.dispose()


def test_delivery_figures_of_one_environment(session: Session) -> None:
    found = insights.figures(session, environment="production", start=START, end=END)
    # R1, R2, R3, R5 deployed; R4 aborted and R7 active are apart; R6 started before the period.
    assert (found.deployments, found.failures, found.aborted, found.active) == (4, 2, 1, 1)
    assert found.change_failure_rate == 0.5
    assert found.deployments_per_week == 1.0  # 4 in 4 weeks
    assert (found.time_to_restore_median, found.restored) == (40 * 60, 1)  # R2 only: R3 is not restored
    # Durations 1 h, 30 min, 2 h, 2 h: the median is between 1 h and 2 h; the p90 is 2 h.
    assert found.run_duration_median == 1.5 * HOUR
    assert found.run_duration_p90 == 2 * HOUR
    # pre: 20, 15, 20 min; deploy: 10, 10, 30 min; post: 30, 70 min (R2 never resolved it, R3 nothing).
    assert found.phase_time_medians == {"pre": 20 * 60, "deploy": 10 * 60, "post": 50 * 60}
    assert found.phase_titles == {"pre": "Pre-Deployment", "deploy": "Deployment", "post": "Post-Deployment"}


def test_delivery_figures_of_every_environment_together_and_apart(session: Session) -> None:
    together = insights.figures(session, environment=None, start=START, end=END)
    # Staging adds S1 (30 min) and S2 (10 min, completed anyway: still a deployment).
    assert (together.deployments, together.failures) == (6, 2)
    assert together.change_failure_rate == pytest.approx(1 / 3)
    assert together.deployments_per_week == 1.5
    # 10 min, 30 min, 30 min, 1 h, 2 h, 2 h: median 45 min; p90 at rank 4.5 of 0..5 is 2 h.
    assert together.run_duration_median == 45 * 60
    assert together.run_duration_p90 == 2 * HOUR

    apart = insights.figures_by_environment(session, start=START, end=END)
    assert sorted(apart) == ["production", "staging"]
    assert apart["production"] == insights.figures(session, environment="production", start=START, end=END)
    staging = apart["staging"]
    assert (staging.deployments, staging.failures, staging.change_failure_rate) == (2, 0, 0.0)
    assert (staging.run_duration_median, staging.time_to_restore_median) == (20 * 60, None)
    assert insights.environments(session) == ["production", "staging"]


def test_a_period_without_runs_has_no_rates(session: Session) -> None:
    found = insights.figures(session, environment="production", start=at("12-01 00:00"), end=at("12-08 00:00"))
    assert (found.deployments, found.failures, found.deployments_per_week) == (0, 0, 0.0)
    assert found.change_failure_rate is None and found.time_to_restore_median is None
    assert found.run_duration_median is None and found.run_duration_p90 is None
    assert found.phase_time_medians == {}
    unknown = insights.figures(session, environment="nowhere", start=START, end=END)
    assert unknown.deployments == 0 and unknown.environment == "nowhere"


def test_a_run_belongs_to_the_period_it_started_in(session: Session) -> None:
    # R5 starts Sunday 29th 23:00 and ends Monday 30th 01:00: it is the last week's, not the next's.
    last_day = insights.figures(session, environment="production", start=at("11-29 00:00"), end=END)
    assert (last_day.deployments, last_day.run_duration_median) == (1, 2 * HOUR)
    next_week = insights.figures(session, environment="production", start=END, end=END + timedelta(weeks=1))
    assert next_week.deployments == 0
    # R6 starts Sunday 1st 23:00 and ends inside the period: the week before's.
    before = insights.figures(session, environment="production", start=at("11-01 00:00"), end=START)
    assert before.deployments == 1


def test_an_active_run_counts_once_it_ends(session: Session) -> None:
    window = {"environment": "production", "start": at("11-25 00:00"), "end": at("11-26 00:00")}
    assert (insights.figures(session, **window).deployments, insights.figures(session, **window).active) == (0, 1)


def test_weekly_counts_in_the_teams_time_zone(session: Session) -> None:
    utc = insights.weekly(session, environment="production", weeks=5, end=END, zone=ZoneInfo("UTC"))
    assert utc == [
        Week(at("11-02 00:00").date(), 1, 0, 1 * HOUR),  # R1 (R6 started the day before)
        Week(at("11-09 00:00").date(), 1, 1, 0.5 * HOUR),  # R2
        Week(at("11-16 00:00").date(), 1, 1, 2 * HOUR),  # R3
        Week(at("11-23 00:00").date(), 1, 0, 2 * HOUR),  # R5, Sunday 23:00 (R4 aborted, R7 active)
        Week(at("11-30 00:00").date(), 0, 0, None),
    ]
    # In Tokyo (UTC+9) R6 and R5 start on Monday mornings: each moves a week later.
    tokyo = insights.weekly(session, environment="production", weeks=5, end=END, zone=ZoneInfo("Asia/Tokyo"))
    assert [(w.start.day, w.deployments, w.run_duration_median) for w in tokyo] == [
        (2, 2, 1.5 * HOUR),  # R6 (2 h) and R1 (1 h)
        (9, 1, 0.5 * HOUR),
        (16, 1, 2 * HOUR),
        (23, 0, None),
        (30, 1, 2 * HOUR),
    ]
    both = insights.weekly(session, environment=None, weeks=1, end=at("11-08 00:00"), zone=ZoneInfo("UTC"))
    assert both == [Week(at("11-02 00:00").date(), 3, 0, 0.5 * HOUR)]  # R1 1 h, S1 30 min, S2 10 min


def test_checklist_health_of_one_environment(session: Session) -> None:
    found = insights.health(session, environment="production", start=START, end=END)
    # R1 R2 RB2 R3 RB3 R4 R5 R7 and three maintenance runs; six of them run the deploy checklist.
    assert found.runs == found.runs_in_period == 11
    reasons = (Reason("No S3 here", 3), Reason("Not using S3", 1))
    assert found.not_applicable == (ItemCount("deploy", "p3", "S3 credentials are configured", 4, 6, reasons),)
    assert found.overridden == (
        ItemCount("deploy", "q1", "Error rate is normal", 2, 6),
        ItemCount("deploy", "d1", "Health check passes", 1, 6),
    )
    assert found.left_for_last == (ItemCount("deploy", "q1", "Error rate is normal", 1, 6),)  # R5; q2 is last by design
    assert found.completed_open == ()
    assert found.flaky_probes == (FlakyProbe("deploy", "d1", "Health check passes", 4, 3, 1),)
    assert found.cadences == (CadenceHealth("daily", 4, 1, 1, 1, 1),)
    assert found.pages == Pages(1, 1, 600.0, 0)


def test_checklist_health_of_every_environment(session: Session) -> None:
    found = insights.health(session, environment=None, start=START, end=END)
    assert found.runs == 13
    assert found.completed_open == (ItemCount("deploy", "q1", "Error rate is normal", 1, 8),)
    assert found.pages == Pages(2, 1, 600.0, 1)
    empty = insights.health(session, environment=None, start=at("12-01 00:00"), end=at("12-08 00:00"))
    assert (empty.runs, empty.not_applicable, empty.cadences, empty.worth_a_look()) == (0, (), (), [])


def test_the_three_findings_most_worth_a_look(session: Session) -> None:
    found = insights.health(session, environment="production", start=START, end=END)
    assert found.worth_a_look() == [
        "“Error rate is normal” was ticked over a failed probe twice: check whether the probe or the release is wrong.",
        "“Health check passes” was ticked over a failed probe once: check whether the probe or the release is wrong.",
        "The daily maintenance checklist was not completed in 2 of its 4 slots (1 missed, 1 overdue).",
    ]
    assert found.worth_a_look(limit=5)[3:] == [
        "The probe of “Health check passes” changed its verdict 3 times in 4 results, within 1 run: "
        "a flaky probe teaches people to overrule it.",
        "“S3 credentials are configured” was marked N/A in 4 of 6 runs, most often because “No S3 here”: "
        "if it rarely applies, make it optional or say when it does.",
    ]


def test_reasons_are_grouped_whatever_their_spelling() -> None:
    assert normalize("  No S3  here. ") == normalize("no s3 here!") == normalize('"No S3 here"') == "no s3 here"
    assert normalize("Not using S3") != normalize("No S3 here")


def test_item_level_findings_read_the_latest_runs_of_a_long_period(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The modules themselves: the package's `health` names the function.
    monkeypatch.setattr(importlib.import_module("bot.insights.health"), "HEALTH_SAMPLE", 4)
    monkeypatch.setattr(importlib.import_module("bot.insights.delivery"), "PHASE_SAMPLE", 1)
    found = insights.health(session, environment="production", start=START, end=END)
    # The latest four: R5, R7, R4 (deploy checklist) and RB3; of them only R5 marked p3 N/A.
    assert (found.runs, found.runs_in_period) == (4, 11)
    assert found.not_applicable == (
        ItemCount("deploy", "p3", "S3 credentials are configured", 1, 3, (Reason("No S3 here", 1),)),
    )
    figures = insights.figures(session, environment="production", start=START, end=END)
    assert figures.deployments == 4  # run-level figures still count every run
    assert figures.phase_time_medians == {"pre": 20 * 60, "deploy": 30 * 60, "post": 70 * 60}  # R5's alone


def test_a_deployment_without_an_end_time_counts_without_a_duration(session: Session) -> None:
    History(session, timedelta()).run("12-14 10:00", "complete")  # no finished_at: as an old database may hold
    window = {"environment": "production", "start": at("12-14 00:00"), "end": at("12-21 00:00")}
    found = insights.figures(session, **window)
    assert (found.deployments, found.run_duration_median, found.run_duration_p90) == (1, None, None)
    weeks = insights.weekly(session, environment="production", weeks=1, end=at("12-20 00:00"), zone=ZoneInfo("UTC"))
    assert weeks == [Week(at("12-14 00:00").date(), 1, 0, None)]


def test_ticks_before_a_pipeline_and_a_whole_checklist_ticked_at_once_are_no_findings(database_url: str) -> None:
    """Through the rules, as the shell does it: `tick 1-89` on the seed checklist, probes off."""
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    template = load_template(ROOT / "checklists" / "production-deploy.yml")
    when = at("12-02 10:00")
    alice = Actor("U0ALICE001", when, "C0DEPLOY01")
    try:
        with db.make_sessions(engine).begin() as session:
            run = runs.start(session, template, version="v1", environment="production", channel_id="C0DEPLOY01",
                             parts=None, actor=alice)  # fmt: skip
        with db.make_sessions(engine).begin() as session:
            # One command ticks every item in one instant; the pipeline's items are ticked by hand.
            for item in template.items:
                items.mark_done(session, run.id, item.id, Actor("U0ALICE001", when + timedelta(minutes=5)))
        with db.make_sessions(engine)() as session:
            overrides = session.scalars(select(Event).where(Event.kind == "item.override")).all()
            assert overrides and all("reported_by" in e.data for e in overrides)  # what is left out below
            found = insights.health(session, environment="production", start=when, end=when + timedelta(days=1))
        assert found.runs == 1 and found.overridden == () and found.left_for_last == ()
    finally:
        engine.dispose()

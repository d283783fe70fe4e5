"""Delivery figures (DORA's four keys, as deploybot's record allows): pure queries taking a session.

What counts is stated once, in the README's "Insights" section, and here:
- A *deployment* is a run of a deploy checklist (not maintenance, not rollback) that ended as
  complete, failed or rolled back. Aborted runs never reached production: they are counted apart
  and left out of every figure. Runs still active are counted apart too, until they end.
- A run belongs to the period (and the week) in which it *started*, even if it ended after.
- A *failure* is a deployment now failed or rolled back.
- *Time to restore* runs from the failure being declared (`/deploy fail`, or, for a deployment
  rolled back without one, the start of its rollback) to the rollback checklist being completed.
- *Phase time*: from the moment the previous phase's last required item was resolved (the run's
  start for the first) to the moment this phase's last required item was; phases still unresolved
  are left out, and a phase finished before the one ahead of it counts zero. Medians over the
  period's latest PHASE_SAMPLE deployments.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session, aliased

from bot.insights.sql import epoch, median, percentile
from bot.models import ItemState, ItemStatus, Run, RunStatus

DEPLOYED = (RunStatus.COMPLETE, RunStatus.FAILED, RunStatus.ROLLED_BACK)
FAILED = (RunStatus.FAILED, RunStatus.ROLLED_BACK)
# Nearly every run is deployed: said as "not active nor aborted", which no index serves, so that
# SQLite (which keeps no statistics) walks the runs by start time instead of by status.
NOT_DEPLOYED = (RunStatus.ACTIVE, RunStatus.ABORTED)
WEEK = timedelta(weeks=1)
# Phase times read every item of a run: they come from the period's latest deployments, this many
# at most (more would cost time and hardly move a median).
PHASE_SAMPLE = 250


@dataclass(frozen=True)
class Figures:
    """The delivery figures of one environment (or all: None) over [start, end)."""

    environment: str | None
    start: datetime
    end: datetime
    deployments: int = 0
    failures: int = 0
    change_failure_rate: float | None = None  # failures / deployments; None without deployments
    deployments_per_week: float = 0.0
    time_to_restore_median: float | None = None  # seconds; None when no failure was restored
    restored: int = 0  # failures whose rollback was completed (the time-to-restore sample)
    run_duration_median: float | None = None  # seconds, start to end of a deployment's run
    run_duration_p90: float | None = None
    phase_time_medians: dict[str, float] = field(default_factory=dict)  # phase id -> seconds, in phase order
    phase_titles: dict[str, str] = field(default_factory=dict)  # phase id -> its title
    aborted: int = 0  # deploy runs aborted: not deployments
    active: int = 0  # deploy runs still under way: counted once they end


@dataclass(frozen=True)
class Week:
    """One week (Monday to Sunday in the team's zone) of deployments."""

    start: date
    deployments: int
    failures: int
    run_duration_median: float | None


def figures(session: Session, *, environment: str | None, start: datetime, end: datetime) -> Figures:
    """The delivery figures of one environment (None: every environment together) over [start, end)."""
    found = _figures(session, environment=environment, start=start, end=end, split=False)
    return found.get(environment, Figures(environment, start, end))


def figures_by_environment(session: Session, *, start: datetime, end: datetime) -> dict[str, Figures]:
    """The delivery figures of every environment with deploy runs in [start, end), from one set of queries."""
    found = _figures(session, environment=None, start=start, end=end, split=True)
    return {env: figures for env, figures in found.items() if env is not None}


def environments(session: Session) -> list[str]:
    """Every environment that ever had a deploy run, alphabetically."""
    query = select(Run.environment).where(Run.kind == "deploy").group_by(Run.environment).order_by(Run.environment)
    return list(session.scalars(query))


def weekly(session: Session, *, environment: str | None, weeks: int, end: datetime, zone: ZoneInfo) -> list[Week]:
    """The last `weeks` weeks up to the one holding `end` (in `zone`), oldest first."""
    local_end = end.astimezone(zone)
    last_monday = local_end.date() - timedelta(days=local_end.weekday())
    mondays = [last_monday - timedelta(weeks=n) for n in range(weeks - 1, -1, -1)]
    if not mondays:
        return []
    first = datetime.combine(mondays[0], datetime.min.time(), zone)
    query = _deploy_runs(environment, first, end).with_only_columns(
        Run.started_at, Run.status, epoch(Run.finished_at) - epoch(Run.started_at)
    )
    counted: dict[date, list[Any]] = {monday: [0, 0, []] for monday in mondays}
    for started, status, seconds in session.execute(query.where(Run.status.not_in(NOT_DEPLOYED))):
        local = started.astimezone(zone).date()
        bucket = counted.get(local - timedelta(days=local.weekday()))
        if bucket is None:
            continue
        bucket[0] += 1
        bucket[1] += status in FAILED
        if seconds is not None:  # a run finished before deploybot kept end times has none
            bucket[2].append(float(seconds))
    return [Week(monday, n, failed, median(durations)) for monday, (n, failed, durations) in counted.items()]


# --- internals -------------------------------------------------------------------------------------


def _deploy_runs(environment: str | None, start: datetime, end: datetime) -> Select[Any]:
    query = select(Run.id).where(Run.kind == "deploy", Run.started_at >= start, Run.started_at < end)
    return query if environment is None else query.where(Run.environment == environment)


def _figures(
    session: Session, *, environment: str | None, start: datetime, end: datetime, split: bool
) -> dict[str | None, Figures]:
    """Figures keyed by environment when `split`, else one entry under `environment`."""
    runs = _deploy_runs(environment, start, end)

    def key(env: str) -> str | None:
        return env if split else environment

    counts: dict[str | None, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_status = runs.with_only_columns(Run.environment, Run.status, func.count()).group_by(Run.environment, Run.status)
    for name, status, n in session.execute(by_status):
        counts[key(name)][status] += n

    durations: dict[str | None, list[float]] = defaultdict(list)
    took = runs.with_only_columns(Run.environment, epoch(Run.finished_at) - epoch(Run.started_at))
    for name, seconds in session.execute(took.where(Run.status.not_in(NOT_DEPLOYED))):
        if seconds is not None:
            durations[key(name)].append(max(0.0, float(seconds)))

    restores: dict[str | None, list[float]] = defaultdict(list)
    for name, seconds in session.execute(_restores(runs)):
        if seconds is not None:
            restores[key(name)].append(max(0.0, float(seconds)))

    phase_times, titles = _phase_times(session, runs, key)

    weeks = (end - start) / WEEK
    found: dict[str | None, Figures] = {}
    for env, by in counts.items():
        deployments = sum(by[s] for s in DEPLOYED)
        failures = sum(by[s] for s in FAILED)
        found[env] = Figures(
            environment=env,
            start=start,
            end=end,
            deployments=deployments,
            failures=failures,
            change_failure_rate=failures / deployments if deployments else None,
            deployments_per_week=deployments / weeks if weeks > 0 else 0.0,
            time_to_restore_median=median(restores[env]),
            restored=len(restores[env]),
            run_duration_median=median(durations[env]),
            run_duration_p90=percentile(durations[env], 0.9),
            phase_time_medians={
                phase: m for phase, values in phase_times[env].items() if (m := median(values)) is not None
            },
            phase_titles=titles,
            aborted=by[RunStatus.ABORTED],
            active=by[RunStatus.ACTIVE],
        )
    return found


def _restores(runs: Select[Any]) -> Select[str, float]:
    """(environment, seconds from failure declared to rollback completed) per restored deployment."""
    rollback = aliased(Run)
    # A failed run's end is its declaration; one rolled back without `/deploy fail` ended as
    # complete (no reason), so the decision to roll back shows as the rollback's start.
    declared = case(
        (Run.finish_reason.is_not(None), epoch(Run.finished_at)), else_=func.min(epoch(rollback.started_at))
    )
    return (
        runs.with_only_columns(Run.environment, func.min(epoch(rollback.finished_at)) - declared)
        .join(rollback, rollback.rollback_of == Run.id)
        .where(
            Run.status == RunStatus.ROLLED_BACK,
            rollback.kind == "rollback",
            rollback.status == RunStatus.COMPLETE,
        )
        .group_by(Run.id, Run.environment, Run.finish_reason, Run.finished_at)
    )


def _phase_times(
    session: Session, runs: Select[Any], key: Any
) -> tuple[dict[str | None, dict[str, list[float]]], dict[str, str]]:
    """Per environment, each phase's times; and every phase id's title, in phase order."""
    latest = runs.where(Run.status.not_in(NOT_DEPLOYED)).order_by(Run.started_at.desc()).limit(PHASE_SAMPLE)
    sampled = {
        run_id: (env, template_id, float(started))
        for run_id, env, template_id, started in session.execute(
            latest.with_only_columns(Run.id, Run.environment, Run.template_id, epoch(Run.started_at))
        )
    }
    if not sampled:
        return defaultdict(dict), {}
    open_required = func.sum(case((ItemState.status == ItemStatus.OPEN, 1), else_=0))
    # Items alone, grouped in the order of the (run_id, required, phase, changed_at, status) index:
    # the database reads that index only, and streams the groups without sorting them.
    per_phase = (
        select(ItemState.run_id, ItemState.phase, epoch(func.max(ItemState.changed_at)), open_required)
        .where(ItemState.run_id.in_(list(sampled)), ItemState.required)
        .group_by(ItemState.run_id, ItemState.phase)
        .order_by(ItemState.run_id, ItemState.phase)
    )
    rows = [
        (run_id, *sampled[run_id], phase, resolved, still_open)
        for run_id, phase, resolved, still_open in session.execute(per_phase)
    ]
    names = _phase_names(session, {template_id for _, template_id, _ in sampled.values()})
    titles: dict[str, tuple[int, str]] = {}
    times: dict[str | None, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    previous_run: int | None = None
    since: float | None = None
    for run_id, env, template_id, started, phase, resolved, still_open in rows:
        if run_id != previous_run:
            previous_run, since = run_id, float(started)
        if since is None or still_open or resolved is None:
            since = None  # this phase is unresolved: the ones after it have no known start
            continue
        phase_id, title = names.get((template_id, phase), (f"phase-{phase + 1}", f"Phase {phase + 1}"))
        times[key(env)][phase_id].append(max(0.0, float(resolved) - since))
        titles.setdefault(phase_id, (phase, title))
        since = max(since, float(resolved))
    in_order = sorted(titles, key=lambda phase_id: titles[phase_id][0])
    ordered = {env: {p: by[p] for p in in_order if p in by} for env, by in times.items()}
    return defaultdict(dict, ordered), {p: titles[p][1] for p in in_order}


def _phase_names(session: Session, template_ids: set[str]) -> dict[tuple[str, int], tuple[str, str]]:
    """(template id, phase index) -> (phase id, title), read from the latest run of each template."""
    names: dict[tuple[str, int], tuple[str, str]] = {}
    for template_id in sorted(template_ids):  # one query per checklist, never per run
        snapshot = session.scalar(
            select(Run.template_snapshot).where(Run.template_id == template_id).order_by(Run.id.desc()).limit(1)
        )
        for n, phase in enumerate((snapshot or {}).get("phases", [])):
            names[(template_id, n)] = (str(phase.get("id")), str(phase.get("title")))
    return names

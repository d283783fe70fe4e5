"""Checklist health: which items people skip, override, leave for last or complete anyway open;
probes that flip; maintenance slots nobody completed; pages and how long until acknowledged.

Every query covers the runs (of every kind) that started in [start, end) in the environment, if
one is given, the latest HEALTH_SAMPLE of them at most; maintenance slots are counted by when they
were due, pages by when they were raised.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any

from sqlalchemy import Select, and_, case, func, select
from sqlalchemy.orm import Session

from bot.insights.sql import epoch, median
from bot.models import Event, ItemState, ItemStatus, Page, ProbeResult, ReminderSlot, Run, RunStatus

# An item whose probe changed its verdict at least this often in the period is called flaky.
FLAKY_FLIPS = 2
# Health reads every item of the runs it looks at: the period's latest runs, this many at most.
HEALTH_SAMPLE = 250
TOP = 5  # items listed per finding


@dataclass(frozen=True)
class Reason:
    """One N/A reason, as most often written, and how many times (spellings folded together)."""

    text: str
    count: int


@dataclass(frozen=True)
class ItemCount:
    """An item of a checklist and how often something happened to it."""

    checklist: str
    item_id: str
    text: str
    count: int
    runs: int = 0  # how many runs it could have happened in (its checklist's runs in the period)
    reasons: tuple[Reason, ...] = ()  # N/A only


@dataclass(frozen=True)
class FlakyProbe:
    """A probed item whose verdict went from pass to fail or back, within runs and across them."""

    checklist: str
    item_id: str
    text: str
    results: int
    flips: int  # verdict changes across the item's results, in the order taken
    runs_flipping: int  # runs in which the verdict changed at least once


@dataclass(frozen=True)
class CadenceHealth:
    """The slots of one maintenance cadence due in the period, by how they ended."""

    cadence: str
    slots: int
    on_time: int  # completed before its nudge (or with no nudge set)
    late: int  # completed after its nudge was due
    overdue: int  # still open past its nudge
    missed: int  # never posted (deploybot was down past catch-up) or aborted


@dataclass(frozen=True)
class Pages:
    """Pages raised in the period."""

    raised: int = 0
    acknowledged: int = 0
    time_to_acknowledge_median: float | None = None  # seconds
    unacknowledged: int = 0  # still waiting, or resolved without anybody acknowledging


@dataclass(frozen=True)
class Health:
    """Checklist health of one environment (or all: None) over [start, end)."""

    environment: str | None
    start: datetime
    end: datetime
    runs: int = 0  # the runs read: the period's latest HEALTH_SAMPLE at most
    runs_in_period: int = 0
    not_applicable: tuple[ItemCount, ...] = ()
    overridden: tuple[ItemCount, ...] = ()
    left_for_last: tuple[ItemCount, ...] = ()
    completed_open: tuple[ItemCount, ...] = ()
    flaky_probes: tuple[FlakyProbe, ...] = ()
    cadences: tuple[CadenceHealth, ...] = ()
    pages: Pages = field(default_factory=Pages)

    def worth_a_look(self, limit: int = 3) -> list[str]:
        """The `limit` findings most worth a look, as plain sentences (no Slack syntax), most telling first."""
        from bot.insights.worth import findings

        return [sentence for _, sentence in sorted(findings(self), key=lambda f: -f[0])[:limit]]


def health(session: Session, *, environment: str | None, start: datetime, end: datetime) -> Health:
    """The checklist health of one environment (None: all) over [start, end)."""
    period = select(Run.id).where(Run.started_at >= start, Run.started_at < end)
    if environment is not None:
        period = period.where(Run.environment == environment)
    # The sample, read once: every query below starts from these runs' ids, not from the period.
    sample = list(session.scalars(period.order_by(Run.started_at.desc()).limit(HEALTH_SAMPLE)))
    runs = select(Run.id).where(Run.id.in_(sample))
    texts, last_by_design = _item_texts(session, runs)
    runs_of = _runs_per_template(session, runs)
    return Health(
        environment=environment,
        start=start,
        end=end,
        runs=sum(runs_of.values()),
        runs_in_period=len(sample)
        if len(sample) < HEALTH_SAMPLE
        else session.scalar(period.with_only_columns(func.count())) or 0,
        not_applicable=_not_applicable(session, runs, texts, runs_of),
        overridden=_overridden(session, runs, texts, runs_of),
        left_for_last=_left_for_last(session, runs, texts, runs_of, last_by_design),
        completed_open=_completed_open(session, runs, texts, runs_of),
        flaky_probes=_flaky(session, runs, texts),
        cadences=_cadences(session, start, end),
        pages=_pages(session, environment, start, end),
    )


def normalize(reason: str) -> str:
    """Fold the spellings of one reason together: case, spacing, quotes and trailing punctuation."""
    folded = re.sub(r"\s+", " ", reason.casefold()).strip()
    return re.sub(r"^[\"'`]+|[\"'`.!;:,\s]+$", "", folded)


# --- internals -------------------------------------------------------------------------------------

Texts = dict[tuple[str, str], str]  # (template id, item id) -> the item's text


def _item_texts(session: Session, runs: Select[Any]) -> tuple[Texts, set[tuple[str, str]]]:
    """Every item's text, and each checklist's own last required item, from its latest run (one query per checklist)."""
    template_ids = session.scalars(runs.with_only_columns(Run.template_id).group_by(Run.template_id)).all()
    texts: Texts = {}
    last: set[tuple[str, str]] = set()
    for template_id in template_ids:
        snapshot = session.scalar(
            select(Run.template_snapshot).where(Run.template_id == template_id).order_by(Run.id.desc()).limit(1)
        )
        required = []
        for phase in (snapshot or {}).get("phases", []):
            for group in phase.get("groups", []):
                for item in group.get("items", []):
                    texts[(template_id, str(item.get("id")))] = str(item.get("text"))
                    if item.get("required", True):
                        required.append(str(item.get("id")))
        if required:
            last.add((template_id, required[-1]))
    return texts, last


def _runs_per_template(session: Session, runs: Select[Any]) -> dict[str, int]:
    query = runs.with_only_columns(Run.template_id, func.count()).group_by(Run.template_id)
    return {template_id: n for template_id, n in session.execute(query)}


def _top(counted: Counter[tuple[str, str]], texts: Texts, runs_of: dict[str, int]) -> tuple[ItemCount, ...]:
    ranked = sorted(counted.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]
    return tuple(
        ItemCount(template_id, item_id, texts.get((template_id, item_id), item_id), n, runs_of.get(template_id, 0))
        for (template_id, item_id), n in ranked
    )


def _not_applicable(
    session: Session, runs: Select[Any], texts: Texts, runs_of: dict[str, int]
) -> tuple[ItemCount, ...]:
    query = (
        runs.with_only_columns(Run.template_id, ItemState.item_id, ItemState.na_reason, func.count())
        .join(ItemState, ItemState.run_id == Run.id)
        .where(ItemState.status == ItemStatus.NA)
        .group_by(Run.template_id, ItemState.item_id, ItemState.na_reason)
    )
    counted: Counter[tuple[str, str]] = Counter()
    spellings: dict[tuple[str, str], dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    for template_id, item_id, reason, n in session.execute(query):
        counted[(template_id, item_id)] += n
        spellings[(template_id, item_id)][normalize(reason or "")][reason or ""] += n
    found = []
    for entry in _top(counted, texts, runs_of):
        groups = spellings[(entry.checklist, entry.item_id)].values()
        reasons = sorted((Reason(c.most_common(1)[0][0], c.total()) for c in groups), key=lambda r: (-r.count, r.text))
        found.append(ItemCount(entry.checklist, entry.item_id, entry.text, entry.count, entry.runs, tuple(reasons)))
    return tuple(found)


def _overridden(session: Session, runs: Select[Any], texts: Texts, runs_of: dict[str, int]) -> tuple[ItemCount, ...]:
    # The event, not the current state: an override later unticked still happened. A tick before a
    # pipeline reported is an override too, of no probe: it is left out (overrides are few).
    query = (
        runs.with_only_columns(Run.template_id, Event.item_id, Event.data)
        .join(Event, Event.run_id == Run.id)
        .where(Event.kind == "item.override")
    )
    counted = Counter((t, i or "") for t, i, data in session.execute(query) if "reported_by" not in (data or {}))
    return _top(counted, texts, runs_of)


def _left_for_last(
    session: Session, runs: Select[Any], texts: Texts, runs_of: dict[str, int], last_by_design: set[tuple[str, str]]
) -> tuple[ItemCount, ...]:
    # A run completes in the same instant its last required item is resolved: that item's change
    # time is the run's end (found by reading the run's items in the index, not by sorting them).
    query = (
        runs.with_only_columns(Run.id, Run.template_id, ItemState.item_id)
        .join(
            ItemState,
            and_(ItemState.run_id == Run.id, ItemState.changed_at == Run.finished_at),
        )
        .where(
            # A run completed anyway ended on a click that resolved no item: it finds none. Said as
            # "not ...": no index serves it, so SQLite walks the runs by start time, not by status.
            Run.status.not_in((RunStatus.ACTIVE, RunStatus.ABORTED, RunStatus.FAILED)),
            ItemState.required,
            ItemState.status != ItemStatus.OPEN,
        )
    )
    last: dict[int, list[tuple[str, str]]] = {}
    for run_id, template_id, item_id in session.execute(query):
        last.setdefault(run_id, []).append((template_id, item_id))
    # Several items resolved in the run's last instant (one command ticked them all) left none of
    # them for last. The checklist's own last required item is last by design: only an item left
    # for last out of its order says something.
    counted = Counter(found[0] for found in last.values() if len(found) == 1 and found[0] not in last_by_design)
    return _top(counted, texts, runs_of)


def _completed_open(
    session: Session, runs: Select[Any], texts: Texts, runs_of: dict[str, int]
) -> tuple[ItemCount, ...]:
    query = runs.with_only_columns(Run.template_id, Run.overridden_items).where(Run.overridden_items.is_not(None))
    counted: Counter[tuple[str, str]] = Counter()
    for template_id, items in session.execute(query):
        counted.update((template_id, str(item_id)) for item_id in items or [])
    return _top(counted, texts, runs_of)


def _flaky(session: Session, runs: Select[Any], texts: Texts) -> tuple[FlakyProbe, ...]:
    # Verdicts in the order taken, item by item: compared with the one before, over the item's
    # whole series and within each run. Bounded by the sample of runs; counted here, in one pass.
    query = (
        runs.with_only_columns(Run.template_id, ProbeResult.item_id, ProbeResult.run_id, ProbeResult.ok)
        .join(ProbeResult, ProbeResult.run_id == Run.id)
        .order_by(Run.template_id, ProbeResult.item_id, ProbeResult.at, ProbeResult.id)
    )
    series: dict[tuple[str, str], list[tuple[int, bool]]] = defaultdict(list)
    for template_id, item_id, run_id, ok in session.execute(query):
        series[(template_id, item_id)].append((run_id, bool(ok)))
    found = []
    for (template_id, item_id), verdicts in series.items():
        pairs = list(pairwise(verdicts))
        flips = sum(before[1] != after[1] for before, after in pairs)
        if flips < FLAKY_FLIPS:
            continue
        flipping = {after[0] for before, after in pairs if before[0] == after[0] and before[1] != after[1]}
        text = texts.get((template_id, item_id), item_id)
        found.append(FlakyProbe(template_id, item_id, text, len(verdicts), flips, len(flipping)))
    return tuple(sorted(found, key=lambda f: (-f.flips, f.item_id))[:TOP])


def _cadences(session: Session, start: datetime, end: datetime) -> tuple[CadenceHealth, ...]:
    done = Run.status == RunStatus.COMPLETE
    late = and_(done, ReminderSlot.nudge_at.is_not(None), Run.finished_at > ReminderSlot.nudge_at)
    overdue = and_(Run.status == RunStatus.ACTIVE, ReminderSlot.nudge_at.is_not(None), ReminderSlot.nudge_at <= end)
    missed = (ReminderSlot.status == "missed") | (Run.status == RunStatus.ABORTED)

    def counting(condition: Any) -> Any:
        return func.sum(case((condition, 1), else_=0))

    query = (
        select(
            ReminderSlot.cadence,
            func.count(),
            counting(and_(done, ~late)),
            counting(late),
            counting(overdue),
            counting(missed),
        )
        .outerjoin(Run, Run.id == ReminderSlot.run_id)
        .where(ReminderSlot.due_at >= start, ReminderSlot.due_at < end, ReminderSlot.status != "manual")
        .group_by(ReminderSlot.cadence)
        .order_by(ReminderSlot.cadence)
    )
    return tuple(CadenceHealth(c, n, int(a), int(b), int(o), int(m)) for c, n, a, b, o, m in session.execute(query))


def _pages(session: Session, environment: str | None, start: datetime, end: datetime) -> Pages:
    query = select(Page.acked_at.is_not(None), epoch(Page.acked_at) - epoch(Page.created_at)).where(
        Page.created_at >= start, Page.created_at < end
    )
    if environment is not None:  # a page belongs to an environment through the run it was raised from
        query = query.join(Run, Run.id == Page.run_id).where(Run.environment == environment)
    rows = session.execute(query).all()
    waits = [max(0.0, float(seconds)) for acked, seconds in rows if acked]
    return Pages(len(rows), len(waits), median(waits), len(rows) - len(waits))

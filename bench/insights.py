"""Insights at scale: 10,000 finished deployments with ~900,000 item states; `/deploy stats`, the Home section
and the weekly review timed (goal < 200 ms), with the plan of every query they run.

Usage: python -m bench.insights [--postgres] [--plans]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from bench.burst import database
from bot import db
from bot.checklists import load_folder
from bot.config import DeployConfig
from bot.insights import report
from bot.insights.slack import home_section, stats_blocks, stats_text
from bot.review.schedule import Reviews
from bot.review.settings import ReviewSettings
from bot.slack.limits import BLOCKS_PER_MESSAGE, check_blocks

ROOT = Path(__file__).resolve().parent.parent
DEPLOYS = 10_000
CHANNELS = [f"C0BENCH{n:02d}" for n in range(5)]
PEOPLE = [f"U0BENCH{n:03d}" for n in range(12)]
REASONS = ["not applicable to this release", "Not applicable to this release.", "no schema change", "done by hand"]
GOAL_MS = 200.0
REPEAT = 10


@dataclass
class Rows:
    runs: list[tuple[Any, ...]]
    items: list[tuple[Any, ...]]
    events: list[tuple[Any, ...]]
    probes: list[tuple[Any, ...]]


RUN_COLUMNS = (
    "id, template_id, kind, template_snapshot, version, environment, channel_id, active_slot, status, started_by, "
    "started_at, finished_at, finished_by, finish_reason, overridden_items, rev, rollback_of, rollback_to, open_phase"
)
ITEM_COLUMNS = (
    "run_id, item_id, position, phase, required, status, changed_by, changed_at, na_reason, note_count, probe_status"
)
EVENT_COLUMNS = "id, run_id, item_id, kind, user_id, at, channel_id, data"
PROBE_COLUMNS = "id, run_id, item_id, kind, ok, reason, evidence, ms, at"


def build(now: datetime) -> Rows:
    """A year of deployments of the full seed checklist, with their rollbacks, ticks, N/As, overrides and probes."""
    templates = load_folder(ROOT / "checklists")
    deploy, rollback = templates["production-deploy"], templates["rollback"]
    snapshots = {t.id: json.dumps(t.model_dump(mode="json")) for t in (deploy, rollback)}
    phase_of = {item.id: n for n, phase in enumerate(deploy.phases) for item in phase.items}
    rollback_phase = {item.id: n for n, phase in enumerate(rollback.phases) for item in phase.items}
    rng = random.Random(19)
    rows = Rows([], [], [], [])
    first = now - timedelta(days=365)
    next_id = 1

    def ticks(
        run_id: int, items: list[Any], phases: dict[str, int], start: datetime, end: datetime, **run: Any
    ) -> None:
        step = (end - start) / max(1, len(items))
        for position, item in enumerate(items):
            at = start + step * (position + 1)  # the last item's tick is the run's end
            status = "done"
            reason = None
            if not item.required or rng.random() < 0.05:
                status, reason = "na", rng.choice(REASONS)
            if item.id in run.get("open", ()):
                status, at = "open", None
            who = rng.choice(PEOPLE)
            probe = None
            if item.probe is not None:
                probe = "failed" if rng.random() < 0.03 else "passed"
                ok = probe == "passed"
                rows.probes.append(
                    (len(rows.probes) + 1, run_id, item.id, item.probe.kind, ok, "ok", "{}", 12.5, start)
                )
            rows.items.append(
                (
                    run_id,
                    item.id,
                    position,
                    phases[item.id],
                    item.required,
                    status,
                    who if at else None,
                    at,
                    reason,
                    0,
                    probe,
                )
            )
            if at is not None:
                kind = "item.na" if status == "na" else "item.done"
                rows.events.append((len(rows.events) + 1, run_id, item.id, kind, who, at, run["channel"], "{}"))
                if probe == "failed" and status == "done":
                    rows.events.append(
                        (len(rows.events) + 1, run_id, item.id, "item.override", who, at, run["channel"], "{}")
                    )

    for n in range(DEPLOYS):
        run_id, next_id = next_id, next_id + 1
        started = first + timedelta(minutes=52.5 * n + rng.uniform(0, 20))
        finished = started + timedelta(minutes=rng.uniform(20, 120))
        channel, environment = CHANNELS[n % len(CHANNELS)], "production" if rng.random() < 0.6 else "staging"
        roll = rng.random()
        status = "complete" if roll < 0.92 else "rolled_back" if roll < 0.96 else "aborted"
        opened = (
            tuple(rng.sample([i.id for i in deploy.items], 2)) if status == "complete" and rng.random() < 0.02 else ()
        )
        reason = "smoke tests failed" if status == "rolled_back" else None
        rows.runs.append(
            (run_id, deploy.id, "deploy", snapshots[deploy.id], f"v1.{n}", environment, channel, None, status,
             rng.choice(PEOPLE), started, finished, rng.choice(PEOPLE), reason,
             json.dumps(list(opened)) if opened else None, 90, None, None, 2)
        )  # fmt: skip
        ticks(run_id, deploy.items, phase_of, started, finished, channel=channel, open=opened)
        if status == "rolled_back":
            back_id, next_id = next_id, next_id + 1
            back_end = finished + timedelta(minutes=rng.uniform(10, 60))
            rows.runs.append(
                (back_id, rollback.id, "rollback", snapshots[rollback.id], f"v1.{n}", environment, channel, None,
                 "complete", rng.choice(PEOPLE), finished, back_end, rng.choice(PEOPLE), None, None, 12, run_id,
                 f"v1.{n - 1}", 0)
            )  # fmt: skip
            ticks(back_id, rollback.items, rollback_phase, finished, back_end, channel=channel)
    return rows


def fill(engine: Engine, rows: Rows) -> None:
    """Bulk-load the rows: COPY on PostgreSQL, one executemany per table on SQLite."""
    tables = [
        ("runs", RUN_COLUMNS, rows.runs),
        ("item_states", ITEM_COLUMNS, rows.items),
        ("events", EVENT_COLUMNS, rows.events),
        ("probe_results", PROBE_COLUMNS, rows.probes),
    ]
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "postgresql":
            for table, columns, values in tables:
                with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in values:
                        copy.write_row(row)
            for table in ("runs", "events", "probe_results"):  # ids were given: move the sequences past them
                cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
            raw.commit()
            # As autovacuum leaves a live database: statistics, and the visibility map index-only scans need.
            raw.driver_connection.autocommit = True  # type: ignore[union-attr]
            cursor.execute("VACUUM ANALYZE")
        else:
            cursor.execute("BEGIN")
            for table, columns, values in tables:
                marks = ", ".join("?" * len(columns.split(",")))
                cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", map(_sqlite_row, values))
            cursor.execute("COMMIT")
            cursor.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()


def _sqlite_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    # The text SQLAlchemy's SQLite DateTime stores: UTC wall-clock time, microseconds always written.
    return tuple(v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v for v in row)


@contextmanager
def statements(engine: Engine) -> Iterator[list[tuple[str, Any, float]]]:
    """Every statement run inside the block: (SQL, parameters, milliseconds)."""
    seen: list[tuple[str, Any, float]] = []

    def before(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        conn.info["bench_started"] = time.perf_counter()

    def after(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        seen.append((sql, params, (time.perf_counter() - conn.info.pop("bench_started")) * 1000))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)


def plan(engine: Engine, sql: str, params: Any) -> list[str]:
    """The database's plan for one statement: EXPLAIN ANALYZE on PostgreSQL, EXPLAIN QUERY PLAN on SQLite."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            found = conn.exec_driver_sql("EXPLAIN (ANALYZE, COSTS OFF, SUMMARY OFF) " + sql, params).scalars().all()
            return [str(line) for line in found]
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params).all()
        return [f"{'  ' * _depth(rows, row)}{row[3]}" for row in rows]


def _depth(rows: list[Any], row: Any) -> int:
    parents = {r[0]: r[1] for r in rows}
    depth, parent = 0, row[1]
    while parent in parents:
        depth, parent = depth + 1, parents[parent]
    return depth


def profile(surface: Callable[[Session], int], sessions: Any) -> str:
    """Where one render spends its time, by deploybot's own functions (cumulative), the top twelve."""
    profiler = cProfile.Profile()
    with sessions() as session:
        profiler.runcall(surface, session)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(r"/bot/", 12)
    lines = [line.replace(f"{ROOT}/", "") for line in out.getvalue().splitlines() if "/bot/" in line]
    lines = [line for line in lines if not line.startswith("List reduced")]
    return "\n".join(f"     {line.strip()}" for line in lines)


def surfaces(engine: Engine, now: datetime) -> dict[str, Callable[[Session], int]]:
    """What people look at: each reads the database and renders, returning its block count."""
    reviews = Reviews(db.make_sessions(engine), DeployConfig(timezone="Europe/Berlin"), lambda: now, lambda: None)
    schedule = ReviewSettings().for_channel(CHANNELS[0])
    local = now.astimezone(ZoneInfo("Europe/Berlin")).replace(tzinfo=None, hour=9, minute=0, second=0, microsecond=0)

    def stats(environment: str | None, period: str) -> Callable[[Session], int]:
        def run(session: Session) -> int:
            found = report.build(session, environment=environment, period=period, now=now)
            blocks = stats_blocks(found)
            assert check_blocks(blocks) == [] and stats_text(found)
            return len(blocks)

        return run

    def review(session: Session) -> int:
        blocks, _ = reviews._compose(schedule, local, now, late=False)
        assert check_blocks(blocks) == [] and len(blocks) <= BLOCKS_PER_MESSAGE
        return len(blocks)

    return {
        "/deploy stats (every environment, 30d)": stats(None, "30d"),
        "/deploy stats production 12w": stats("production", "12w"),
        "/deploy stats production 365d": stats("production", "365d"),
        "App Home section (uncached)": lambda session: len(home_section(session, now)),
        "weekly review (figures, 8-week chart, findings)": review,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--plans", action="store_true", help="print the plan of every query, not only the slow ones")
    parser.add_argument("--profile", action="store_true", help="print where each surface spends its time")
    args = parser.parse_args()
    now = datetime.now(UTC)
    print(f"machine: {os.cpu_count()} cores, 1-minute load average {os.getloadavg()[0]:.1f} at the start")
    started = time.perf_counter()
    rows = build(now)
    took = time.perf_counter() - started
    print(
        f"history: {sum(r[2] == 'deploy' for r in rows.runs):,} finished deployments and "
        f"{sum(r[2] == 'rollback' for r in rows.runs):,} rollbacks over a year, {len(rows.items):,} item states, "
        f"{len(rows.events):,} events, {len(rows.probes):,} probe results (built in {took:.1f} s)"
    )
    for name in ("sqlite", "postgresql") if args.postgres else ("sqlite",):
        with database(name) as url:
            engine = db.make_engine(url)
            db.upgrade(engine)
            started = time.perf_counter()
            fill(engine, rows)
            print(f"\n{name}: loaded in {time.perf_counter() - started:.1f} s")
            sessions = db.read_only(db.make_sessions(engine))
            slow: dict[str, tuple[Any, float]] = {}
            for title, surface in surfaces(engine, now).items():
                with sessions() as session:
                    surface(session)  # warm the caches, as a running deploybot has them
                timings, cpu, in_queries = [], [], []
                for _ in range(REPEAT):
                    with sessions() as session, statements(engine) as seen:
                        begun, begun_cpu = time.perf_counter(), time.process_time()
                        count = surface(session)
                        timings.append((time.perf_counter() - begun) * 1000)
                        cpu.append((time.process_time() - begun_cpu) * 1000)
                        in_queries.append(sum(ms for _, _, ms in seen))
                verdict = "ok" if statistics.median(timings) < GOAL_MS else "MISSES the goal"
                print(
                    f"  {title}: median {statistics.median(timings):.0f} ms, max {max(timings):.0f} ms over {REPEAT}; "
                    f"{statistics.median(in_queries):.0f} ms in {len(seen)} queries, this process's CPU "
                    f"{statistics.median(cpu):.0f} ms ({count} blocks; goal < {GOAL_MS:.0f} ms: {verdict})"
                )
                if args.profile:
                    print(profile(surface, sessions))
                for sql, params, ms in seen:
                    if args.plans or ms >= 10:
                        slow.setdefault(sql, (params, ms))
            print(f"  plans of the queries taking 10 ms or more ({len(slow)}):" if not args.plans else "  plans:")
            for sql, (params, ms) in sorted(slow.items(), key=lambda kv: -kv[1][1]):
                print(f"  -- {ms:.0f} ms: {' '.join(sql.split())[:400]}")
                for line in plan(engine, sql, params):
                    print(f"       {line if len(line) <= 160 else line[:159] + '…'}")  # long id lists cut
            engine.dispose()
    print(f"\n1-minute load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()

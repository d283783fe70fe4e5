"""History scale: with 10,000 finished runs, how long `/deploy list` and the Home tab take; PostgreSQL's plans.

Usage: python -m bench.history [--postgres]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, text

from bench.burst import database
from bot.models import Run
from bot.slack.home import home_view
from tests.conftest import launched
from tests.fake_slack import FakeSlack

RUNS = 10_000


def fill(bot, count: int) -> None:  # type: ignore[no-untyped-def]
    """Insert `count` finished runs over the last year, in a few channels."""
    snapshot = {
        "id": "t",
        "title": "T",
        "kind": "deploy",
        "phases": [
            {"id": "p", "title": "P", "groups": [{"id": "g", "title": "G", "items": [{"id": "a", "text": "A"}]}]}
        ],
    }
    start = datetime.now(UTC) - timedelta(days=365)
    rows = [
        {
            "template_id": "production-deploy",
            "kind": "deploy",
            "template_snapshot": snapshot,
            "version": f"v1.{n}",
            "environment": "production",
            "channel_id": f"CHIST{n % 5}",
            "active_slot": None,
            "status": "complete",
            "started_by": "U0BENCH",
            "started_at": start + timedelta(minutes=50 * n),
            "finished_at": start + timedelta(minutes=50 * n + 20),
            "finished_by": "U0BENCH",
            "rev": 2,
        }
        for n in range(count)
    ]
    with bot.app.sessions.begin() as session:
        for chunk in range(0, len(rows), 1000):
            session.execute(insert(Run), rows[chunk : chunk + 1000])


def explain(bot, where: str) -> str:  # type: ignore[no-untyped-def]
    """PostgreSQL's plan for the ten runs `where` picks, on one line."""
    with bot.app.engine.connect() as conn:
        plan = conn.execute(text(f"EXPLAIN SELECT * FROM runs {where} LIMIT 10")).scalars().all()
    return " / ".join(line.strip() for line in plan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    for name in ("sqlite", "postgresql") if args.postgres else ("sqlite",):
        fake = FakeSlack().start()
        with database(name) as url, launched(url, fake) as bot:
            fill(bot, RUNS)
            timings = []
            for _ in range(30):
                started = time.perf_counter()
                answer = bot.slack.command("list", channel="CHIST3")
                timings.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200 and "*#" in answer.json()["text"]
            print(
                f"{name}: {RUNS} finished runs; `/deploy list` answered in median {statistics.median(timings):.1f} ms, "
                f"max {max(timings):.1f} ms over 30 requests (target < 100 ms)"
            )
            home = []
            for _ in range(30):
                started = time.perf_counter()
                with bot.app.sessions() as session:
                    view = home_view(session, datetime.now(UTC), bot.app.reminders, {})
                home.append((time.perf_counter() - started) * 1000)
            assert "*#10000*" in str(view["blocks"]) and len(view["blocks"]) <= 100
            print(
                f"{name}: the Home tab (active runs, last ten finished, reminders, open pages) rendered in median "
                f"{statistics.median(home):.1f} ms, max {max(home):.1f} ms over 30 renders (target < 100 ms)"
            )
            if name == "postgresql":
                # The queries runs.recent_runs builds for one channel, and the Home tab's "last finished".
                print("  plan: " + explain(bot, "WHERE channel_id = 'CHIST3' ORDER BY started_at DESC, id DESC"))
                print(
                    "  Home tab plan: "
                    + explain(bot, "WHERE status != 'active' AND finished_at IS NOT NULL ORDER BY finished_at DESC")
                )
        fake.stop()


if __name__ == "__main__":
    main()

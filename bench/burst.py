"""Burst on one run: 30 users tick 30 items within one second; how many chat.update calls, how fast it converges.

Usage: python -m bench.burst [--postgres] [--interval SECONDS]
Prints one line per database and burst shape. Loopback only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from sqlalchemy import select

from bot import blocks
from bot.models import ItemState, Message, Run
from tests.conftest import launched, postgres_schema_url
from tests.fake_slack import FakeSlack
from tests.test_concurrency import stale_clicks, thirty_items
from tests.test_slack_flow import start

TIMEOUT = 30.0


def shows_database(bot) -> bool:  # type: ignore[no-untyped-def]
    with bot.app.sessions() as session:
        run = session.scalars(select(Run).order_by(Run.id.desc()).limit(1)).one()
        parts = blocks.layout(run.template)
        rows = {m.part: m.ts for m in session.scalars(select(Message).where(Message.run_id == run.id))}
        expected = {rows[0]: blocks.parent_blocks(run)}
        expected |= {rows[n]: blocks.part_blocks(run, part, n) for n, part in enumerate(parts, 1)}
    with bot.fake.lock:
        shown = {ts: m["blocks"] for (_, ts), m in bot.fake.messages.items() if ts in expected}
    return json.dumps(shown, sort_keys=True) == json.dumps(expected, sort_keys=True)


def measure(database_url: str, interval: float, spread: float) -> dict[str, float]:
    fake = FakeSlack().start()
    try:
        with launched(database_url, fake, DEPLOYBOT_RENDER_INTERVAL=str(interval)) as bot:
            messages = start(bot)
            clicks = stale_clicks(messages, thirty_items(messages))
            updates_before = len(fake.calls_of("chat.update"))
            begin = time.monotonic()

            def fire(n: int) -> None:
                # Spread the clicks evenly over `spread` seconds (all at once when 0).
                delay = begin + spread * n / len(clicks) - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                action_id, value, where = clicks[n]
                assert bot.slack.click(action_id, value, **where).status_code == 200

            with ThreadPoolExecutor(len(clicks)) as pool:
                list(pool.map(fire, range(len(clicks))))
            last_ack = time.monotonic()
            deadline = last_ack + TIMEOUT
            while not shows_database(bot) and time.monotonic() < deadline:
                time.sleep(0.01)
            converged = time.monotonic() - last_ack
            with bot.app.sessions() as session:
                done = len(session.scalars(select(ItemState).where(ItemState.status == "done")).all())
            return {
                "lost": len(clicks) - done,
                "updates": len(fake.calls_of("chat.update")) - updates_before,
                "converged_s": converged,
            }
    finally:
        fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL (DEPLOYBOT_TEST_POSTGRES_URL)")
    parser.add_argument("--interval", type=float, default=1.0, help="DEPLOYBOT_RENDER_INTERVAL (default 1.0)")
    args = parser.parse_args()
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # 30 requests at once queue by design
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, render interval {args.interval}s")
    print(f"{'database':<11} {'burst':<13} {'lost ticks':>10} {'chat.update':>12} {'converged after last ack':>26}")
    for name in ("sqlite", "postgresql") if args.postgres else ("sqlite",):
        for label, spread in (("30 at once", 0.0), ("30 over 1 s", 1.0)):
            with database(name) as url:
                r = measure(url, args.interval, spread)
            print(f"{name:<11} {label:<13} {r['lost']:>10.0f} {r['updates']:>12.0f} {r['converged_s']:>24.2f} s")


@contextmanager
def database(name: str) -> Iterator[str]:
    """A fresh SQLite file or PostgreSQL schema."""
    if name == "postgresql":
        yield from postgres_schema_url()
    else:
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/bench.db"


if __name__ == "__main__":
    main()

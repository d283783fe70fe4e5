"""Burst on one run: 30 users tick 30 items within one second (then, in a third shape, 50 clicks/s for 10 s);
how many ticks were lost, how many chat.update calls, how fast the messages converge.

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
from typing import Any

from sqlalchemy import func, select

from bot.models import Event, Message, Run
from bot.slack import blocks, ids
from tests.conftest import launched, postgres_schema_url
from tests.fake_slack import FakeSlack
from tests.test_concurrency import stale_clicks, thirty_items
from tests.test_slack_flow import CHANNEL, item_block, start

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


Click = tuple[str, dict[str, Any], dict[str, Any]]


def sustained_clicks(messages: list[dict[str, Any]], skip: list[str], count: int) -> list[Click]:
    """`count` clicks on 50 other items, each item Done, then Undo, then Done… once per round of 50."""
    items = [b["block_id"][5:] for m in messages[1:] for b in m["blocks"] if b.get("block_id", "").startswith("item.")]
    items = [i for i in items if i not in skip][:50]
    out: list[Click] = []
    for n in range(count):
        item_id = items[n % len(items)]
        message, _ = item_block(messages, item_id)
        action = ids.ITEM_DONE if (n // len(items)) % 2 == 0 else ids.ITEM_REOPEN
        where = {
            "user": f"U{700 + n % 50}",
            "channel": CHANNEL,
            "message_ts": message["ts"],
            "thread_ts": message["thread_ts"],
        }
        out.append((action, {"run": 1, "item": item_id}, where))
    return out


def measure(database_url: str, interval: float, spread: float, sustained: int = 0) -> dict[str, float]:
    """30 stale clicks over `spread` seconds, then `sustained` clicks at 50 a second; every click changes an item."""
    fake = FakeSlack().start()
    try:
        with launched(database_url, fake, DEPLOYBOT_RENDER_INTERVAL=str(interval)) as bot:
            messages = start(bot)
            first = thirty_items(messages)
            clicks = stale_clicks(messages, first)
            schedule = [spread * n / len(clicks) for n in range(len(clicks))]
            clicks += sustained_clicks(messages, first, sustained)
            schedule += [spread + n / 50 for n in range(sustained)]
            updates_before = len(fake.calls_of("chat.update"))
            begin = time.monotonic()

            def fire(n: int) -> None:
                delay = begin + schedule[n] - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                action_id, value, where = clicks[n]
                assert bot.slack.click(action_id, value, **where).status_code == 200

            with ThreadPoolExecutor(min(len(clicks), 60)) as pool:
                list(pool.map(fire, range(len(clicks))))
            last_ack = time.monotonic()
            deadline = last_ack + TIMEOUT
            while not shows_database(bot) and time.monotonic() < deadline:
                time.sleep(0.01)
            converged = time.monotonic() - last_ack
            with bot.app.sessions() as session:
                changes = session.scalar(
                    select(func.count())
                    .select_from(Event)
                    .where(Event.kind.in_(("item.done", "item.override", "item.reopened")))
                )
            return {
                "lost": len(clicks) - (changes or 0),
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
    print(f"{'database':<11} {'burst':<30} {'lost ticks':>10} {'chat.update':>12} {'converged after last ack':>26}")
    for name in ("sqlite", "postgresql") if args.postgres else ("sqlite",):
        for label, spread, sustained in (
            ("30 at once", 0.0, 0),
            ("30 over 1 s", 1.0, 0),
            ("30 in 1 s, then 50/s for 10 s", 1.0, 500),
        ):
            with database(name) as url:
                r = measure(url, args.interval, spread, sustained)
            print(f"{name:<11} {label:<30} {r['lost']:>10.0f} {r['updates']:>12.0f} {r['converged_s']:>24.2f} s")


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

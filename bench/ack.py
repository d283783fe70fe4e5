"""Acknowledgement latency of signed clicks through the real HTTP endpoint, next to a bare Bolt app; memory.

Usage: python -m bench.ack [--postgres]
Each server runs as its own process on loopback; one client process sends clicks at a fixed rate. Beside
the bare Bolt app (the framework's floor) runs its twin that commits one row per click before the ack
(the floor of any bot whose acknowledged click is durable, on the same database).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from bench.burst import database
from tests.conftest import ROOT, SIGNING_SECRET
from tests.fake_slack import FakeSlack
from tests.slack_requests import SlackUser
from tests.test_process import free_port

RATES = ((1, 15), (10, 100), (50, 500))  # clicks per second, clicks sent


@contextmanager
def server(module: list[str], database_url: str, fake: FakeSlack, **extra: str) -> Iterator[tuple[str, int]]:
    """Start a server process on a free loopback port; yield (base URL, pid)."""
    port = free_port()
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": fake.token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake.url,
        "DATABASE_URL": database_url,
        "DEPLOYBOT_CHECKLISTS": str(ROOT / "checklists"),
        "DEPLOYBOT_CONFIG": str(ROOT / "tests" / "fixtures" / "empty-deploybot.yml"),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        **extra,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", *module], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.post(url + "/slack/events", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        yield url, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def clicks_for(run_id: int, item_ids: list[str], count: int, offset: int = 0) -> list[tuple[str, dict[str, object]]]:
    """Done, then reopen, item after item: every click changes something and the run never completes."""
    out = []
    for k in range(offset, offset + count):
        item = item_ids[k % len(item_ids)]
        action = "item.done" if (k // len(item_ids)) % 2 == 0 else "item.reopen"
        out.append((action, {"run": run_id, "item": item}))
    return out


def fire(user: SlackUser, clicks: list[tuple[str, dict[str, object]]], rate: float) -> list[float]:
    """Send clicks at a fixed rate (open loop); return each acknowledgement's latency in ms."""
    start = time.perf_counter() + 0.1

    def one(n: int) -> float:
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        action_id, value = clicks[n]
        sent = time.perf_counter()
        response = user.click(action_id, value, user=f"U{n % 30:04d}", channel="CBENCH", message_ts="1.1")
        assert response.status_code == 200, response.text
        return (time.perf_counter() - sent) * 1000

    with ThreadPoolExecutor(64) as pool:
        return list(pool.map(one, range(len(clicks))))


def stats(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def item_ids() -> list[str]:
    from bot.checklists import load_template

    return [i.id for i in load_template(ROOT / "checklists" / "production-deploy.yml").items][:80]


def measure(database: str, database_url: str) -> list[str]:
    rows = []
    fake = FakeSlack().start()
    items = item_ids()
    with ExitStack() as stack:
        bot_url, bot_pid = stack.enter_context(server(["bot", "run"], database_url, fake))
        floor_url, _ = stack.enter_context(server(["bench.floor_app"], database_url, fake))
        durable_url, _ = stack.enter_context(
            server(["bench.floor_app"], database_url, fake, FLOOR_DATABASE_URL=database_url)
        )
        bot, floor = SlackUser(bot_url, SIGNING_SECRET), SlackUser(floor_url, SIGNING_SECRET)
        durable = SlackUser(durable_url, SIGNING_SECRET)
        assert bot.command("start v1.0.0 production", channel="CBENCH").status_code == 200
        run_id = 1
        sent = 0
        fire(bot, clicks_for(run_id, items, 40), 40)  # warm-up: connections, imports, caches
        sent += 40
        fire(floor, clicks_for(run_id, items, 40), 40)
        fire(durable, clicks_for(run_id, items, 40), 40)
        for rate, count in RATES:
            ours = fire(bot, clicks_for(run_id, items, count, sent), rate)
            sent += count
            base = fire(floor, clicks_for(run_id, items, count), rate)
            written = fire(durable, clicks_for(run_id, items, count), rate)
            (m, p99), (fm, fp99), (dm, dp99) = stats(ours), stats(base), stats(written)
            rows.append(
                f"| {database} | {rate}/s | {count} | {m:.1f} | {p99:.1f} | {fm:.1f} | {fp99:.1f} | {m / fm:.2f} "
                f"| {dm:.1f} | {dp99:.1f} | {m / dm:.2f} |"
            )
        # Memory: RSS after 1k and after 10k further clicks, sent as fast as 64 clients manage.
        fire(bot, clicks_for(run_id, items, 1_000, sent), 1_000)
        after_1k = rss_mb(bot_pid)
        fire(bot, clicks_for(run_id, items, 9_000, sent + 1_000), 1_000)
        after_10k = rss_mb(bot_pid)
        rows.append(
            f"MEMORY {database}: deploybot RSS {after_1k:.1f} MB after 1k clicks, {after_10k:.1f} MB after "
            f"10k (growth {after_10k - after_1k:+.1f} MB; target < 5 MB)"
        )
    fake.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    print(
        "| database | rate | clicks | deploybot median ms | deploybot p99 ms | bare Bolt median ms | "
        "bare Bolt p99 ms | median ratio | bare Bolt + 1 durable write median ms | its p99 ms | median ratio to it |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    memory = []
    for name in ("sqlite", "postgresql") if args.postgres else ("sqlite",):
        with database(name) as url:
            for row in measure(name, url):
                if row.startswith("MEMORY "):
                    memory.append(row.removeprefix("MEMORY "))
                else:
                    print(row, flush=True)
    print()
    for line in memory:
        print(f"- {line}")


if __name__ == "__main__":
    main()

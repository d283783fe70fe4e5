"""Pipeline gates: how soon a waiting gate returns after the last required tick (made through another
replica), and what 200 waiting gates cost a replica in CPU and database connections.

Usage: python -m bench.gates [--postgres] [--rounds N] [--gates N]
Prints one line per database and measure. Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import threading
import time
from typing import Any

import httpx

from bench.burst import database
from bot import items, runs
from bot.services import utcnow
from tests.conftest import launched, wait_for
from tests.fake_slack import FakeSlack
from tests.pipeline_client import CHANNEL, Pipeline, make_token
from tests.test_pipeline_gates import open_required, tick_all_but_last
from tests.test_slack_flow import click_item, current

WAIT = 30


def _gate(ci: Pipeline, run_id: int, rev: int, answered: list[float]) -> None:
    ci.gate(run_id, phase="pre-deployment", after=rev, wait=WAIT)
    answered.append(time.monotonic())


def gate_latency(url: str, rounds: int) -> list[float]:
    """Seconds from the acknowledged Slack tick on replica B to the gate's answer on replica A, per round."""
    fake = FakeSlack().start()
    found: list[float] = []
    try:
        with launched(url, fake) as a, launched(url, fake) as b:
            ci = Pipeline(a.url, make_token(a.app.sessions))
            for n in range(rounds):
                run = ci.start(key=f"bench-{n}").json()["run"]
                last = tick_all_but_last(a, run["id"])
                b.settled()
                rev = ci.gate(run["id"], phase="pre-deployment").json()["run"]["rev"]
                answered: list[float] = []
                poll = threading.Thread(target=_gate, args=(ci, run["id"], rev, answered))
                poll.start()
                wait_for(lambda: a.app.api is not None and a.app.api.gates.waiting == 1, what="the gate to wait")
                parent = max(
                    (ts for (ch, ts), m in fake.messages.items() if ch == CHANNEL and not m["thread_ts"]), key=float
                )
                assert click_item(b, current(b, parent), last, user="U0BENCH").status_code == 200
                acked = time.monotonic()
                poll.join(WAIT + 5)
                found.append(answered[0] - acked)
                with a.app.sessions.begin() as session:
                    run_row = runs.get_run(session, run["id"])
                    if run_row.is_active:
                        runs.abort(session, run_row.id, "next round", runs.Actor("U1", utcnow()))
            ci.close()
    finally:
        fake.stop()
    return found


def many_waiting(url: str, gates: int) -> dict[str, Any]:
    """CPU and connections of one replica while `gates` gates wait; how long until all answer after a tick."""
    fake = FakeSlack().start()
    try:
        with launched(url, fake, DEPLOYBOT_GATE_WAITERS=str(gates), DEPLOYBOT_API_PER_MINUTE="100000") as bot:
            token = make_token(bot.app.sessions)
            ci = Pipeline(bot.url, token)
            run = ci.start(key="bench-many").json()["run"]
            rev = ci.gate(run["id"]).json()["run"]["rev"]
            answered: list[float] = []
            lock = threading.Lock()

            def poll() -> None:
                with httpx.Client(base_url=bot.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
                    http.get(f"/api/v1/runs/{run['id']}/gate", params={"after": rev, "wait": WAIT})
                with lock:
                    answered.append(time.monotonic())

            threads = [threading.Thread(target=poll, daemon=True) for _ in range(gates)]
            for thread in threads:
                thread.start()
            wait_for(lambda: bot.app.api is not None and bot.app.api.gates.waiting == gates, 60, "every gate to wait")
            pool: Any = bot.app.engine.pool
            checked_out = []
            cpu_before, wall_before = time.process_time(), time.monotonic()
            while time.monotonic() - wall_before < 5:
                checked_out.append(pool.checkedout())
                time.sleep(0.05)
            # The bench's own client threads sit in blocking reads meanwhile: the CPU is the replica's.
            cpu = (time.process_time() - cpu_before) / (time.monotonic() - wall_before)
            with bot.app.sessions.begin() as session:
                first = open_required(bot, run["id"])[0]
                items.mark_done(session, run["id"], first, runs.Actor("U0BENCH", utcnow()))
            ticked = time.monotonic()
            for thread in threads:
                thread.join(WAIT + 10)
            ci.close()
            return {
                "cpu": cpu,
                "connections_max": max(checked_out),
                "connections_mean": statistics.mean(checked_out),
                "all_answered_s": max(answered) - ticked,
            }
    finally:
        fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL (DEPLOYBOT_TEST_POSTGRES_URL)")
    parser.add_argument("--rounds", type=int, default=5, help="gate openings timed per database (default 5)")
    parser.add_argument("--gates", type=int, default=200, help="gates waiting at once (default 200)")
    args = parser.parse_args()
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}; goal: a gate returns < 1 s")
    for name in ("sqlite", "postgresql") if args.postgres else ("sqlite",):
        with database(name) as url:
            found = gate_latency(url, args.rounds)
        print(
            f"{name:<11} gate answer after the last tick (via the other replica), {len(found)} rounds: "
            f"median {statistics.median(found):.3f} s, max {max(found):.3f} s"
        )
        with database(name) as url:
            cost = many_waiting(url, args.gates)
        print(
            f"{name:<11} {args.gates} gates waiting on one replica: CPU {cost['cpu'] * 100:.1f}% of a core, "
            f"pooled connections checked out max {cost['connections_max']} (mean {cost['connections_mean']:.2f}); "
            f"all answered {cost['all_answered_s']:.3f} s after a tick"
        )


if __name__ == "__main__":
    main()

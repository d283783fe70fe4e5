"""Pipeline gates through the real `deploybot ci` client: how soon a waiting gate returns after the last
required tick (two `deploybot run` replicas on PostgreSQL, the tick through the other one), and what 200
waiting pipelines cost a replica in CPU, requests and connections, and Slack's acknowledgements meanwhile.

Usage: python -m bench.ci_gates [--trials N] [--gates N] [--seconds S]
Needs the PostgreSQL of the tests (DEPLOYBOT_TEST_POSTGRES_URL). Loopback only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from bot import tokens
from bot.ci.client import Api
from bot.ci.gate import wait_at_gate
from bot.db import make_sessions
from bot.models import Message
from bot.services import utcnow
from tests.conftest import SIGNING_SECRET, launched, postgres_schema_url
from tests.fake_slack import FakeSlack
from tests.slack_requests import SlackUser
from tests.test_process import bot_env, deploybot, free_port
from tests.test_scale_out import messages_of, tick

PHASE = "pre-deployment"
APPLICATION = "deploybot-bench-gates"


def token_for(database_url: str, channel: str) -> str:
    engine = create_engine(database_url)
    try:
        with make_sessions(engine).begin() as session:
            return tokens.create(session, f"bench {channel}", channel, None, utcnow())
    finally:
        engine.dispose()


def start_run(url: str, token: str, key: str) -> tuple[Api, dict[str, Any]]:
    api = Api(url, token)
    _, body = api.call(
        "POST",
        "runs",
        body={"version": "v9.0.0", "environment": "production", "key": key},
        deadline=time.monotonic() + 60,
    )
    return api, body["run"]


def posted(database_url: str, run_id: int) -> bool:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            shown = conn.scalars(select(Message.ts).where(Message.run_id == run_id)).all()
    finally:
        engine.dispose()
    return bool(shown) and all(shown)


def until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(0.02)


def latency(trials: int) -> list[float]:
    """Seconds from the last required tick's acknowledgement (replica B) to the gate's return (replica A)."""
    found: list[float] = []
    fake = FakeSlack().start()
    schemas = postgres_schema_url()
    database_url = next(schemas)
    try:
        with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
            ports = [free_port(), free_port()]
            for port in ports:
                stack.enter_context(deploybot(bot_env(database_url, fake, port), Path(folder)))
            first, second = (f"http://127.0.0.1:{port}" for port in ports)
            person = SlackUser(second, SIGNING_SECRET)
            for n in range(trials):
                channel = f"C7{n:03d}"
                api, run = start_run(first, token_for(database_url, channel), f"bench-{n}")
                _, body = api.call(
                    "GET", f"runs/{run['id']}/gate", params={"phase": PHASE}, deadline=time.monotonic() + 60
                )
                waiting = [item["id"] for item in body["gate"]["waiting_for"]]
                for item in waiting[:-1]:
                    api.call(
                        "POST",
                        f"runs/{run['id']}/items/{item}",
                        body={"status": "done"},
                        deadline=time.monotonic() + 120,
                    )
                until(lambda run_id=run["id"]: posted(database_url, run_id), 30, "the run's messages")
                messages = messages_of(fake, channel)
                out = io.StringIO()
                returned: list[float] = []

                def gate(
                    api: Api = api, run_id: int = run["id"], out: io.StringIO = out, returned: list[float] = returned
                ) -> None:
                    wait_at_gate(api, run_id, PHASE, 60, out, time.monotonic, time.sleep)
                    returned.append(time.monotonic())

                waiter = threading.Thread(target=gate)
                waiter.start()
                until(lambda out=out: "waiting for" in out.getvalue(), 30, "the gate to wait")
                time.sleep(0.5)  # the gate's long poll is parked on replica A by now
                assert tick(person, run["id"], messages, waiting[-1], "U0BENCH01") == 200
                acked = time.monotonic()
                waiter.join(60)
                if not returned or "gate open" not in out.getvalue():
                    raise SystemExit(f"trial {n}: the gate did not open:\n{out.getvalue()}")
                found.append(returned[0] - acked)
                api.close()
            person.http.close()
    finally:
        fake.stop()
        for _ in schemas:  # drops the schema
            pass
    return found


def clients(spec: dict[str, Any]) -> None:
    """(In a process of its own.) `gates` pipelines wait at their gates; print what they sent, every second."""
    sent: Counter[str] = Counter()
    lock = threading.Lock()

    class Counting(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = super().handle_request(request)
            with lock:
                sent[str(response.status_code)] += 1
            return response

    def one(n: int) -> None:
        token, run_id = spec["runs"][n % len(spec["runs"])]
        api = Api(spec["url"], token, transport=Counting())
        try:
            wait_at_gate(api, run_id, PHASE, 3600, io.StringIO(), time.monotonic, time.sleep)
        except Exception:  # counted, not fatal: the figures say how many gates gave up
            with lock:
                sent["gave up"] += 1
        finally:
            api.close()

    for n in range(spec["gates"]):
        threading.Thread(target=one, args=(n,), daemon=True).start()
    print("started", flush=True)
    while True:  # until the bench kills this process
        time.sleep(1)
        with lock:
            print(json.dumps(sent), flush=True)


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def connections(admin: Any) -> Counter[str]:
    with admin.connect() as conn:
        rows = conn.execute(
            text("SELECT state FROM pg_stat_activity WHERE application_name = :name"), {"name": APPLICATION}
        ).scalars()
        return Counter(str(state) for state in rows)


def cost(gates: int, seconds: float, slots: str | None) -> dict[str, Any]:
    """One replica in this process; `gates` pipelines waiting at gates on it, from another process."""
    fake = FakeSlack().start()
    schemas = postgres_schema_url()
    base = next(schemas)
    database_url = make_url(base).update_query_dict({"application_name": APPLICATION}).render_as_string(False)
    admin = create_engine(base)
    extra = {"DEPLOYBOT_GATE_WAITERS": slots} if slots else {}
    process: subprocess.Popen[str] | None = None
    try:
        with launched(database_url, fake, **extra) as bot:
            runs = []
            for n in range(max(1, gates // 10)):  # ten gates per token: each within its rate limit
                token = token_for(base, f"C8{n:03d}")
                api, run = start_run(bot.url, token, f"cost-{n}")
                api.close()
                runs.append([token, run["id"]])
            watcher = bot.app.api.gates if bot.app.api else None
            assert watcher is not None
            time.sleep(2)  # settle: the start-up work and the runs' first renders
            idle_cpu, idle_at = cpu_seconds(), time.monotonic()
            time.sleep(5)
            idle = (cpu_seconds() - idle_cpu) / (time.monotonic() - idle_at)
            idle_pool, idle_pg = bot.app.engine.pool.checkedout(), connections(admin)
            slack = SlackUser(bot.url, SIGNING_SECRET, httpx.Client(timeout=5), response_urls=fake.response_url)
            idle_acks = []
            for _ in range(3):
                sent_at = time.monotonic()
                assert slack.command("help", channel="C0BENCH01").status_code == 200
                idle_acks.append(time.monotonic() - sent_at)
            process = subprocess.Popen(
                [sys.executable, "-m", "bench.ci_gates", "--clients"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(json.dumps({"url": bot.url, "gates": gates, "runs": runs}))
            process.stdin.close()
            process.stdout.readline()  # "started": every pipeline is on its way to its gate
            counts: list[dict[str, int]] = [{}]
            stdout = process.stdout
            threading.Thread(target=lambda: counts.extend(json.loads(line) for line in stdout), daemon=True).start()
            # Arrival: until every gate the replica has room for is parked, or their number stops growing.
            room = min(gates, int(slots or 16))
            arrive_cpu, arrive_at = cpu_seconds(), time.monotonic()
            most, grown_at = 0, time.monotonic()
            while watcher.waiting < room and time.monotonic() - grown_at < 10 and time.monotonic() - arrive_at < 180:
                if watcher.waiting > most:
                    most, grown_at = watcher.waiting, time.monotonic()
                time.sleep(0.05)
            arrival = time.monotonic() - arrive_at
            arrival_cpu = (cpu_seconds() - arrive_cpu) / arrival
            # Steady: every gate waiting (parked, or answered at once and polling again); a person's
            # slash command every 2 s says whether Slack's requests still get through.
            before = dict(counts[-1])
            start_cpu, start_at = cpu_seconds(), time.monotonic()
            pool, pg, parked, acks = [], Counter[str](), [], []
            while time.monotonic() - start_at < seconds:
                pool.append(bot.app.engine.pool.checkedout())
                parked.append(watcher.waiting)
                if len(pool) % 10 == 1:
                    pg |= connections(admin)  # the most seen in each state
                if len(pool) % 40 == 1:
                    sent_at = time.monotonic()
                    try:
                        ok = slack.command("help", channel="C0BENCH01").status_code == 200
                    except httpx.TransportError:
                        ok = False
                    acks.append(time.monotonic() - sent_at if ok else float("inf"))
                time.sleep(0.05)
            slack.http.close()
            steady = time.monotonic() - start_at
            busy = (cpu_seconds() - start_cpu) / steady
            after = dict(counts[-1])
    finally:
        if process is not None:
            process.kill()
            process.wait(10)
        admin.dispose()
        fake.stop()
        for _ in schemas:
            pass
    requests = {k: (after.get(k, 0) - before.get(k, 0)) / steady for k in after}
    return {
        "slots": slots or "16 (default)",
        "threads": bot.app.settings.server_threads,
        "idle_cpu": idle,
        "arrival": arrival,
        "arrival_cpu": arrival_cpu,
        "steady": steady,
        "busy_cpu": busy,
        "parked_min": min(parked),
        "parked_max": max(parked),
        "acks": acks,
        "idle_acks": idle_acks,
        "idle_pool": idle_pool,
        "pool_max": max(pool),
        "pool_mean": statistics.fmean(pool),
        "idle_pg": dict(idle_pg),
        "pg": dict(pg),
        "requests": {k: round(v, 1) for k, v in requests.items() if v},
    }


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--gates", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to measure the waiting gates")
    parser.add_argument("--postgres", action="store_true", help="accepted for `python -m bench`; always PostgreSQL")
    parser.add_argument("--clients", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clients:
        clients(json.loads(sys.stdin.read()))
        return
    import logging

    logging.disable(logging.WARNING)
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, 1-minute load {load:.1f} at the start")
    found = latency(args.trials)
    print(
        f"gate return after the last required tick (ack on replica B -> gate answered on replica A), "
        f"{len(found)} trials: median {statistics.median(found) * 1000:.0f} ms, "
        f"p95 {percentile(found, 0.95) * 1000:.0f} ms, "
        f"max {max(found) * 1000:.0f} ms (goal < 1000 ms)"
    )
    for slots in (str(args.gates), None):
        r = cost(args.gates, args.seconds, slots)
        print(
            f"{args.gates} gates on one replica, DEPLOYBOT_GATE_WAITERS={r['slots']} ({r['threads']} server threads): "
            f"arriving took {r['arrival']:.1f} s at {r['arrival_cpu'] * 100:.0f}% of a core; "
            f"then for {r['steady']:.0f} s "
            f"({r['parked_min']}-{r['parked_max']} parked): CPU {r['busy_cpu'] * 100:.1f}% of a core (idle replica "
            f"{r['idle_cpu'] * 100:.1f}%), requests/s by status {r['requests']}"
        )
        acks = sorted(r["acks"])
        print(
            f"  a slash command meanwhile, every 2 s: acknowledged in median {statistics.median(acks) * 1000:.0f} ms, "
            f"max {acks[-1] * 1000:.0f} ms ({sum(a == float('inf') for a in acks)} of {len(acks)} not answered in 5 s; "
            f"before the gates: median {statistics.median(r['idle_acks']) * 1000:.0f} ms)"
        )
        print(
            f"  pooled connections checked out while they wait: max {r['pool_max']}, mean {r['pool_mean']:.2f} "
            f"(idle replica {r['idle_pool']}); the replica's PostgreSQL connections, most seen by state: {r['pg']} "
            f"(idle replica {r['idle_pg']})"
        )
    print(f"1-minute load at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

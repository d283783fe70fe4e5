"""Three `deploybot run` processes behind a (random) load balancer, sharing the real PostgreSQL and nothing else."""

from __future__ import annotations

import random
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, select

from bot.models import Event, ItemState, Message, Page, PageDelivery, ReminderSlot, Run
from bot.slack import ids
from tests.conftest import ROOT, SIGNING_SECRET, postgres_schema_url, wait_for
from tests.fake_slack import FakeSlack
from tests.slack_requests import SlackUser
from tests.test_process import bot_env, deploybot, free_port
from tests.test_slack_flow import CHANNEL, item_block

REPLICAS = 3
USERS = [f"U{900 + n}" for n in range(30)]
CLICKS = 300
MAINTENANCE = "CMAINT0001"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from postgres_schema_url()


def folders(tmp_path: Path) -> dict[str, str]:
    checklists = tmp_path / "checklists"
    shutil.copytree(ROOT / "checklists", checklists)
    maintenance = yaml.safe_load((checklists / "maintenance.yml").read_text())
    maintenance["phases"][0]["schedule"]["cron"] = "* * * * *"  # a slot every minute: all replicas race for it
    (checklists / "maintenance.yml").write_text(yaml.safe_dump(maintenance))
    config = tmp_path / "deploybot.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "timezone": "UTC",
                "maintenance_channel": MAINTENANCE,
                "contacts": {"oncall": {"users": ["U0ONCALL"], "ack_timeout": "1h"}},
            }
        )
    )
    return {"DEPLOYBOT_CHECKLISTS": str(checklists), "DEPLOYBOT_CONFIG": str(config)}


def test_three_replicas_lose_nothing_and_do_everything_once(
    tmp_path: Path, fake_slack: FakeSlack, postgres_url: str
) -> None:
    extra = folders(tmp_path)
    with ExitStack() as stack:
        ports = [free_port() for _ in range(REPLICAS)]
        for port in ports:
            stack.enter_context(deploybot(bot_env(postgres_url, fake_slack, port, **extra), tmp_path))
        users = [SlackUser(f"http://127.0.0.1:{port}", SIGNING_SECRET) for port in ports]
        balancer = random.Random(7)

        assert users[0].command("start v5.0.0 production", channel=CHANNEL).status_code == 200
        engine = create_engine(postgres_url)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                run_id = conn.scalar(select(Run.id).where(Run.kind == "deploy"))
                parts = conn.scalars(select(Message.ts).where(Message.run_id == run_id)).all()
            if parts and all(parts):
                break
            time.sleep(0.05)
        messages = sorted(
            (m for (ch, _), m in fake_slack.messages.items() if ch == CHANNEL), key=lambda m: float(m["ts"])
        )
        with engine.connect() as conn:
            item_ids = list(
                conn.scalars(select(ItemState.item_id).where(ItemState.run_id == run_id).order_by(ItemState.position))
            )[:60]

        def click(n: int) -> int:
            item_id, user = balancer.choice(item_ids), balancer.choice(USERS)
            message, _ = item_block(messages, item_id)
            client = balancer.choice(users)
            return client.click(
                ids.ITEM_DONE,
                {"run": run_id, "item": item_id},
                user=user,
                channel=CHANNEL,
                message_ts=message["ts"],
                thread_ts=message["thread_ts"],
            ).status_code

        with ThreadPoolExecutor(30) as pool:
            statuses = list(pool.map(click, range(CLICKS)))
        assert statuses == [200] * CLICKS

        # Two pages from two replicas.
        assert users[1].command("page oncall disk full on db-1", channel=CHANNEL).status_code == 200
        assert users[2].command("page oncall replica lag 30s", channel=CHANNEL).status_code == 200

        # Every message converges to the database state.
        def converged() -> bool:
            shown = [m for (ch, _), m in fake_slack.messages.items() if ch == CHANNEL and m.get("thread_ts")]
            ticked = sum(
                1
                for m in shown
                for b in m["blocks"]
                if b.get("block_id", "").startswith("item.") and "<@U9" in b["text"]["text"]
            )
            # The parent renders on its own schedule: it may catch up after the thread's parts.
            parent = fake_slack.thread(CHANNEL, messages[0]["ts"])[0]
            progress = f"*{len(item_ids)} / 89* done" in str(parent["blocks"])
            return ticked == len(item_ids) and progress and len(fake_slack.posted_to("U0ONCALL")) == 2

        deadline = time.monotonic() + 60
        while not converged() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert converged(), "the messages never showed every tick, the progress and both pages"

        with engine.connect() as conn:
            states = conn.execute(
                select(ItemState.item_id, ItemState.status, ItemState.changed_by).where(ItemState.run_id == run_id)
            ).all()
            done = {s.item_id: s.changed_by for s in states if s.status == "done"}
            # A tick of an item a pipeline reports is recorded as an override of it.
            kinds = ("item.done", "item.override")
            ticks = Counter(conn.scalars(select(Event.item_id).where(Event.kind.in_(kinds))))
            run = conn.execute(select(Run.status, Run.rev).where(Run.id == run_id)).one()
            slots = conn.execute(select(ReminderSlot.cadence, ReminderSlot.local_time, ReminderSlot.status)).all()
            pages = conn.execute(select(Page.id, Page.text)).all()
            deliveries = Counter(conn.execute(select(PageDelivery.page_id, PageDelivery.target)).all())
        engine.dispose()

        # No lost ticks: every clicked item is done, by its first clicker, recorded once.
        assert set(done) == set(item_ids) and all(ticks[i] == 1 for i in item_ids)
        assert run.status == "active"
        assert fake_slack.overlaps == []  # no two replicas ever updated one message at once

        # Each reminder slot posted once, whichever replica won it.
        posted_slots = [(c, t) for c, t, status in slots if status == "posted"]
        assert posted_slots and len(posted_slots) == len(set(posted_slots))
        maintenance_parents = [
            m for (ch, _), m in fake_slack.messages.items() if ch == MAINTENANCE and not m["thread_ts"]
        ]
        assert len(maintenance_parents) == len(posted_slots)

        # No duplicate pages: two pages, each DM'd once.
        assert sorted(text for _, text in pages) == ["disk full on db-1", "replica lag 30s"]
        assert all(n == 1 for n in deliveries.values())
        for user in users:
            user.http.close()


# --- pacing and recovery across replicas -----------------------------------------------------------

RENDER_INTERVAL = 0.3
TIER_3 = 50  # chat.update calls per minute Slack allows a workspace
CHANNELS = [CHANNEL, "C101", "C102"]


def posted_run(user: SlackUser, postgres_url: str, version: str, channel: str = CHANNEL) -> int:
    """Start a run through `user`; its id, once all its messages are posted."""
    assert user.command(f"start {version} production", channel=channel).status_code == 200
    engine = create_engine(postgres_url)

    def posted() -> int | None:
        with engine.connect() as conn:
            run_id = conn.scalar(select(Run.id).where(Run.version == version))
            shown = conn.scalars(select(Message.ts).where(Message.run_id == run_id)).all()
        return run_id if shown and all(shown) else None

    run_id: int = wait_for(posted, timeout=30, what="the run's messages to be posted")
    engine.dispose()
    return run_id


def messages_of(fake: FakeSlack, channel: str = CHANNEL) -> list[dict]:
    [parent] = fake.top_level(channel)
    return fake.thread(channel, parent["ts"])


def tick(user: SlackUser, run_id: int, messages: list[dict], item_id: str, who: str) -> int:
    message, _ = item_block(messages, item_id)
    return user.click(
        ids.ITEM_DONE,
        {"run": run_id, "item": item_id},
        user=who,
        channel=message["channel"],
        message_ts=message["ts"],
        thread_ts=message["thread_ts"],
    ).status_code


def item_ids(messages: list[dict]) -> list[str]:
    return [
        b["block_id"].removeprefix("item.")
        for m in messages[1:]
        for b in m["blocks"]
        if b.get("block_id", "").startswith("item.")
    ]


def test_updates_from_three_replicas_stay_within_slacks_rate_limit_and_the_render_interval(
    tmp_path: Path, fake_slack: FakeSlack, postgres_url: str
) -> None:
    with ExitStack() as stack:
        ports = [free_port() for _ in range(REPLICAS)]
        for port in ports:
            env = bot_env(postgres_url, fake_slack, port, DEPLOYBOT_RENDER_INTERVAL=str(RENDER_INTERVAL))
            stack.enter_context(deploybot(env, tmp_path))
        users = [SlackUser(f"http://127.0.0.1:{port}", SIGNING_SECRET) for port in ports]
        # Three runs in three channels: twelve messages that every click keeps behind.
        runs = {channel: posted_run(users[0], postgres_url, f"v6.0.{n}", channel) for n, channel in enumerate(CHANNELS)}
        messages = {channel: messages_of(fake_slack, channel) for channel in CHANNELS}
        items = item_ids(messages[CHANNEL])[:30]
        balancer = random.Random(11)

        # 300 clicks at about 10 a second, each to a replica at random.
        with ThreadPoolExecutor(10) as pool:
            pending = []
            for n in range(CLICKS):
                channel, item = CHANNELS[n % 3], items[(n // 3) % len(items)]
                user = balancer.choice(users)
                pending.append(pool.submit(tick, user, runs[channel], messages[channel], item, USERS[n % 30]))
                time.sleep(0.1)
            assert [p.result() for p in pending] == [200] * CLICKS

        # The last state is shown in the end: every item ticked, the progress counted.
        def shown(channel: str) -> bool:
            now = messages_of(fake_slack, channel)
            ticked = sum("<@U9" in b["text"]["text"] for m in now[1:] for b in m["blocks"] if "accessory" in b)
            return ticked == len(items) and f"*{len(items)} / 89* done" in str(now[0]["blocks"])

        wait_for(lambda: all(shown(c) for c in CHANNELS), timeout=90, what="every tick and progress to be shown")
        for user in users:
            user.http.close()

    updates = fake_slack.calls_of("chat.update")
    times = sorted(c.at for c in updates)
    busiest = max(sum(1 for t in times if start <= t < start + 60) for start in times)
    assert busiest <= TIER_3, f"{busiest} chat.update calls in one minute"
    by_message: dict[str, list[float]] = {}
    for call in updates:
        by_message.setdefault(call.args["ts"], []).append(call.at)
    gaps = [b - a for at in by_message.values() for a, b in zip(sorted(at), sorted(at)[1:], strict=False)]
    assert min(gaps) >= RENDER_INTERVAL, f"two updates of one message {min(gaps) * 1000:.0f} ms apart"


def test_kill_9_of_the_replica_rendering_a_message_frees_it_within_seconds(
    tmp_path: Path, fake_slack: FakeSlack, postgres_url: str
) -> None:
    first_port, second_port = free_port(), free_port()
    with ExitStack() as stack:
        first = stack.enter_context(deploybot(bot_env(postgres_url, fake_slack, first_port), tmp_path))
        one = SlackUser(f"http://127.0.0.1:{first_port}", SIGNING_SECRET)
        run_id = posted_run(one, postgres_url, "v6.1.0")
        messages = messages_of(fake_slack)
        first_item, second_item = item_ids(messages)[:2]
        # The first replica's update of the parent (its progress) hangs in Slack while it holds the lease.
        parent_ts = messages[0]["ts"]
        fake_slack.hold("chat.update", 120, ts=parent_ts)
        assert tick(one, run_id, messages, first_item, "U901") == 200
        wait_for(
            lambda: [c for c in fake_slack.calls_of("chat.update") if c.args["ts"] == parent_ts],
            what="the first replica to start updating the parent",
        )
        stack.enter_context(deploybot(bot_env(postgres_url, fake_slack, second_port), tmp_path))
        first.kill()  # kill -9 mid-render
        first.wait(10)
        other = SlackUser(f"http://127.0.0.1:{second_port}", SIGNING_SECRET)
        assert tick(other, run_id, messages, second_item, "U902") == 200
        # Within seconds (a dead holder's lease used to keep the message frozen for a minute).
        wait_for(
            lambda: "*2 / 89* done" in str(messages_of(fake_slack)[0]["blocks"]),
            timeout=10,
            what="the other replica to update the message the dead one was rendering",
        )
        one.http.close()
        other.http.close()

"""Posting once: a post whose outcome is unknown (a timeout, a crash mid-call) is looked up, not posted twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from slack_sdk import WebClient
from sqlalchemy import create_engine, select

from bot import db
from bot.models import Message, PageDelivery
from bot.services import utcnow
from bot.slack.posting import PAGE_SIZE, Poster, metadata
from tests.conftest import SIGNING_SECRET, Running, postgres_schema_url, wait_for
from tests.fake_slack import FakeSlack
from tests.slack_requests import SlackUser
from tests.test_process import bot_env, deploybot, free_port

CHANNEL = "C100"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from postgres_schema_url()


def test_kill_9_after_slack_stored_the_post_then_restart_posts_it_once(
    tmp_path: Path, fake_slack: FakeSlack, postgres_url: str
) -> None:
    # Slack stores the run's parent message, and the answer never reaches the first process.
    fake_slack.hold("chat.postMessage", 120, channel=CHANNEL)
    port = free_port()
    with deploybot(bot_env(postgres_url, fake_slack, port), tmp_path) as first:
        user = SlackUser(f"http://127.0.0.1:{port}", SIGNING_SECRET)
        assert user.command("start v7.0.0 production", channel=CHANNEL).status_code == 200
        user.http.close()
        wait_for(lambda: fake_slack.top_level(CHANNEL), what="Slack to store the parent message")
        first.kill()  # kill -9 while it waits for Slack's answer
        first.wait(10)
    engine = create_engine(postgres_url)

    def all_posted() -> bool:
        with engine.connect() as conn:
            shown = conn.scalars(select(Message.ts)).all()
        return bool(shown) and all(shown)

    port = free_port()
    with deploybot(bot_env(postgres_url, fake_slack, port), tmp_path):
        wait_for(all_posted, timeout=40, what="the restarted process to finish posting the run")
        with engine.connect() as conn:
            parent_ts = conn.scalar(select(Message.ts).where(Message.part == 0))
    engine.dispose()
    [parent] = fake_slack.top_level(CHANNEL)
    assert parent["ts"] == parent_ts
    replies = fake_slack.thread(CHANNEL, parent_ts)[1:]
    assert len(replies) == 3 and all(reply["thread_ts"] == parent_ts for reply in replies)


def test_a_post_is_found_again_past_the_first_page_of_history_and_in_threads(fake_slack: FakeSlack) -> None:
    client = WebClient(token=fake_slack.token, base_url=fake_slack.url)
    poster = Poster(db.make_sessions(db.make_engine("sqlite://")), client, utcnow)
    started = utcnow()
    wanted = client.chat_postMessage(channel="C9", text="wanted", metadata=metadata("message:7"))["ts"]
    for n in range(PAGE_SIZE + 20):  # newer messages: the wanted one is on the second page
        client.chat_postMessage(channel="C9", text=f"noise {n}", metadata=metadata(f"outbox:{n}"))
    reply = client.chat_postMessage(channel="C9", thread_ts=wanted, text="in the thread", metadata=metadata("outbox:x"))
    assert poster.find("message:7", "C9", None, started) == (wanted, None)
    assert poster.find("outbox:x", "C9", wanted, started) == (reply["ts"], None)
    assert poster.find("outbox:x", "C9", None, started) == (None, None)  # replies are not in the channel's history
    assert poster.find("message:8", "C9", None, started) == (None, None)
    pages = [c for c in fake_slack.calls if c.method == "conversations.history"]
    assert len(pages) > 2 and pages[1].args["cursor"]


def test_without_the_history_scopes_a_post_is_retried_rather_than_stuck(running: Running) -> None:
    # An install that was not granted channels:history yet: Slack refuses the lookup for good.
    running.fake.fail("chat.postMessage", status=500, retry_after=None, error="internal_error", channel=CHANNEL)
    running.fake.fail("conversations.history", 20, status=200, retry_after=None, error="missing_scope")
    assert running.slack.command("start v7.1.0 production", channel=CHANNEL).status_code == 200
    running.settled(timeout=30)
    assert len(running.fake.top_level(CHANNEL)) == 1
    assert [c.method for c in running.fake.calls if c.method.startswith("conversations.")] == ["conversations.history"]


def test_kill_9_after_slack_stored_a_page_dm_then_restart_sends_it_once(
    tmp_path: Path, fake_slack: FakeSlack, postgres_url: str
) -> None:
    contacts = {"dba": {"name": "Database Admin", "users": ["U0DBA1"], "ack_timeout": "5m"}}
    config = tmp_path / "deploybot.yml"
    config.write_text(yaml.safe_dump({"contacts": contacts}))
    # Slack stores the DM, and the answer never reaches the first process.
    fake_slack.hold("chat.postMessage", 120, channel="U0DBA1")
    port = free_port()
    with deploybot(bot_env(postgres_url, fake_slack, port, DEPLOYBOT_CONFIG=str(config)), tmp_path) as first:
        user = SlackUser(f"http://127.0.0.1:{port}", SIGNING_SECRET)
        assert user.command("page dba disk full", channel=CHANNEL).status_code == 200
        user.http.close()
        wait_for(lambda: fake_slack.top_level(fake_slack.im("U0DBA1")), what="Slack to store the DM")
        first.kill()  # kill -9 while it waits for Slack's answer
        first.wait(10)
    engine = create_engine(postgres_url)

    def sent() -> tuple[str, str] | None:
        with engine.connect() as conn:
            row = conn.execute(select(PageDelivery.channel_id, PageDelivery.ts, PageDelivery.sent_at)).one()
        return (row[0], row[1]) if row[2] else None

    port = free_port()
    with deploybot(bot_env(postgres_url, fake_slack, port, DEPLOYBOT_CONFIG=str(config)), tmp_path):
        # The dead process renews its lease on the delivery no more: it is free again within seconds.
        shown = wait_for(sent, timeout=40, what="the restarted process to record the DM")
    engine.dispose()
    [dm] = fake_slack.top_level(fake_slack.im("U0DBA1"))
    assert shown == (fake_slack.im("U0DBA1"), dm["ts"])
    assert len(fake_slack.posted_to("U0DBA1")) == 1

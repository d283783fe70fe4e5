"""A replica started while Slack's Web API is down serves commands and clicks, and catches up when Slack is back."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, select

from bot.models import Page, PageDelivery
from bot.slack import ids
from tests.conftest import SIGNING_SECRET, launched, postgres_schema_url, wait_for
from tests.fake_slack import FakeSlack
from tests.pager_servers import receiver
from tests.slack_requests import SlackUser
from tests.test_process import bot_env, deploybot, free_port

CHANNEL = "C0STORAGE"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from postgres_schema_url()


def write_contacts(folder: Path, pagerduty: str) -> Path:
    path = folder / "deploybot.yml"
    contacts = {
        "storage": {
            "users": ["U0STOR1"],
            "ack_timeout": "4s",
            "next": "oncall",
            "pagerduty": {"routing_key_env": "PD_STORAGE_KEY", "url": pagerduty},
        },
        "oncall": {"users": ["U0ONCALL"], "ack_timeout": "1h"},
        "dba": {"users": ["U0DBA1"], "ack_timeout": "1h"},
    }
    path.write_text(yaml.safe_dump({"contacts": contacts}))
    return path


def test_a_replica_started_during_a_slack_outage_keeps_commands_and_clicks(
    tmp_path: Path, fake_slack: FakeSlack, postgres_url: str
) -> None:
    fake_slack.down_until = math.inf  # every Web API call, auth.test included, answers 503
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    engine = create_engine(postgres_url)
    with receiver() as pagerduty:
        env = bot_env(
            postgres_url,
            fake_slack,
            port,
            DEPLOYBOT_CONFIG=str(write_contacts(tmp_path, pagerduty.url)),
            PD_STORAGE_KEY="pd-storage-key-0123456789",
        )
        user = SlackUser(base, SIGNING_SECRET)
        with deploybot(env, tmp_path, until="/healthz") as process:
            # Ready to serve (requests need no Slack call), and saying what is wrong: a load balancer keeps
            # routing to a replica that started during an outage.
            ready = httpx.get(f"{base}/readyz")
            assert ready.status_code == 200 and ready.text.startswith("ready\n")
            assert "auth.test" in ready.text and "requests are served and kept meanwhile" in ready.text

            answer = user.command("page storage ceph osd flapping", user="U100", channel=CHANNEL)
            assert answer.status_code == 200 and "Page #1 sent to storage" in answer.json()["text"], answer.text
            with engine.connect() as conn:
                page_id = conn.scalar(select(Page.id).where(Page.text == "ceph osd flapping"))
            assert page_id is not None

            click = user.click(ids.PAGE_ACK, {"page": page_id}, user="U0STOR1", channel=CHANNEL)
            assert click.status_code == 200
            with engine.connect() as conn:
                status, acked_by, escalate_at, created_at = conn.execute(
                    select(Page.status, Page.acked_by, Page.escalate_at, Page.created_at).where(Page.id == page_id)
                ).one()
            assert (status, acked_by, escalate_at) == ("acknowledged", "U0STOR1", None)
            # PagerDuty is up: it hears of the page and of its acknowledgement while Slack is still down.
            wait_for(
                lambda: [r.json["event_action"] for r in pagerduty.accepted()] == ["trigger", "acknowledge"],
                30,
                "PagerDuty to hear of the page and its acknowledgement",
            )
            assert fake_slack.calls_of("chat.postMessage") == []

            fake_slack.down_until = 0.0  # Slack is back
            wait_for(
                lambda: "auth.test" not in (said := httpx.get(f"{base}/readyz").text) and said.startswith("ready\n"),
                60,
                "readiness to drop its notice once Slack answers",
            )
            wait_for(lambda: fake_slack.posted_to("U0STOR1"), 60, "the page's DM after the outage")

            # Once the storage team's acknowledgement timeout has passed, a second page's DM going out
            # shows the worker has looked for due escalations since: the first page did not escalate.
            deadline = created_at.replace(tzinfo=created_at.tzinfo or UTC) + timedelta(seconds=4)
            wait_for(lambda: datetime.now(UTC) > deadline, 10, "the acknowledgement timeout to pass")
            assert user.command("page dba replica lag", channel=CHANNEL).status_code == 200
            wait_for(lambda: fake_slack.posted_to("U0DBA1"), 30, "the second page's DM")
            assert fake_slack.posted_to("U0ONCALL") == []
            with engine.connect() as conn:
                level = conn.scalar(select(Page.level).where(Page.id == page_id))
                targets = conn.scalars(select(PageDelivery.target).where(PageDelivery.page_id == page_id)).all()
            assert level == 0 and not [t for t in targets if "U0ONCALL" in t]
            process.terminate()
            process.wait(15)
        user.http.close()
    engine.dispose()


def test_a_refused_bot_token_is_named_in_readyz_and_commands_are_still_answered(
    database_url: str, fake_slack: FakeSlack
) -> None:
    wrong = "xoxb-not-the-token-of-this-workspace-0000"
    with launched(database_url, fake_slack, SLACK_BOT_TOKEN=wrong) as bot:
        said = wait_for(
            lambda: (r := httpx.get(f"{bot.url}/readyz")).status_code == 503 and "invalid_auth" in r.text and r.text,
            what="readiness to name the refused token",
        )
        assert "Slack refused the bot token (invalid_auth): check SLACK_BOT_TOKEN" in said and wrong not in said
        answer = bot.slack.command("help", channel=CHANNEL)
        assert answer.status_code == 200 and "/deploy start" in answer.json()["text"]

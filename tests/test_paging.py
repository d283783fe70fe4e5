"""Paging: alerts, DMs, PagerDuty and webhooks; acknowledgement, escalation, restarts and replicas."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import func, select

from bot.contacts import Team, escalation_chain
from bot.models import Event, Page, PageDelivery
from bot.slack import ids
from tests.conftest import Running, ShiftedClock, launched
from tests.fake_slack import FakeSlack
from tests.pager_servers import Receiver, receiver
from tests.test_shell_export import shell

CHANNEL = "C100"
PD_KEY = "pd-routing-key-0123456789abcdef"
HOOK_SECRET = "webhook-secret-fedcba9876543210"


@dataclass
class Paging:
    bot: Running
    clock: ShiftedClock
    pagerduty: Receiver
    webhook: Receiver

    def page(self, text: str = "page dba migration stuck", user: str = "U100") -> dict[str, Any]:
        response = self.bot.slack.command(text, user=user, channel=CHANNEL)
        assert response.status_code == 200, response.text
        return response.json()

    def events(self, kind: str) -> list[Event]:
        with self.bot.app.sessions() as session:
            return list(session.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))

    def dms(self, user: str) -> list[dict[str, Any]]:
        return self.bot.fake.posted_to(user)

    def alert(self) -> dict[str, Any]:
        self.bot.settled()
        alerts = [
            m
            for (ch, _), m in self.bot.fake.messages.items()
            if ch == CHANNEL and "Page:" in m["text"] + str(m["blocks"])
        ]
        assert len(alerts) == 1, alerts
        return alerts[0]

    def click(self, action_id: str, page_id: int = 1, user: str = "U200", channel: str = CHANNEL) -> httpx.Response:
        return self.bot.slack.click(action_id, {"page": page_id}, user=user, channel=channel)

    def delivered(self, timeout: float = 15.0) -> None:
        """Wait until every queued notification was sent or given up."""

        def done() -> bool:
            self.bot.app.pager.wake()
            with self.bot.app.sessions() as session:
                waiting = session.scalar(
                    select(func.count())
                    .select_from(PageDelivery)
                    .where(PageDelivery.sent_at.is_(None), PageDelivery.failed_at.is_(None))
                )
            return waiting == 0

        self.bot.wait_for(done, timeout, what="every page notification to be delivered")

    def pass_time(self, **delta: float) -> None:
        self.clock.advance(**delta)
        self.bot.app.pager.wake()


def write_config(folder: Path, pagerduty: str, webhook: str, **extra: Any) -> Path:
    config = {
        "contacts": {
            "dba": {
                "name": "Database Admin",
                "users": ["U0DBA1", "U0DBA2"],
                "phone": "+1 555 0101",
                "email": "dba@example.com",
                "ack_timeout": "5m",
                "next": "oncall",
                "pagerduty": {"routing_key_env": "PD_DBA_KEY", "url": pagerduty},
                "webhook": {"url": f"{webhook}/hooks/deploybot", "secret_env": "DBA_HOOK_SECRET"},
            },
            "oncall": {"name": "On-Call Engineer", "users": ["U0ONCALL"], "ack_timeout": "10m", "next": "devops"},
            "devops": {"name": "DevOps Team", "usergroup": "S0DEVOPS", "ack_timeout": "5m"},
        },
        **extra,
    }
    path = folder / "deploybot.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@contextmanager
def paging_bot(
    database_url: str, fake: FakeSlack, folder: Path, clock: ShiftedClock | None = None, **extra: Any
) -> Iterator[Paging]:
    fake.usergroups.update({"S0DEVOPS": ["U0DEV1", "U0DEV2"], "S0LEADS": ["U300"]})
    clock = clock or ShiftedClock()
    with receiver() as pagerduty, receiver(default=200) as webhook:
        config = write_config(folder, pagerduty.url, webhook.url, **extra)
        env = {"DEPLOYBOT_CONFIG": str(config), "PD_DBA_KEY": PD_KEY, "DBA_HOOK_SECRET": HOOK_SECRET}
        with launched(database_url, fake, clock=clock, **env) as bot:
            yield Paging(bot, clock, pagerduty, webhook)


@pytest.fixture
def paged(database_url: str, fake_slack: FakeSlack, tmp_path: Path) -> Iterator[Paging]:
    with paging_bot(database_url, fake_slack, tmp_path) as paging:
        yield paging


def signature_ok(request: Any) -> bool:
    expected = hmac.new(
        HOOK_SECRET.encode(), request.headers["x-deploybot-timestamp"].encode() + b"." + request.body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(request.headers["x-deploybot-signature"], f"v1={expected}")


def buttons(message: dict[str, Any]) -> list[str]:
    return [e["action_id"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]


# --- contacts ----------------------------------------------------------------------------------------


def test_contacts_lists_teams_people_phones_and_escalation(paged: Paging) -> None:
    answer = paged.bot.slack.command("contacts").json()
    assert answer["response_type"] == "ephemeral"
    text = answer["text"]
    assert "*Database Admin* (`dba`): <@U0DBA1> <@U0DBA2> · PagerDuty + webhook" in text
    assert "acknowledge within 5m, then On-Call Engineer" in text
    assert "+1 555 0101" in text and "dba@example.com" in text
    assert "<!subteam^S0DEVOPS>" in text
    assert PD_KEY not in text and "PD_DBA_KEY" not in text


# --- one page, end to end ----------------------------------------------------------------------------


def test_a_page_reaches_the_channel_the_team_pagerduty_and_the_webhook_and_follows_acknowledgement(
    paged: Paging,
) -> None:
    answer = paged.page()
    assert "Page #1 sent to dba" in answer["text"]
    paged.delivered()

    alert = paged.alert()
    text = json.dumps(alert["blocks"], ensure_ascii=False)
    assert "Database Admin" in text and "migration stuck" in text and "Paged by <@U100>" in text
    assert "escalates to On-Call Engineer" in text and "+1 555 0101" in text
    assert buttons(alert) == [ids.PAGE_ACK, ids.PAGE_RESOLVE]

    for user in ("U0DBA1", "U0DBA2"):
        [dm] = paged.dms(user)
        assert "migration stuck" in json.dumps(dm["blocks"]) and buttons(dm) == [ids.PAGE_ACK, ids.PAGE_RESOLVE]
    assert paged.dms("U0ONCALL") == []  # not yet: that is the next level

    [trigger] = paged.pagerduty.received
    assert trigger.path == "/v2/enqueue"
    with paged.bot.app.sessions() as session:
        page = session.get(Page, 1)
        assert page is not None
        dedup_key = page.dedup_key
    assert trigger.json == {
        "routing_key": PD_KEY,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "client": "deploybot",
        "payload": {
            "summary": "Page for Database Admin: migration stuck",
            "source": "deploybot",
            "severity": "critical",
            "custom_details": {
                "id": 1,
                "dedup_key": dedup_key,
                "team": "dba",
                "paged_team": "dba",
                "text": "migration stuck",
                "paged_by": "U100",
                "channel": CHANNEL,
                "run": None,
                "status": "open",
                "created_at": trigger.json["payload"]["custom_details"]["created_at"],
            },
        },
    }
    [hook] = paged.webhook.received
    assert hook.path == "/hooks/deploybot" and signature_ok(hook)
    assert hook.json["event"] == "page.triggered" and hook.json["page"]["dedup_key"] == dedup_key
    assert hook.headers["idempotency-key"] == f"{dedup_key}:0:dba:trigger"

    # Acknowledge: escalation stops, the alert says who, the pagers follow.
    assert paged.click(ids.PAGE_ACK, user="U0DBA2").status_code == 200
    paged.delivered()
    assert "You acknowledged page #1" in paged.bot.told()[-1].args["text"]
    alert = paged.alert()
    assert "Acknowledged by <@U0DBA2>" in json.dumps(alert["blocks"]) and buttons(alert) == [ids.PAGE_RESOLVE]
    assert [r.json["event_action"] for r in paged.pagerduty.received] == ["trigger", "acknowledge"]
    assert paged.pagerduty.received[1].json == {
        "routing_key": PD_KEY,
        "event_action": "acknowledge",
        "dedup_key": dedup_key,
    }
    assert [r.json["event"] for r in paged.webhook.received] == ["page.triggered", "page.acknowledged"]
    assert all(signature_ok(r) for r in paged.webhook.received)

    paged.pass_time(hours=2)  # acknowledged pages never escalate
    assert paged.click(ids.PAGE_RESOLVE, user="U0DBA2").status_code == 200
    paged.delivered()
    assert [r.json["event_action"] for r in paged.pagerduty.received] == ["trigger", "acknowledge", "resolve"]
    assert "Resolved by <@U0DBA2>" in json.dumps(paged.alert()["blocks"]) and buttons(paged.alert()) == []
    assert paged.dms("U0ONCALL") == [] and paged.events("page.escalated") == []

    # Every step is in the audit log, attributed.
    assert [(e.kind, e.user_id) for e in paged.events("page.raised")] == [("page.raised", "U100")]
    assert [e.user_id for e in paged.events("page.acknowledged")] == ["U0DBA2"]
    assert [e.user_id for e in paged.events("page.resolved")] == ["U0DBA2"]
    notified = sorted((e.data["target"], e.data["action"]) for e in paged.events("page.notified"))
    assert notified == sorted(
        [(t, a) for t in ("dm:U0DBA1", "dm:U0DBA2") for a in ("trigger", "acknowledge", "resolve")]
        + [(t, a) for t in ("pagerduty:dba", "webhook:dba") for a in ("trigger", "acknowledge", "resolve")]
    )


def test_escalation_goes_level_by_level_until_someone_acknowledges(paged: Paging) -> None:
    paged.page()
    paged.delivered()
    paged.pass_time(minutes=4)
    paged.delivered()
    assert paged.dms("U0ONCALL") == []

    paged.pass_time(minutes=1, seconds=1)  # dba's 5 minutes are up: on-call is paged
    paged.bot.wait_for(lambda: paged.dms("U0ONCALL"), what="on-call's DM")
    paged.delivered()
    assert "escalated" in json.dumps(paged.dms("U0ONCALL")[0]["blocks"])
    alert_text = json.dumps(paged.alert()["blocks"], ensure_ascii=False)
    assert "Database Admin → On-Call Engineer (escalated)" in alert_text and "escalates to DevOps Team" in alert_text
    assert len(paged.pagerduty.received) == 1  # on-call has no PagerDuty: dba's incident is not re-triggered

    paged.pass_time(minutes=10, seconds=1)  # on-call's 10 minutes: the DevOps user group, member by member
    paged.bot.wait_for(lambda: paged.dms("U0DEV1") and paged.dms("U0DEV2"), what="DevOps members' DMs")
    paged.delivered()
    assert "last level" in json.dumps(paged.alert()["blocks"])

    paged.pass_time(minutes=5, seconds=1)
    paged.bot.wait_for(lambda: paged.events("page.unanswered"), what="the page to run out of levels")
    paged.bot.settled()
    assert "nobody acknowledged at any level" in json.dumps(paged.alert()["blocks"])

    # Late is better than never: an acknowledgement still lands, and only once.
    assert paged.click(ids.PAGE_ACK, user="U0DEV2").status_code == 200
    assert paged.click(ids.PAGE_ACK, user="U0DBA1").status_code == 200
    told = [c.args["text"] for c in paged.bot.told()]
    assert "You acknowledged page #1" in told[-2]
    assert "<@U0DEV2> already acknowledged page #1" in told[-1]
    assert [e.data["team"] for e in paged.events("page.escalated")] == ["oncall", "devops"]
    assert [e.user_id for e in paged.events("page.acknowledged")] == ["U0DEV2"]
    for user in ("U0DBA1", "U0DBA2", "U0ONCALL", "U0DEV1", "U0DEV2"):
        assert len(paged.dms(user)) == 1, user


def test_repeat_goes_through_the_chain_again() -> None:
    teams = {"a": Team(users=["U01"], next="b", repeat=2), "b": Team(users=["U02"], next="a")}
    assert escalation_chain(teams, "a") == ["a", "b", "a", "b", "a", "b"]
    assert escalation_chain(teams, "b") == ["b", "a"]  # a cycle ends where it began


def test_two_clicks_at_once_one_acknowledges_and_both_are_told(paged: Paging) -> None:
    paged.page()
    barrier = threading.Barrier(2)
    answers: list[int] = []

    def click(user: str) -> None:
        barrier.wait()
        answers.append(paged.click(ids.PAGE_ACK, user=user).status_code)

    threads = [threading.Thread(target=click, args=(u,)) for u in ("U0DBA1", "U0DBA2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [200, 200]
    [ack] = paged.events("page.acknowledged")
    winner, loser = ack.user_id, ({"U0DBA1", "U0DBA2"} - {ack.user_id}).pop()
    told = {c.args["user"]: c.args["text"] for c in paged.bot.told()}
    assert told[winner].startswith("You acknowledged page #1")
    assert told[loser].startswith(f"<@{winner}> already acknowledged page #1")
    paged.delivered()
    assert [r.json["event_action"] for r in paged.pagerduty.accepted()] == ["trigger", "acknowledge"]


def test_escalation_survives_a_restart_between_page_and_timeout(
    database_url: str, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    clock = ShiftedClock()
    with paging_bot(database_url, fake_slack, tmp_path, clock) as first:
        first.page()
        first.delivered()
    clock.advance(minutes=6)  # the timeout passes while no deploybot runs
    with paging_bot(database_url, fake_slack, tmp_path, clock) as second:
        second.bot.wait_for(lambda: second.dms("U0ONCALL"), what="the escalation after the restart")
        second.delivered()
        assert len(second.dms("U0ONCALL")) == 1
        assert len(second.dms("U0DBA1")) == 1  # level 0 is not paged again
        assert [e.data["team"] for e in second.events("page.escalated")] == ["oncall"]


def test_two_replicas_escalate_a_page_once(database_url: str, fake_slack: FakeSlack, tmp_path: Path) -> None:
    clock = ShiftedClock()
    with ExitStack() as stack:
        one = stack.enter_context(paging_bot(database_url, fake_slack, tmp_path, clock))
        two = stack.enter_context(launched(database_url, fake_slack, clock=clock, **_same_env(one, tmp_path)))
        one.page()
        one.delivered()
        clock.advance(minutes=5, seconds=1)
        barrier = threading.Barrier(4)

        def race(bot: Running) -> None:
            barrier.wait()
            bot.app.pager.tick(clock())

        threads = [threading.Thread(target=race, args=(b,)) for b in (one.bot, two, one.bot, two)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        one.delivered()
        assert len(one.events("page.escalated")) == 1
        assert len(one.dms("U0ONCALL")) == 1
        assert len(one.dms("U0DBA1")) == 1 and len(one.dms("U0DBA2")) == 1
        assert len(one.pagerduty.received) == 1


def _same_env(paging: Paging, folder: Path) -> dict[str, str]:
    return {"DEPLOYBOT_CONFIG": str(folder / "deploybot.yml"), "PD_DBA_KEY": PD_KEY, "DBA_HOOK_SECRET": HOOK_SECRET}


def test_pagerduty_429_and_500_are_retried_nothing_lost_nothing_doubled(paged: Paging) -> None:
    paged.pagerduty.answer_next(429, **{"Retry-After": "0"})
    paged.pagerduty.answer_next(500)
    paged.webhook.answer_next(503)
    paged.page()
    paged.delivered()
    assert [(r.json["event_action"], r.status) for r in paged.pagerduty.received] == [
        ("trigger", 429),
        ("trigger", 500),
        ("trigger", 202),
    ]
    assert len({r.body for r in paged.pagerduty.received}) == 1  # the same event each time, same dedup_key
    assert [r.status for r in paged.webhook.received] == [503, 200]
    assert len({r.headers["idempotency-key"] for r in paged.webhook.received}) == 1

    # An acknowledgement that meets a 500 still goes out after it, in order.
    paged.pagerduty.answer_next(500)
    paged.click(ids.PAGE_ACK, user="U0DBA1")
    paged.delivered()
    assert [r.json["event_action"] for r in paged.pagerduty.accepted()] == ["trigger", "acknowledge"]
    with paged.bot.app.sessions() as session:
        rows = session.scalars(select(PageDelivery).where(PageDelivery.target == "pagerduty:dba")).all()
        assert [(r.action, r.attempts, r.sent_at is not None) for r in rows] == [
            ("trigger", 3, True),
            ("acknowledge", 2, True),
        ]


def test_an_acknowledgement_waits_for_its_trigger_to_get_through(paged: Paging) -> None:
    paged.pagerduty.answer_next(500)  # the trigger must be retried (after 1 s)…
    paged.page()
    paged.bot.wait_for(lambda: paged.pagerduty.received, what="the first trigger attempt")
    assert paged.click(ids.PAGE_ACK, user="U0DBA1").status_code == 200  # …and is acknowledged meanwhile
    paged.delivered()
    assert [(r.json["event_action"], r.status) for r in paged.pagerduty.received] == [
        ("trigger", 500),
        ("trigger", 202),
        ("acknowledge", 202),
    ]


def test_a_rejected_event_is_given_up_and_audited_not_retried_forever(paged: Paging) -> None:
    paged.pagerduty.answer_next(400)
    paged.page()
    paged.delivered()
    assert [r.status for r in paged.pagerduty.received] == [400]
    [failed] = paged.events("page.notify_failed")
    assert failed.data["target"] == "pagerduty:dba" and failed.data["error"] == "PagerDuty answered 400"
    assert len(paged.dms("U0DBA1")) == 1  # the other ways still reached the team
    paged.bot.wait_for(lambda: "PagerDuty" in json.dumps(paged.alert()["blocks"]), what="the alert to show it")
    shown = json.dumps(paged.alert()["blocks"], ensure_ascii=False)
    assert "*PagerDuty* (Database Admin): failed — the event or its routing key was refused (400)" in shown
    assert PD_KEY not in shown and "Webhook" not in shown  # the webhook got through


def test_every_dm_of_a_page_shows_who_has_it_and_loses_its_acknowledge_button(paged: Paging) -> None:
    paged.page()
    paged.delivered()
    for user in ("U0DBA1", "U0DBA2"):
        assert buttons(current_dm(paged, user)) == [ids.PAGE_ACK, ids.PAGE_RESOLVE]
    assert paged.click(ids.PAGE_ACK, user="U0DBA2").status_code == 200
    paged.delivered()
    for user in ("U0DBA1", "U0DBA2"):
        dm = current_dm(paged, user)
        assert "Acknowledged by <@U0DBA2>" in json.dumps(dm["blocks"]), user
        assert buttons(dm) == [ids.PAGE_RESOLVE], user
    assert paged.click(ids.PAGE_RESOLVE, user="U0DBA1").status_code == 200
    paged.delivered()
    for user in ("U0DBA1", "U0DBA2"):
        dm = current_dm(paged, user)
        assert "Resolved by <@U0DBA1>" in json.dumps(dm["blocks"]) and buttons(dm) == [], user
        assert len(paged.dms(user)) == 1  # updated in place, never posted again
    updated = [c.args["channel"] for c in paged.bot.fake.calls_of("chat.update") if c.args["channel"] != CHANNEL]
    assert sorted(updated) == ["D0DBA1", "D0DBA1", "D0DBA2", "D0DBA2"]  # the IM channels the DMs are in


def test_a_dm_update_that_fails_is_retried(paged: Paging) -> None:
    paged.page()
    paged.delivered()
    paged.bot.fake.fail("chat.update", 2, status=503, retry_after=None, error="service_unavailable", channel="U0DBA1")
    assert paged.click(ids.PAGE_ACK, user="U0DBA2").status_code == 200
    paged.delivered()
    assert buttons(current_dm(paged, "U0DBA1")) == [ids.PAGE_RESOLVE]


def test_a_dm_whose_outcome_is_unknown_is_found_and_adopted_not_sent_twice(paged: Paging) -> None:
    fake = paged.bot.fake
    # Slack stores both DMs; one answer comes after the client's 10 s timeout, the other never comes.
    fake.hold("chat.postMessage", 11, channel="U0DBA1")
    fake.hold("chat.postMessage", 0, channel="U0DBA2", drop=True)
    paged.page()
    paged.delivered(timeout=60)
    for user in ("U0DBA1", "U0DBA2"):
        assert len(paged.dms(user)) == 1, user
        dm = current_dm(paged, user)
        assert dm["metadata"]["event_type"] == "deploybot_post", user
    looked = sorted(c.args["channel"] for c in fake.calls if c.method == "conversations.history")
    assert looked == ["D0DBA1", "D0DBA2"]
    with paged.bot.app.sessions() as session:
        shown = {r.target: (r.channel_id, r.ts) for r in session.scalars(select(PageDelivery)) if r.target[:3] == "dm:"}
    assert shown == {f"dm:{u}": (fake.im(u), current_dm(paged, u)["ts"]) for u in ("U0DBA1", "U0DBA2")}
    # The adopted DMs are the ones kept current: an acknowledgement updates them in place.
    assert paged.click(ids.PAGE_ACK, user="U0DBA2").status_code == 200
    paged.delivered()
    for user in ("U0DBA1", "U0DBA2"):
        assert buttons(current_dm(paged, user)) == [ids.PAGE_RESOLVE], user
        assert len(paged.dms(user)) == 1, user


def current_dm(paged: Paging, user: str) -> dict[str, Any]:
    """The page's DM to `user` as Slack shows it now (after any updates)."""
    [dm] = [m for (channel, _), m in paged.bot.fake.messages.items() if channel == paged.bot.fake.im(user)]
    return dm


def test_a_missing_routing_key_is_named_never_shown(database_url: str, fake_slack: FakeSlack, tmp_path: Path) -> None:
    with receiver() as pagerduty, receiver() as webhook:
        config = write_config(tmp_path, pagerduty.url, webhook.url)
        with launched(database_url, fake_slack, DEPLOYBOT_CONFIG=str(config), DBA_HOOK_SECRET=HOOK_SECRET) as bot:
            bot.slack.command("page dba disk full", channel=CHANNEL)
            paging = Paging(bot, ShiftedClock(), pagerduty, webhook)
            paging.delivered()
            [failed] = paging.events("page.notify_failed")
            assert "PD_DBA_KEY is not set" in failed.data["error"]
            assert pagerduty.received == [] and len(webhook.received) == 1


# --- refusals ----------------------------------------------------------------------------------------


def test_who_may_page_is_enforced_and_refusals_are_audited(
    database_url: str, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    with paging_bot(database_url, fake_slack, tmp_path, permissions={"page": ["U0LEAD", "S0LEADS"]}) as paging:
        refused = paging.page(user="U100")
        assert refused["response_type"] == "ephemeral"
        assert "Only <@U0LEAD>, <!subteam^S0LEADS> may page a team" in refused["text"]
        [event] = paging.events("permission.refused")
        assert event.user_id == "U100" and event.data == {"role": "page", "team": "dba"}
        with paging.bot.app.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Page)) == 0
        assert "Page #1 sent" in paging.page(user="U0LEAD")["text"]
        assert "Page #2 sent" in paging.page(user="U300")["text"]  # a member of S0LEADS


def test_bad_page_requests_get_a_clear_answer_and_change_nothing(paged: Paging) -> None:
    assert "There is no team `dbx`. Teams: dba, oncall, devops" in paged.page("page dbx help")["text"]
    assert "Say what is wrong: `/deploy page dba <message>`" in paged.page("page dba")["text"]
    assert "Say whom and why" in paged.page("page")["text"]
    assert paged.click(ids.PAGE_ACK, page_id=99).status_code == 200
    assert "Page #99 does not exist" in paged.bot.told()[-1].args["text"]
    with paged.bot.app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Page)) == 0


def test_paging_without_contacts_says_how_to_set_them_up(running: Running) -> None:
    text = running.slack.command("page dba help", channel=CHANNEL).json()["text"]
    assert "add `contacts:` to deploybot.yml" in text
    assert "add `contacts:` to deploybot.yml" in running.slack.command("contacts").json()["text"]


def test_the_shell_pages_and_acknowledges_and_the_export_lists_the_page(paged: Paging, database_url: str) -> None:
    config = str(Path(paged.bot.app.settings.config_path))
    out = shell(
        database_url, 'start v1.5 staging\npage dba "disk full on db-1"\nack 1\nack 1\n', DEPLOYBOT_CONFIG=config
    )
    assert "page #1 raised for dba" in out  # the running deploybot delivers it
    assert "You acknowledged page #1 (dba)" in out and "alice already acknowledged page #1" in out
    paged.delivered()  # the running deploybot sends what the shell queued
    assert len(paged.dms("U0DBA1")) == 1
    assert [r.json["event_action"] for r in paged.pagerduty.received] == ["trigger", "acknowledge"]
    exported = shell(database_url, "use 1\nexport json\n", DEPLOYBOT_CONFIG=config)
    document = json.loads(exported[exported.index('{\n  "schema"') :])
    [page] = document["pages"]
    assert (page["team"], page["text"], page["status"], page["acknowledged_by"]) == (
        "dba",
        "disk full on db-1",
        "acknowledged",
        {"id": "alice", "name": None},  # no user of this system is called alice: no name to add
    )
    assert "page.acknowledged" in [e["kind"] for e in document["events"]]

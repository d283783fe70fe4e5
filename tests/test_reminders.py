"""Maintenance reminders: on time in the team's zone across DST, exactly once across processes, caught up, nudged."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import select

from bot.models import Page, ReminderSlot, Run
from bot.reminders import instant, slots
from tests.conftest import ROOT, Running, launched
from tests.fake_slack import FakeSlack

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
CHANNEL = "CMAINT0001"


def at(zone: ZoneInfo, *fields: int) -> datetime:
    return datetime(*fields, tzinfo=zone).astimezone(UTC)  # type: ignore[misc]


# --- the slot arithmetic ---------------------------------------------------------------------------


@pytest.mark.parametrize(("zone", "change_day"), [(BERLIN, 29), (NEW_YORK, 8)])
def test_nine_oclock_stays_nine_oclock_across_the_spring_change(zone: ZoneInfo, change_day: int) -> None:
    start = datetime(2026, 3, 1)
    found = slots("0 9 * * *", zone, start, at(zone, 2026, 4, 1))
    assert [local.day for local, _ in found] == list(range(1, 32))
    assert all(local.hour == 9 and local.minute == 0 for local, _ in found)
    assert all(when.astimezone(zone).hour == 9 for _, when in found)
    offsets = {when.astimezone(zone).utcoffset() for _, when in found}
    assert len(offsets) == 2  # standard time before the change, summer time after
    before = [when for local, when in found if local.day < change_day]
    after = [when for local, when in found if local.day >= change_day]
    assert all(b.astimezone(zone).utcoffset() < a.astimezone(zone).utcoffset() for b in before for a in after)


def test_weekday_slots_through_the_autumn_change_in_berlin() -> None:
    found = slots("0 9 * * mon-fri", BERLIN, datetime(2026, 10, 19, 9, 0), at(BERLIN, 2026, 11, 1))
    assert [local.strftime("%a %d") for local, _ in found] == [
        "Tue 20",
        "Wed 21",
        "Thu 22",
        "Fri 23",
        "Mon 26",
        "Tue 27",
        "Wed 28",
        "Thu 29",
        "Fri 30",
    ]
    assert found[3][1] == datetime(2026, 10, 23, 7, 0, tzinfo=UTC)  # CEST, UTC+2
    assert found[4][1] == datetime(2026, 10, 26, 8, 0, tzinfo=UTC)  # CET, UTC+1


def test_a_time_skipped_by_the_spring_change_is_one_slot_just_after_it() -> None:
    found = slots("30 2 * * *", BERLIN, datetime(2026, 3, 28, 3, 0), at(BERLIN, 2026, 3, 30, 12, 0))
    assert [local for local, _ in found] == [datetime(2026, 3, 29, 2, 30), datetime(2026, 3, 30, 2, 30)]
    assert found[0][1] == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 summer time, right after the gap


def test_a_time_that_happens_twice_in_autumn_is_one_slot() -> None:
    found = slots("30 2 * * *", BERLIN, datetime(2026, 10, 24, 3, 0), at(BERLIN, 2026, 10, 26, 12, 0))
    assert [local for local, _ in found] == [datetime(2026, 10, 25, 2, 30), datetime(2026, 10, 26, 2, 30)]
    assert found[0][1] == instant(datetime(2026, 10, 25, 2, 30), BERLIN) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


# --- posting through deploybot ---------------------------------------------------------------------


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    checklists = tmp_path / "checklists"
    shutil.copytree(ROOT / "checklists", checklists)
    maintenance = yaml.safe_load((checklists / "maintenance.yml").read_text())
    maintenance["phases"][0]["schedule"]["owners"] = ["U0WNER1", "U0WNER2"]
    (checklists / "maintenance.yml").write_text(yaml.safe_dump(maintenance))
    config = tmp_path / "deploybot.yml"
    config.write_text(yaml.safe_dump({"timezone": "Europe/Berlin", "maintenance_channel": CHANNEL}))
    return checklists, config


def bots(count: int, database_url: str, fake: FakeSlack, folders: tuple[Path, Path], stack: ExitStack) -> list[Running]:
    checklists, config = folders
    return [
        stack.enter_context(
            launched(database_url, fake, DEPLOYBOT_CHECKLISTS=str(checklists), DEPLOYBOT_CONFIG=str(config))
        )
        for _ in range(count)
    ]


@pytest.fixture
def one(database_url: str, fake_slack: FakeSlack, folders: tuple[Path, Path]) -> Iterator[Running]:
    with ExitStack() as stack:
        yield bots(1, database_url, fake_slack, folders, stack)[0]


def parents(fake: FakeSlack) -> list[dict]:
    """Top-level messages posted in the maintenance channel, in order."""
    return [
        c.args
        for c in fake.calls_of("chat.postMessage")
        if c.args["channel"] == CHANNEL and not c.args.get("thread_ts")
    ]


def recorded(bot: Running) -> list[tuple[str, str, str]]:
    with bot.app.sessions() as session:
        return [
            (s.cadence, s.local_time, s.status)
            for s in session.scalars(select(ReminderSlot).order_by(ReminderSlot.due_at))
        ]


def test_a_slot_is_posted_on_time_once_as_an_interactive_run(one: Running) -> None:
    monday_9 = at(BERLIN, 2026, 11, 30, 9, 0)
    assert one.app.reminders.tick(monday_9 - timedelta(seconds=1)) == 0
    assert one.app.reminders.tick(monday_9 + timedelta(seconds=5)) == 1
    assert one.app.reminders.tick(monday_9 + timedelta(minutes=1)) == 0
    one.settled()
    posted = parents(one.fake)
    assert len(posted) == 1
    assert posted[0]["blocks"][0]["text"]["text"] == "Daily ongoing maintenance — Mon 30 Nov 2026 09:00"
    thread = one.fake.thread(
        CHANNEL, next(ts for (ch, ts), m in one.fake.messages.items() if ch == CHANNEL and not m["thread_ts"])
    )
    items = [b["text"]["text"] for b in thread[1]["blocks"] if b.get("block_id", "").startswith("item.")]
    assert [t.split("  ·")[0][2:] for t in items] == [
        "Check health endpoint",
        "Review error logs",
        "Check service status",
    ]
    assert recorded(one) == [("daily", "2026-11-30T09:00:00", "posted")]
    assert one.app.reminders.tick(at(BERLIN, 2026, 11, 30, 10, 0, 30)) == 1  # the weekly one, Monday 10:00
    assert [s[0] for s in recorded(one)] == ["daily", "weekly"]


def test_three_processes_racing_post_each_slot_once(
    database_url: str, fake_slack: FakeSlack, folders: tuple[Path, Path]
) -> None:
    with ExitStack() as stack:
        replicas = bots(3, database_url, fake_slack, folders, stack)
        times = [at(BERLIN, 2026, 12, 1, 9, 0, 2), at(BERLIN, 2026, 12, 1, 9, 0, 3)]  # Tue 1 Dec: daily and monthly
        gate = threading.Barrier(len(replicas) * len(times))
        posted: list[int] = []

        def tick(bot: Running, now: datetime) -> None:
            gate.wait()
            posted.append(bot.app.reminders.tick(now))

        threads = [threading.Thread(target=tick, args=(b, t)) for b in replicas for t in times]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        replicas[0].settled()
        assert sum(posted) == 2
        assert sorted(s[0] for s in recorded(replicas[0])) == ["daily", "monthly"]
        assert len(parents(fake_slack)) == 2


def test_catch_up_after_three_days_down_posts_once_and_records_the_rest_missed(one: Running) -> None:
    assert one.app.reminders.tick(at(BERLIN, 2026, 11, 27, 9, 0, 5)) == 1  # Friday
    # deploybot is down from Friday 09:05 until Tuesday 11:00 (3 days and 2 hours).
    assert one.app.reminders.tick(at(BERLIN, 2026, 12, 1, 11, 0)) == 2  # Tuesday's daily, and the monthly of the 1st
    daily = [s for s in recorded(one) if s[0] == "daily"]
    assert daily == [
        ("daily", "2026-11-27T09:00:00", "posted"),
        ("daily", "2026-11-30T09:00:00", "missed"),
        ("daily", "2026-12-01T09:00:00", "posted"),
    ]
    weekly = [s for s in recorded(one) if s[0] == "weekly"]
    assert weekly == []  # never posted before, and Monday 10:00 is past the catch-up window: not invented
    one.settled()
    assert len(parents(one.fake)) == 3


def test_a_restart_mid_slot_posts_it_once(database_url: str, fake_slack: FakeSlack, folders: tuple[Path, Path]) -> None:
    monday_9 = at(BERLIN, 2026, 11, 30, 9, 0, 1)
    with ExitStack() as stack:
        first = bots(1, database_url, fake_slack, folders, stack)[0]
        first.app.publisher.stop()  # it claims the slot, then dies before Slack hears of it
        assert first.app.reminders.tick(monday_9) == 1
    assert parents(fake_slack) == []
    with ExitStack() as stack:
        second = bots(1, database_url, fake_slack, folders, stack)[0]
        assert second.app.reminders.tick(monday_9 + timedelta(seconds=30)) == 0
        second.settled()
        assert len(parents(fake_slack)) == 1


def test_overdue_runs_are_nudged_then_escalated_once_each(one: Running) -> None:
    start = at(BERLIN, 2026, 11, 30, 9, 0, 5)
    one.app.reminders.tick(start)
    one.settled()
    one.app.reminders.tick(start + timedelta(hours=7))
    one.settled()
    assert [
        c for c in one.fake.calls_of("chat.postMessage") if c.args.get("text", "").startswith(":alarm_clock:")
    ] == []
    for _ in range(2):
        one.app.reminders.tick(start + timedelta(hours=8, minutes=1))
    one.settled()
    nudges = [c.args for c in one.fake.calls_of("chat.postMessage") if ":alarm_clock:" in (c.args.get("text") or "")]
    assert len(nudges) == 1
    assert nudges[0]["text"] == (
        ":alarm_clock: <@U0WNER1> <@U0WNER2>: this daily checklist is overdue (3 required item(s) open)."
    )
    parent_ts = next(ts for (ch, ts), m in one.fake.messages.items() if ch == CHANNEL and not m["thread_ts"])
    assert nudges[0]["thread_ts"] == parent_ts  # in the run's thread
    one.app.reminders.tick(start + timedelta(hours=24, minutes=1))
    one.app.reminders.tick(start + timedelta(hours=25))
    one.settled()
    escalations = [
        c.args for c in one.fake.calls_of("chat.postMessage") if ":rotating_light:" in (c.args.get("text") or "")
    ]
    assert len(escalations) == 1 and "<!here>" in escalations[0]["text"]


def test_an_overdue_checklist_can_page_a_team_instead_of_here(
    database_url: str, fake_slack: FakeSlack, folders: tuple[Path, Path]
) -> None:
    checklists, config = folders
    maintenance = yaml.safe_load((checklists / "maintenance.yml").read_text())
    maintenance["phases"][0]["schedule"]["escalate_to"] = "oncall"
    (checklists / "maintenance.yml").write_text(yaml.safe_dump(maintenance))
    settings = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**settings, "contacts": {"oncall": {"users": ["U0ONCALL"]}}}))
    with ExitStack() as stack:
        bot = bots(1, database_url, fake_slack, folders, stack)[0]
        start = at(BERLIN, 2026, 11, 30, 9, 0, 5)
        bot.app.reminders.tick(start)
        for _ in range(2):
            bot.app.reminders.tick(start + timedelta(hours=24, minutes=1))
        bot.wait_for(lambda: fake_slack.posted_to("U0ONCALL"), what="on-call's DM")
        bot.settled()
        [dm] = fake_slack.posted_to("U0ONCALL")
        assert "The daily maintenance checklist (run #1) is overdue." in dm["text"]
        with bot.app.sessions() as session:
            [page] = session.scalars(select(Page)).all()
            assert (page.team, page.run_id, page.paged_by, page.channel_id) == ("oncall", 1, "deploybot", CHANNEL)
        escalations = [m for m in fake_slack.posted_to(CHANNEL) if ":rotating_light:" in (m.get("text") or "")]
        assert len(escalations) == 1 and "paged *oncall*" in escalations[0]["text"]
        assert "<!here>" not in escalations[0]["text"]


def test_a_finished_run_is_not_nudged(one: Running) -> None:
    start = at(BERLIN, 2026, 11, 30, 9, 0, 5)
    one.app.reminders.tick(start)
    one.settled()
    one.slack.command("status", channel=CHANNEL)
    with one.app.sessions() as session:
        run = session.scalars(select(Run)).one()
        item_ids = [s.item_id for s in run.items]
    for item_id in item_ids:
        one.slack.click("item.done", {"run": run.id, "item": item_id}, user="U0DONE", channel=CHANNEL)
    one.app.reminders.tick(start + timedelta(hours=30))
    one.settled()
    assert not [c for c in one.fake.calls_of("chat.postMessage") if ":alarm_clock:" in (c.args.get("text") or "")]


def test_reminders_and_remind_commands(one: Running) -> None:
    lines = one.slack.command("reminders", channel=CHANNEL).json()["text"]
    assert lines.startswith("*Maintenance checklists*")
    assert "*Daily* — next" in lines and "Europe/Berlin (`0 9 * * mon-fri`)" in lines and f"<#{CHANNEL}>" in lines
    assert "never posted" in lines
    answer = one.slack.command("remind weekly", channel=CHANNEL, user="U0ASKER").json()["text"]
    assert answer == "Posted the weekly maintenance checklist as run #1."
    one.settled()
    assert parents(one.fake)[0]["blocks"][0]["text"]["text"].startswith("Weekly ongoing maintenance — ")
    assert recorded(one)[0][0] == "weekly" and recorded(one)[0][2] == "manual"
    assert "last: run #1" in one.slack.command("reminders").json()["text"]
    assert "There is no cadence 'hourly'" in one.slack.command("remind hourly").json()["text"]


# --- posts whose outcome is unknown ----------------------------------------------------------------


def test_a_reminder_slack_answers_after_the_client_timeout_is_posted_once_with_its_thread(one: Running) -> None:
    # Slack stores the post at once but answers after the client gave up (10 s).
    one.fake.hold("chat.postMessage", 11, channel=CHANNEL)
    assert one.app.reminders.tick(at(BERLIN, 2026, 11, 30, 9, 0, 5)) == 1
    one.settled(timeout=45)
    [parent] = one.fake.top_level(CHANNEL)
    assert parent["metadata"] == {"event_type": "deploybot_post", "event_payload": {"key": "message:1"}}
    thread = one.fake.thread(CHANNEL, parent["ts"])
    assert len(thread) > 1 and all(reply["thread_ts"] == parent["ts"] for reply in thread[1:])
    # The adopted post was brought up to date like any other message.
    assert parent["blocks"][0]["text"]["text"] == "Daily ongoing maintenance — Mon 30 Nov 2026 09:00"
    assert [c.method for c in one.fake.calls if c.method.startswith("conversations.")] == ["conversations.history"]


def test_a_nudge_whose_connection_dropped_after_slack_stored_it_is_posted_once(one: Running) -> None:
    start = at(BERLIN, 2026, 11, 30, 9, 0, 5)
    one.app.reminders.tick(start)
    one.settled()
    one.fake.hold("chat.postMessage", 0, channel=CHANNEL, drop=True)
    one.app.reminders.tick(start + timedelta(hours=8, minutes=1))
    one.settled(timeout=45)
    [parent] = one.fake.top_level(CHANNEL)
    nudges = [m for m in one.fake.thread(CHANNEL, parent["ts"]) if ":alarm_clock:" in (m.get("text") or "")]
    assert len(nudges) == 1
    assert [c.method for c in one.fake.calls if c.method.startswith("conversations.")] == ["conversations.replies"]

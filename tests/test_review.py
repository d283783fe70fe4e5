"""The weekly review: posted once per slot in each deployment channel across replicas, through Slack's failures."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import func, select

from bot import db
from bot.models import ItemState, Outbox, ReviewSlot, Run
from bot.review.settings import DAYS
from bot.slack.limits import check_blocks
from tests.conftest import ROOT, Running, launched, postgres_schema_url, wait_for
from tests.fake_slack import FakeSlack
from tests.test_process import bot_env, deploybot, free_port

BERLIN = ZoneInfo("Europe/Berlin")
DEPLOYS = "C0DEPLOY1"
MOBILE = "C0MOBILE1"
QUIET = "C0QUIET01"  # maintenance only: no review
HOSTILE: list[str] = json.loads((Path(__file__).parent / "fixtures" / "hostile-text.json").read_text())
MARKUP = re.compile(r"<(?:[!@#]|[a-zA-Z][\w+.-]*:)[^>]*>?")
REVIEW_TITLE = "Weekly deployment review"


def at(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=BERLIN).astimezone(UTC)  # type: ignore[misc]


MONDAY_9 = at(2026, 11, 30, 9, 0)


def config_file(tmp_path: Path, review: dict[str, Any] | None = None) -> Path:
    config = tmp_path / "deploybot.yml"
    config.write_text(yaml.safe_dump({"timezone": "Europe/Berlin", **({"review": review} if review else {})}))
    return config


def launch(stack: ExitStack, database_url: str, fake: FakeSlack, config: Path) -> Running:
    return stack.enter_context(launched(database_url, fake, DEPLOYBOT_CONFIG=str(config)))


def snapshot(item_text: str = "All tests are passing") -> dict[str, Any]:
    item = {"id": "tests-pass", "text": item_text}
    phase = {"id": "pre", "title": "Pre-Deployment", "groups": [{"id": "g", "title": "G", "items": [item]}]}
    return {"id": "production-deploy", "title": "Production deployment", "kind": "deploy", "phases": [phase]}


def deployed(
    bot: Running,
    channel: str,
    started: datetime,
    *,
    status: str = "complete",
    kind: str = "deploy",
    item_text: str = "All tests are passing",
    na_reason: str | None = None,
) -> None:
    """A finished run, as `/deploy start` and its ticks leave it."""
    with bot.app.sessions.begin() as session:
        run = Run(
            template_id="production-deploy",
            kind=kind,
            template_snapshot=snapshot(item_text),
            version="v1.0",
            environment="production",
            channel_id=channel,
            status=status,
            started_by="U0DEPLOYER",
            started_at=started,
            finished_at=started + timedelta(minutes=40),
            rev=2,
        )
        session.add(run)
        session.flush()
        session.add(
            ItemState(
                run_id=run.id,
                item_id="tests-pass",
                position=0,
                required=True,
                status="na" if na_reason else "done",
                na_reason=na_reason,
                changed_by="U0DEPLOYER",
                changed_at=started + timedelta(minutes=20),
            )
        )


def history(bot: Running) -> None:
    """Two deployment channels with deployments over the last weeks, and a channel with maintenance only."""
    for days in (1, 3, 9, 20):
        deployed(bot, DEPLOYS, MONDAY_9 - timedelta(days=days))
    deployed(bot, DEPLOYS, MONDAY_9 - timedelta(days=2), status="rolled_back")
    deployed(bot, MOBILE, MONDAY_9 - timedelta(days=4))
    deployed(bot, QUIET, MONDAY_9 - timedelta(days=2), kind="maintenance")


def reviews(fake: FakeSlack, channel: str) -> list[dict[str, Any]]:
    return [m for m in fake.top_level(channel) if (m.get("text") or "").startswith(REVIEW_TITLE)]


def discussion(fake: FakeSlack, channel: str, review: dict[str, Any]) -> list[dict[str, Any]]:
    return fake.thread(channel, review["ts"])[1:]


def slots(bot: Running) -> list[tuple[str, str, str]]:
    with bot.app.sessions() as session:
        rows = session.scalars(select(ReviewSlot).order_by(ReviewSlot.channel_id, ReviewSlot.due_at))
        return [(s.channel_id, s.local_time, s.status) for s in rows]


@pytest.fixture
def one(database_url: str, fake_slack: FakeSlack, tmp_path: Path) -> Iterator[Running]:
    with ExitStack() as stack:
        bot = launch(stack, database_url, fake_slack, config_file(tmp_path))
        history(bot)
        yield bot


def test_each_deployment_channel_gets_its_review_on_time_once_with_a_discuss_thread(one: Running) -> None:
    assert one.app.reviews is not None
    assert one.app.reviews.tick(MONDAY_9 - timedelta(seconds=1)) == 0
    assert one.app.reviews.tick(MONDAY_9 + timedelta(seconds=5)) == 2
    assert one.app.reviews.tick(MONDAY_9 + timedelta(minutes=1)) == 0
    one.settled()
    [review] = reviews(one.fake, DEPLOYS)
    assert len(reviews(one.fake, MOBILE)) == 1 and one.fake.top_level(QUIET) == []
    assert check_blocks(review["blocks"]) == []
    shown = json.dumps(review["blocks"], ensure_ascii=False)
    assert "Weekly deployment review — Mon 30 Nov 2026" in shown
    # The figures are the team's (every channel): Sun 29, Sat 28 (rolled back), Fri 27 and Thu 26 Nov (mobile).
    assert "*Deployments*\\n4" in shown and "*Failed or rolled back*\\n1 (25% change failure rate)" in shown
    assert "every environment and channel" in shown
    assert "Posted late" not in shown
    assert review["text"].startswith("Weekly deployment review: 4 deployment(s) in the last 7 days, 1 failed (25%).")
    [discuss] = discussion(one.fake, DEPLOYS, review)
    assert discuss["thread_ts"] == review["ts"] and "*Discuss*" in discuss["text"]
    assert slots(one) == [
        (DEPLOYS, "2026-11-30T09:00:00", "posted"),
        (MOBILE, "2026-11-30T09:00:00", "posted"),
    ]


def test_the_chart_shows_the_whole_weeks_before_the_slot(one: Running) -> None:
    assert one.app.reviews is not None
    one.app.reviews.tick(MONDAY_9 + timedelta(seconds=5))
    one.settled()
    [review] = reviews(one.fake, DEPLOYS)
    [chart] = [b["text"]["text"] for b in review["blocks"] if b.get("text", {}).get("text", "").startswith("```")]
    lines = chart.strip("`\n").split("\n")
    assert len(lines) == 8 and lines[-1].startswith("Nov 23") and lines[0].startswith("Oct 05")
    # Nov 23-29: four deployments, one rolled back; Nov 16-22: one (Nov 21); Nov 9-15: one (Nov 10).
    assert [line.split()[-3:] for line in lines[-3:]] == [["1", "–", "40m"], ["1", "–", "40m"], ["4", "1", "40m"]]
    assert lines[-4].split()[-3:] == ["0", "–", "–"]


def test_two_schedulers_racing_post_each_review_once(database_url: str, fake_slack: FakeSlack, tmp_path: Path) -> None:
    with ExitStack() as stack:
        replicas = [launch(stack, database_url, fake_slack, config_file(tmp_path)) for _ in range(2)]
        history(replicas[0])
        times = [MONDAY_9 + timedelta(seconds=2), MONDAY_9 + timedelta(seconds=3)]
        gate = threading.Barrier(len(replicas) * len(times))
        posted: list[int] = []

        def tick(bot: Running, now: datetime) -> None:
            gate.wait()
            assert bot.app.reviews is not None
            posted.append(bot.app.reviews.tick(now))

        threads = [threading.Thread(target=tick, args=(b, t)) for b in replicas for t in times]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for bot in replicas:
            bot.settled(timeout=30)
        assert sum(posted) == 2
        assert len(reviews(fake_slack, DEPLOYS)) == 1 and len(reviews(fake_slack, MOBILE)) == 1
        for channel in (DEPLOYS, MOBILE):
            assert len(discussion(fake_slack, channel, reviews(fake_slack, channel)[0])) == 1
        assert len(slots(replicas[1])) == 2


def test_slack_503_then_429_then_success_posts_the_review_and_its_thread_once(one: Running) -> None:
    one.fake.fail("chat.postMessage", status=503, retry_after=None, error="service_unavailable", channel=DEPLOYS)
    one.fake.fail("chat.postMessage", status=429, retry_after=1, channel=DEPLOYS)
    assert one.app.reviews is not None
    one.app.reviews.tick(MONDAY_9 + timedelta(seconds=5))
    one.settled(timeout=45)
    [review] = reviews(one.fake, DEPLOYS)
    assert len(discussion(one.fake, DEPLOYS, review)) == 1
    tried = [c.status for c in one.fake.calls if c.method == "chat.postMessage" and c.args["channel"] == DEPLOYS]
    assert tried == [503, 429, 200, 200]  # the review, refused twice, then its Discuss reply
    # The Discuss reply waits for its review: it is never tried outside the review's thread.
    attempts = [
        c.args
        for c in one.fake.calls
        if c.method == "chat.postMessage" and c.args["channel"] == DEPLOYS and "*Discuss*" in c.args["text"]
    ]
    assert attempts and all(a.get("thread_ts") == review["ts"] for a in attempts)


def test_a_review_slack_stored_without_answering_is_not_posted_again(one: Running) -> None:
    # Slack stores the review, then the connection drops before its answer arrives.
    one.fake.hold("chat.postMessage", 0, channel=DEPLOYS, drop=True)
    assert one.app.reviews is not None
    one.app.reviews.tick(MONDAY_9 + timedelta(seconds=5))
    one.settled(timeout=45)
    [review] = reviews(one.fake, DEPLOYS)
    [discuss] = discussion(one.fake, DEPLOYS, review)
    assert discuss["thread_ts"] == review["ts"]


def test_a_restart_mid_delivery_posts_the_review_once(database_url: str, fake_slack: FakeSlack, tmp_path: Path) -> None:
    config = config_file(tmp_path)
    with ExitStack() as stack:
        first = launch(stack, database_url, fake_slack, config)
        history(first)
        first.app.publisher.stop()  # it claims the slot, then stops before Slack hears of it
        assert first.app.reviews is not None and first.app.reviews.tick(MONDAY_9 + timedelta(seconds=1)) == 2
    assert fake_slack.top_level(DEPLOYS) == []
    with ExitStack() as stack:
        second = launch(stack, database_url, fake_slack, config)
        assert second.app.reviews is not None and second.app.reviews.tick(MONDAY_9 + timedelta(seconds=30)) == 0
        second.settled()
        assert len(reviews(fake_slack, DEPLOYS)) == 1 and len(reviews(fake_slack, MOBILE)) == 1
        with second.app.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Outbox).where(Outbox.sent_at.is_(None))) == 0


def test_after_three_weeks_down_the_latest_review_is_posted_once_late(one: Running) -> None:
    assert one.app.reviews is not None
    one.app.reviews.tick(MONDAY_9 + timedelta(seconds=5))
    deployed(one, DEPLOYS, at(2026, 12, 16, 12, 0))
    # Down from Monday 30 Nov until Wednesday 23 Dec 10:00: the reviews of 7, 14 and 21 Dec were missed.
    assert one.app.reviews.tick(at(2026, 12, 23, 10, 0)) == 2  # both channels deployed in the last 8 weeks
    assert one.app.reviews.tick(at(2026, 12, 23, 10, 1)) == 0
    one.settled()
    assert [s for s in slots(one) if s[0] == DEPLOYS] == [
        (DEPLOYS, "2026-11-30T09:00:00", "posted"),
        (DEPLOYS, "2026-12-07T09:00:00", "missed"),
        (DEPLOYS, "2026-12-14T09:00:00", "missed"),
        (DEPLOYS, "2026-12-21T09:00:00", "late"),
    ]
    late = reviews(one.fake, DEPLOYS)[-1]
    assert len(reviews(one.fake, DEPLOYS)) == 2
    assert "Posted late: deploybot was not running at Mon 21 Dec 09:00 Europe/Berlin" in json.dumps(
        late["blocks"], ensure_ascii=False
    )
    assert late["text"].startswith("Weekly deployment review (posted late)")


def test_a_channel_can_move_its_review_or_turn_it_off(database_url: str, fake_slack: FakeSlack, tmp_path: Path) -> None:
    review = {"channels": {MOBILE: {"enabled": False}, DEPLOYS: {"day": "friday", "time": "16:30", "weeks": 4}}}
    with ExitStack() as stack:
        bot = launch(stack, database_url, fake_slack, config_file(tmp_path, review))
        history(bot)
        assert bot.app.reviews is not None
        assert bot.app.reviews.tick(MONDAY_9 + timedelta(seconds=5)) == 0
        assert bot.app.reviews.tick(at(2026, 12, 4, 16, 30, 5)) == 1
        bot.settled()
        assert fake_slack.top_level(MOBILE) == []
        [shown] = reviews(fake_slack, DEPLOYS)
        assert "Weekly deployment review — Fri 04 Dec 2026" in json.dumps(shown["blocks"], ensure_ascii=False)
        assert "(the last 4," in json.dumps(shown["blocks"], ensure_ascii=False)


def test_reviews_turned_off_post_nothing(database_url: str, fake_slack: FakeSlack, tmp_path: Path) -> None:
    with ExitStack() as stack:
        bot = launch(stack, database_url, fake_slack, config_file(tmp_path, {"enabled": False}))
        history(bot)
        assert bot.app.reviews is not None and bot.app.reviews.tick(MONDAY_9 + timedelta(seconds=5)) == 0
        assert slots(bot) == []


def test_reviews_off_but_on_in_one_listed_channel_post_there_only(
    database_url: str, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    review = {"enabled": False, "channels": {QUIET: {"enabled": True}}}
    with ExitStack() as stack:
        bot = launch(stack, database_url, fake_slack, config_file(tmp_path, review))
        history(bot)
        assert bot.app.reviews is not None and bot.app.reviews.tick(MONDAY_9 + timedelta(seconds=5)) == 1
        bot.settled()
        assert [s[0] for s in slots(bot)] == [QUIET] and len(reviews(fake_slack, QUIET)) == 1


@pytest.mark.parametrize("hostile", [h for h in HOSTILE if h.strip() and "\x00" not in h and len(h) < 500])
def test_hostile_item_text_and_na_reasons_in_the_review_stay_inert(
    hostile: str, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        bot = launch(stack, f"sqlite:///{tmp_path / 'd.db'}", fake_slack, config_file(tmp_path))
        for days in (1, 2, 3):
            deployed(bot, DEPLOYS, MONDAY_9 - timedelta(days=days), item_text=hostile, na_reason=hostile)
        assert bot.app.reviews is not None and bot.app.reviews.tick(MONDAY_9 + timedelta(seconds=5)) == 1
        bot.settled()
        [review] = reviews(fake_slack, DEPLOYS)
        assert check_blocks(review["blocks"]) == []
        worth = [t for b in review["blocks"] if "Worth a look" in (t := b.get("text", {}).get("text", ""))]
        assert "marked N/A in 3 of 3 runs" in worth[0]
        for text in [review["text"], json.dumps(review["blocks"], ensure_ascii=False)]:
            assert MARKUP.findall(text) == [], text


# --- configuration ---------------------------------------------------------------------------------

BAD_REVIEWS = {
    "an unknown day": ("review:\n  day: funday\n", r"deploybot\.yml:2 › review › day: must be a day of the week"),
    "a time YAML reads as a number": (
        "review:\n  time: 16:00\n",
        r'deploybot\.yml:2 › review › time: must be a time in quotes: write time: "16:00"',
    ),
    "a time past midnight": ('review:\n  time: "25:00"\n', r"deploybot\.yml:2 › review › time: must be a 24-hour"),
    "too many weeks": ("review:\n  weeks: 500\n", r"deploybot\.yml:2 › review › weeks: Input should be less than"),
    "a misspelt field": ("review:\n  enabeld: false\n", r"deploybot\.yml:2 › review › enabeld: unknown field"),
    "a channel name instead of its id": (
        "review:\n  channels:\n    '#deploys': {enabled: false}\n",
        r"deploybot\.yml:3 › review › channels › #deploys: the name must be a Slack channel id",
    ),
    "a bad day for one channel": (
        "review:\n  channels:\n    C0DEPLOY1:\n      day: someday\n",
        r"deploybot\.yml:4 › review › channels › C0DEPLOY1 › day: must be a day of the week",
    ),
}


@pytest.mark.parametrize("case", BAD_REVIEWS)
def test_deploybot_check_names_a_bad_review_setting_by_file_and_line(case: str, tmp_path: Path) -> None:
    text, expected = BAD_REVIEWS[case]
    config = tmp_path / "deploybot.yml"
    config.write_text("timezone: Europe/Berlin\n" + text)
    checked = subprocess.run(
        [sys.executable, "-m", "bot", "check", str(ROOT / "checklists")],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "DEPLOYBOT_CONFIG": str(config)},
        cwd=tmp_path,
    )
    assert checked.returncode == 2, checked.stdout
    [line] = checked.stderr.strip().splitlines()
    assert re.search(_shifted(expected), line), line


def _shifted(expected: str) -> str:
    """The expected line number one further down: the test file starts with a timezone line."""
    return re.sub(r"yml:(\d)", lambda m: f"yml:{int(m.group(1)) + 1}", expected)


def test_deploybot_check_says_when_reviews_go_out(tmp_path: Path) -> None:
    config = tmp_path / "deploybot.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "timezone": "Europe/Berlin",
                "review": {"day": "friday", "time": "16:30", "weeks": 12, "channels": {MOBILE: {"enabled": False}}},
            }
        )
    )
    checked = subprocess.run(
        [sys.executable, "-m", "bot", "check", str(ROOT / "checklists")],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "DEPLOYBOT_CONFIG": str(config)},
        cwd=tmp_path,
    )
    assert checked.returncode == 0, checked.stderr
    assert (
        f"ok  {config}: weekly review Fridays 16:30 Europe/Berlin in each deployment channel, 12 weeks charted, "
        "1 channel(s) set apart"
    ) in checked.stdout


# --- a real process, killed while Slack holds its answer -------------------------------------------


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from postgres_schema_url()


def test_kill_9_after_slack_stored_the_review_then_restart_posts_it_and_its_thread_once(
    tmp_path: Path, fake_slack: FakeSlack, postgres_url: str
) -> None:
    now = datetime.now(UTC)
    # The review is due this very minute (UTC), so `deploybot run` posts it on its first tick.
    review = {"day": DAYS[now.weekday()], "time": f"{now:%H:%M}"}
    config = tmp_path / "deploybot.yml"
    config.write_text(yaml.safe_dump({"timezone": "UTC", "review": review}))
    engine = db.make_engine(postgres_url)
    db.upgrade(engine)
    with db.make_sessions(engine).begin() as session:
        session.add(
            Run(template_id="production-deploy", kind="deploy", template_snapshot=snapshot(), version="v1",
                environment="production", channel_id=DEPLOYS, status="complete", started_by="U0DEPLOYER",
                started_at=now - timedelta(days=1), finished_at=now - timedelta(hours=23), rev=2)
        )  # fmt: skip
    fake_slack.hold("chat.postMessage", 120, channel=DEPLOYS)  # Slack stores it; its answer never arrives
    env = bot_env(postgres_url, fake_slack, free_port(), DEPLOYBOT_CONFIG=str(config))
    with deploybot(env, tmp_path) as first:
        wait_for(lambda: reviews(fake_slack, DEPLOYS), timeout=30, what="Slack to store the review")
        first.kill()
        first.wait(10)

    def delivered() -> bool:
        with engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(Outbox).where(Outbox.sent_at.is_(None))) == 0

    env = bot_env(postgres_url, fake_slack, free_port(), DEPLOYBOT_CONFIG=str(config))
    with deploybot(env, tmp_path):
        wait_for(delivered, timeout=60, what="the restarted process to deliver the review and its thread")
    engine.dispose()
    [shown] = reviews(fake_slack, DEPLOYS)
    [discuss] = discussion(fake_slack, DEPLOYS, shown)
    assert "*Discuss*" in discuss["text"]

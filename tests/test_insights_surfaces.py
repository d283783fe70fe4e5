"""Where people read the figures: `deploybot stats`, `/deploy stats`, the App Home and /metrics.

The history is tests/insight_history.py moved to end now. Over the last four weeks its figures are
those of tests/test_insights.py; over the last 30 days R6 (complete, 2 h, started a day and an hour
before those four weeks) joins production: 5 deployments, 2 failed (40%), 5 / (30/7) = 1.17 per
week, restore 40 min, run durations 2 h, 1 h, 30 min, 2 h, 2 h (median 2 h). Staging: 2 deployments
of 30 and 10 min (median 20 min, p90 10 + 0.9 × 20 = 28 min), none failed.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session

from bot import db
from bot.app import create_app
from bot.insights.delivery import Figures
from bot.insights.health import CadenceHealth, FlakyProbe, Health, ItemCount, Pages, Reason
from bot.insights.report import Report
from bot.insights.slack import stats_blocks
from bot.insights.text import as_table
from bot.services import utcnow
from bot.slack.limits import BLOCKS_PER_VIEW, check_blocks, check_view
from tests.conftest import Running, ShiftedClock, launched, settings_for
from tests.fake_slack import FakeSlack
from tests.insight_history import END, START, History, build
from tests.test_home import home_text, open_home, shows
from tests.test_shell_export import deploybot

# The shared hostile texts, and terminal escape sequences (7-bit and the one-byte C1 form).
HOSTILE = [
    *json.load(open("tests/fixtures/hostile-text.json", encoding="utf-8")),  # noqa: SIM115
    "\x1b[31mred\x1b[0m \x1b]0;title\x07",
    "\x9b31mred",
]


def history_ending_now(session: Session, now: datetime | None = None) -> None:
    """The hand-built history, moved so that its period ends at the given time (default: now)."""
    build(session, shift=(now or utcnow()) - END)


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture
def bot(database_url: str, fake_slack: FakeSlack, clock: ShiftedClock) -> Iterator[Running]:
    with launched(database_url, fake_slack, clock=clock) as running:
        with running.app.sessions.begin() as session:
            history_ending_now(session, clock())
        yield running


# --- deploybot stats ------------------------------------------------------------------------------


def test_the_terminal_shows_the_figures_as_json_named_and_as_a_table(database_url: str) -> None:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    with db.make_sessions(engine).begin() as session:
        history_ending_now(session)
    engine.dispose()

    result = deploybot(database_url, "stats", "--environment", "production", "--period", "4w", "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["environment"] == "production" and found["period"]["asked"] == "4w"
    delivery = found["delivery"]
    assert delivery["deployments"] == 4 and delivery["failed_or_rolled_back"] == 2
    assert delivery["change_failure_rate"] == 0.5 and delivery["deployments_per_week"] == 1.0
    assert delivery["time_to_restore_median_seconds"] == 2400 and delivery["restored_failures"] == 1
    assert delivery["run_duration_median_seconds"] == 5400 and delivery["run_duration_p90_seconds"] == 7200
    assert delivery["phase_time_median_seconds"] == [
        {"phase": "pre", "title": "Pre-Deployment", "seconds": 1200},
        {"phase": "deploy", "title": "Deployment", "seconds": 600},
        {"phase": "post", "title": "Post-Deployment", "seconds": 3000},
    ]
    assert (delivery["aborted_runs_not_counted"], delivery["active_runs_not_counted"]) == (1, 1)
    health = found["health"]
    assert health["not_applicable"][0]["reasons"] == [
        {"reason": "No S3 here", "count": 3},
        {"reason": "Not using S3", "count": 1},
    ]
    assert [i["item"] for i in health["overridden_against_failed_probe"]] == ["q1", "d1"]
    assert health["maintenance"] == [
        {"cadence": "daily", "slots": 4, "completed_on_time": 1, "completed_late": 1, "overdue": 1, "missed": 1}
    ]
    assert health["pages"]["time_to_acknowledge_median_seconds"] == 600
    assert found["worth_a_look"][0].startswith("“Error rate is normal” was ticked over a failed probe twice")

    table = deploybot(database_url, "stats", "--environment", "production", "--period", "4w")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert any(line.split()[:2] == ["Deployments", "4"] and "1.0 per week" in line for line in lines)
    assert any("Change failure rate" in line and "50%" in line for line in lines)
    assert any("Time to restore" in line and "40 min" in line for line in lines)
    assert any("Run duration" in line and "1 h 30 min" in line and "p90 2 h" in line for line in lines)
    assert any("Post-Deployment" in line and "50 min" in line for line in lines)
    assert "1. “Error rate is normal” was ticked over a failed probe twice" in table.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--period", "30x"], "The period '30x' is not one deploybot reads"),
        (["--period", "0d"], "from 1d to 3660d"),
        (["--environment", "nowhere"], "No deployment ever ran in environment 'nowhere'. Environments with"),
        (
            ["--environment", "<!channel>&"],
            "environment '<!channel>&'. Environments",
        ),  # as typed, not as Slack shows it
    ],
)
def test_the_terminal_refuses_bad_input_in_one_line(tmp_path: Path, args: list[str], says: str) -> None:
    url = f"sqlite:///{tmp_path}/deploybot.db"
    assert deploybot(url, "db", "upgrade").returncode == 0
    result = deploybot(url, "stats", *args)
    assert result.returncode == 2 and result.stdout == ""
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_terminal_says_when_the_database_is_down() -> None:
    result = deploybot("postgresql+psycopg://nobody@127.0.0.1:1/none", "stats")
    assert result.returncode == 2 and result.stdout == ""
    assert "Traceback" not in result.stderr and "127.0.0.1:1" in result.stderr


def test_the_terminal_keeps_hostile_text_inert(database_url: str) -> None:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    with db.make_sessions(engine).begin() as session:
        h = History(session, utcnow() - END)
        for n, text in enumerate(t for t in HOSTILE if "\x00" not in t and t.strip()):
            h.run("11-20 10:00", "complete", "11-20 11:00", items={"p3": ("na", "11-20 10:30", text)})
            h.run("11-20 10:00", "complete", "11-20 11:00", environment=f"e{n}{text[:50]}"[:64])
    engine.dispose()
    result = deploybot(database_url, "stats", "--period", "4w")
    assert result.returncode == 0, result.stderr
    assert not any(c in result.stdout for c in ("\x1b", "\x9b", "\x07", "\u202e", "\r"))
    assert "Deployments" in result.stdout and "S3 credentials are configured" in result.stdout
    as_json = deploybot(database_url, "stats", "--period", "4w", "--json").stdout
    assert not any(c in as_json for c in ("\x1b", "\x9b", "\x07", "\u202e"))
    assert "\\u202e" in as_json and "\\u009b" in as_json  # escaped, not raw
    reasons = json.loads(as_json)["health"]["not_applicable"][0]["reasons"]
    assert "\u202eRTL override\u202c" in [r["reason"] for r in reasons]  # a program reads it as typed


# --- /deploy stats --------------------------------------------------------------------------------


def test_deploy_stats_answers_privately_with_the_figures(bot: Running) -> None:
    answer = bot.slack.command("stats production 4w").json()
    assert answer["response_type"] == "ephemeral"
    assert answer["text"] == "4 deployments in the last 4w, change failure rate 50%, time to restore 40 min."
    assert check_blocks(answer["blocks"]) == []
    shown = json.dumps(answer["blocks"], ensure_ascii=False)
    for text in ("*Deployments*\\n4 (1.0 per week)", "*Change failure rate*\\n50% (2 failed or rolled back)",
                 "*Time to restore*\\n40 min (median of 1)", "*Run duration*\\n1 h 30 min median · 2 h p90",
                 "Pre-Deployment 20 min · Deployment 10 min · Post-Deployment 50 min",
                 "Not counted: 1 aborted, 1 still active.",
                 "• S3 credentials are configured: 4 of 6 runs — “No S3 here” ×3, “Not using S3” ×1",
                 "*Worth a look*\\n• “Error rate is normal” was ticked over a failed probe twice"):  # fmt: skip
        assert text in shown, text

    both = bot.slack.command("stats").json()  # every environment, the last 30 days
    assert both["text"].startswith("7 deployments in the last 30d, change failure rate 28.6%")
    assert bot.slack.command("stats 4w staging").json()["text"].startswith("2 deployments in the last 4w")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("stats nowhere", "No deployment ever ran in environment 'nowhere'. Environments with deployments: "),
        ("stats production staging", "Say at most one environment and one period"),
        ("stats 4w 12w", "Say at most one environment and one period"),
        ("stats production 30x", "The period '30x' is not one deploybot reads"),
    ],
)
def test_deploy_stats_refuses_bad_input_in_one_line(bot: Running, text: str, says: str) -> None:
    answer = bot.slack.command(text).json()
    assert answer["response_type"] == "ephemeral" and "blocks" not in answer
    assert says in answer["text"] and "\n" not in answer["text"]


def test_deploy_stats_keeps_hostile_text_inert_and_within_limits(bot: Running, clock: ShiftedClock) -> None:
    with bot.app.sessions.begin() as session:
        h = History(session, clock() - END)
        h.run("11-20 10:00", "complete", "11-20 11:00", environment="<!channel> & co")
        for text in (t for t in HOSTILE if "\x00" not in t and t.strip()):
            h.run("11-21 10:00", "complete", "11-21 11:00", items={"p3": ("na", "11-21 10:30", text * 20)})
    # Slack sends "<", ">" and "&" escaped in a command's text.
    answer = bot.slack.command("stats &lt;!channel&gt;&amp;x").json()
    assert "<!channel>" not in answer["text"] and "&lt;!channel&gt;&amp;x" in answer["text"]
    listed = bot.slack.command("stats 4w").json()
    assert check_blocks(listed["blocks"]) == []
    shown = json.dumps(listed, ensure_ascii=False)
    assert "S3 credentials are configured" in shown
    assert not any(raw in shown for raw in ("<!channel>", "<!here>", "<@U0123ABCDE>", "<https://evil"))


# --- App Home -------------------------------------------------------------------------------------


def test_the_home_tab_shows_each_environment_and_what_is_worth_a_look(bot: Running) -> None:
    open_home(bot)
    shows(bot, "*Delivery, last 30 days*")
    text = json.loads(home_text(bot))
    delivery = next(b["text"]["text"] for b in text if "Delivery, last 30 days" in b.get("text", {}).get("text", ""))
    assert delivery.splitlines()[1:] == [
        "*production*: 5 deployments (1.2/week) · 40% failed · restore 40 min · run 2 h",
        "*staging*: 2 deployments (0.5/week) · 0% failed · restore — · run 20 min",
    ]
    assert "*Worth a look*\\n• “Error rate is normal” was ticked over a failed probe twice" in home_text(bot)


def test_the_home_tab_stays_within_limits_with_many_environments_and_runs(bot: Running, clock: ShiftedClock) -> None:
    for n in range(25):
        bot.slack.command(f"start v{n}.0 production", channel=f"C{n:03d}LIM")  # the full seed checklist
    with bot.app.sessions.begin() as session:
        h = History(session, clock() - END)
        for text in (t for t in HOSTILE if "\x00" not in t and t.strip()):
            h.run("11-20 10:00", "complete", "11-20 11:00", environment=text[:64])
            h.run("11-21 10:00", "complete", "11-21 11:00", items={"p3": ("na", "11-21 10:30", text * 20)})
    open_home(bot, "U300")
    shows(bot, "…and ", user="U300")
    view = bot.fake.homes["U300"]
    assert check_view(view) == [] and len(view["blocks"]) <= BLOCKS_PER_VIEW
    assert "<!channel>" not in home_text(bot, "U300") and "*#25*" in home_text(bot, "U300")


# --- /metrics -------------------------------------------------------------------------------------


def test_metrics_show_the_delivery_figures_per_environment(bot: Running, fake_slack: FakeSlack) -> None:
    scraped = httpx.get(f"{bot.url}/metrics").text
    lines = scraped.splitlines()
    for line in (
        'deploybot_deployments{environment="production",period="30d"} 5.0',
        'deploybot_deployments{environment="staging",period="30d"} 2.0',
        'deploybot_deployment_failures{environment="production",period="30d"} 2.0',
        'deploybot_change_failure_rate{environment="production",period="30d"} 0.4',
        'deploybot_change_failure_rate{environment="staging",period="30d"} 0.0',
        'deploybot_time_to_restore_median_seconds{environment="production",period="30d"} 2400.0',
        'deploybot_run_duration_median_seconds{environment="production",period="30d"} 7200.0',
        'deploybot_run_duration_p90_seconds{environment="staging",period="30d"} 1680.0',
    ):
        assert line in lines, line
    assert not any(line.startswith('deploybot_time_to_restore_median_seconds{environment="staging"') for line in lines)
    # Each family is typed once and its series stay together, as the exposition format asks.
    families = [name for name, _ in itertools.groupby(line.split("{")[0] for line in lines if "period=" in line)]
    assert len(families) == len(set(families)) == 7
    assert lines.count("# TYPE deploybot_deployments gauge") == 1

    # Another replica reading the same database says the same.
    other = create_app(settings_for(bot.app.settings.database_url, fake_slack))
    try:
        assert {k: v for k, v in other.gauges().items() if "period" in k} == {
            k: v for k, v in bot.app.gauges().items() if "period" in k
        }
    finally:
        other.engine.dispose()


def test_metrics_follow_new_deployments_within_half_a_minute(bot: Running, clock: ShiftedClock) -> None:
    production = 'deployments{environment="production",period="30d"}'  # /metrics adds the deploybot_ prefix
    assert bot.app.gauges()[production] == 5.0
    with bot.app.sessions.begin() as session:
        History(session, clock() - END).run("11-29 12:00", "complete", "11-29 13:00")
    assert bot.app.gauges()[production] == 5.0  # kept for a while: a scrape costs no query
    clock.advance(seconds=31)
    assert bot.app.gauges()[production] == 6.0


def hostile_report(text: str) -> Report:
    """A report whose every text field holds `text`, twenty times over where people may write that much."""
    long = text * 20
    item = ItemCount("deploy", "x", long, 3, 9, (Reason(long, 2), Reason(text, 1)))
    figures = Figures(
        text, START, END, deployments=3, phase_time_medians={"p": 60.0}, phase_titles={"p": long}, aborted=1
    )
    health = Health(
        text,
        START,
        END,
        runs=9,
        runs_in_period=9,
        not_applicable=(item,) * 5,
        overridden=(item,) * 5,
        left_for_last=(item,) * 5,
        completed_open=(item,) * 5,
        flaky_probes=(FlakyProbe("deploy", "x", long, 9, 4, 2),) * 5,
        cadences=(CadenceHealth(long, 4, 1, 1, 1, 1),) * 5,
        pages=Pages(2, 1, 60.0, 1),
    )
    return Report("4w", figures, health, health.worth_a_look())


@pytest.mark.parametrize("text", [t for t in HOSTILE if t.strip()])
def test_every_field_renders_inert_and_within_limits(text: str) -> None:
    report = hostile_report(text)
    blocks = stats_blocks(report)
    assert check_blocks(blocks) == [] and len(blocks) <= 8
    shown = json.dumps(blocks, ensure_ascii=False)
    assert not any(raw in shown for raw in ("<!", "<@", "<#", "<http", "<mailto")), shown
    table = as_table(report)
    assert not any(c in table for c in ("\x1b", "\x9b", "\x07", "\u202e", "\r", "\x00"))
    assert len(report.worth_a_look) == 3  # plain sentences: each surface escapes them its own way

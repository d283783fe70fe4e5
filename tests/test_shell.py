"""`deploybot shell` for the on-call engineer whose Slack is down: items in full, several at once, plain text."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from sqlalchemy import make_url, select

from bot import heartbeat, runs
from bot.config import Settings
from bot.models import Event, Heartbeat, ItemState, ItemStatus, Page, ProbeStatus, Run
from bot.services import utcnow
from bot.shell import Shell, open_shell
from bot.slack import blocks
from tests.cable import Cable
from tests.conftest import ROOT, Running, postgres_schema_url
from tests.probe_servers import http_server
from tests.test_probe_flow import CHECKLIST, Target

EXAMPLE_CONFIG = ROOT / "deploybot.example.yml"
# What Slack writes and a terminal must never show.
SLACK_SYNTAX = re.compile(r"<[@#!]|:[a-z_]+:|/deploy |\*[^*\s][^*]*\*|&(?:amp|lt|gt);")


@contextmanager
def shell_on(database_url: str, **env: str) -> Iterator[Shell]:
    """The shell `deploybot shell` opens, on this database, as alice, with the repository's checklists."""
    settings = Settings.from_env(
        {
            "DATABASE_URL": database_url,
            "DEPLOYBOT_USER": "alice",
            "DEPLOYBOT_CHECKLISTS": str(ROOT / "checklists"),
            "DEPLOYBOT_CONFIG": str(EXAMPLE_CONFIG),
            **env,
        }
    )
    with open_shell(settings) as shell:
        yield shell


@pytest.fixture
def sh(database_url: str, tmp_path: Path) -> Iterator[Shell]:
    """The example deploybot.yml with production only: staging runs have their probes off, nothing leaves the host."""
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    config["environments"] = {"production": config["environments"]["production"]}
    (tmp_path / "deploybot.yml").write_text(yaml.safe_dump(config))
    with shell_on(database_url, DEPLOYBOT_CONFIG=str(tmp_path / "deploybot.yml")) as shell:
        yield shell


def statuses(shell: Shell, run_id: int = 1) -> dict[int, str]:
    with shell.services.read() as session:
        return {s.position + 1: s.status for s in session.scalars(select(ItemState).where(ItemState.run_id == run_id))}


def a_run(shell: Shell, status: str = "") -> Run:
    with shell.services.read() as session:
        run = runs.get_run(session, shell.run_id or 1)
        session.expunge(run)
        return run


# --- 1. commands and help --------------------------------------------------------------------------


def test_a_rollback_shows_each_items_command_with_the_previous_version_filled_in_as_slack_does(sh: Shell) -> None:
    sh.handle("start v1.0 staging")
    sh.handle("tick 1-89")  # a release that passed its whole checklist: the rollback's target
    sh.run_id = None
    sh.handle("start v1.1 staging")
    out = sh.handle('fail "error rate 12%"')
    assert "now on its rollback, run #3" in out
    assert "Checkout previous version" in out and "$ git checkout v1.0" in out
    assert "$ docker compose -f docker-compose.prod.yml down" in out
    with sh.services.read() as session:
        rollback = runs.get_run(session, 3)
        item = rollback.template.item("checkout-previous-version")
        assert item is not None
        state = rollback.state_of(item.id)
        assert state is not None
        in_slack = blocks._item_block(rollback, item, state)["text"]["text"]
    assert f"`{item.command}`" in in_slack and "$ " + str(item.command) in out  # the same filled-in command

    shown = sh.handle("show 8")
    assert shown.splitlines()[1].startswith("      8. [ ] Checkout previous version")
    assert "$ git checkout v1.0" in shown
    assert sh.handle("show 99").startswith("! show N, with N an item number from 1 to ")


def test_status_shows_the_help_of_open_items_like_slack(sh: Shell) -> None:
    out = sh.handle("start v1.0 staging")
    with sh.services.read() as session:
        template = runs.get_run(session, 1).template
    helped = next(n for n, item in enumerate(template.items, 1) if item.help)
    help_text = str(template.items[helped - 1].help)
    assert help_text.splitlines()[0] in out
    sh.handle(f"tick {helped}")
    assert help_text.splitlines()[0] not in sh.handle("status")  # as in Slack: help while the item is open
    assert help_text.splitlines()[0] in sh.handle(f"show {helped}")


# --- 2. several items, ranges, refusals -------------------------------------------------------------


def test_tick_takes_several_items_lists_and_ranges_and_echoes_number_and_text(sh: Shell) -> None:
    sh.handle("start v1.0 staging")
    out = sh.handle("tick 3 4 5")
    assert out.splitlines()[:3] == [
        "done: 3. SSL certificate is obtained (Let's Encrypt or commercial)",
        "done: 4. All required services are provisioned (PostgreSQL, Redis, S3)",
        "done: 5. `.env.production` file is created from `.env.production.example`",
    ]
    sh.handle("tick 6-8")
    sh.handle("done 9,11")
    assert {n for n, s in statuses(sh).items() if s == "done"} == {3, 4, 5, 6, 7, 8, 9, 11}
    assert "already done, unchanged: 3." in sh.handle("tick 3")

    assert sh.handle("undo 3-4").splitlines()[:2] == [
        "open again: 3. SSL certificate is obtained (Let's Encrypt or commercial)",
        "open again: 4. All required services are provisioned (PostgreSQL, Redis, S3)",
    ]
    sh.handle("reopen 5")
    sh.handle("untick 6")
    na = sh.handle('na 10 12-13 "no S3 in staging"')
    assert "N/A: 13. Frontend URL is set correctly" in na
    assert {n for n, s in statuses(sh).items() if s == "na"} == {10, 12, 13}
    assert {n for n, s in statuses(sh).items() if s == "done"} == {7, 8, 9, 11}


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("tick 3 999", "! There is no item 999: items go from 1 to 89. Nothing changed."),
        ("tick 3-120", "! There is no item 120: items go from 1 to 89. Nothing changed."),
        ("tick 0", "! There is no item 0: items go from 1 to 89. Nothing changed."),
        ("tick 3 four", "! 'four' is not an item number or range: 'tick' takes e.g. '3', '3 4 5', '3-8' or '3,4'."),
        ("tick 8-3", "! '8-3' counts backwards: write it '3-8'. Nothing changed."),
        ("tick", "! Say which item(s): 'tick N', e.g. '3', '3 4 5', '3-8' or '3,4' ('status' numbers them)."),
        ("untick 3 x", "! 'x' is not an item number or range: 'untick' takes"),
        ('na 3 999 "why"', "! There is no item 999: items go from 1 to 89. Nothing changed."),
        ("na 3 4", '! Say why: na N… "reason", e.g. na 10 "no S3 in staging". Nothing changed.'),
        ('na "why" 3', '! na N… "reason": item numbers first, then the reason'),
    ],
)
def test_what_tick_untick_and_na_do_not_take_is_refused_and_changes_nothing(sh: Shell, line: str, said: str) -> None:
    sh.handle("start v1.0 staging")
    sh.handle("tick 4")
    before = statuses(sh)
    assert sh.handle(line).startswith(said)
    assert statuses(sh) == before


# --- 3. complete anyway asks -----------------------------------------------------------------------


def test_complete_anyway_from_a_script_needs_the_reason_on_its_line(sh: Shell) -> None:
    sh.handle("start v1.0 staging")
    refused = sh.handle("complete-anyway")
    assert refused == (
        "! 88 required item(s) are open. Say why you complete anyway: 'complete-anyway \"reason\"'. Nothing changed."
    )
    assert a_run(sh).status == "active"
    out = sh.handle('complete-anyway "Slack is down; checked by hand with <@U0BOB00001>"')
    assert out.startswith("completed anyway with 88 required item(s) open")
    run = a_run(sh)
    assert (run.status, run.finish_reason) == ("complete", "Slack is down; checked by hand with <@U0BOB00001>")
    with sh.services.read() as session:
        event = session.scalars(select(Event).where(Event.kind == "run.completed_anyway")).one()
    assert event.data["reason"] == run.finish_reason and len(event.data["open_items"]) == 88


def test_complete_anyway_at_a_terminal_lists_the_open_items_and_asks_for_a_reason(sh: Shell) -> None:
    sh.handle("start v1.0 staging")
    sh.handle("tick 1-85")
    asked: list[str] = []
    sh.reach.ask = lambda question: asked.append(question) or ""
    assert sh.handle("complete-anyway") == "Not completed: a reason is needed to complete anyway. Nothing changed."
    assert a_run(sh).status == "active"
    assert asked[0].startswith("4 required item(s) are open:\n  86. Error tracking is configured\n")
    assert asked[0].endswith("Reason (empty: keep going): ")

    sh.reach.ask = lambda _question: "verified on the dashboards"
    assert sh.handle("complete-anyway").startswith("completed anyway with 4 required item(s) open")
    assert a_run(sh).finish_reason == "verified on the dashboards"
    status = sh.handle("status")
    assert "COMPLETED ANYWAY by alice after 0 min: verified on the dashboards, with 4 required item(s) open" in status


# --- 4. every command the help lists ---------------------------------------------------------------


def test_help_lists_every_command_the_shell_takes_and_each_works(sh: Shell) -> None:
    help_text = sh.handle("help")
    for command in ("reminders", "remind <cadence>", "diff", "done N", "reopen N", "undo N", "show N"):
        assert command in help_text, command
    listed = set(re.findall(r"^  ([a-z-]+)", help_text, re.M)) | set(re.findall(r"\| ([a-z-]+)", help_text))
    assert listed - {"help", "quit"} <= set(sh.commands)
    assert set(sh.commands) <= listed | {"help"}, set(sh.commands) - listed

    reminders = sh.handle("reminders")
    assert reminders.startswith("Maintenance checklists\n• Daily — next ")
    assert "('0 9 * * mon-fri') in #C0123456789 · never posted" in reminders
    posted = sh.handle("remind weekly")
    assert posted.startswith("Posted the weekly maintenance checklist as run #1")
    assert sh.handle("remind fortnightly").startswith("! There is no cadence 'fortnightly'. Cadences: daily, weekly")

    sh.run_id = None
    sh.handle("start v1.0 staging")
    sh.handle('na 10 "no S3"')
    sh.handle('complete-anyway "hand-checked"')
    sh.run_id = None
    sh.handle("start v1.1 staging")
    sh.handle('na 10 12 "no S3"')
    sh.handle('complete-anyway "hand-checked"')
    diff = sh.handle("diff")
    assert diff.startswith("Compared with v1.0: newly N/A: Mansa Transfers API credentials are configured.")
    assert "  newly N/A: 12. Mansa Transfers API credentials are configured" in diff
    assert sh.handle("diff 3 2") == diff
    assert sh.handle("diff x").startswith("! diff [run] [other run]")
    assert sh.handle("export <b>") == "! export [md|csv|json], e.g. 'export md' (Markdown, the default)."


# --- 6. no Slack syntax in the terminal -------------------------------------------------------------


def test_the_terminal_gets_no_slack_syntax_from_the_rules(sh: Shell) -> None:
    contacts = sh.handle("contacts")
    assert SLACK_SYNTAX.search(contacts) is None, contacts
    assert "• On-Call Engineer ('oncall'): U0ONCALL01 · PagerDuty" in contacts
    assert "   phone: +1 555 0100" in contacts and "user group S0DEVOPS01" in contacts
    assert contacts.endswith("Page one with 'page <team> <message>'.")

    sh.handle("start v1.0 staging")
    said = [
        sh.handle("abort"),
        sh.handle("start v2 staging"),
        sh.handle("start production"),
        sh.handle("start v2 --force"),
        sh.handle('page nobody "x"'),
        sh.handle("page dba"),
        sh.handle("use 42"),
        sh.handle("fail"),
    ]
    assert said[0] == "! Say why: 'abort <reason>', e.g. 'abort failed smoke tests'."
    assert "stop it with 'abort <reason>'" in said[1]
    assert said[2].startswith("! 'production' is an environment, not a version: 'start <version> [environment]")
    assert said[3] == "! '--force' is not an option of start; it takes '--checklist <name>'."
    assert said[6] == "! Run #42 does not exist. 'list' shows the recent runs."
    for text in said:
        assert SLACK_SYNTAX.search(text) is None, text

    sh.handle('page dba "disk full"')
    sh.handle("ack 1")
    assert sh.handle("ack 1") == "alice already acknowledged page #1 (dba); nothing changed."
    sh.handle("tick 1")
    sh.handle('abort "rolled out by hand <@U0BOB00001> *now*"')
    refused = sh.handle("tick 2")
    assert refused == "! Run #1 (v1.0) was aborted by alice: rolled out by hand <@U0BOB00001> *now*. Nothing changed."


def test_slack_keeps_its_mrkdwn_for_the_same_messages(sh: Shell) -> None:
    from bot.config import load_deploy_config
    from bot.paging.render import contacts_text

    text = contacts_text(load_deploy_config(EXAMPLE_CONFIG).contacts)
    assert text.splitlines()[:2] == [
        "*Emergency contacts*",
        "• *On-Call Engineer* (`oncall`): <@U0ONCALL01> · PagerDuty · acknowledge within 5m, then DevOps Team, "
        "repeated 1×",
    ]
    assert "   :telephone_receiver: +1 555 0100" in text and "<!subteam^S0DEVOPS01>" in text
    assert text.endswith("Page one with `/deploy page <team> <message>`.")
    with pytest.raises(runs.RunError) as caught, sh.services.change() as session:
        runs.abort(session, 1, "", runs.Actor("U0ALICE001", utcnow(), "C1"))
    assert str(caught.value) == "Say why: `/deploy abort <reason>`, e.g. `/deploy abort failed smoke tests`."


# --- 7. list and status say how runs ended ----------------------------------------------------------


def test_list_says_how_each_run_went_how_long_and_who_and_shows_a_rollback_as_one(sh: Shell) -> None:
    sh.handle("start v1.0 staging")
    sh.handle("tick 1-89")
    sh.run_id = None
    sh.handle("start v1.1 staging")
    sh.handle('fail "error rate 12%"')
    sh.handle("tick 1-11")  # the whole rollback checklist: run #2 is rolled back
    sh.run_id = None
    sh.handle("start v1.2 staging")
    sh.handle('complete-anyway "hotfix"')
    sh.run_id = None
    sh.handle("start v1.3 staging")
    sh.handle('fail "smoke tests"')
    lines = sh.handle("list").splitlines()
    assert [re.sub(r" · \d+ min.*", "", line) for line in lines] == [
        "#6 Rollback of v1.3 → staging (back to v1.0) · in progress",
        "#5 Deployment v1.3 → staging · failed",
        "#4 Deployment v1.2 → staging · completed anyway",
        "#3 Rollback of v1.1 → staging (back to v1.0) · completed",
        "#2 Deployment v1.1 → staging · rolled back",
        "#1 Deployment v1.0 → staging · completed",
    ]
    assert lines[0].endswith(" min so far · started by alice " + lines[0].split("started by alice ")[1])
    assert re.search(r" · 0 min · started by alice \d{4}-\d\d-\d\d \d\d:\d\d UTC · in shell$", lines[1])

    failed = sh.handle("use 5")
    assert failed.splitlines()[0] == "Run #5 · Deployment v1.3 → staging: failed, 0/89 done"
    assert failed.splitlines()[2].startswith("FAILED: declared failed by alice after 0 min: smoke tests.")
    assert "COMPLETED ANYWAY by alice" in sh.handle("use 4")
    assert "ROLLED BACK: declared failed by alice" in sh.handle("use 2")


# --- 8. liveness -------------------------------------------------------------------------------------


def test_a_deploybot_replica_beats_while_it_runs_and_says_goodbye(sh: Shell) -> None:
    beating = heartbeat.Beating(sh.services.sessions, utcnow)
    assert sh.reach.liveness is not None and not sh.reach.liveness.bot_alive()
    beating.start()
    try:
        [replica] = sh.reach.liveness.replicas()
        assert replica.name == heartbeat.replica_name() and replica.started_at == beating.started_at
        assert sh.handle('page dba "disk full"') == (
            "page #1 raised for dba; the running deploybot notifies and escalates it"
        )
        sh.handle("start v1 staging")
        assert sh.handle("status").endswith(f"deploybot is running: {replica.name} (last heartbeat 0 s ago)")
    finally:
        beating.stop()
    with sh.services.read() as session:
        assert session.scalars(select(Heartbeat)).all() == []
    assert sh.handle('page dba "still full"') == "page #2 for dba queued; no deploybot is running to deliver it"
    assert sh.handle("status").endswith("no deploybot is running (no heartbeat in the last 15 s)")
    with sh.services.read() as session:
        assert [p.status for p in session.scalars(select(Page).order_by(Page.id))] == ["open", "open"]


def test_a_stale_heartbeat_is_no_running_deploybot(sh: Shell) -> None:
    long_ago = utcnow() - heartbeat.ALIVE_WITHIN * 2
    with sh.services.change() as session:
        session.add(Heartbeat(replica="db-1:4242", started_at=long_ago, beat_at=long_ago))
    assert sh.reach.liveness is not None and not sh.reach.liveness.bot_alive()
    assert "queued; no deploybot is running to deliver it" in sh.handle('page dba "x"')


def test_deploybot_run_writes_its_heartbeat_and_slack_hears_of_a_typod_environment(
    running: Running, database_url: str
) -> None:
    with shell_on(database_url) as shell:
        assert shell.reach.liveness is not None and shell.reach.liveness.bot_alive()
    answer = running.slack.command("start v1.5.0 prod").json()["text"]
    assert answer.endswith(
        "\nProbes are off for 'prod' (known: none): add environment `prod` to deploybot.yml to turn them on."
    )


def test_with_no_deploybot_alive_the_shell_runs_the_probes_itself(database_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "checklists"
    folder.mkdir()
    (folder / "production-deploy.yml").write_text(yaml.safe_dump(CHECKLIST))
    target = Target(slow_seconds=0)
    with http_server(target.route) as url:
        (tmp_path / "deploybot.yml").write_text(yaml.safe_dump({"environments": {"production": {"api_url": url}}}))
        with shell_on(
            database_url, DEPLOYBOT_CHECKLISTS=str(folder), DEPLOYBOT_CONFIG=str(tmp_path / "deploybot.yml")
        ) as sh:
            out = sh.handle("start v2.0 production")
            assert "note: no deploybot is running, so this shell runs the 4 queued probe(s) itself" in out
            from tests.conftest import wait_for

            wait_for(lambda: "pending" not in {s.probe_status for s in _states(sh)}, what="the shell's probes")
            status = sh.handle("status")
            assert "1. [x] Health endpoint returns `200 OK` — deploybot" in status
            assert "probes run in this shell while it is open" in status


def _states(shell: Shell) -> list[ItemState]:
    with shell.services.read() as session:
        return list(session.scalars(select(ItemState)))


def test_a_typod_environment_says_probes_are_off_and_which_are_known(sh: Shell) -> None:
    out = sh.handle("start v1.5.0 prod")
    assert out.splitlines()[-1] == (
        "note: Probes are off for 'prod' (known: production): add environment 'prod' to deploybot.yml to turn them on."
    )
    sh.run_id = None
    sh.handle("abort typo")
    assert "Probes are off for 'staging'" in sh.handle("start v1.5.0 staging")


def test_a_database_that_stops_answering_is_one_line_and_the_session_goes_on() -> None:
    schemas = postgres_schema_url()
    url = next(schemas)
    cable = Cable(make_url(url).port or 5432)
    try:
        with shell_on(url.replace(f":{make_url(url).port}/", f":{cable.port}/")) as sh:
            sh.handle("start v1 staging")
            cable.sever()
            said = sh.handle("tick 1")
            assert said.startswith("! cannot use the database at postgresql+psycopg://postgres@127.0.0.1:")
            assert said.endswith("; check DATABASE_URL. Nothing changed; try again.") and "\n" not in said
            assert sh.handle("status").startswith("! cannot use the database")
    finally:
        cable.close()
        schemas.close()


def test_an_item_whose_probe_failed_is_ticked_only_anyway_as_slack_offers(sh: Shell) -> None:
    sh.handle("start v1 staging")  # probes off: the verdict below is the only one
    with sh.services.change() as session:  # the probe of item 2 failed, as a probe run records it
        state = session.scalars(select(ItemState).order_by(ItemState.position)).all()[1]
        state.probe_status, state.probe_reason = ProbeStatus.FAILED, "HTTP 503 from /health"
    refused = sh.handle("tick 1-3")
    assert refused.startswith("! The probe of 1 of these failed:")
    assert ": HTTP 503 from /health" in refused and "tick 2 --anyway" in refused and "Nothing changed" in refused
    assert {s.status for s in _states(sh)} == {ItemStatus.OPEN}
    done = sh.handle("tick 1-3 --anyway")
    assert "done anyway, over its failed probe: 2. " in done
    with sh.services.read() as session:
        assert session.scalars(select(Event.item_id).where(Event.kind == "item.override")).all() == [state.item_id]

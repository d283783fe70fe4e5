"""The record of a run for an auditor: who (names beside ids), when (the team's zone), which item, why."""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot import db, export, items, people, runs
from bot.checklists import Template, load_folder
from bot.export_csv import COLUMNS
from bot.models import Person
from bot.printable import visible
from bot.runs import Actor
from bot.services import Services
from bot.slack import blocks
from tests.conftest import ROOT, Running
from tests.slack_requests import BLOCK_ACTIONS, FIXTURES, SLASH_COMMAND, VIEW_SUBMISSION
from tests.test_shell_export import shell
from tests.test_slack_flow import CHANNEL, click_item

TEMPLATES = load_folder(ROOT / "checklists")
DEPLOY = TEMPLATES["production-deploy"]
AT = datetime(2026, 12, 1, 20, 30, 29, 161375, tzinfo=UTC)  # Tue 1 Dec 2026, 21:30 in Berlin
BERLIN = ZoneInfo("Europe/Berlin")
ALICE = Actor("U0ALICE001", AT, "C0DEPLOY01", name="Alice Smith")
BOB = Actor("U0BOB00001", AT + timedelta(minutes=5), "C0DEPLOY01", name="Bob Jones")
PIPELINE = Actor("ci:3", AT + timedelta(minutes=3), name="CI: github-actions prod")
SCHEMA = json.loads((ROOT / "docs" / "export.schema.json").read_text())


def number_of(item_id: str, template: Template = DEPLOY) -> int:
    return [i.id for i in template.items].index(item_id) + 1


S3 = "aws-s3-credentials-are-configured-if-using-s3"
TESTS = "all-tests-are-passing"


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    yield db.make_sessions(engine)
    engine.dispose()


def started(sessions: sessionmaker[Session], actor: Actor = ALICE, version: str = "v1.4.2") -> int:
    with sessions.begin() as session:
        return runs.start(
            session, DEPLOY, version=version, environment="production", channel_id="C0DEPLOY01", parts=None, actor=actor
        ).id


def exported(sessions: sessionmaker[Session], run_id: int, fmt: str, zone: ZoneInfo = BERLIN) -> str:
    with sessions() as session:
        return export.render(export.record(session, run_id), fmt, zone)


def document_of(sessions: sessionmaker[Session], run_id: int) -> dict[str, Any]:
    with sessions() as session:
        return export.record(session, run_id)


def a_worked_run(sessions: sessionmaker[Session]) -> int:
    """Alice starts, Bob ticks, Alice marks S3 N/A, Bob notes, the pipeline ticks, Bob completes it anyway."""
    run_id = started(sessions)
    with sessions.begin() as session:
        items.mark_done(session, run_id, TESTS, BOB)
        items.mark_na(session, run_id, S3, "no S3 here:\n# not a heading", ALICE)
        items.add_note(session, run_id, TESTS, "green on main", BOB)
        items.mark_done(session, run_id, "code-is-reviewed-and-approved", PIPELINE)
        runs.complete_anyway(session, run_id, BOB)
    return run_id


# --- 1. times as people read them, in the team's zone ----------------------------------------------


def test_the_markdown_shows_times_in_the_teams_zone_without_microseconds(sessions: sessionmaker[Session]) -> None:
    run_id = a_worked_run(sessions)
    markdown = exported(sessions, run_id, "md")
    assert "started by Alice Smith (U0ALICE001) on Tue 1 Dec 2026, 21:30 CET" in markdown
    assert "Times are in Europe/Berlin." in markdown
    assert "— Bob Jones (U0BOB00001), Tue 1 Dec 2026, 21:35 CET" in markdown
    assert "**Last Updated**: Tue 1 Dec 2026, 21:35 CET" in markdown
    assert "- Tue 1 Dec 2026, 21:30:29 CET · Alice Smith (U0ALICE001) · started the run" in markdown
    assert "2026-12-01T" not in markdown and "161375" not in markdown and "+00:00" not in markdown
    # JSON keeps ISO 8601 in UTC, to the microsecond.
    assert document_of(sessions, run_id)["run"]["started_at"] == "2026-12-01T20:30:29.161375+00:00"


def test_deploybot_export_reads_the_zone_from_deploybot_yml(
    sessions: sessionmaker[Session], database_url: str, tmp_path: Path
) -> None:
    run_id = a_worked_run(sessions)
    config = tmp_path / "deploybot.yml"
    config.write_text("timezone: Asia/Kolkata\n")
    env = {**os.environ, "DATABASE_URL": database_url, "DEPLOYBOT_CONFIG": str(config)}
    out = subprocess.run(
        [sys.executable, "-m", "bot", "export", str(run_id)], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert "started by Alice Smith (U0ALICE001) on Wed 2 Dec 2026, 02:00 IST" in out.stdout


# --- 2. names beside ids, in every format, inert ---------------------------------------------------


def test_every_user_id_in_the_markdown_comes_with_the_persons_name(sessions: sessionmaker[Session]) -> None:
    run_id = a_worked_run(sessions)
    markdown = exported(sessions, run_id, "md")
    lines = markdown.splitlines()
    tick = next(line for line in lines if f"{number_of(TESTS)}. All tests are passing" in line)
    assert tick.startswith(f"- [x] {number_of(TESTS)}. All tests are passing — Bob Jones (U0BOB00001), ")
    na = next(line for line in lines if "N/A:" in line)
    assert "— Alice Smith (U0ALICE001), " in na and na.endswith("— N/A: no S3 here:\\")
    assert "  - Note by Bob Jones (U0BOB00001) on Tue 1 Dec 2026, 21:35 CET: green on main" in lines
    assert "Completed anyway by Bob Jones (U0BOB00001) on Tue 1 Dec 2026, 21:35 CET." in lines
    assert "**Deployed By**: Alice Smith (U0ALICE001)" in lines
    trail = lines[lines.index("## Audit trail") :]
    people_in_trail = [line.split(" · ")[1] for line in trail if line.startswith("- ")]
    assert set(people_in_trail) == {
        "Alice Smith (U0ALICE001)",
        "Bob Jones (U0BOB00001)",
        "CI: github-actions prod (ci:3)",
    }
    # No bare id is left anywhere a person is named.
    assert re.search(r"(?<!\()U0(ALICE001|BOB00001)(?!\))", markdown) is None


def test_an_aborted_run_says_who_aborted_it_and_why(sessions: sessionmaker[Session]) -> None:
    run_id = started(sessions)
    with sessions.begin() as session:
        runs.abort(session, run_id, "smoke tests red", BOB)
    lines = exported(sessions, run_id, "md").splitlines()
    assert "Aborted by Bob Jones (U0BOB00001) on Tue 1 Dec 2026, 21:35 CET." in lines
    assert "Reason: smoke tests red" in lines
    assert any(line.endswith(" · Bob Jones (U0BOB00001) · aborted the run: smoke tests red") for line in lines)


def test_json_names_people_as_id_and_name_and_the_csv_in_columns(sessions: sessionmaker[Session]) -> None:
    run_id = a_worked_run(sessions)
    document = document_of(sessions, run_id)
    alice, bob = {"id": "U0ALICE001", "name": "Alice Smith"}, {"id": "U0BOB00001", "name": "Bob Jones"}
    assert (document["run"]["started_by"], document["run"]["finished_by"], document["footer"]["deployed_by"]) == (
        alice,
        bob,
        alice,
    )
    by_id = {i["id"]: i for i in document["items"]}
    assert by_id[TESTS]["by"] == bob and by_id[TESTS]["notes"][0]["by"] == bob and by_id[S3]["by"] == alice
    assert [e["user"] for e in document["events"]][:2] == [alice, bob]
    rows = {r["item"]: r for r in csv.DictReader(io.StringIO(exported(sessions, run_id, "csv")))}
    assert (rows[TESTS]["by"], rows[TESTS]["by_name"], rows[TESTS]["notes"]) == (
        "U0BOB00001",
        "Bob Jones",
        "Bob Jones (U0BOB00001): green on main",
    )


def test_a_pipeline_actor_reads_well_in_every_format(sessions: sessionmaker[Session]) -> None:
    run_id = a_worked_run(sessions)
    review = number_of("code-is-reviewed-and-approved")
    assert (
        f"- [x] {review}. Code is reviewed and approved — CI: github-actions prod (ci:3), Tue 1 Dec 2026, 21:33 CET"
        in (exported(sessions, run_id, "md").splitlines())
    )
    rows = {r["item"]: r for r in csv.DictReader(io.StringIO(exported(sessions, run_id, "csv")))}
    assert (rows["code-is-reviewed-and-approved"]["by"], rows["code-is-reviewed-and-approved"]["by_name"]) == (
        "ci:3",
        "CI: github-actions prod",
    )
    by_id = {i["id"]: i for i in document_of(sessions, run_id)["items"]}
    assert by_id["code-is-reviewed-and-approved"]["by"] == {"id": "ci:3", "name": "CI: github-actions prod"}


HOSTILE_NAME = '=HYPERLINK("//x.example") <!channel> *boss* [x](//x.example)\u202e1000'


def test_a_hostile_name_stays_inert_in_every_format(sessions: sessionmaker[Session]) -> None:
    mallory = Actor("U0MALLORY1", AT, name=HOSTILE_NAME + "\n# heading\x1b[31m")
    run_id = started(sessions)
    with sessions.begin() as session:
        items.mark_done(session, run_id, TESTS, mallory)
    kept = people.clean(mallory.name)
    assert kept == HOSTILE_NAME + " # heading [31m"  # one line: the break and the escape became spaces
    document = document_of(sessions, run_id)
    assert next(i for i in document["items"] if i["id"] == TESTS)["by"] == {"id": "U0MALLORY1", "name": kept}
    markdown = exported(sessions, run_id, "md")
    assert "<!channel>" not in markdown and "\u202e" not in markdown and "\n# heading" not in markdown
    assert (
        '=HYPERLINK("//x.example") \\<!channel\\> \\*boss\\* \\[x\\](//x.example)\\\\u202e1000 '
        "# heading \\[31m (U0MALLORY1)" in markdown
    )
    rows = {r["item"]: r for r in csv.DictReader(io.StringIO(exported(sessions, run_id, "csv")))}
    assert rows[TESTS]["by_name"] == f"'{visible(kept)}"  # a spreadsheet shows it, never runs it
    with sessions.begin() as session:
        items.add_note(session, run_id, TESTS, "fine", Actor("U0MALLORY2", AT, name="@SUM(1+1)"))
    rows = {r["item"]: r for r in csv.DictReader(io.StringIO(exported(sessions, run_id, "csv")))}
    assert rows[TESTS]["notes"] == "'@SUM(1+1) (U0MALLORY2): fine"


# --- keeping names -----------------------------------------------------------------------------------


def test_a_name_is_written_when_it_is_new_or_changed_and_only_then(sessions: sessionmaker[Session]) -> None:
    run_id = started(sessions)

    def kept() -> list[tuple[str, str, datetime]]:
        with sessions() as session:
            return [(p.user_id, p.name, p.updated_at) for p in session.scalars(select(Person).order_by(Person.user_id))]

    assert kept() == [("U0ALICE001", "Alice Smith", AT)]
    later = AT + timedelta(hours=1)
    with sessions.begin() as session:
        items.mark_done(session, run_id, TESTS, Actor("U0ALICE001", later, name="Alice Smith"))
        items.add_note(session, run_id, TESTS, "no name given", Actor("U0ALICE001", later))
        items.add_note(session, run_id, TESTS, "a probe has no name", Actor("deploybot", later))
    assert kept() == [("U0ALICE001", "Alice Smith", AT)]  # the same name: nothing written
    with sessions.begin() as session:
        items.reopen(session, run_id, TESTS, Actor("U0ALICE001", later, name="Alice Jones"))
    assert kept() == [("U0ALICE001", "Alice Jones", later)]
    # The record shows the name last given.
    assert document_of(sessions, run_id)["run"]["started_by"] == {"id": "U0ALICE001", "name": "Alice Jones"}


def test_names_are_read_from_what_slack_sends() -> None:
    assert people.from_slack_user(BLOCK_ACTIONS["user"]) == "primary-owner"
    assert people.from_slack_user(VIEW_SUBMISSION["user"]) == "primary-owner"
    assert people.clean(SLASH_COMMAND["user_name"]) == "primary-owner"
    for sample in ("BlockActionPayload.json", "ViewSubmissionPayload.json"):
        blank = json.loads((FIXTURES / sample).read_text())["user"]
        assert people.from_slack_user(blank) is None  # the shape samples blank every field: no name
    assert people.clean(json.loads((FIXTURES / "SlashCommandPayload.json").read_text())["user_name"]) is None
    assert people.from_slack_user({"id": "U1", "username": "bob"}) == "bob"
    assert people.from_slack_user({"id": "U1", "name": {"not": "text"}}) is None
    assert people.from_slack_user("U1") is None
    assert people.clean("x" * 500) == "x" * 80


def test_slack_clicks_forms_and_commands_record_the_name_slack_sent(running: Running, database_url: str) -> None:
    running.slack.command("start v1.4.2 production", user="U0ALICE001", channel=CHANNEL, name="alice.smith")
    running.settled()
    [parent] = [ts for (ch, ts), m in running.fake.messages.items() if ch == CHANNEL and not m["thread_ts"]]
    messages = running.fake.thread(CHANNEL, parent)
    assert click_item(running, messages, TESTS, user="U0BOB00001").status_code == 200  # the sample's name
    values = {"item": {"item": {"selected_option": {"value": S3}}}, "reason": {"reason": {"value": "no S3"}}}
    assert (
        running.slack.submit("item.na", json.dumps({"run": 1}), values, user="U0CAROL001", name="carol").status_code
        == 200
    )
    button = messages[0]["blocks"][3]["elements"][0]
    running.slack.click(
        button["action_id"],
        button["value"],
        user="U0DAVE0001",
        channel=CHANNEL,
        message_ts=messages[0]["ts"],
        name="dave",
    )
    running.settled()
    with running.app.sessions() as session:
        names = dict(session.execute(select(Person.user_id, Person.name)).all())
        markdown = export.render(export.record(session, 1), "md")
    assert names == {
        "U0ALICE001": "alice.smith",
        "U0BOB00001": "primary-owner",
        "U0CAROL001": "carol",
        "U0DAVE0001": "dave",
    }
    assert "started by alice.smith (U0ALICE001)" in markdown and "Completed anyway by dave (U0DAVE0001)" in markdown


def test_the_shell_records_the_terminal_users_name(database_url: str) -> None:
    shell(database_url, "start v1.2 staging\ntick 1\n", user="root")  # root is a user of every system
    shell(database_url, "use 1\ntick 2\n", user="U0NOSUCH01")  # a Slack id: the system knows no name for it
    engine = db.make_engine(database_url)
    with db.make_sessions(engine)() as session:
        assert dict(session.execute(select(Person.user_id, Person.name)).all()) == {"root": "root"}
        markdown = export.render(export.record(session, 1), "md")
    engine.dispose()
    assert "started by root on " in markdown and "(root)" not in markdown  # a name that is the id is said once
    assert f"- [x] 2. {DEPLOY.items[1].text} — U0NOSUCH01, " in markdown


# --- 3. completed anyway and the audit trail, by number and text ------------------------------------


def test_a_run_completed_anyway_lists_its_open_items_by_number_and_text(sessions: sessionmaker[Session]) -> None:
    run_id = a_worked_run(sessions)
    lines = exported(sessions, run_id, "md").splitlines()
    open_ids = document_of(sessions, run_id)["run"]["completed_anyway_with_open"]
    heading = lines.index(f"## Completed anyway with {len(open_ids)} required item(s) open")
    listed = lines[heading + 2 : heading + 2 + len(open_ids)]
    assert listed[:2] == [f"- 1. {DEPLOY.items[0].text}", f"- 2. {DEPLOY.items[1].text.replace('_', chr(92) + '_')}"]
    assert len(listed) == len(open_ids) and all(re.match(r"- \d+\. ", line) for line in listed)
    assert not any(slug in line for line in lines for slug in open_ids[:5])  # no slugs anywhere
    trail = next(line for line in lines if "completed the run anyway" in line)
    # 10 is optional, 23 and 24 were ticked: the rest of the 89 were open.
    assert trail.endswith(
        " · Bob Jones (U0BOB00001) · completed the run anyway with 86 required item(s) open: 1–9, 11–22, 25–89"
    )


def test_the_audit_trail_names_items_and_keeps_every_reason_and_note(sessions: sessionmaker[Session]) -> None:
    run_id = a_worked_run(sessions)
    trail = exported(sessions, run_id, "md").split("## Audit trail", 1)[1]
    s3 = f"{number_of(S3)}. AWS S3 credentials are configured (if using S3)"
    assert f"· Alice Smith (U0ALICE001) · marked {s3} N/A: no S3 here:\\\n    \\# not a heading\n" in trail
    assert (
        f"· Bob Jones (U0BOB00001) · ticked {number_of(TESTS)}. All tests are passing, which its pipeline (ci) "
        "reports, by hand: ticked before the pipeline reported it\n"
    ) in trail
    assert (
        f"· Bob Jones (U0BOB00001) · added a note to {number_of(TESTS)}. All tests are passing: green on main" in trail
    )
    assert "item.na" not in trail and S3 not in trail and "run.completed_anyway" not in trail
    failed = started(sessions, version="v1.4.3")
    with sessions.begin() as session:
        runs.fail(session, failed, "error rate 12% after deploy", BOB)
    trail = exported(sessions, failed, "md").split("## Audit trail", 1)[1]
    assert "· Bob Jones (U0BOB00001) · declared the deployment failed: error rate 12% after deploy" in trail


# --- 4. CSV rows say which run they belong to --------------------------------------------------------


def test_csv_rows_of_several_runs_stay_apart_under_one_stable_header(sessions: sessionmaker[Session]) -> None:
    first = a_worked_run(sessions)
    second = started(sessions, version="v1.5.0")
    header = exported(sessions, first, "csv").splitlines()[0]
    assert header.split(",") == list(COLUMNS) == [
        "run_id", "checklist", "version", "environment", "run_status", "number", "phase", "group", "item", "text",
        "required", "status", "by", "by_name", "at", "na_reason", "notes", "probe_status", "probe_reason",
        "overridden_by", "overridden_by_name", "probe_at", "probe_open_phase", "command", "help",
        "run_outcome", "run_finished_by", "run_finished_by_name", "run_finished_at", "run_finish_reason",
        "run_open_at_completion", "reported_by", "report_status", "report_by", "report_at", "evidence_url",
        "report_summary",
    ]  # fmt: skip
    both = exported(sessions, first, "csv") + exported(sessions, second, "csv").split("\r\n", 1)[1]
    rows = list(csv.DictReader(io.StringIO(both)))
    assert len(rows) == 2 * len(DEPLOY.items)
    tests = [r for r in rows if r["item"] == TESTS]
    assert [(r["run_id"], r["version"], r["environment"], r["checklist"], r["number"], r["status"]) for r in tests] == [
        (str(first), "v1.4.2", "production", "production-deploy", str(number_of(TESTS)), "done"),
        (str(second), "v1.5.0", "production", "production-deploy", str(number_of(TESTS)), "open"),
    ]
    assert {r["run_status"] for r in rows} == {"complete", "active"}


# --- 5. commands and help, as Slack shows them ---------------------------------------------------------


def test_every_format_shows_item_commands_and_help_as_slack_does(sessions: sessionmaker[Session]) -> None:
    released = started(sessions, version="v1.0.0")
    with sessions.begin() as session:  # a release that passed its whole checklist is what a rollback goes back to
        for item in DEPLOY.items:
            if item.required:
                items.mark_done(session, released, item.id, ALICE)
    broken = started(sessions, BOB, version="v1.1.0")
    services = Services(sessions=sessions, templates=TEMPLATES, wake=lambda: None, clock=lambda: AT)
    _, rollback = services.fail_deploy(broken, "500s everywhere", BOB)
    with sessions() as session:
        run = runs.get_run(session, rollback)
        slack = json.dumps([blocks.part_blocks(run, part, n) for n, part in enumerate(blocks.layout(run.template), 1)])
    assert "`git checkout v1.0.0`" in slack  # what Slack shows, the previous version filled in
    markdown = exported(sessions, rollback, "md")
    assert f"Rollback of run #{broken}, back to v1.0.0." in markdown
    checkout = number_of("checkout-previous-version", TEMPLATES["rollback"])
    assert f"- [ ] {checkout}. Checkout previous version\n  - Command: `git checkout v1.0.0`\n" in markdown
    assert "  - Command: `.\\deploy-production.ps1 -Health`" in markdown
    rows = {r["item"]: r for r in csv.DictReader(io.StringIO(exported(sessions, rollback, "csv")))}
    assert rows["checkout-previous-version"]["command"] == "git checkout v1.0.0"
    by_id = {i["id"]: i for i in document_of(sessions, rollback)["items"]}
    assert by_id["checkout-previous-version"]["command"] == "git checkout v1.0.0"
    assert "<previous-commit>" not in markdown

    help_text = "Mark N/A with a reason when this service does not use S3."
    assert f"  - Help: {help_text}" in exported(sessions, released, "md")
    rows = {r["item"]: r for r in csv.DictReader(io.StringIO(exported(sessions, released, "csv")))}
    assert rows[S3]["help"] == help_text
    assert next(i for i in document_of(sessions, released)["items"] if i["id"] == S3)["help"] == help_text


def test_a_command_with_backticks_stays_one_code_span() -> None:
    from bot.export_markdown import code

    assert code("echo `date`") == "`` echo `date` ``"  # CommonMark strips one space each side
    assert code("plain") == "`plain`"


# --- 6. the schema, versioned ---------------------------------------------------------------------------


def test_the_json_export_follows_schema_version_2(sessions: sessionmaker[Session]) -> None:
    run_id = a_worked_run(sessions)
    document = document_of(sessions, run_id)
    assert document["schema"] == "deploybot.run-export/2" and SCHEMA["$id"].endswith("/run-export-2.json")
    jsonschema.validate(document, SCHEMA, format_checker=jsonschema.FormatChecker())
    old_style = copy.deepcopy(document)
    old_style["items"][0]["by"] = "U0ALICE001"  # version 1 gave bare ids
    assert list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(old_style))
    nameless = copy.deepcopy(document)
    nameless["run"]["started_by"] = {"id": "U0ALICE001"}
    assert list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(nameless))


# --- what an auditor tried next --------------------------------------------------------------------


def test_the_csv_shows_terminal_escapes_and_bidi_overrides_as_codes(sessions: sessionmaker[Session]) -> None:
    run_id = started(sessions)
    with sessions.begin() as session:
        items.add_note(session, run_id, TESTS, "\x1b]0;PWNED\x07\x1b[2J end", BOB)
        items.mark_na(session, run_id, S3, "\x1b[8mhidden\x1b[0m \u202eesrever", Actor("U0EVE00001", AT, name="Eve"))
    text = exported(sessions, run_id, "csv")
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    rows = {r["item"]: r for r in csv.DictReader(io.StringIO(text))}
    assert rows[TESTS]["notes"] == "Bob Jones (U0BOB00001): \\u001b]0;PWNED\\u0007\\u001b[2J end"
    assert rows[S3]["na_reason"] == "\\u001b[8mhidden\\u001b[0m \\u202eesrever"


def test_every_csv_row_says_how_its_run_ended_and_by_whom(sessions: sessionmaker[Session]) -> None:
    anyway = a_worked_run(sessions)
    rows = list(csv.DictReader(io.StringIO(exported(sessions, anyway, "csv"))))
    open_count = len(document_of(sessions, anyway)["run"]["completed_anyway_with_open"])
    assert {r["run_outcome"] for r in rows} == {"completed anyway"}
    assert {(r["run_finished_by"], r["run_finished_by_name"]) for r in rows} == {("U0BOB00001", "Bob Jones")}
    assert {r["run_open_at_completion"] for r in rows} == {str(open_count)}
    failed = started(sessions, version="v1.4.3")
    with sessions.begin() as session:
        runs.fail(session, failed, "=1+1 smoke test red", ALICE)
    rows = list(csv.DictReader(io.StringIO(exported(sessions, failed, "csv"))))
    assert {r["run_outcome"] for r in rows} == {"failed"}
    assert {r["run_finish_reason"] for r in rows} == {"'=1+1 smoke test red"}


def test_typed_web_addresses_are_not_live_links_in_the_markdown(sessions: sessionmaker[Session]) -> None:
    run_id = started(sessions)
    with sessions.begin() as session:
        items.add_note(session, run_id, TESTS, "see https://evil.example/login and www.evil.example", BOB)
    markdown = exported(sessions, run_id, "md")
    assert "https\\://evil.example/login and www\\.evil.example" in markdown
    assert "https://evil.example" not in markdown and "www.evil" not in markdown


def test_the_audit_trail_keeps_the_name_a_person_had_when_they_acted(sessions: sessionmaker[Session]) -> None:
    run_id = started(sessions)
    with sessions.begin() as session:
        items.add_note(session, run_id, TESTS, "before the rename", BOB)
        items.add_note(session, run_id, TESTS, "after", Actor("U0BOB00001", AT + timedelta(hours=1), name="Mallory"))
    document = document_of(sessions, run_id)
    notes = next(i for i in document["items"] if i["id"] == TESTS)["notes"]
    assert [n["by"]["name"] for n in notes] == ["Bob Jones", "Mallory"]
    assert [e["user"]["name"] for e in document["events"] if e["kind"] == "item.note"] == ["Bob Jones", "Mallory"]


def test_json_and_csv_exports_do_not_need_a_valid_zone(sessions: sessionmaker[Session], database_url: str,
                                                        tmp_path: Path) -> None:  # fmt: skip
    run_id = a_worked_run(sessions)
    config = tmp_path / "deploybot.yml"
    config.write_text("timezone: Mars/Olympus\n")
    env = {**os.environ, "DATABASE_URL": database_url, "DEPLOYBOT_CONFIG": str(config)}

    def export_cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "bot", "export", *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)

    assert export_cli(str(run_id), "--format", "json").returncode == 0
    assert export_cli(str(run_id), "--format", "csv").returncode == 0
    assert export_cli(str(run_id)).returncode == 2  # the Markdown needs the zone
    missing_folder = export_cli(str(run_id), "--format", "json", "-o", str(tmp_path / "nowhere" / "x.json"))
    assert missing_folder.returncode == 2 and "Traceback" not in missing_folder.stderr
    assert f"Cannot write {tmp_path / 'nowhere' / 'x.json'}" in missing_folder.stderr
    huge = export_cli("99999999999999999999", "--format", "json")
    assert huge.returncode == 2 and "Traceback" not in huge.stderr and "does not exist" in huge.stderr

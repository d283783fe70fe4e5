"""`deploybot shell` driven through stdin/stdout, exports checked against the database, diffs between releases."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from typing import Any

from sqlalchemy import select

from bot import export
from bot.models import Event, ItemState, Message, Run
from bot.slack.listeners.actions import wait_for_notices
from tests.conftest import ROOT, Running
from tests.test_slack_flow import CHANNEL, click_item, current, item_block, start


def shell(database_url: str, script: str, *, user: str = "alice", **env: str) -> str:
    """Run `deploybot shell` with `script` on its standard input; return what it printed."""
    result = subprocess.run(
        [sys.executable, "-m", "bot", "shell"],
        input=script,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "DEPLOYBOT_USER": user,
            "DEPLOYBOT_CHECKLISTS": str(ROOT / "checklists"),
            "DEPLOYBOT_CONFIG": str(ROOT / "tests" / "fixtures" / "empty-deploybot.yml"),
            **env,
        },
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def deploybot(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
    )


def test_the_shell_speaks_the_deploy_commands(running: Running, database_url: str) -> None:
    out = shell(
        database_url,
        'start v1.2 staging\ntick 1\nna 10 "no S3 in staging"\nnote 4 "RDS, Redis and S3 ok"\n'
        "tick 1\ntick 999\nfly away\nstatus\n",
    )
    assert out.startswith("deploybot shell — you are alice.")
    assert "Run #1 · Deployment v1.2 → staging: in progress, 0/89 done" in out
    assert "done: 1. Production server/cloud account is ready" in out
    assert "already done, unchanged: 1. Production server/cloud account is ready" in out
    assert "! There is no item 999: items go from 1 to 89. Nothing changed." in out
    assert "! I don't know 'fly'." in out
    status = out[out.rindex("Run #1 ·") :]
    assert "1. [x] Production server/cloud account is ready — alice" in status
    assert "10. [n/a] AWS S3 credentials are configured (if using S3) (optional) — alice" in status
    assert ": no S3 in staging" in status
    assert "note (alice): RDS, Redis and S3 ok" in status
    with running.app.sessions() as session:
        run = session.get(Run, 1)
        assert run is not None and run.channel_id == "shell" and run.started_by == "alice"
        assert session.scalars(select(Message)).all() == []  # a terminal run is never posted to Slack
        kinds = [(e.kind, e.user_id) for e in session.scalars(select(Event).order_by(Event.id))]
        assert kinds == [("run.started", "alice"), ("item.done", "alice"), ("item.na", "alice"), ("item.note", "alice")]
    assert running.fake.calls_of("chat.postMessage") == []


def test_an_operator_records_a_step_in_a_slack_run_from_the_shell(running: Running, database_url: str) -> None:
    messages = start(running)
    out = shell(database_url, "use 1\ntick 28\n", user="U0OPS")
    assert "done: 28. Logging is configured" in out
    running.settled()  # the bot's publisher polls the database and brings Slack up to date
    _, block = item_block(current(running, messages[0]["ts"]), "logging-is-configured")
    assert block["text"]["text"].startswith("✅ Logging is configured  ·  <@U0OPS>")


def finish_a_release(running: Running, version: str, *, na: list[str], override: bool) -> list[dict[str, Any]]:
    """Start a run, mark `na` items N/A, tick one item, then complete it anyway; return its messages."""
    messages = start(running, f"start {version} production")
    with running.app.sessions() as session:
        run_id = session.scalars(select(Run.id).order_by(Run.id.desc())).first()
    for item in na:
        running.slack.submit(
            "item.na",
            json.dumps({"run": run_id}),
            {
                "item": {"item": {"selected_option": {"value": item}}},
                "reason": {"reason": {"value": f"skipped in {version}"}},
            },
            user="U0NA",
        )
    click_item(running, messages, "all-tests-are-passing", user="U0TICK")
    if override:
        button = messages[0]["blocks"][3]["elements"][0]
        running.slack.click(
            button["action_id"], button["value"], user="U0BOSS", channel=CHANNEL, message_ts=messages[0]["ts"]
        )
    running.settled()
    return current(running, messages[0]["ts"])


def test_exports_match_the_database_field_by_field(running: Running, database_url: str) -> None:
    finish_a_release(running, "v1.0.0", na=["aws-s3-credentials-are-configured-if-using-s3"], override=True)
    as_json = deploybot(database_url, "export", "1", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["schema"] == "deploybot.run-export/2"

    def who(user_id: str | None) -> dict[str, str] | None:
        return {"id": user_id, "name": "primary-owner"} if user_id else None  # the name the recorded payloads carry

    with running.app.sessions() as session:
        run = session.get(Run, 1)
        assert run is not None
        states = {s.item_id: s for s in session.scalars(select(ItemState).where(ItemState.run_id == 1))}
        assert document["run"]["status"] == run.status == "complete"
        assert document["run"]["completed_anyway_with_open"] == run.overridden_items
        assert document["footer"] == {
            "last_updated": run.finished_at.isoformat() if run.finished_at else None,
            "deployed_by": who("U100"),
            "version": "v1.0.0",
        }
        assert [i["id"] for i in document["items"]] == [i.id for i in run.template.items]
        assert [i["number"] for i in document["items"]] == list(range(1, 90))
        for item in document["items"]:
            state = states[item["id"]]
            assert (item["status"], item["by"], item["na_reason"]) == (
                state.status,
                who(state.changed_by),
                state.na_reason,
            )
            assert item["at"] == (state.changed_at.isoformat() if state.changed_at else None)
        events = session.scalars(select(Event).where(Event.run_id == 1).order_by(Event.id)).all()
        assert [(e["kind"], e["user"]) for e in document["events"]] == [(e.kind, who(e.user_id)) for e in events]
    as_csv = list(csv.DictReader(io.StringIO(deploybot(database_url, "export", "1", "--format", "csv").stdout)))
    assert len(as_csv) == 89
    s3 = next(r for r in as_csv if r["item"] == "aws-s3-credentials-are-configured-if-using-s3")
    assert (s3["status"], s3["by"], s3["by_name"], s3["na_reason"]) == (
        "na",
        "U0NA",
        "primary-owner",
        "skipped in v1.0.0",
    )
    markdown = deploybot(database_url, "export", "1", "--format", "md").stdout
    assert markdown.startswith("# Production Deployment Checklist: v1.0.0 → production")
    assert "- [x] 23. All tests are passing — primary-owner (U0TICK), " in markdown
    assert "**Deployed By**: primary-owner (U100)" in markdown
    assert "**Version**: v1.0.0" in markdown and "Completed anyway by primary-owner (U0BOSS) on " in markdown
    missing = deploybot(database_url, "export", "42")
    assert missing.returncode == 2 and "Run #42 does not exist" in missing.stderr


def export_csv(running: Running, user: str = "U0EXP") -> list[dict[str, Any]]:
    """Finish a release and choose "Export CSV" in its menu as `user`; return the run's messages."""
    final = finish_a_release(running, "v1.0.0", na=[], override=True)
    menu = next(b for b in final[0]["blocks"] if b.get("block_id") == "export")["elements"][0]
    csv_option = next(o for o in menu["options"] if json.loads(o["value"])["format"] == "csv")
    from tests.test_probe_flow import _overflow

    payload = _overflow(csv_option["value"], user, final[0])
    payload["actions"][0]["action_id"] = menu["action_id"]
    assert running.slack.payload(payload).status_code == 200
    return final


def shared_files(running: Running) -> list[dict[str, Any]]:
    """The files shared so far, once the uploads already under way have finished."""
    wait_for_notices()
    return running.fake.files


def test_export_from_slack_uploads_the_file_to_the_thread(running: Running) -> None:
    final = export_csv(running)
    assert len(shared_files(running)) == 1
    shared = running.fake.files[0]
    assert shared["channel_id"] == CHANNEL and shared["thread_ts"] == final[0]["ts"]
    with running.app.sessions() as session:
        expected = export.render(export.record(session, 1), "csv")
    assert shared["content"].decode() == expected
    assert "<@U0EXP> exported run #1" in shared["initial_comment"]
    assert not running.told()  # the file speaks for itself


def test_export_into_a_public_channel_deploybot_is_not_in_joins_it(running: Running) -> None:
    running.fake.not_member.add(CHANNEL)  # posting works there (chat:write.public); uploading does not
    final = export_csv(running)
    [shared] = shared_files(running)
    assert shared["channel_id"] == CHANNEL and shared["thread_ts"] == final[0]["ts"]
    assert [c.args["channel"] for c in running.fake.calls_of("conversations.join")] == [CHANNEL]
    [told] = running.told()
    assert told.method == "response_url" and told.args["user"] == "U0EXP"
    assert f"I was not a member of <#{CHANNEL}>, so I joined it" in told.args["text"]


def test_export_into_a_private_channel_deploybot_is_not_in_goes_to_the_requester(running: Running) -> None:
    running.fake.not_member.add(CHANNEL)
    running.fake.private.add(CHANNEL)
    export_csv(running, user="U0EXP")
    [shared] = shared_files(running)
    assert shared["channel_id"] == "D0EXP" and shared["thread_ts"] is None
    assert [c.args["users"] for c in running.fake.calls_of("conversations.open")] == ["U0EXP"]
    [told] = running.told()
    assert told.method == "response_url" and told.args["user"] == "U0EXP" and told.args["channel"] == CHANNEL
    assert "sent the export to you in a direct message" in told.args["text"]
    assert "went wrong" not in told.args["text"]


def test_diff_with_the_last_release(running: Running, database_url: str) -> None:
    finish_a_release(running, "v1.0.0", na=["aws-s3-credentials-are-configured-if-using-s3"], override=True)
    final = finish_a_release(running, "v1.1.0", na=["email-smtp-credentials-are-configured"], override=True)
    text = json.dumps(final[0]["blocks"], ensure_ascii=False)
    assert "Compared with v1.0.0: newly N/A: Email SMTP credentials are configured." in text
    out = deploybot(database_url, "diff", "2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "Compared with v1.0.0: newly N/A: Email SMTP credentials are configured.",
        "  newly N/A: email-smtp-credentials-are-configured",
    ]
    reverse = deploybot(database_url, "diff", "1", "2").stdout
    assert "newly N/A: aws-s3-credentials-are-configured-if-using-s3" in reverse
    first_run_text = deploybot(database_url, "diff", "1").stdout
    assert first_run_text.startswith("First completed run of this checklist in this environment")


def test_json_export_follows_its_documented_schema(running: Running, database_url: str) -> None:
    import jsonschema

    finish_a_release(running, "v1.0.0", na=["aws-s3-credentials-are-configured-if-using-s3"], override=True)
    schema = json.loads((ROOT / "docs" / "export.schema.json").read_text())
    document = json.loads(deploybot(database_url, "export", "1", "--format", "json").stdout)
    jsonschema.validate(document, schema, format_checker=jsonschema.FormatChecker())
    document["items"][0]["status"] = "skipped"
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(document))


def test_a_csv_export_never_hands_a_spreadsheet_a_formula(database_url: str) -> None:
    """Text a person typed that a spreadsheet would run (=…, +…, -…, @…) is exported as text."""
    typed = ["@SUM(1+1)*cmd|/C calc!A0", "=HYPERLINK(http://evil.example)", "+1+1", "-2+3"]
    script = "start v1.2 staging\n" + "".join(f'na {n} "{text}"\n' for n, text in enumerate(typed, start=1))
    shell(database_url, script)
    rows = list(csv.DictReader(io.StringIO(deploybot(database_url, "export", "1", "--format", "csv").stdout)))
    assert [row["na_reason"] for row in rows[: len(typed)]] == [f"'{text}" for text in typed]
    as_json = json.loads(deploybot(database_url, "export", "1", "--format", "json").stdout)
    assert [item["na_reason"] for item in as_json["items"][: len(typed)]] == typed  # JSON keeps what was typed

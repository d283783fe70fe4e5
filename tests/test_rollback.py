"""A failed deployment: declared failed, rollback checklist with the previous version, on-call paged, rolled back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bot import items, runs
from bot.checklists import load_template
from bot.models import Event, Page, Run
from bot.paging import MAX_TEXT
from bot.runs import MAX_REASON, Actor
from bot.services import utcnow
from bot.slack import ids
from tests.conftest import ROOT, Running
from tests.fake_slack import FakeSlack
from tests.test_paging import CHANNEL, Paging, paging_bot
from tests.test_slack_flow import all_text, click_item, current, start


def parent_button(message: dict[str, Any], action_id: str) -> dict[str, Any]:
    for block in message["blocks"]:
        for element in block.get("elements", []):
            if element.get("action_id") == action_id:
                return element
    raise AssertionError(f"no {action_id} button on the message")


def complete_anyway(running: Running, parent: dict[str, Any]) -> None:
    button = parent_button(parent, ids.COMPLETE_ANYWAY)
    running.slack.click(ids.COMPLETE_ANYWAY, button["value"], channel=CHANNEL, message_ts=parent["ts"])
    running.settled()


def run_of(running: Running, run_id: int) -> Run:
    with running.app.sessions() as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run


def complete_fully(running: Running, run_id: int) -> None:
    """Tick every item of a run, as its team would: the run completes by itself."""
    ids_ = item_ids(running, run_id)
    with running.app.sessions.begin() as session:
        for item_id in ids_:
            items.mark_done(session, run_id, item_id, Actor("U100", utcnow(), CHANNEL))
    running.app.publisher.wake()
    running.settled()
    assert run_of(running, run_id).status == "complete" and not run_of(running, run_id).overridden_items


def item_ids(running: Running, run_id: int) -> list[str]:
    with running.app.sessions() as session:
        run = session.get(Run, run_id)
        assert run is not None
        return [item.id for item in run.template.items]


def test_deployment_failed_posts_the_rollback_with_the_previous_version_and_pages_oncall(
    database_url: str, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    with paging_bot(database_url, fake_slack, tmp_path) as paging:
        bot = paging.bot
        start(bot, "start v1.4.1 production")
        complete_fully(bot, 1)  # the last good release
        messages = start(bot, "start v1.4.2 production")
        parent = messages[0]

        # "Deployment failed…" asks for the reason in a modal, then fails the run.
        button = parent_button(parent, ids.FAIL_DIALOG)
        assert button["style"] == "danger"
        assert (
            bot.slack.click(ids.FAIL_DIALOG, button["value"], channel=CHANNEL, message_ts=parent["ts"]).status_code
            == 200
        )
        view = bot.fake.calls_of("views.open")[-1].args["view"]
        assert view["callback_id"] == ids.FAIL_VIEW
        empty = bot.slack.submit(
            ids.FAIL_VIEW, view["private_metadata"], {ids.REASON_FIELD: {ids.REASON_FIELD: {"value": " "}}}
        )
        assert empty.json() == {"response_action": "errors", "errors": {ids.REASON_FIELD: "Say what went wrong."}}
        assert run_of(bot, 2).status == "active"
        reason = {ids.REASON_FIELD: {ids.REASON_FIELD: {"type": "plain_text_input", "value": "error rate 12%"}}}
        assert bot.slack.submit(ids.FAIL_VIEW, view["private_metadata"], reason, user="U500").status_code == 200
        bot.settled()

        failed = run_of(bot, 2)
        assert failed.status == "failed" and failed.finished_by == "U500" and failed.finish_reason == "error rate 12%"
        failed_text = all_text(current(bot, parent["ts"])[0])
        assert "*Deployment failed*, declared by <@U500>" in failed_text and "error rate 12%" in failed_text

        rollback = run_of(bot, 3)
        assert (rollback.kind, rollback.rollback_of, rollback.rollback_to) == ("rollback", 2, "v1.4.1")
        rollback_ts = next(
            ts for (ch, ts), m in bot.fake.messages.items() if ch == CHANNEL and "Rollback v1.4.2" in m["text"]
        )
        thread = current(bot, rollback_ts)
        everything = "".join(all_text(m) for m in thread)
        assert "back to *v1.4.1*" in all_text(thread[0])
        assert "`git checkout v1.4.1`" in everything and "<previous-commit>" not in everything
        for step in (
            "Stop new deployment",
            "Restore database backup if needed",
            "docker compose -f docker-compose.prod.yml up -d",
        ):
            assert step in everything

        # One click pages on-call about it.
        page_button = parent_button(thread[0], ids.PAGE_ONCALL)
        bot.slack.click(ids.PAGE_ONCALL, page_button["value"], user="U500", channel=CHANNEL, message_ts=rollback_ts)
        paging.delivered()
        with bot.app.sessions() as session:
            page = session.scalars(select(Page)).one()
            assert page.team == "oncall" and page.run_id == 3 and page.paged_by == "U500"
            assert page.text == "Deployment v1.4.2 → production failed: error rate 12%. Rollback: run #3."
        assert len(paging.dms("U0ONCALL")) == 1

        # Finishing the rollback checklist marks the deployment rolled back.
        for item_id in item_ids(bot, 3):
            assert click_item(bot, thread, item_id, user="U600").status_code == 200
        bot.settled()
        assert run_of(bot, 3).status == "complete"
        assert run_of(bot, 2).status == "rolled_back"
        assert "*Rolled back.* Declared failed by <@U500>" in all_text(current(bot, parent["ts"])[0])
        with bot.app.sessions() as session:
            kinds = [e.kind for e in session.scalars(select(Event).where(Event.run_id == 2).order_by(Event.id))]
        assert kinds[-2:] == ["run.failed", "run.rolled_back"]
        assert "already rolled back" in bot.slack.command("rollback", channel=CHANNEL).json()["text"]


def test_page_oncall_quotes_a_failure_reason_of_any_accepted_length(
    database_url: str, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    """The reason was accepted at its own limit: the page quoting it must not be refused for its length."""
    with paging_bot(database_url, fake_slack, tmp_path) as paged:
        _page_oncall_with_a_long_reason(paged)


def _page_oncall_with_a_long_reason(paged: Paging) -> None:
    bot = paged.bot
    start(bot, "start v1.4.2 production")
    reason = "replica lag " + "x" * (MAX_REASON - len("replica lag "))
    assert "failed" in bot.slack.command(f"fail {reason}", channel=CHANNEL).json()["text"]
    bot.settled()
    rollback_ts = next(
        ts for (ch, ts), m in bot.fake.messages.items() if ch == CHANNEL and "Rollback v1.4.2" in m["text"]
    )
    page_button = parent_button(current(bot, rollback_ts)[0], ids.PAGE_ONCALL)
    bot.slack.click(ids.PAGE_ONCALL, page_button["value"], user="U500", channel=CHANNEL, message_ts=rollback_ts)
    paged.delivered()
    with bot.app.sessions() as session:
        page = session.scalars(select(Page)).one()
    assert page.text.startswith("Deployment v1.4.2 → production failed: replica lag xxx")
    assert page.text.endswith("…. Rollback: run #2.") and len(page.text) <= MAX_TEXT


def test_fail_and_rollback_commands(running: Running) -> None:
    assert "No deployment is running" in running.slack.command("fail it broke", channel=CHANNEL).json()["text"]
    assert (
        "No deployment in this channel to roll back"
        in running.slack.command("rollback", channel=CHANNEL).json()["text"]
    )
    start(running, "start v2.0.0 staging")
    assert "Say what went wrong" in running.slack.command("fail", channel=CHANNEL).json()["text"]
    assert run_of(running, 1).status == "active"

    # /deploy rollback on a running deployment fails it and opens the rollback; no earlier release is known.
    answer = running.slack.command("rollback", user="U700", channel=CHANNEL).json()["text"]
    assert "Rollback checklist started as run #2" in answer
    running.settled()
    assert (
        run_of(running, 1).status == "failed"
        and run_of(running, 1).finish_reason == "rolled back with /deploy rollback"
    )
    rollback = run_of(running, 2)
    assert rollback.rollback_to is None
    parent = next(m for (ch, _), m in running.fake.messages.items() if ch == CHANNEL and "Rollback v2.0.0" in m["text"])
    assert "no earlier complete deployment to staging on record" in all_text(parent)
    assert "in progress in this channel" in running.slack.command("rollback", channel=CHANNEL).json()["text"]


def test_a_failed_deployment_refuses_further_clicks(running: Running) -> None:
    messages = start(running, "start v3.0.0 production")
    assert "Run #1 marked failed" in running.slack.command("fail smoke tests red", channel=CHANNEL).json()["text"]
    click_item(running, messages, "all-tests-are-passing")
    told = running.told()[-1].args["text"]
    assert "Run #1 (v3.0.0) was declared failed by <@U100>: smoke tests red. Nothing changed" in told
    assert json.dumps(running.told()[-1].args).count("rollback") >= 1


def test_the_rollback_goes_back_to_the_last_release_that_passed_its_whole_checklist(running: Running) -> None:
    start(running, "start v2.0.0 production")
    complete_fully(running, 1)
    complete_anyway(running, start(running, "start v2.1.0 production")[0])  # 69 required items open
    start(running, "start v2.2.0 production")
    assert "Run #3 marked failed" in running.slack.command("fail error rate 12%", channel=CHANNEL).json()["text"]
    running.settled()
    rollback = run_of(running, 4)
    assert (rollback.rollback_of, rollback.rollback_to) == (3, "v2.0.0")
    parent = next(m for (ch, _), m in running.fake.messages.items() if ch == CHANNEL and "Rollback v2.2.0" in m["text"])
    everything = "".join(all_text(m) for m in running.fake.thread(CHANNEL, parent["ts"]))
    assert "back to *v2.0.0*" in everything and "`git checkout v2.0.0`" in everything
    assert "v2.1.0" not in everything


def test_a_channel_runs_one_deployment_or_rollback_at_a_time(running: Running) -> None:
    start(running, "start v1.0 production")
    running.slack.command("fail smoke tests red", channel=CHANNEL)
    running.settled()
    assert run_of(running, 2).kind == "rollback" and run_of(running, 2).is_active

    # A new deployment waits for the rollback; status shows the rollback; abort stops it.
    refused = running.slack.command("start v1.1 production", channel=CHANNEL).json()["text"]
    assert "Run #2 (the rollback of v1.0 → production) is still active in this channel" in refused
    with running.app.sessions() as session:
        assert session.get(Run, 3) is None
    status = running.slack.command("status", channel=CHANNEL).json()["text"]
    assert "*Run #2* Rollback v1.0 → production: active" in status
    assert "Run #2 (v1.0) aborted." in running.slack.command("abort not needed", channel=CHANNEL).json()["text"]
    assert run_of(running, 2).status == "aborted"
    assert "Run #3 started" in running.slack.command("start v1.1 production", channel=CHANNEL).json()["text"]


def test_status_and_abort_see_every_active_run_in_the_channel(running: Running) -> None:
    start(running, "start v1.0 production")
    maintenance = load_template(ROOT / "checklists" / "maintenance.yml")
    with running.app.sessions.begin() as session:  # a maintenance checklist posted to the same channel
        runs.start(
            session,
            maintenance,
            version="daily",
            environment="production",
            channel_id=CHANNEL,
            parts=None,
            actor=Actor("U100", utcnow(), CHANNEL),
        )
    status = running.slack.command("status", channel=CHANNEL).json()["text"]
    assert "*Run #1* Deployment v1.0" in status and "*Run #2* Maintenance daily" in status

    ambiguous = running.slack.command("abort wrong one", channel=CHANNEL).json()["text"]
    assert "2 runs are active in this channel: #1 (Deployment v1.0), #2 (Maintenance daily)" in ambiguous
    assert run_of(running, 1).is_active and run_of(running, 2).is_active
    assert "is not active in this channel" in running.slack.command("abort #9 typo", channel=CHANNEL).json()["text"]
    assert "Run #2 (daily) aborted." in running.slack.command("abort #2 done by hand", channel=CHANNEL).json()["text"]
    assert run_of(running, 2).finish_reason == "done by hand" and run_of(running, 1).is_active
    assert "Run #1 (v1.0) aborted." in running.slack.command("abort rollout paused", channel=CHANNEL).json()["text"]

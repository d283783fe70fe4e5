"""A deployment run end to end: signed requests to the real endpoint, messages read back from the fake Slack."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select

from bot.models import Event, ItemState, Run
from bot.slack import ids
from tests.conftest import Running
from tests.slack_requests import select_values
from tests.test_checklists import seed_sections

CHANNEL = "C100"


def start(running: Running, text: str = "start v1.4.2 production", user: str = "U100") -> list[dict[str, Any]]:
    """Start a run and return its messages in Slack (parent first), once they are all posted."""
    response = running.slack.command(text, user=user, channel=CHANNEL)
    assert response.status_code == 200, response.text
    running.settled()
    parents = [ts for (ch, ts), m in running.fake.messages.items() if ch == CHANNEL and not m["thread_ts"]]
    newest = max(parents, key=float)
    return running.fake.thread(CHANNEL, newest)


def item_block(messages: list[dict[str, Any]], item_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(message, block) showing `item_id`."""
    for message in messages:
        for block in message["blocks"]:
            if block.get("block_id") == f"item.{item_id}":
                return message, block
    raise AssertionError(f"item {item_id} is not shown")


def click_item(running: Running, messages: list[dict[str, Any]], item_id: str, user: str = "U200") -> Any:
    message, block = item_block(messages, item_id)
    accessory = block["accessory"]
    return running.slack.click(
        accessory["action_id"],
        accessory["value"],
        user=user,
        channel=CHANNEL,
        message_ts=message["ts"],
        thread_ts=message["thread_ts"],
    )


def current(running: Running, parent_ts: str) -> list[dict[str, Any]]:
    return running.fake.thread(CHANNEL, parent_ts)


def all_text(message: dict[str, Any]) -> str:
    return json.dumps(message["blocks"], ensure_ascii=False)


def test_start_posts_parent_and_every_seed_item_in_its_phase_and_group(running: Running) -> None:
    messages = start(running)
    parent, parts = messages[0], messages[1:]
    header = parent["blocks"][0]["text"]["text"]
    assert header == "Deployment v1.4.2 → production"
    text = all_text(parent)
    assert "<@U100>" in text and "*0 / 89* done" in text and "░" * 20 in text
    assert [p["thread_ts"] for p in parts] == [parent["ts"]] * 3
    seed = seed_sections()
    for message, phase in zip(parts, ["Pre-Deployment", "Deployment", "Post-Deployment"], strict=True):
        assert message["blocks"][0]["text"]["text"] == phase
        shown: dict[str, list[str]] = {}
        group = None
        for block in message["blocks"][1:]:
            if block["type"] != "section":
                continue
            if "accessory" not in block:
                group = block["text"]["text"].strip("*")
                shown[group] = []
            else:
                line = block["text"]["text"].split("\n")[0].removeprefix("⬜ ")
                # The seed items a pipeline reports say so until it does.
                shown[group].append(line.removesuffix("  ·  _waiting for CI_").removesuffix(" _(optional)_"))
        assert shown == seed[phase]


def test_tick_untick_na_and_note_are_shown_and_audited(running: Running) -> None:
    messages = start(running)
    parent_ts = messages[0]["ts"]
    assert click_item(running, messages, "database-migrations-are-run", user="U201").status_code == 200
    running.settled()
    _, block = item_block(current(running, parent_ts), "database-migrations-are-run")
    assert block["text"]["text"].startswith("✅ Database migrations are run  ·  <@U201> <!date^")
    # The pipeline reports this item: a person's tick is shown, and audited, as an override of it.
    assert ":warning: ticked by a person, not reported done by CI (override)" in block["text"]["text"]
    assert block["accessory"]["action_id"] == ids.ITEM_REOPEN
    assert "*1 / 89* done" in all_text(current(running, parent_ts)[0])

    # Untick, from the (now current) message.
    assert (
        click_item(running, current(running, parent_ts), "database-migrations-are-run", user="U202").status_code == 200
    )
    running.settled()
    _, block = item_block(current(running, parent_ts), "database-migrations-are-run")
    assert block["text"]["text"].startswith("⬜ Database migrations are run") and "<@U201>" not in block["text"]["text"]

    # N/A: the button opens a modal listing the part's items; the submission needs a reason.
    deployment = current(running, parent_ts)[2]
    na_button = deployment["blocks"][-1]["elements"][0]
    assert na_button["action_id"] == ids.NA_DIALOG
    running.slack.click(
        na_button["action_id"],
        na_button["value"],
        user="U203",
        channel=CHANNEL,
        message_ts=deployment["ts"],
        thread_ts=parent_ts,
    )
    view = running.fake.calls_of("views.open")[-1].args["view"]
    options = [o["value"] for g in view["blocks"][1]["element"]["option_groups"] for o in g["options"]]
    assert "redis-persistence-is-configured" in options and len(options) == 24
    empty = running.slack.submit(
        view["callback_id"],
        view["private_metadata"],
        select_values("redis-persistence-is-configured", ids.REASON_FIELD, "  "),
        user="U203",
    )
    assert empty.json() == {"response_action": "errors", "errors": {"reason": "Say why this item does not apply."}}
    done = running.slack.submit(
        view["callback_id"],
        view["private_metadata"],
        select_values("redis-persistence-is-configured", ids.REASON_FIELD, "cache only, no persistence"),
        user="U203",
    )
    assert done.status_code == 200 and done.text == ""

    # Note, through the other modal.
    note_button = deployment["blocks"][-1]["elements"][1]
    running.slack.click(
        note_button["action_id"],
        note_button["value"],
        user="U204",
        channel=CHANNEL,
        message_ts=deployment["ts"],
        thread_ts=parent_ts,
    )
    view = running.fake.calls_of("views.open")[-1].args["view"]
    running.slack.submit(
        view["callback_id"],
        view["private_metadata"],
        select_values("database-backups-are-configured", ids.NOTE_FIELD, "nightly <!channel> at 02:00"),
        user="U204",
    )
    running.settled()
    messages = current(running, parent_ts)
    _, na_block = item_block(messages, "redis-persistence-is-configured")
    assert "N/A by <@U203>" in na_block["text"]["text"] and "_cache only, no persistence_" in na_block["text"]["text"]
    _, note_block = item_block(messages, "database-backups-are-configured")
    assert (
        ":memo: <@U204>" in note_block["text"]["text"]
        and "nightly &lt;!channel&gt; at 02:00" in note_block["text"]["text"]
    )

    with running.app.sessions() as session:
        events = session.scalars(select(Event).order_by(Event.id)).all()
        kinds = [(e.kind, e.item_id, e.user_id) for e in events]
        assert kinds == [
            ("run.started", None, "U100"),
            ("item.override", "database-migrations-are-run", "U201"),
            ("item.reopened", "database-migrations-are-run", "U202"),
            ("item.na", "redis-persistence-is-configured", "U203"),
            ("item.note", "database-backups-are-configured", "U204"),
        ]
        tick = events[1]
        assert tick.channel_id == CHANNEL and tick.message_ts == messages[2]["ts"]
        assert events[3].data == {"reason": "cache only, no persistence"}
        assert events[1].data == {"reported_by": "ci", "reason": "ticked before the pipeline reported it"}


def test_a_second_click_on_a_done_item_changes_nothing_and_says_who(running: Running) -> None:
    messages = start(running)
    click_item(running, messages, "backend-service-is-running", user="U201")
    with running.app.sessions() as session:
        rev = session.get_one(Run, 1).rev
    click_item(running, messages, "backend-service-is-running", user="U202")  # same stale "Done" button
    with running.app.sessions() as session:
        state = session.get(ItemState, (1, "backend-service-is-running"))
        assert state is not None and state.changed_by == "U201"
        assert session.scalar(select(func.count()).select_from(Event).where(Event.kind == "item.done")) == 1
        assert session.get_one(Run, 1).rev == rev  # refused, so rolled back: not even a new revision
    told = running.told()[-1].args
    assert (
        told["user"] == "U202" and "Already done by <@U201>" in told["text"] and told["thread_ts"] == messages[0]["ts"]
    )


def test_completion_when_every_required_item_is_resolved(
    running: Running,
) -> None:
    messages = start(running)
    template = running.app.bolt  # noqa: F841 - the app is running; drive it only through Slack
    with running.app.sessions() as session:
        required = [s.item_id for s in session.scalars(select(ItemState).where(ItemState.required)).all()]
    for n, item_id in enumerate(required):
        assert click_item(running, messages, item_id, user=f"U{300 + n}").status_code == 200
    running.settled()
    final = current(running, messages[0]["ts"])
    text = all_text(final[0])
    assert ":tada: *Deployment complete* in 0 min." in text
    assert "*Last Updated*" in text and "*Deployed By*: <@U100>" in text and "*Version*: v1.4.2" in text
    # Nothing left to click but the export menu.
    controls = [e["action_id"] for m in final for b in m["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert controls == [ids.EXPORT]
    assert "First completed run of this checklist in this environment" in text
    _, optional = item_block(final, "aws-s3-credentials-are-configured-if-using-s3")
    assert optional["text"]["text"].startswith("⬜") and "accessory" not in optional
    with running.app.sessions() as session:
        run = session.get(Run, 1)
        assert run is not None and run.status == "complete" and run.overridden_items is None


def test_complete_anyway_records_who_and_which_items_were_open(running: Running) -> None:
    messages = start(running)
    click_item(running, messages, "all-tests-are-passing", user="U201")
    button = messages[0]["blocks"][3]["elements"][0]
    assert button["action_id"] == ids.COMPLETE_ANYWAY and "confirm" in button
    assert (
        running.slack.click(
            button["action_id"], button["value"], user="U900", channel=CHANNEL, message_ts=messages[0]["ts"]
        ).status_code
        == 200
    )
    running.settled()
    with running.app.sessions() as session:
        run = session.get(Run, 1)
        assert run is not None and run.status == "complete" and run.finished_by == "U900"
        assert len(run.overridden_items or []) == 87 and "all-tests-are-passing" not in (run.overridden_items or [])
        event = session.scalars(select(Event).where(Event.kind == "run.completed_anyway")).one()
        assert event.user_id == "U900" and event.data["open_items"] == run.overridden_items
    text = all_text(current(running, messages[0]["ts"])[0])
    assert "completed anyway* by <@U900>" in text and "87 required item(s) open" in text


def test_status_list_abort_and_help(running: Running) -> None:
    assert "No deployment is running" in running.slack.command("status").json()["text"]
    messages = start(running)
    click_item(running, messages, "code-is-reviewed-and-approved")
    status = running.slack.command("status", channel=CHANNEL).json()
    assert status["response_type"] == "ephemeral"
    assert (
        "*Run #1*" in status["text"] and "1/89 done" in status["text"] and "87 required item(s) open" in status["text"]
    )
    elsewhere = running.slack.command("status", channel="C999").json()["text"]
    assert "No run in this channel" in elsewhere and "<#C100>" in elsewhere

    again = running.slack.command("start v1.4.3", channel=CHANNEL).json()["text"]
    assert "Run #1 (v1.4.2 → production) is still active" in again

    assert "Say why" in running.slack.command("abort", channel=CHANNEL).json()["text"]
    # A command whose text holds the word "payload" is still a command, not an empty request.
    aborted = running.slack.command("abort payload smoke tests failed", channel=CHANNEL).json()["text"]
    assert aborted == "Run #1 (v1.4.2) aborted."
    running.settled()
    parent = current(running, messages[0]["ts"])[0]
    assert ":octagonal_sign: *Aborted* by <@U100>" in all_text(parent)
    assert "_payload smoke tests failed_" in all_text(parent)

    listing = running.slack.command("list", channel=CHANNEL).json()["text"]
    assert "*#1* v1.4.2 → production · aborted" in listing

    help_text = running.slack.command("help").json()
    assert help_text["response_type"] == "ephemeral" and "/deploy start <version> [environment]" in help_text["text"]
    unknown = running.slack.command("deploy-everything now").json()
    assert (
        unknown["text"].startswith("I don't know `/deploy deploy-everything`") and "/deploy status" in unknown["text"]
    )
    assert running.slack.command("").json()["text"].startswith("*deploybot*")


def test_start_validates_version_and_environment(running: Running) -> None:
    assert "Say which version" in running.slack.command("start").json()["text"]
    assert "is not an environment name" in running.slack.command("start v1 Prod!").json()["text"]
    # A forgotten version must not open a production run of a version called "staging".
    for forgot in ("start staging", "start production", "start Staging production"):
        assert "is an environment, not a version" in running.slack.command(forgot).json()["text"], forgot
    said = running.slack.command("start &lt;!channel&gt; production").json()["text"]
    assert said.startswith("`&lt;!channel&gt;` is not a version"), said
    with running.app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 0

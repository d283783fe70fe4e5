"""Bad input gets a clear answer and changes nothing."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select, text

from bot import ids
from bot.models import Event, ItemState, Run
from tests.conftest import Running
from tests.slack_requests import SLASH_COMMAND, sign
from tests.test_slack_flow import CHANNEL, click_item, start


def snapshot(running: Running) -> tuple[int, int, list[tuple[str, str]]]:
    """Everything a request could have written."""
    with running.app.sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(Run)) or 0,
            session.scalar(select(func.count()).select_from(Event)) or 0,
            [(s.item_id, s.status) for s in session.scalars(select(ItemState).order_by(ItemState.item_id))],
        )


def last_ephemeral(running: Running) -> dict:
    return running.told()[-1].args


def test_forged_signature_is_refused_and_writes_nothing(running: Running) -> None:
    body = urlencode({**SLASH_COMMAND, "command": "/deploy", "text": "start v9 production", "channel_id": CHANNEL})
    headers = sign("not-the-secret", body)
    response = running.slack.http.post(
        running.slack.url, content=body, headers={**headers, "Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 401
    assert snapshot(running) == (0, 0, [])


def test_stale_timestamp_is_refused(running: Running) -> None:
    body = urlencode({**SLASH_COMMAND, "command": "/deploy", "text": "start v9 production"})
    stale = sign(running.slack.secret, body, timestamp=int(time.time()) - 6 * 60)
    response = running.slack.http.post(
        running.slack.url, content=body, headers={**stale, "Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 401
    assert snapshot(running) == (0, 0, [])


def test_a_tampered_body_fails_the_signature(running: Running) -> None:
    body = urlencode({**SLASH_COMMAND, "command": "/deploy", "text": "start v9 production"})
    headers = sign(running.slack.secret, body)
    response = running.slack.http.post(
        running.slack.url,
        content=body.replace("v9", "v8"),
        headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("payload=%7Bnot-json", "the payload field is not JSON"),
        ("payload=" + json.dumps({"type": "block_actions", "user": {"id": "U1"}, "actions": []}), "has no actions"),
        ("payload=" + json.dumps({"type": "block_actions", "actions": [{"action_id": "x"}]}), "no user.id"),
        (
            "payload=" + json.dumps({"type": "block_actions", "user": {"id": "U1"}, "actions": [{"value": "1"}]}),
            "no action_id",
        ),
        ("payload=" + json.dumps({"type": "view_submission", "user": {"id": "U1"}}), "has no view"),
        (
            "payload="
            + json.dumps(
                {
                    "type": "block_actions",
                    "user": {"id": "U1"},
                    "container": "x",
                    "actions": [{"action_id": "item.done"}],
                }
            ),
            "container is not an object",
        ),
        ("command=%2Fdeploy&text=status", "slash command lacks user_id, channel_id"),
        ('{"type": ', "the JSON body does not parse"),
    ],
)
def test_malformed_payloads_get_a_400_that_says_what_is_wrong(running: Running, body: str, problem: str) -> None:
    content_type = "application/json" if body.startswith("{") else "application/x-www-form-urlencoded"
    response = running.slack.post(body, content_type)
    assert response.status_code == 400
    assert problem in response.text
    assert snapshot(running) == (0, 0, [])


def test_unknown_action_gets_an_ephemeral_answer(running: Running) -> None:
    messages = start(running)
    before = snapshot(running)
    response = running.slack.click(
        "item.explode",
        {"run": 1, "item": "x"},
        user="U5",
        channel=CHANNEL,
        message_ts=messages[1]["ts"],
        thread_ts=messages[0]["ts"],
    )
    assert response.status_code == 200
    told = last_ephemeral(running)
    assert told["user"] == "U5" and "does not know the action 'item.explode'" in told["text"]
    assert snapshot(running) == before


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("not json at all", "malformed"),
        ({"run": "1", "item": "all-tests-are-passing"}, "lacks a valid 'run'"),
        ({"run": 1}, "lacks a valid 'item'"),
        ({"run": 999, "item": "all-tests-are-passing"}, "Run #999 does not exist"),
        ({"run": 1, "item": "no-such-item"}, "has no item 'no-such-item'"),
    ],
)
def test_bad_button_values_change_nothing(running: Running, value: object, says: str) -> None:
    start(running)
    before = snapshot(running)
    response = running.slack.click(ids.ITEM_DONE, value, user="U6", channel=CHANNEL)  # type: ignore[arg-type]
    assert response.status_code == 200
    assert says in last_ephemeral(running)["text"]
    assert snapshot(running) == before


def test_clicks_on_an_aborted_run_are_refused(running: Running) -> None:
    messages = start(running)
    na = messages[1]["blocks"][-1]["elements"][0]  # the button as shown before the abort re-renders it
    running.slack.command("abort wrong build", channel=CHANNEL)
    before = snapshot(running)
    assert click_item(running, messages, "all-tests-are-passing", user="U7").status_code == 200
    told = last_ephemeral(running)
    assert told["user"] == "U7"
    assert told["text"] == "Run #1 (v1.4.2) was aborted by <@U100>: wrong build. Nothing changed."
    running.slack.click(na["action_id"], na["value"], user="U7", channel=CHANNEL)
    assert "was aborted" in last_ephemeral(running)["text"]
    assert not running.fake.calls_of("views.open")
    assert snapshot(running) == before


def test_a_form_submitted_after_the_run_ended_shows_the_reason_in_the_form(running: Running) -> None:
    messages = start(running)
    na = messages[1]["blocks"][-1]["elements"][0]
    running.slack.click(na["action_id"], na["value"], user="U8", channel=CHANNEL)
    view = running.fake.calls_of("views.open")[-1].args["view"]
    running.slack.command("abort rollback", channel=CHANNEL)
    before = snapshot(running)
    from tests.slack_requests import select_values

    answer = running.slack.submit(
        view["callback_id"],
        view["private_metadata"],
        select_values("all-tests-are-passing", ids.REASON_FIELD, "n/a"),
        user="U8",
    ).json()
    assert answer["response_action"] == "errors" and "was aborted" in answer["errors"]["item"]
    assert snapshot(running) == before


def test_unknown_form_and_broken_form_state(running: Running) -> None:
    start(running)
    before = snapshot(running)
    unknown = running.slack.submit("no.such.form", "{}", {}).json()
    assert "does not know the form 'no.such.form'" in unknown["errors"]["item"]
    broken = running.slack.submit(ids.NA_VIEW, '{"run": 1}', {"item": {}}).json()
    assert "malformed or out of date" in broken["errors"]["item"]
    assert snapshot(running) == before


def test_unexpected_errors_give_an_id_and_hide_the_details(running: Running, caplog: pytest.LogCaptureFixture) -> None:
    messages = start(running)
    with running.app.engine.begin() as conn:  # the database breaks under a running bot
        conn.execute(text("DROP TABLE events"))
    response = click_item(running, messages, "all-tests-are-passing", user="U9")
    assert response.status_code == 200
    told = last_ephemeral(running)
    assert told["user"] == "U9" and "error id `" in told["text"] and "nothing was changed" in told["text"]
    assert "events" not in told["text"] and "Error" not in told["text"]
    error_id = told["text"].split("`")[1]
    assert any(error_id in r.getMessage() for r in caplog.records)
    with running.app.sessions() as session:
        state = session.get(ItemState, (1, "all-tests-are-passing"))
        assert state is not None and state.status == "open"


def test_a_button_acts_only_in_its_runs_channel(running: Running) -> None:
    start(running)
    before = snapshot(running)
    value = {"run": 1, "item": "all-tests-are-passing"}
    assert running.slack.click(ids.ITEM_DONE, value, user="U10", channel="C999").status_code == 200
    assert last_ephemeral(running)["text"] == "That button belongs to run #1 in <#C100>; nothing changed."
    assert snapshot(running) == before

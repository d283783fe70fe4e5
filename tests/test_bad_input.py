"""Bad input gets a clear answer and changes nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select, text

from bot.models import Event, ItemState, Run
from bot.slack import ids
from tests.conftest import Running
from tests.slack_requests import SLASH_COMMAND, click_payload, sign
from tests.test_slack_flow import CHANNEL, click_item, item_block, start


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
    assert "<@" not in answer["errors"]["item"]  # a form shows its errors unrendered: no raw mention syntax
    assert snapshot(running) == before


def test_a_reason_or_note_that_cannot_be_kept_is_refused_under_the_text_typed(running: Running) -> None:
    from tests.slack_requests import select_values

    messages = start(running)
    na = messages[1]["blocks"][-1]["elements"][0]
    running.slack.click(na["action_id"], na["value"], user="U8", channel=CHANNEL)
    view = running.fake.calls_of("views.open")[-1].args["view"]
    before = snapshot(running)
    for typed in ("x" * 501, "a NUL \x00 inside"):
        values = select_values("all-tests-are-passing", ids.REASON_FIELD, typed)
        answer = running.slack.submit(view["callback_id"], view["private_metadata"], values, user="U8").json()
        assert answer["response_action"] == "errors" and list(answer["errors"]) == [ids.REASON_FIELD], answer
    assert snapshot(running) == before


def test_unknown_form_and_broken_form_state(running: Running) -> None:
    start(running)
    before = snapshot(running)
    unknown = running.slack.submit("no.such.form", "{}", {}).json()
    # A form without fields has nowhere to show an error: the answer replaces the form.
    assert unknown["response_action"] == "update"
    assert "does not know the form 'no.such.form'" in unknown["view"]["blocks"][0]["text"]["text"]
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


# --- requests that must be refused, not crash ----------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Slack-Signature": "v0=abc"},
        {"X-Slack-Request-Timestamp": "yesterday", "X-Slack-Signature": "v0=abc"},
        {"X-Slack-Request-Timestamp": "١٢٣", "X-Slack-Signature": "v0=abc"},  # digits, but not ASCII ones
        {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=\u00e9"},
    ],
)
def test_a_request_without_a_usable_timestamp_or_signature_is_refused_with_401(
    running: Running, headers: dict[str, str]
) -> None:
    body = urlencode({**SLASH_COMMAND, "command": "/deploy", "text": "start v9 production", "channel_id": CHANNEL})
    response = running.slack.http.post(
        running.slack.url,
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", **{k: v.encode() for k, v in headers.items()}},
    )
    assert response.status_code == 401 and "signature" in response.text
    assert snapshot(running) == (0, 0, [])


def test_a_signed_body_that_is_not_utf8_is_refused_with_400(running: Running) -> None:
    raw = b"command=%2Fdeploy&text=\xff\xfe"
    timestamp = str(int(time.time()))
    digest = hmac.new(running.slack.secret.encode(), f"v0:{timestamp}:".encode() + raw, hashlib.sha256).hexdigest()
    response = running.slack.http.post(
        running.slack.url,
        content=raw,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": f"v0={digest}",
        },
    )
    assert response.status_code == 400 and "slash command lacks" in response.text
    assert snapshot(running) == (0, 0, [])


@pytest.mark.parametrize("signed", [True, False])
def test_slacks_ssl_check_gets_200_and_changes_nothing(running: Running, signed: bool) -> None:
    body = "ssl_check=1&token=verification-token-from-slack"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    response = (
        running.slack.post(body)
        if signed
        else running.slack.http.post(running.slack.url, content=body, headers=headers)
    )
    assert response.status_code == 200
    assert snapshot(running) == (0, 0, [])
    assert [c.method for c in running.fake.calls] == ["auth.test"]  # nothing was said to Slack


def nested(depth: int) -> object:
    value: object = "deep"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [100, 200_000])
@pytest.mark.parametrize("where", ["json body", "payload field"])
def test_a_deeply_nested_signed_body_is_refused_with_400(running: Running, depth: int, where: str) -> None:
    text = "[" * depth + "1" + "]" * depth if depth > 1000 else json.dumps(nested(depth))
    if where == "json body":
        response = running.slack.post(
            '{"type": "event_callback", "team_id": "T1", "event": ' + text + "}", "application/json"
        )
    else:
        click = '{"type": "block_actions", "user": {"id": "U1"}, "actions": [{"action_id": "x", "value": ' + text
        response = running.slack.post(urlencode({"payload": click + "}]}"}))
    assert response.status_code == 400 and "nests deeper than 64 levels" in response.text
    assert snapshot(running) == (0, 0, [])


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda p: p["user"].update(id=12345), "user.id must be a Slack user id (a string), not int 12345"),
        (lambda p: p["user"].update(id="12345"), "user.id is not a Slack user id: '12345'"),
        (lambda p: p["user"].update(id="<!channel>"), "user.id is not a Slack user id"),
        (lambda p: p["user"].update(id={"id": "U1"}), "user.id must be a Slack user id (a string), not dict"),
        (lambda p: p["user"].update(team_id=7), "user.team_id must be a Slack team id"),
        (lambda p: p["team"].update(id=["T1"]), "team.id must be a Slack team id (a string), not list"),
        (lambda p: p["channel"].update(id=100), "channel.id must be a Slack channel id (a string), not int"),
        (lambda p: p["container"].update(channel_id="general"), "container.channel_id is not a Slack channel id"),
    ],
)
def test_a_signed_click_with_a_malformed_id_is_refused_and_changes_nothing(
    running: Running, change: Any, says: str
) -> None:
    messages = start(running)
    before = snapshot(running)
    message, block = item_block(messages, "all-tests-are-passing")
    payload = click_payload(
        ids.ITEM_DONE,
        block["accessory"]["value"],
        user="U200",
        channel=CHANNEL,
        message_ts=message["ts"],
        thread_ts=message["thread_ts"],
    )
    change(payload)
    response = running.slack.payload(payload)
    assert response.status_code == 400 and says in response.text, response.text
    assert snapshot(running) == before


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("user_id", "12345", "user_id is not a Slack user id"),
        ("channel_id", "#general", "channel_id is not a Slack channel id"),
        ("team_id", "<!here>", "team_id is not a Slack team id"),
    ],
)
def test_a_signed_command_with_a_malformed_id_is_refused(running: Running, field: str, value: str, says: str) -> None:
    form = {**SLASH_COMMAND, "command": "/deploy", "text": "start v9 production", "channel_id": CHANNEL, field: value}
    response = running.slack.post(urlencode(form))
    assert response.status_code == 400 and says in response.text
    assert snapshot(running) == (0, 0, [])

"""Payloads carrying every field Slack is known to send (java-slack-sdk shape samples) parse and act."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

from bot.models import ItemState
from bot.slack import ids
from tests.conftest import Running
from tests.slack_requests import select_values
from tests.test_slack_flow import CHANNEL, item_block, start

SHAPES = Path(__file__).parent / "fixtures" / "slack"


def shape(name: str) -> dict:
    return json.loads((SHAPES / name).read_text())


def test_slash_command_with_every_field(running: Running) -> None:
    form = shape("SlashCommandPayload.json")
    form.update(command="/deploy", text="start v3.0.0 staging", user_id="U1", channel_id=CHANNEL, team_id="T1")
    response = running.slack.post(urlencode({k: str(v).lower() if isinstance(v, bool) else v for k, v in form.items()}))
    assert response.status_code == 200
    assert response.json()["text"].startswith("Run #1 started: v3.0.0 → staging")


def test_block_action_with_every_field(running: Running) -> None:
    messages = start(running)
    message, block = item_block(messages, "all-tests-are-passing")
    payload = shape("BlockActionPayload.json")
    payload["user"]["id"] = "U2"
    payload["channel"]["id"] = CHANNEL
    payload["container"].update(channel_id=CHANNEL, message_ts=message["ts"], thread_ts=message["thread_ts"])
    payload["actions"][0].update(action_id=block["accessory"]["action_id"], value=block["accessory"]["value"])
    assert running.slack.payload(payload).status_code == 200
    with running.app.sessions() as session:
        state = session.get(ItemState, (1, "all-tests-are-passing"))
        assert state is not None and (state.status, state.changed_by) == ("done", "U2")


def test_view_submission_with_every_field(running: Running) -> None:
    start(running)
    payload = shape("ViewSubmissionPayload.json")
    payload["user"]["id"] = "U3"
    payload["view"].update(
        callback_id=ids.NA_VIEW,
        private_metadata=json.dumps({"run": 1}),
        state={"values": select_values("all-tests-are-passing", ids.REASON_FIELD, "no tests")},
    )
    response = running.slack.payload(payload)
    assert response.status_code == 200 and response.text == ""
    with running.app.sessions() as session:
        state = session.get(ItemState, (1, "all-tests-are-passing"))
        assert state is not None and (state.status, state.na_reason) == ("na", "no tests")


def test_the_events_url_verification_handshake_echoes_the_challenge(running: Running) -> None:
    """Slack sends this (signed) when someone sets the app's Events request URL; it must answer at once."""
    body = json.dumps(
        {
            "token": "legacy",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            "type": "url_verification",
        }
    )
    response = running.slack.post(body, "application/json")
    assert response.status_code == 200
    assert response.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}

"""Requests as Slack sends them: recorded payload shapes, form-encoded, signed with v0 HMAC-SHA256."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx

FIXTURES = Path(__file__).parent / "fixtures" / "slack"
BLOCK_ACTIONS = json.loads((FIXTURES / "bolt-python_block_actions__body.json").read_text())
VIEW_SUBMISSION = json.loads((FIXTURES / "bolt-python_view_submission__body.json").read_text())
SLASH_COMMAND = dict(parse_qsl((FIXTURES / "bolt-python_slash_command__slash_command_body.txt").read_text().strip()))


def sign(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack adds: X-Slack-Request-Timestamp and X-Slack-Signature (v0)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


class SlackUser:
    """Drives deploybot's real HTTP endpoint the way Slack's servers do for a person's actions."""

    def __init__(
        self,
        url: str,
        secret: str,
        client: httpx.Client | None = None,
        response_urls: Callable[[str, str, str | None], str] | None = None,
    ):
        self.url = url.rstrip("/") + "/slack/events"
        self.secret = secret
        self.http = client or httpx.Client(timeout=30)
        # Hands out the response_url of each request (the fake Slack's), never one of real Slack's.
        self.response_urls = response_urls

    def post(
        self, body: str, content_type: str = "application/x-www-form-urlencoded", headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return self.http.post(
            self.url,
            content=body.encode(),
            headers={"Content-Type": content_type, **sign(self.secret, body), **(headers or {})},
        )

    def command(
        self, text: str, *, user: str = "U100", channel: str = "C100", name: str | None = None
    ) -> httpx.Response:
        """`/deploy text` as `user`; `name` replaces the recorded sample's user_name."""
        form = {**SLASH_COMMAND, "command": "/deploy", "text": text, "user_id": user, "channel_id": channel}
        if name is not None:
            form["user_name"] = name
        form["response_url"] = self.response_urls(user, channel, None) if self.response_urls else ""
        return self.post(urlencode(form))

    def click(
        self,
        action_id: str,
        value: dict[str, Any] | str,
        *,
        user: str = "U100",
        channel: str = "C100",
        message_ts: str = "1700000000.000001",
        thread_ts: str | None = None,
        name: str | None = None,
    ) -> httpx.Response:
        payload = click_payload(
            action_id, value, user=user, channel=channel, message_ts=message_ts, thread_ts=thread_ts
        )
        if name is not None:
            payload["user"].update(name=name, username=name)
        return self.payload(payload)

    def submit(
        self,
        callback_id: str,
        private_metadata: str,
        values: dict[str, Any],
        *,
        user: str = "U100",
        name: str | None = None,
    ) -> httpx.Response:
        payload = copy.deepcopy(VIEW_SUBMISSION)
        payload["user"]["id"] = user
        if name is not None:
            payload["user"].update(name=name, username=name)
        # Slack sends the view's own blocks along: one input block per field of the state.
        inputs = [{"type": "input", "block_id": key, "label": {"type": "plain_text", "text": key}} for key in values]
        payload["view"].update(
            callback_id=callback_id, private_metadata=private_metadata, state={"values": values}, blocks=inputs
        )
        return self.payload(payload)

    def payload(self, payload: dict[str, Any]) -> httpx.Response:
        if self.response_urls and "response_url" in payload:
            user, container = payload.get("user"), payload.get("container")
            user_id = str(user.get("id")) if isinstance(user, dict) else "?"
            where = container if isinstance(container, dict) else {}
            url = self.response_urls(user_id, str(where.get("channel_id")), where.get("thread_ts"))
            payload = {**payload, "response_url": url}
        elif "response_url" in payload:  # the recorded samples name real Slack's hooks: never call those
            payload = {**payload, "response_url": ""}
        return self.post(urlencode({"payload": json.dumps(payload)}))


def click_payload(
    action_id: str,
    value: dict[str, Any] | str,
    *,
    user: str,
    channel: str,
    message_ts: str,
    thread_ts: str | None = None,
) -> dict[str, Any]:
    payload = copy.deepcopy(BLOCK_ACTIONS)
    payload["user"]["id"] = user
    payload["channel"]["id"] = channel
    payload["container"].update(channel_id=channel, message_ts=message_ts, is_ephemeral=False)
    if thread_ts:
        payload["container"]["thread_ts"] = thread_ts
    payload["actions"][0].update(
        action_id=action_id,
        block_id="b",
        value=value if isinstance(value, str) else json.dumps(value),
    )
    return payload


def select_values(item_id: str, field: str, text: str) -> dict[str, Any]:
    """A modal's state.values after choosing an item and typing into the text field."""
    return {
        "item": {
            "item": {
                "type": "static_select",
                "selected_option": {"value": item_id, "text": {"type": "plain_text", "text": item_id}},
            }
        },
        field: {field: {"type": "plain_text_input", "value": text}},
    }

"""Private answers to the person who clicked: durable outbox rows sent through the request's response_url.

A response_url works in every conversation the click came from, including channels and DMs deploybot
was never added to, where `chat.postEphemeral` answers `not_in_channel`. Slack honours one for 30
minutes and 5 posts. An answer is written as an `Outbox` row of kind "answer" before the request is
acknowledged, and the publisher's outbox pass sends it, retrying 5xx, 429 and network errors like
any other delivery; once the URL has expired or Slack refuses it, the answer goes out as an
ephemeral message instead, and the log says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.webhook import WebhookClient
from sqlalchemy.orm import Session

from bot.metrics import InstrumentedWebClient
from bot.models import Outbox
from bot.runs import Actor
from bot.slack.posting import attempt

log = logging.getLogger(__name__)

KIND = "answer"
# How long Slack honours a response_url; a little less, so a slow retry does not hit the edge.
LIFETIME = timedelta(minutes=30) - timedelta(seconds=30)
TIMEOUT = 10.0
# Errors after which no retry can deliver the answer (the person left, the channel is gone).
HOPELESS = {"not_in_channel", "channel_not_found", "user_not_in_channel", "is_archived", "restricted_action"}
# Failure: (HTTP status, 0 for the network; headers; Slack's error), as the publisher records it.
Failure = tuple[int, Any, str]


@dataclass(frozen=True)
class Answer:
    """What one outbox answer row says, read out of its session."""

    id: int
    text: str
    response_url: str | None
    expires_at: datetime | None
    channel_id: str
    user_id: str | None
    thread_ts: str | None

    @classmethod
    def of(cls, row: Outbox) -> Answer:
        return cls(row.id, row.text, row.response_url, row.expires_at, row.channel_id, row.user_id, row.thread_ts)


def queue(session: Session, actor: Actor, text: str, response_url: str | None) -> None:
    """Keep an answer for the actor; it is sent after the caller's transaction commits."""
    session.add(
        Outbox(
            kind=KIND,
            channel_id=actor.channel_id or actor.user_id,
            text=text,
            created_at=actor.at,
            attempts=0,
            response_url=response_url or None,
            expires_at=actor.at + LIFETIME if response_url else None,
            user_id=actor.user_id,
            thread_ts=actor.thread_ts,
        )
    )


def response_url(body: dict[str, Any]) -> str | None:
    """The response_url of a block_actions or slash-command payload, if it carries a usable one."""
    url = body.get("response_url")
    return url if isinstance(url, str) and url.startswith(("https://", "http://")) else None


def send(client: WebClient, answer: Answer, now: datetime) -> Failure | None:
    """Deliver one answer; None once it is delivered or can never be, else the failure to retry."""
    if answer.response_url and answer.expires_at and now < answer.expires_at:
        failure = _post(answer)
        if isinstance(client, InstrumentedWebClient):
            error, status = (failure[2], failure[0]) if failure else (None, 200)
            client.record("response_url", error, ratelimited=status == 429)
        if failure is None or failure[0] in (0, 408, 429) or failure[0] >= 500:
            return failure
        log.warning("answer %s: response_url refused (%s); answering in the channel instead", answer.id, failure[2])
    elif answer.response_url:
        log.warning("answer %s: its response_url expired before delivery; answering in the channel", answer.id)
    return _post_ephemeral(client, answer)


def _post(answer: Answer) -> Failure | None:
    assert answer.response_url is not None
    body = {"response_type": "ephemeral", "text": answer.text, "replace_original": False}
    try:
        response = WebhookClient(answer.response_url, timeout=int(TIMEOUT)).send_dict(body)
    except OSError as exc:  # connection refused, reset, timed out
        return 0, {}, type(exc).__name__
    if response.status_code == 200:
        return None
    return response.status_code, response.headers, (response.body or "").strip()[:100] or "no body"


def _post_ephemeral(client: WebClient, answer: Answer) -> Failure | None:
    if answer.channel_id.startswith(("D", "U", "W")):  # a DM with the bot: a plain message is private
        _, failure = attempt(client.chat_postMessage, channel=answer.channel_id, text=answer.text)
    else:
        _, failure = attempt(
            client.chat_postEphemeral,
            channel=answer.channel_id,
            user=answer.user_id or "",
            text=answer.text,
            thread_ts=answer.thread_ts,
        )
    if failure is None:
        return None
    if failure.error in HOPELESS:
        log.warning("answer %s to %s cannot be delivered: Slack says %s", answer.id, answer.user_id, failure.error)
        return None
    return failure.status, failure.headers, failure.error

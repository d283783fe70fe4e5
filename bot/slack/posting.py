"""Post each durable message once: the attempt is recorded before Slack is called, and an attempt
whose outcome is unknown is looked up by the key in its metadata before anything is posted again."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from bot.models import SlackPost

# Slack has no idempotency key for bots; message metadata is what finds a post again.
EVENT_TYPE = "deploybot_post"
# Slack stamps a message with its own clock: look this far before the attempt started.
LOOKBACK = timedelta(minutes=5)
# An unanswered request may still be on its way into Slack: look for it only once it had this long
# since it was sent (longer than the client's 10 s timeout), so a late arrival is not posted twice.
SETTLE = timedelta(seconds=12)
PAGE_SIZE = 200
# Lookups Slack refuses for good: an install without the history scopes, or a public channel
# deploybot posts in (chat:write.public) without being a member. Posting again then beats never.
CANNOT_LOOK = {"missing_scope", "not_in_channel"}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Failure:
    """How a Slack call failed: its HTTP status (0: the network), headers and Slack's error.

    `maybe_done`: Slack may have carried the call out all the same (no answer, or a 5xx).
    """

    status: int
    headers: Any
    error: str
    maybe_done: bool = False

    def __str__(self) -> str:
        return f"{self.status or 'network'}: {self.error}"


def attempt(call: Callable[..., Any], **kwargs: Any) -> tuple[Any, Failure | None]:
    """Call the Slack Web API once: (response, None), or (None, what went wrong)."""
    try:
        return call(**kwargs), None
    except SlackApiError as exc:
        status = exc.response.status_code
        return None, Failure(status, exc.response.headers, str(exc.response.get("error")), status >= 500)
    except OSError as exc:  # connection refused, reset, timed out
        reason = getattr(exc, "reason", exc)  # urllib wraps what happened while connecting
        refused = isinstance(reason, ConnectionRefusedError)  # nothing reached Slack
        return None, Failure(0, {}, type(reason).__name__, not refused)


@dataclass(frozen=True)
class Posted:
    """What posting came to: the message's ts, a failure, or when to ask again."""

    ts: str | None = None
    # The ts of a message an earlier attempt posted: it may show an older rendering.
    adopted: bool = False
    failure: Failure | None = None
    look_at: datetime | None = None  # an earlier attempt may still land in Slack: try again then


def metadata(key: str) -> dict[str, Any]:
    """The message metadata that names a post's row."""
    return {"event_type": EVENT_TYPE, "event_payload": {"key": key}}


class Poster:
    """Posts what must appear once (run messages, alerts, nudges, page DMs), found again if unknown."""

    def __init__(self, sessions: sessionmaker[Session], client: WebClient, clock: Callable[[], datetime]):
        self._sessions = sessions
        self._client = client
        self._clock = clock

    def post(self, key: str, channel: str, thread_ts: str | None, **message: Any) -> Posted:
        """Post `message` under `key` unless an earlier attempt already did; the caller holds the row's lease."""
        now = self._clock()
        with self._sessions.begin() as session:
            earlier = session.get(SlackPost, key)
            if earlier is not None:
                session.expunge(earlier)
        if earlier is not None and earlier.ts is not None:
            return Posted(earlier.ts, adopted=True)
        if earlier is not None and earlier.started_at is not None:
            if earlier.look_after is not None and now < earlier.look_after:
                return Posted(look_at=earlier.look_after)
            found, failure = self.find(key, earlier.channel_id, earlier.thread_ts, earlier.started_at)
            if failure is not None and failure.error in CANNOT_LOOK:
                log.warning("cannot look for %s in %s (%s): posting it again", key, earlier.channel_id, failure.error)
            elif failure is not None:
                return Posted(failure=failure)
            if found is not None:
                self._record(key, ts=found)
                return Posted(found, adopted=True)
        with self._sessions.begin() as session:
            # Recorded before the call: a process killed while Slack stores the post leaves this trace.
            session.merge(
                SlackPost(key=key, channel_id=channel, thread_ts=thread_ts, started_at=now, look_after=now + SETTLE)
            )
        response, failure = attempt(
            self._client.chat_postMessage, channel=channel, thread_ts=thread_ts, metadata=metadata(key), **message
        )
        if failure is not None:
            if not failure.maybe_done:
                self._record(key, ts=None, started_at=None)  # Slack said no: nothing to look for
            elif failure.status:
                self._record(key, ts=None, look_after=now)  # Slack answered (5xx): done with it, look right away
            return Posted(failure=failure)
        self._record(key, ts=response["ts"])
        return Posted(response["ts"])

    def find(
        self, key: str, channel: str, thread_ts: str | None, started_at: datetime
    ) -> tuple[str | None, Failure | None]:
        """The ts of the message posted under `key` since `started_at` (less LOOKBACK), if Slack has it."""
        oldest = f"{(started_at - LOOKBACK).timestamp():.6f}"
        where: dict[str, Any] = {"channel": channel, "oldest": oldest, "include_all_metadata": True}
        call: Callable[..., Any] = self._client.conversations_history
        if thread_ts is not None:
            call, where["ts"] = self._client.conversations_replies, thread_ts
        cursor = None
        while True:
            response, failure = attempt(call, limit=PAGE_SIZE, cursor=cursor, **where)
            if failure is not None:
                return None, failure
            for found in response.get("messages") or []:
                meta = found.get("metadata") or {}
                if meta.get("event_type") == EVENT_TYPE and (meta.get("event_payload") or {}).get("key") == key:
                    return str(found["ts"]), None
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not response.get("has_more") or not cursor:
                return None, None

    def _record(self, key: str, **values: Any) -> None:
        if "ts" in values and values["ts"] is not None:
            values["started_at"] = values["look_after"] = None  # posted: nothing left to find out
        with self._sessions.begin() as session:
            session.execute(update(SlackPost).where(SlackPost.key == key).values(values))

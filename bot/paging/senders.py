"""How one page notification goes out: a Slack DM, a PagerDuty Events v2 event, a signed webhook."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.config import DeployConfig
from bot.models import Page
from bot.paging import render
from bot.slack.posting import Failure, Poster

SEVERITY = "critical"
WEBHOOK_EVENTS = {"trigger": "page.triggered", "acknowledge": "page.acknowledged", "resolve": "page.resolved"}


@dataclass(frozen=True)
class Outcome:
    """What a send attempt came to: delivered, worth retrying (after `retry_after`), or hopeless."""

    ok: bool
    error: str | None = None
    retry: bool = False
    retry_after: float | None = None
    members: tuple[str, ...] = ()  # for a user group: the people to DM
    message: tuple[str, str] | None = None  # for a DM: its channel and ts, to update it later
    look_at: datetime | None = None  # an earlier attempt may still land in Slack: try again then, no failure


class Senders:
    """Sends notifications; holds the clients and reads secrets from the environment when it sends."""

    def __init__(
        self, config: DeployConfig, slack: WebClient, poster: Poster, http: httpx.Client, environ: Mapping[str, str]
    ):
        self._config = config
        self._slack = slack
        self._poster = poster
        self._http = http
        self._environ = environ

    def close(self) -> None:
        self._http.close()

    def send(self, page: Page, target: str, action: str, level: int, sent: tuple[str, str] | None = None) -> Outcome:
        """Send one notification; for a DM's acknowledge or resolve, update the DM `sent` earlier."""
        kind, _, name = target.partition(":")
        try:
            if kind == "dm" and action != "trigger":
                return self._update_dm(page, sent, level)
            if kind == "dm":
                return self._dm(page, name, level)
            if kind == "usergroup":
                return self._usergroup(name)
            team = self._config.contacts.get(name)
            if team is None:
                return Outcome(False, f"team {name!r} is no longer in deploybot.yml")
            if kind == "pagerduty" and team.pagerduty:
                return self._pagerduty(page, name, team.pagerduty.routing_key_env, team.pagerduty.url, action)
            if kind == "webhook" and team.webhook:
                return self._webhook(page, name, team.webhook.url, team.webhook.secret_env, action, level)
            return Outcome(False, f"team {name!r} has no {kind} configured any more")
        except SlackApiError as exc:
            return _slack_outcome(exc)
        except (OSError, httpx.TransportError) as exc:
            return Outcome(False, f"network: {type(exc).__name__}", retry=True)

    def _dm(self, page: Page, user: str, level: int) -> Outcome:
        # Posted in the IM channel's id, not the user's: that is where a lost post is looked up.
        channel = str(self._slack.conversations_open(users=user)["channel"]["id"])
        blocks, text = render.dm(page, self._config.contacts, level)
        # One trigger per (page, level, person): the delivery row's unique key names the post.
        key = f"page-dm:{page.id}:{level}:{user}"
        posted = self._poster.post(key, channel, None, blocks=blocks, text=text, unfurl_links=False)
        if posted.look_at is not None:
            return Outcome(False, retry=True, look_at=posted.look_at)
        if posted.failure is not None:
            return _failed(posted.failure)
        assert posted.ts is not None
        # An adopted DM may show an earlier state; acknowledgements and resolutions update it in place.
        return Outcome(True, message=(channel, posted.ts))

    def _update_dm(self, page: Page, sent: tuple[str, str] | None, level: int) -> Outcome:
        if sent is None:  # the DM never went out: nothing shows a stale button
            return Outcome(True)
        blocks, text = render.dm(page, self._config.contacts, level)
        self._slack.chat_update(channel=sent[0], ts=sent[1], blocks=blocks, text=text)
        return Outcome(True)

    def _usergroup(self, group: str) -> Outcome:
        response = self._slack.usergroups_users_list(usergroup=group)
        return Outcome(True, members=tuple(response.get("users") or ()))

    def _pagerduty(self, page: Page, team: str, key_env: str, url: str, action: str) -> Outcome:
        key = self._environ.get(key_env)
        if not key:
            return Outcome(False, f"{key_env} is not set: PagerDuty needs the integration's routing key")
        event: dict[str, Any] = {"routing_key": key, "event_action": action, "dedup_key": page.dedup_key}
        if action == "trigger":
            event |= {
                "payload": {
                    "summary": render.plain_summary(page, self._config.contacts)[:1024],
                    "source": "deploybot",
                    "severity": SEVERITY,
                    "custom_details": render.details(page, team),
                },
                "client": "deploybot",
            }
        response = self._http.post(
            url.rstrip("/") + "/v2/enqueue", content=json_body(event), headers={"Content-Type": "application/json"}
        )
        return _http_outcome(response, "PagerDuty")

    def _webhook(self, page: Page, team: str, url: str, secret_env: str, action: str, level: int) -> Outcome:
        secret = self._environ.get(secret_env)
        if not secret:
            return Outcome(False, f"{secret_env} is not set: the webhook needs its signing secret")
        body = json_body({"event": WEBHOOK_EVENTS[action], "level": level, "page": render.details(page, team)})
        timestamp = str(int(time.time()))
        response = self._http.post(
            url,
            content=body.encode(),
            headers={
                "Content-Type": "application/json",
                "X-Deploybot-Timestamp": timestamp,
                "X-Deploybot-Signature": "v1=" + sign(secret, timestamp, body),
                # The same for every retry of this notification: receivers can drop duplicates.
                "Idempotency-Key": f"{page.dedup_key}:{level}:{team}:{action}",
            },
        )
        return _http_outcome(response, "the webhook")


def json_body(payload: dict[str, Any]) -> str:
    """Compact JSON with `<`, `>` and `&` as \\u escapes: the same values, but no markup in the raw bytes."""
    text = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    # Outside strings JSON has none of these characters, so replacing them everywhere is safe.
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def sign(secret: str, timestamp: str, body: str) -> str:
    """HMAC-SHA256 over "<timestamp>.<body>", hex: what a receiver recomputes to trust a call."""
    return hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()


def _http_outcome(response: httpx.Response, who: str) -> Outcome:
    if response.is_success:
        return Outcome(True)
    error = f"{who} answered {response.status_code}"
    if response.status_code == 429:
        return Outcome(False, error, retry=True, retry_after=_seconds(response.headers.get("Retry-After")))
    # 5xx and 408 are passing trouble; other 4xx mean the event itself is wrong and stays wrong.
    return Outcome(False, error, retry=response.status_code >= 500 or response.status_code == 408)


def _slack_outcome(exc: SlackApiError) -> Outcome:
    return _failed(Failure(exc.response.status_code, exc.response.headers, str(exc.response.get("error"))))


def _failed(failure: Failure) -> Outcome:
    status, error = failure.status, failure.error
    if not status:
        return Outcome(False, f"network: {error}", retry=True)
    if status == 429:
        return Outcome(False, f"Slack: {error}", retry=True, retry_after=_seconds(failure.headers.get("Retry-After")))
    return Outcome(False, f"Slack: {error}", retry=status >= 500 or error in ("internal_error", "fatal_error"))


def _seconds(value: Any) -> float | None:
    try:
        return float(value[0] if isinstance(value, list) else value)
    except (TypeError, ValueError):
        return None

"""The bot's own identity on Slack: learned with auth.test at start-up (retried until Slack answers), then kept."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from slack_bolt.authorization import AuthorizeResult
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)

FIRST_WAIT = 1.0  # seconds before the first retry; doubled after each failure
LONGEST_WAIT = 30.0


@dataclass(frozen=True)
class Identity:
    team_id: str | None
    user_id: str | None
    bot_id: str | None


class BotIdentity:
    """Who the bot is, without ever making a request wait for Slack to say so.

    Bolt would ask Slack (`auth.test`) on a process's first request and drop that request when
    Slack is down; deploybot asks at start-up instead, keeps asking in the background until
    Slack answers, and authorizes every request from what it holds meanwhile: the token it was
    given, which is all a listener needs to call Slack.
    """

    def __init__(self, client: WebClient, token: str, *, first_wait: float = FIRST_WAIT):
        self._client = client
        self._token = token
        self._first_wait = first_wait
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.known: Identity | None = None
        self.problem = "Slack has not been asked auth.test yet"
        self.refused = False  # Slack answered, and refused the token: no retry will help

    def learn(self) -> bool:
        """Ask Slack once; keep the answer, or say in `problem` why there is none."""
        try:
            answer = self._client.auth_test()
        except SlackApiError as exc:
            error = str(exc.response.get("error"))
            if error in ("invalid_auth", "not_authed", "account_inactive", "token_revoked"):
                self.problem = f"Slack refused the bot token ({error}): check SLACK_BOT_TOKEN"
                self.refused = True
                log.error("Slack auth.test failed: %s (check SLACK_BOT_TOKEN)", error)
            else:
                self.problem = f"Slack has not answered auth.test yet ({exc.response.status_code} {error})"
                log.warning("Slack auth.test failed: %s %s; retrying", exc.response.status_code, error)
            return False
        except OSError as exc:
            self.problem = f"Slack is unreachable ({type(exc).__name__})"
            log.warning("Slack is unreachable: %s; retrying", type(exc).__name__)
            return False
        self.known = Identity(answer.get("team_id"), answer.get("user_id"), answer.get("bot_id"))
        log.info("Slack knows this bot as %s (bot %s) in team %s", *(self._shown()))
        return True

    def start(self) -> None:
        """Ask Slack in the background, at once and then with doubling waits, until it answers."""
        # Not here and now: a Slack that hangs would hold start-up, and the port, for the client's timeout.
        if self.known is None and self._thread is None:
            self._thread = threading.Thread(target=self._retry, name="identity", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)

    def authorize(self, enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
        """Bolt's authorization of one request, from what is held: never a call to Slack."""
        known = self.known or Identity(team_id, None, None)
        return AuthorizeResult(
            enterprise_id=enterprise_id,
            team_id=known.team_id or team_id,
            bot_token=self._token,
            bot_id=known.bot_id,
            bot_user_id=known.user_id,
        )

    def _retry(self) -> None:
        wait = self._first_wait
        while not self.learn() and not self._stopping.wait(wait):
            wait = min(2 * wait, LONGEST_WAIT)

    def _shown(self) -> tuple[str, str, str]:
        known = self.known or Identity(None, None, None)
        return known.user_id or "?", known.bot_id or "?", known.team_id or "?"

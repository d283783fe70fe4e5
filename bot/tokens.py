"""Pipeline tokens: create, list, revoke, authenticate. Only a SHA-256 hash of a token is ever stored."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.checklists import PIPELINE_NAME
from bot.models import PIPELINE_PREFIX, ApiToken
from bot.runs import Actor, RunError
from bot.slack.mrkdwn import is_slack_channel

PREFIX = "dbt_"  # says what a leaked string is, so secret scanners can find it
# last_used_at is written at most this often per token: a gate's re-polls are not each a write.
_TOUCH_EVERY = timedelta(seconds=60)
_ENVIRONMENT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def digest(token: str) -> str:
    """The hash kept in place of a token."""
    return hashlib.sha256(token.encode("utf-8", errors="surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Caller:
    """A live token that presented itself: what it may touch, and whom its actions are attributed to."""

    id: int
    name: str
    channel_id: str
    environment: str | None

    def actor(self, at: datetime) -> Actor:
        """The audit trail's "who" for this pipeline."""
        return Actor(f"{PIPELINE_PREFIX}{self.id}", at, channel_id=self.channel_id, name=f"CI: {self.name}")


def create(session: Session, name: str, channel_id: str, environment: str | None, now: datetime) -> str:
    """Store a new token's hash and return the token itself, which nobody can see again."""
    name = name.strip()
    if not PIPELINE_NAME.fullmatch(name) or name.lower() == "ci":
        raise RunError(
            f"{name!r} cannot name a token: use letters, digits, spaces, '.', '_' and '-' (up to 64), "
            "e.g. --name 'github-actions prod' ('ci' is kept for any pipeline)."
        )
    if not is_slack_channel(channel_id):
        raise RunError(f"{channel_id!r} is not a Slack channel id: give one like C0123ABCD (channel details › About).")
    if environment is not None and not _ENVIRONMENT.match(environment):
        raise RunError(f"{environment!r} is not an environment name: use one lowercase word such as production.")
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise RunError(f"A token named {name!r} exists already: pick another name, or revoke that one first.")
    token = PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiToken(name=name, channel_id=channel_id, environment=environment, secret_hash=digest(token), created_at=now)
    )
    return token


def listed(session: Session) -> list[ApiToken]:
    """Every token, live or revoked, oldest first (hashes included: never show them)."""
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def revoke(session: Session, name: str, now: datetime) -> ApiToken:
    """Revoke a token by name; every replica refuses it from its next request on."""
    token = session.scalar(select(ApiToken).where(ApiToken.name == name.strip()))
    if token is None:
        raise RunError(f"No token named {name!r}: `deploybot token list` shows them.")
    if token.revoked_at is None:
        token.revoked_at = now
    return token


def is_live(session: Session, token_id: int) -> bool:
    """Whether a token is still live (not revoked since it presented itself)."""
    found = session.execute(select(ApiToken.revoked_at).where(ApiToken.id == token_id)).first()
    return found is not None and found.revoked_at is None


def authenticate(session: Session, presented: str, now: datetime) -> Caller | None:
    """The live token matching what was presented, if any; read per request, so no cache outlives a revoke."""
    token = session.scalar(select(ApiToken).where(ApiToken.secret_hash == digest(presented)))
    if token is None or token.revoked_at is not None:
        return None
    if token.last_used_at is None or now - token.last_used_at >= _TOUCH_EVERY:
        session.execute(update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now))
    return Caller(token.id, token.name, token.channel_id, token.environment)

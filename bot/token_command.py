"""`deploybot token create|list|revoke`: pipeline tokens from the operator's terminal."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime

from bot import db, tokens
from bot.config import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare `token` and its three actions."""
    token = sub.add_parser("token", help="pipeline tokens for the /api/v1/ API: create, list, revoke")
    actions = token.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a token; it is printed once, on the last line")
    create.add_argument("--name", required=True, help="who uses it, e.g. 'github-actions prod'")
    create.add_argument("--channel", required=True, help="the Slack channel id its runs are in, e.g. C0123ABCD")
    create.add_argument("--environment", help="the only environment it may touch (default: any)")
    actions.add_parser("list", help="every token: name, channel, environment, created, last used, revoked")
    revoke = actions.add_parser("revoke", help="refuse a token from now on, on every replica")
    revoke.add_argument("name")


def run(settings: Settings, args: argparse.Namespace, now: Callable[[], datetime], say: Callable[[str], None]) -> int:
    """Do one token action on the configured database."""
    engine = db.make_engine(settings.database_url)
    try:
        db.upgrade(engine)
        sessions = db.make_sessions(engine)
        if args.action == "create":
            with sessions.begin() as session:
                token = tokens.create(session, args.name, args.channel, args.environment, now())
            where = f"{args.channel}" + (f", {args.environment} only" if args.environment else ", any environment")
            say(f"Token {args.name.strip()!r} for {where}. Keep it in your CI's secrets as DEPLOYBOT_TOKEN;")
            say("it is shown once and cannot be shown again (revoke it and make another if it is lost):")
            say(token)
        elif args.action == "list":
            with sessions() as session:
                listed = tokens.listed(session)
            if not listed:
                say("no tokens yet: `deploybot token create --name NAME --channel CHANNEL` makes one")
            for t in listed:
                state = f"revoked {_when(t.revoked_at)}" if t.revoked_at else "live"
                say(
                    f"{t.name}\tchannel {t.channel_id}\tenvironment {t.environment or 'any'}\t"
                    f"created {_when(t.created_at)}\tlast used {_when(t.last_used_at)}\t{state}"
                )
        else:
            with sessions.begin() as session:
                revoked = _when(tokens.revoke(session, args.name, now()).revoked_at)
            say(f"Token {args.name.strip()!r} is revoked (since {revoked}): every replica refuses it now.")
    finally:
        engine.dispose()
    return 0


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else "never"

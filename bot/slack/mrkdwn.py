"""Slack mrkdwn and id helpers shared by renderers and run rules."""

from __future__ import annotations

import re

_ENTITY = re.compile(r"&(amp|lt|gt);")
_DECODED = {"amp": "&", "lt": "<", "gt": ">"}
# After "<", so nothing that reads Slack markup sees "<!", "<@", "<#" or "<http": invisible, not a space.
WORD_JOINER = "\u2060"
_MENTION = re.compile(r"<(?:@|!subteam\^)([A-Z0-9]+)(?:\|@?[^>]*)?>")


def escape(text: str) -> str:
    """Escape user-written text for mrkdwn, so it cannot ping @channel or fake a mention."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    """Undo `escape` exactly once: Slack sends slash-command text with `&`, `<` and `>` escaped so."""
    # One pass, so a typed "&amp;lt;" (sent as "&amp;amp;lt;") comes back as "&amp;lt;", not "<".
    return _ENTITY.sub(lambda m: _DECODED[m.group(1)], text)


def plain(text: str) -> str:
    """mrkdwn as plain text, for a form's error (Slack shows it unrendered): mentions as @id, entities decoded."""
    return unescape(_MENTION.sub(r"@\1", text))


def defuse(text: str) -> str:
    """Plain text that stays inert if someone posts it into Slack unescaped (PagerDuty, webhook receivers)."""
    return text.replace("<", "<" + WORD_JOINER)


def is_slack_user(user_id: str) -> bool:
    """Slack user ids start with U or W; the terminal shell's users have plain names."""
    return re.match(r"^[UW][A-Z0-9]+$", user_id) is not None


def mention(user_id: str | None, name: str | None = None) -> str:
    """A Slack mention for a Slack user id; anyone else (a pipeline, a terminal user) by name when known."""
    if user_id and is_slack_user(user_id):
        return f"<@{user_id}>"
    return f"*{escape(name or user_id or 'someone')}*"


def is_slack_channel(channel_id: str) -> bool:
    """Slack conversation ids start with C, G or D; the terminal shell uses other names."""
    return re.match(r"^[CGD][A-Z0-9]{2,}$", channel_id) is not None


def clip(text: str, limit: int) -> str:
    """Plain text cut to `limit` characters, an ellipsis saying it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"

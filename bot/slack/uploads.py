"""Share a file where someone asked for it: in their thread, after joining a public channel, or privately."""

from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.runs import Actor

log = logging.getLogger(__name__)

# What completeUploadExternal answers in a conversation the bot is not a member of: chat:write.public
# covers chat.postMessage only, so an upload needs membership (or goes elsewhere).
NOT_A_MEMBER = {"not_in_channel", "channel_not_found"}


def share(client: WebClient, actor: Actor, *, content: str, filename: str, title: str, comment: str) -> str | None:
    """Upload `content` where the actor clicked; return what to tell them, or None if it is simply there."""
    channel, thread_ts = actor.channel_id, actor.thread_ts or actor.message_ts
    file = {"content": content, "filename": filename, "title": title, "initial_comment": comment}
    if channel:
        error = _upload(client, channel, thread_ts, file)
        if error is None:
            return None
        if error not in NOT_A_MEMBER:
            return f"Slack did not take the export (`{error}`); nothing was shared. Try again in a minute."
        if _join(client, channel):
            error = _upload(client, channel, thread_ts, file)
            if error is None:
                return f"I was not a member of <#{channel}>, so I joined it to share the export in your thread."
    try:
        direct = client.conversations_open(users=actor.user_id)["channel"]["id"]
    except SlackApiError as exc:
        return f"I could not open a direct message with you (`{exc.response.get('error')}`); nothing was shared."
    except OSError as exc:
        return f"Slack could not be reached ({type(exc).__name__}); nothing was shared. Try again in a minute."
    error = _upload(client, direct, None, file)
    if error is not None:
        return f"Slack did not take the export (`{error}`); nothing was shared. Try again in a minute."
    if not channel:
        return None
    return (
        f"I am not a member of <#{channel}> and cannot join it (it is private), so I sent the export to you "
        "in a direct message. Invite me with `/invite @deploybot` to share exports there."
    )


def _upload(client: WebClient, channel: str, thread_ts: str | None, file: dict[str, str]) -> str | None:
    """One upload (files.getUploadURLExternal, then completeUploadExternal); Slack's error if it failed."""
    try:
        client.files_upload_v2(
            channel=channel,
            thread_ts=thread_ts,
            content=file["content"],
            filename=file["filename"],
            title=file["title"],
            initial_comment=file["initial_comment"],
        )
    except SlackApiError as exc:
        return str(exc.response.get("error"))
    except OSError as exc:
        return type(exc).__name__
    return None


def _join(client: WebClient, channel: str) -> bool:
    """Join a public channel (scope channels:join); False for a private one or any refusal."""
    try:
        client.conversations_join(channel=channel)
    except SlackApiError as exc:
        log.info("could not join %s to share an export: %s", channel, exc.response.get("error"))
        return False
    return True

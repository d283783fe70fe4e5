"""Modals: which item and why (N/A) or what (note), and what went wrong (a failed deployment)."""

from __future__ import annotations

import json

from bot.models import ItemStatus, Run
from bot.runs import MAX_REASON
from bot.slack import ids, limits
from bot.slack.blocks import Block, Part, context, section
from bot.slack.mrkdwn import clip, escape


def item_modal(
    run: Run, part: Part, callback_id: str, *, na: bool, channel_id: str | None = None, message_ts: str | None = None
) -> Block:
    """A modal asking which item of a part, and why (N/A) or what (note)."""
    groups = []
    for group, items in part.groups:
        options = [
            {"text": {"type": "plain_text", "text": clip(item.text, limits.OPTION_TEXT)}, "value": item.id}
            for item in items
            if not (na and (s := run.state_of(item.id)) is not None and s.status == ItemStatus.NA)
        ]
        if options:
            groups.append({"label": {"type": "plain_text", "text": clip(group.title, 75)}, "options": options})
    field = ids.REASON_FIELD if na else ids.NOTE_FIELD
    return {
        "type": "modal",
        "callback_id": callback_id,
        # Where the form was opened from, so the audit trail can say which message it came from.
        "private_metadata": json.dumps({"run": run.id, "channel": channel_id, "message": message_ts}),
        "title": {"type": "plain_text", "text": "Mark item N/A" if na else "Add a note"},
        "submit": {"type": "plain_text", "text": "Mark N/A" if na else "Add note"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            context(f"Run #{run.id} · {escape(run.version)} → {escape(run.environment)} · {escape(part.title)}"),
            {
                "type": "input",
                "block_id": ids.ITEM_FIELD,
                "label": {"type": "plain_text", "text": "Item"},
                "element": {
                    "type": "static_select",
                    "action_id": ids.ITEM_FIELD,
                    "placeholder": {"type": "plain_text", "text": "Choose an item"},
                    "option_groups": groups,
                },
            },
            {
                "type": "input",
                "block_id": field,
                "label": {"type": "plain_text", "text": "Why does it not apply?" if na else "Note"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": field,
                    "multiline": True,
                    "max_length": 500,
                },
            },
        ],
    }


def fail_modal(run: Run, channel_id: str | None, message_ts: str | None) -> Block:
    """A modal asking what went wrong before a deployment is declared failed."""
    return {
        "type": "modal",
        "callback_id": ids.FAIL_VIEW,
        "private_metadata": json.dumps({"run": run.id, "channel": channel_id, "message": message_ts}),
        "title": {"type": "plain_text", "text": "Deployment failed"},
        "submit": {"type": "plain_text", "text": "Declare failed"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            context(f"Run #{run.id} · {escape(run.version)} → {escape(run.environment)}"),
            section(
                "The run is marked failed and the rollback checklist is posted in the channel, "
                "with the previous successful version filled in."
            ),
            {
                "type": "input",
                "block_id": ids.REASON_FIELD,
                "label": {"type": "plain_text", "text": "What went wrong?"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": ids.REASON_FIELD,
                    "multiline": True,
                    "max_length": MAX_REASON,
                },
            },
        ],
    }

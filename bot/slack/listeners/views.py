"""Modal submissions: N/A with a reason, and notes."""

from __future__ import annotations

import json
from typing import Any

from slack_bolt import Ack

from bot import items, people
from bot.runs import Actor, RunError
from bot.services import Services
from bot.slack import ids


class Views:
    def __init__(self, services: Services):
        self.services = services

    def na_submitted(self, ack: Ack, body: dict[str, Any]) -> None:
        run_id, item_id, reason, actor = self._read(body, ids.REASON_FIELD)
        if not reason.strip():
            ack(response_action="errors", errors={ids.REASON_FIELD: "Say why this item does not apply."})
            return
        self.services.require_item(run_id, item_id, actor)
        with self.services.change() as session:
            items.mark_na(session, run_id, item_id, reason, actor)
        ack()

    def note_submitted(self, ack: Ack, body: dict[str, Any]) -> None:
        run_id, item_id, text, actor = self._read(body, ids.NOTE_FIELD)
        if not text.strip():
            ack(response_action="errors", errors={ids.NOTE_FIELD: "The note is empty."})
            return
        with self.services.change() as session:
            items.add_note(session, run_id, item_id, text, actor)
        ack()

    def fail_submitted(self, ack: Ack, body: dict[str, Any]) -> None:
        view = body.get("view") or {}
        try:
            origin = json.loads(view.get("private_metadata") or "")
            run_id = origin["run"]
            reason = view["state"]["values"][ids.REASON_FIELD][ids.REASON_FIELD].get("value") or ""
        except (ValueError, KeyError, TypeError):
            raise RunError("This form is malformed or out of date; nothing changed. Open it again.") from None
        if not isinstance(run_id, int):
            raise RunError("This form is malformed or out of date; nothing changed. Open it again.")
        if not reason.strip():
            ack(response_action="errors", errors={ids.REASON_FIELD: "Say what went wrong."})
            return
        actor = Actor(
            body["user"]["id"],
            self.services.clock(),
            origin.get("channel"),
            origin.get("message"),
            name=people.from_slack_user(body["user"]),
        )
        self.services.fail_deploy(run_id, reason, actor)
        ack()

    def _read(self, body: dict[str, Any], field: str) -> tuple[int, str, str, Actor]:
        view = body.get("view") or {}
        try:
            origin = json.loads(view.get("private_metadata") or "")
            run_id = origin["run"]
            values = view["state"]["values"]
            item_id = values[ids.ITEM_FIELD][ids.ITEM_FIELD]["selected_option"]["value"]
            text = values[field][field].get("value") or ""
        except (ValueError, KeyError, TypeError):
            raise RunError("This form is malformed or out of date; nothing changed. Open it again.") from None
        if not isinstance(run_id, int) or not isinstance(item_id, str):
            raise RunError("This form is malformed or out of date; nothing changed. Open it again.")
        actor = Actor(
            body["user"]["id"],
            self.services.clock(),
            origin.get("channel"),
            origin.get("message"),
            name=people.from_slack_user(body["user"]),
        )
        return run_id, item_id, text, actor

    def unknown(self, ack: Ack, body: dict[str, Any]) -> None:
        callback_id = (body.get("view") or {}).get("callback_id")
        raise RunError(f"deploybot does not know the form {callback_id!r}; nothing changed.")

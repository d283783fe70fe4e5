"""The route table: which listener answers which command, action and view."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse
from slack_sdk import WebClient
from sqlalchemy.exc import SQLAlchemyError

from bot import logs
from bot.metrics import Metrics
from bot.runs import RunError, TextRefused
from bot.services import Services
from bot.slack import ids
from bot.slack.listeners.actions import Actions, tell, tell_now
from bot.slack.listeners.commands import Commands
from bot.slack.listeners.events import Events
from bot.slack.listeners.views import Views
from bot.slack.mrkdwn import plain

log = logging.getLogger(__name__)


def register_listeners(app: App, services: Services) -> None:
    commands, actions, views, events = Commands(services), Actions(services), Views(services), Events(services)
    app.command("/deploy")(commands.deploy)
    app.event("app_home_opened")(events.home_opened)

    app.action(ids.ITEM_DONE)(actions.item_done)
    app.action(ids.ITEM_REOPEN)(actions.item_reopen)
    app.action(ids.NA_DIALOG)(actions.na_dialog)
    app.action(ids.NOTE_DIALOG)(actions.note_dialog)
    app.action(ids.COMPLETE_ANYWAY)(actions.complete_anyway)
    app.action(ids.ITEM_MENU)(actions.item_menu)
    app.action(ids.RERUN_PROBES)(actions.rerun_probes)
    app.action(ids.EXPORT)(actions.export)
    app.action(ids.FAIL_DIALOG)(actions.fail_dialog)
    app.action(ids.PAGE_ONCALL)(actions.page_oncall)
    app.action(ids.PAGE_ACK)(actions.page_ack)
    app.action(ids.PAGE_RESOLVE)(actions.page_resolve)
    app.action(re.compile(".*"))(actions.unknown)  # must stay last: Bolt runs the first match

    app.view(ids.NA_VIEW)(views.na_submitted)
    app.view(ids.NOTE_VIEW)(views.note_submitted)
    app.view(ids.FAIL_VIEW)(views.fail_submitted)
    app.view(re.compile(".*"))(views.unknown)

    app.error(_make_error_handler(services))


class ObservedApp(App):
    """Bolt's App, timing and logging every request it dispatches, in HTTP and Socket Mode alike."""

    def __init__(self, metrics: Metrics, **kwargs: Any):
        super().__init__(**kwargs)
        self.metrics = metrics

    def dispatch(self, req: BoltRequest) -> BoltResponse:
        started = time.perf_counter()
        body = req.body if isinstance(req.body, dict) else {}
        kind, action = _kind(body), _action_id(body)
        with logs.request_scope():
            response = super().dispatch(req)
            elapsed = time.perf_counter() - started
            self.metrics.count("requests", kind=kind)
            if action:
                self.metrics.count("clicks", action=action if action in ids.KNOWN_ACTIONS else "unknown")
            self.metrics.observe_ack(elapsed)
            detail = action or _subcommand(body)
            log.info(
                "%s%s from %s answered %s in %.1f ms",
                kind,
                f" {detail}" if detail else "",
                _user(body),
                response.status,
                1000 * elapsed,
            )
        return response


def _action_id(body: dict[str, Any]) -> str | None:
    actions = body.get("actions")
    if body.get("type") == "block_actions" and isinstance(actions, list) and actions and isinstance(actions[0], dict):
        return str(actions[0].get("action_id"))
    return None


def _subcommand(body: dict[str, Any]) -> str | None:
    """`/deploy start`, without the rest: reasons and messages stay out of the logs."""
    if not body.get("command"):
        return None
    return f"{body['command']} {(str(body.get('text') or '').split() or [''])[0][:20]}".strip()


def _user(body: dict[str, Any]) -> str:
    user = body.get("user")
    return str(
        body.get("user_id")
        or (user.get("id") if isinstance(user, dict) else None)
        or (body.get("event") or {}).get("user")
        or "?"
    )


def _make_error_handler(services: Services) -> Any:
    def handle_error(error: Exception, body: dict[str, Any], client: WebClient) -> BoltResponse:
        """Turn a refusal into a plain answer for the person; log anything else under an id they can quote."""
        if isinstance(error, RunError):
            text = str(error)
        else:
            error_id = uuid.uuid4().hex[:8]
            log.error("error %s in %s: %s", error_id, _kind(body), type(error).__name__, exc_info=error)
            text = (
                f"Something went wrong on deploybot's side (error id `{error_id}`); nothing was changed. "
                "Try again, and quote the id to whoever runs deploybot if it keeps happening."
            )
        if "command" in body:
            return _json({"response_type": "ephemeral", "text": text})
        if body.get("type") == "view_submission":
            return _form_refusal(body, plain(text), typed=isinstance(error, TextRefused))
        if body.get("type") == "block_actions" and isinstance((body.get("user") or {}).get("id"), str):
            try:
                tell(services, body, text)
            except SQLAlchemyError as exc:  # the database is what failed: nothing can be kept, so say it now
                log.error("could not keep the answer to a %s: %s; answering once", _kind(body), type(exc).__name__)
                tell_now(client, body, text)
        return BoltResponse(status=200, body="")

    return handle_error


def _json(payload: dict[str, Any]) -> BoltResponse:
    return BoltResponse(status=200, body=json.dumps(payload), headers={"content-type": "application/json"})


def _form_refusal(body: dict[str, Any], text: str, *, typed: bool) -> BoltResponse:
    """Show a refusal in the form: under the text typed when it is about that text, else the first field."""
    view_blocks = (body.get("view") or {}).get("blocks") or []
    inputs = [
        b["block_id"] for b in view_blocks if isinstance(b, dict) and b.get("type") == "input" and b.get("block_id")
    ]
    texts = [b for b in inputs if b in (ids.REASON_FIELD, ids.NOTE_FIELD)]
    field = (texts or inputs or [None])[0] if typed else (inputs or [None])[0]
    if field is None:  # a form without fields (unknown, or out of date): replace it by the answer
        answer = {"type": "section", "text": {"type": "plain_text", "text": text[:3000]}}
        title = {"type": "plain_text", "text": "deploybot"}
        return _json({"response_action": "update", "view": {"type": "modal", "title": title, "blocks": [answer]}})
    return _json({"response_action": "errors", "errors": {field: text[:1000]}})


def _kind(body: dict[str, Any]) -> str:
    return "command" if body.get("command") else str(body.get("type") or "request")

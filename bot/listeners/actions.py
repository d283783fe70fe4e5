"""Button clicks: each carries one explicit intent for one item, never a copy of the client's view."""

from __future__ import annotations

import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slack_bolt import Ack
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import blocks, export, ids, items, modals, paging, runs
from bot.runs import Actor, RunError
from bot.services import Services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Click:
    """What a block_actions payload says: who clicked which action, with what value, where."""

    action_id: str
    value: dict[str, Any]
    actor: Actor
    trigger_id: str | None

    @classmethod
    def parse(cls, body: dict[str, Any], at: datetime) -> Click:
        action = (body.get("actions") or [{}])[0]
        chosen = action.get("selected_option") if isinstance(action.get("selected_option"), dict) else {}
        try:
            value = json.loads(action.get("value") or chosen.get("value") or "")
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise RunError(
                f"This button's data is malformed ({action.get('action_id')!r}); nothing changed. "
                "Use `/deploy status` to find the current run."
            )
        return cls(
            action_id=action.get("action_id", ""),
            value=value,
            actor=clicker(body, at),
            trigger_id=body.get("trigger_id"),
        )

    def field(self, name: str, kind: type) -> Any:
        value = self.value.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise RunError(f"This button's data lacks a valid '{name}'; nothing changed. Try `/deploy status`.")
        return value


class Actions:
    def __init__(self, services: Services):
        self.services = services

    def _click(self, body: dict[str, Any]) -> Click:
        return Click.parse(body, self.services.clock())

    def _item_click(self, body: dict[str, Any]) -> tuple[Click, int, str]:
        """A click on one item, by someone allowed to change it."""
        click = self._click(body)
        run_id, item_id = click.field("run", int), click.field("item", str)
        self.services.require_item(run_id, item_id, click.actor)
        return click, run_id, item_id

    def item_done(self, ack: Ack, body: dict[str, Any]) -> None:
        click, run_id, item_id = self._item_click(body)
        with self.services.change() as session:
            items.mark_done(session, run_id, item_id, click.actor)
        ack()

    def item_reopen(self, ack: Ack, body: dict[str, Any]) -> None:
        click, run_id, item_id = self._item_click(body)
        with self.services.change() as session:
            items.reopen(session, run_id, item_id, click.actor)
        ack()

    def item_menu(self, ack: Ack, body: dict[str, Any]) -> None:
        click, run_id, item_id = self._item_click(body)
        intent = click.field("do", str)
        with self.services.change() as session:
            if intent == "done":
                items.mark_done(session, run_id, item_id, click.actor)
            elif intent == "rerun":
                runs.rerun_probes(session, run_id, item_id, click.actor)
            else:
                raise RunError(f"deploybot does not know the choice {intent!r}; nothing changed.")
        ack()

    def rerun_probes(self, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        click = self._click(body)
        with self.services.change() as session:
            rerun = runs.rerun_probes(session, click.field("run", int), None, click.actor)
        ack()
        if rerun.note:
            tell(client, click.actor, rerun.note)

    def export(self, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        click = self._click(body)
        fmt = click.field("format", str)
        with self.services.read() as session:
            document = export.record(session, click.field("run", int))
            content = export.render(document, fmt)
        ack()
        # Slack's current upload flow (files.getUploadURLExternal, then completeUploadExternal).
        client.files_upload_v2(
            channel=click.actor.channel_id,
            thread_ts=click.actor.thread_ts or click.actor.message_ts,
            content=content,
            filename=export.filename(document, fmt),
            title=f"Run #{document['run']['id']} {document['run']['version']} ({fmt})",
            initial_comment=f"<@{click.actor.user_id}> exported run #{document['run']['id']}.",
        )

    def complete_anyway(self, ack: Ack, body: dict[str, Any]) -> None:
        click = self._click(body)
        self.services.require("complete_anyway", click.actor, run=click.field("run", int))
        with self.services.change() as session:
            runs.complete_anyway(session, click.field("run", int), click.actor)
        ack()

    def page_ack(self, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        click = self._click(body)
        with self.services.change() as session:
            note = paging.acknowledge(session, click.field("page", int), click.actor)
        ack()
        tell(client, click.actor, note)

    def page_resolve(self, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        click = self._click(body)
        with self.services.change() as session:
            note = paging.resolve(session, click.field("page", int), click.actor)
        ack()
        tell(client, click.actor, note)

    def page_oncall(self, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        click = self._click(body)
        page_id = self.services.page_oncall(click.field("run", int), click.actor)
        ack()
        tell(client, click.actor, f"Page #{page_id} sent; it escalates until someone acknowledges it.")

    def fail_dialog(self, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        click = self._click(body)
        with self.services.read() as session:
            run = runs.ensure_active(runs.get_run(session, click.field("run", int)))
            view = modals.fail_modal(run, click.actor.channel_id, click.actor.message_ts)
        ack()
        client.views_open(trigger_id=click.trigger_id, view=view)

    def na_dialog(self, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        self._open_item_modal(ack, body, client, na=True)

    def note_dialog(self, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        self._open_item_modal(ack, body, client, na=False)

    def _open_item_modal(self, ack: Ack, body: dict[str, Any], client: WebClient, *, na: bool) -> None:
        click = self._click(body)
        number = click.field("part", int)
        with self.services.read() as session:
            run = runs.ensure_active(runs.get_run(session, click.field("run", int)))
            parts = blocks.layout(run.template)
            if not 1 <= number <= len(parts):
                raise RunError(f"Run #{run.id} has no part {number}; nothing changed. Try `/deploy status`.")
            view = modals.item_modal(
                run,
                parts[number - 1],
                ids.NA_VIEW if na else ids.NOTE_VIEW,
                na=na,
                channel_id=click.actor.channel_id,
                message_ts=click.actor.message_ts,
            )
        if not view["blocks"][1]["element"]["option_groups"]:
            raise RunError("Every item in this part is already N/A.")
        ack()
        client.views_open(trigger_id=click.trigger_id, view=view)

    def unknown(self, ack: Ack, body: dict[str, Any]) -> None:
        action_id = ((body.get("actions") or [{}])[0]).get("action_id")
        raise RunError(
            f"deploybot does not know the action {action_id!r}; nothing changed. This message may come "
            "from an older version of deploybot: `/deploy status` shows the current run."
        )


def clicker(body: dict[str, Any], at: datetime) -> Actor:
    """Who clicked, when, and on which message."""
    container = body.get("container") or {}
    channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
    # Shape samples carry "" for absent fields; treat them as absent.
    return Actor(
        body["user"]["id"], at, channel or None, container.get("message_ts") or None, container.get("thread_ts") or None
    )


# Answers to the clicker go out beside the request, not in it: Slack waits for the acknowledgement,
# and a slow Slack API (retrying a 5xx) must not push it past Slack's 3 seconds.
_notices = ThreadPoolExecutor(max_workers=4, thread_name_prefix="notice")
_pending: set[Future[None]] = set()


def tell(client: WebClient, actor: Actor, text: str) -> None:
    """Answer the clicker only, in the thread they clicked in (in a DM with the bot, as a message)."""
    if actor.channel_id:
        future = _notices.submit(_tell, client, actor.channel_id, actor, text)
        _pending.add(future)
        future.add_done_callback(_pending.discard)


def wait_for_notices(timeout: float = 10.0) -> None:
    """Block until the answers already handed out have reached Slack (or failed)."""
    wait(list(_pending), timeout)


def _tell(client: WebClient, channel: str, actor: Actor, text: str) -> None:
    try:
        if channel.startswith("D"):
            client.chat_postMessage(channel=channel, text=text)
        else:
            client.chat_postEphemeral(channel=channel, user=actor.user_id, text=text, thread_ts=actor.thread_ts)
    except SlackApiError as exc:
        log.warning("could not answer %s: Slack says %s", actor.user_id, exc.response.get("error"))
    except OSError as exc:
        log.warning("could not answer %s: %s", actor.user_id, type(exc).__name__)

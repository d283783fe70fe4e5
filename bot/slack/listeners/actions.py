"""Button clicks: each carries one explicit intent for one item, never a copy of the client's view."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slack_bolt import Ack
from slack_sdk import WebClient

from bot import export, items, paging, people, runs
from bot.runs import Actor, RunError
from bot.services import Services, utcnow
from bot.slack import answers, blocks, ids, modals, uploads

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Click:
    """What a block_actions payload says: who clicked which action, with what value, where."""

    action_id: str
    value: dict[str, Any]
    actor: Actor
    trigger_id: str | None
    response_url: str | None

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
            response_url=answers.response_url(body),
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

    def rerun_probes(self, ack: Ack, body: dict[str, Any]) -> None:
        click = self._click(body)
        with self.services.change() as session:
            rerun = runs.rerun_probes(session, click.field("run", int), None, click.actor)
            if rerun.note:
                answers.queue(session, click.actor, rerun.note, answers.response_url(body))
        ack()

    def export(self, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        click = self._click(body)
        fmt = click.field("format", str)
        with self.services.read() as session:
            document = export.record(session, click.field("run", int))
            content = export.render(document, fmt, self.services.config.zone)
        ack()
        # Uploading takes several calls to Slack: they go beside the request, which Slack wants answered in 3 s.
        _background(
            self._share,
            client,
            click,
            content=content,
            filename=export.filename(document, fmt),
            title=f"Run #{document['run']['id']} {document['run']['version']} ({fmt})",
            comment=f"<@{click.actor.user_id}> exported run #{document['run']['id']}.",
        )

    def _share(self, client: WebClient, click: Click, **file: str) -> None:
        told = uploads.share(client, click.actor, **file)
        if told is not None:
            with self.services.change() as session:
                answers.queue(session, click.actor, told, click.response_url)

    def complete_anyway(self, ack: Ack, body: dict[str, Any]) -> None:
        click = self._click(body)
        self.services.require("complete_anyway", click.actor, run=click.field("run", int))
        with self.services.change() as session:
            runs.complete_anyway(session, click.field("run", int), click.actor)
        ack()

    def page_ack(self, ack: Ack, body: dict[str, Any]) -> None:
        click = self._click(body)
        with self.services.change() as session:
            note = paging.acknowledge(session, click.field("page", int), click.actor)
            answers.queue(session, click.actor, str(note), click.response_url)
        ack()

    def page_resolve(self, ack: Ack, body: dict[str, Any]) -> None:
        click = self._click(body)
        with self.services.change() as session:
            note = paging.resolve(session, click.field("page", int), click.actor)
            answers.queue(session, click.actor, str(note), click.response_url)
        ack()

    def page_oncall(self, ack: Ack, body: dict[str, Any]) -> None:
        click = self._click(body)
        page_id = self.services.page_oncall(click.field("run", int), click.actor)
        text = f"Page #{page_id} sent; it escalates until someone acknowledges it."
        with self.services.change() as session:
            answers.queue(session, click.actor, text, click.response_url)
        ack()

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
        body["user"]["id"],
        at,
        channel or None,
        container.get("message_ts") or None,
        container.get("thread_ts") or None,
        name=people.from_slack_user(body["user"]),
    )


def tell(services: Services, body: dict[str, Any], text: str) -> None:
    """Keep an answer for whoever clicked; the publisher delivers it through the click's response_url."""
    with services.change() as session:
        answers.queue(session, clicker(body, services.clock()), text, answers.response_url(body))


def tell_now(client: WebClient, body: dict[str, Any], text: str) -> None:
    """Answer whoever clicked once, from memory, when the database cannot keep the answer (it is down)."""
    actor = clicker(body, utcnow())
    url = answers.response_url(body)
    expires = actor.at + answers.LIFETIME if url else None
    answer = answers.Answer(0, text, url, expires, actor.channel_id or actor.user_id, actor.user_id, actor.thread_ts)

    def send() -> None:
        if answers.send(client, answer, actor.at) is not None:
            log.error("could not answer a click while the database was down: Slack did not take the answer either")

    _background(send)


# Work that takes several Slack calls runs beside the request, not in it: Slack waits for the
# acknowledgement, and a slow Slack API (retrying a 5xx) must not push it past Slack's 3 seconds.
_workers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="listener")
_pending: set[Future[None]] = set()


def _background(work: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    future = _workers.submit(_logged, work, *args, **kwargs)
    _pending.add(future)
    future.add_done_callback(_pending.discard)


def _logged(work: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    try:
        work(*args, **kwargs)
    except Exception:
        log.exception("%s failed", getattr(work, "__name__", "background work"))


def wait_for_notices(timeout: float = 10.0) -> None:
    """Block until the work already handed out beside requests (uploads) has finished."""
    wait(list(_pending), timeout)

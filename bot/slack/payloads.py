"""A signed Slack request's body, parsed and checked before any listener sees it."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

MAX_DEPTH = 64  # Slack's deepest payloads (rich text in a message inside a click) nest about 20 levels

# Slack ids: a kind letter, then capitals and digits. Ids are stored and shown as mentions, so a
# number or an object where an id belongs is refused rather than recorded as a user `12345`.
_SHAPES = {
    "user": re.compile(r"[UW][A-Z0-9]{1,31}"),
    "team": re.compile(r"[TE][A-Z0-9]{1,31}"),
    "channel": re.compile(r"[CGD][A-Z0-9]{1,31}"),
}


class Malformed(ValueError):
    """A signed request deploybot cannot route; the text says what is wrong with it."""


def is_ssl_check(body: str, content_type: str) -> bool:
    """Slack's periodic certificate check of a slash command's URL, which only wants a 200."""
    if "ssl_check=" not in body or content_type.startswith("application/json") or body.startswith("{"):
        return False
    return dict(parse_qsl(body)).get("ssl_check") == "1"


def parse_body(body: str, content_type: str) -> dict[str, Any]:
    """A Slack request's payload: an event's JSON, an interaction's `payload` field or a command's form."""
    if content_type.startswith("application/json") or body.startswith("{"):
        event = _json(body, "the JSON body", "does not parse")
        _check_event(event)
        return event
    form = dict(parse_qsl(body, keep_blank_values=True))
    if "payload" not in form:
        missing = [f for f in ("command", "user_id", "channel_id") if not form.get(f)]
        if missing:
            raise Malformed(f"slash command lacks {', '.join(missing)}")
        for field, shape in (("user_id", "user"), ("channel_id", "channel"), ("team_id", "team")):
            _check_id(form.get(field), shape, field)
        return form
    payload = _json(form["payload"], "the payload field", "is not JSON")
    if not isinstance(payload.get("user"), dict) or not payload["user"].get("id"):
        raise Malformed("the payload has no user.id")
    kind = payload.get("type")
    for key in ("container", "channel", "team", "message", "view"):
        if payload.get(key) is not None and not isinstance(payload[key], dict):
            raise Malformed(f"the payload's {key} is not an object")
    _check_ids(payload)
    if kind == "block_actions":
        actions = payload.get("actions")
        if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
            raise Malformed("block_actions payload has no actions")
        if not actions[0].get("action_id"):
            raise Malformed("the action has no action_id")
    elif kind in ("view_submission", "view_closed") and not isinstance(payload.get("view"), dict):
        raise Malformed(f"{kind} payload has no view")
    return payload


def _json(text: str, what: str, unparsable: str) -> dict[str, Any]:
    try:
        parsed = json.loads(text)
    except RecursionError:
        raise Malformed(f"{what} nests deeper than {MAX_DEPTH} levels") from None
    except ValueError:
        raise Malformed(f"{what} {unparsable}") from None
    if not isinstance(parsed, dict):
        raise Malformed(f"{what} is not an object")
    if _depth(parsed) > MAX_DEPTH:
        raise Malformed(f"{what} nests deeper than {MAX_DEPTH} levels")
    return parsed


def _depth(value: Any) -> int:
    """How deeply `value` nests, counted without recursion (a hostile body could outrun the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _check_ids(payload: dict[str, Any]) -> None:
    """Every id an interaction names, where deploybot reads one: user, team and channel."""
    user, team, channel = payload["user"], payload.get("team") or {}, payload.get("channel") or {}
    container = payload.get("container") or {}
    _check_id(user["id"], "user", "user.id")
    _check_id(user.get("team_id"), "team", "user.team_id")
    _check_id(team.get("id"), "team", "team.id")
    _check_id(channel.get("id"), "channel", "channel.id")
    _check_id(container.get("channel_id"), "channel", "container.channel_id")


def _check_event(event: dict[str, Any]) -> None:
    """The ids of the one event deploybot subscribes to (others differ in shape: `user` may be an object)."""
    if event.get("type") != "event_callback":
        return
    inner = event.get("event")
    if not isinstance(inner, dict):
        raise Malformed("the event_callback has no event object")
    _check_id(event.get("team_id"), "team", "team_id")
    if inner.get("type") == "app_home_opened":
        _check_id(inner.get("user"), "user", "event.user")
        _check_id(inner.get("channel"), "channel", "event.channel")


def _check_id(value: Any, kind: str, field: str) -> None:
    """Absent (or the empty string Slack's own samples carry) passes; anything else must look like a Slack id."""
    if value is None or value == "":
        return
    if not isinstance(value, str):
        raise Malformed(f"{field} must be a Slack {kind} id (a string), not {type(value).__name__} {value!r:.40}")
    if not _SHAPES[kind].fullmatch(value):
        raise Malformed(f"{field} is not a Slack {kind} id: {value[:40]!r}")

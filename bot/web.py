"""HTTP surface (WSGI): /slack/events, /healthz, /readyz, /metrics."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from slack_bolt import App, BoltRequest
from slack_sdk.signature import SignatureVerifier

from bot import logs
from bot.config import Secret
from bot.metrics import Metrics

log = logging.getLogger(__name__)

MAX_BODY = 2 * 1024 * 1024
StartResponse = Callable[..., Any]


class WebApp:
    """Verifies Slack's signature, rejects malformed payloads, then hands the request to Bolt."""

    def __init__(
        self,
        bolt: App,
        signing_secret: Secret,
        readiness: Callable[[], list[str]],
        gauges: Callable[[], dict[str, float]],
        metrics: Metrics,
        liveness: Callable[[], str | None] = lambda: None,
        notes: Callable[[], list[str]] = list,
    ):
        self._bolt = bolt
        self._verifier = SignatureVerifier(signing_secret.reveal())
        self._readiness = readiness
        self._liveness = liveness
        self._notes = notes
        self._gauges = gauges
        self.metrics = metrics

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        route = (environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/"))
        if route == ("POST", "/slack/events"):
            with logs.request_scope(environ.get("HTTP_X_REQUEST_ID")):
                status, headers, body = self._slack(environ)
        elif route == ("GET", "/healthz"):
            problem = self._liveness()
            status, headers, body = (503, _text, problem + "\n") if problem else (200, _text, "ok\n")
        elif route == ("GET", "/readyz"):
            problems, notes = self._readiness(), self._notes()
            status, headers, body = (503 if problems else 200, _text, "\n".join(problems or ["ready"]) + "\n")
            body += "".join(f"{note}\n" for note in notes)
        elif route == ("GET", "/metrics"):
            status, headers, body = (
                200,
                [("Content-Type", "text/plain; version=0.0.4")],
                self.metrics.render(self._gauges()),
            )
        else:
            status, headers, body = (
                404,
                _text,
                "not found: deploybot serves POST /slack/events, GET /healthz, /readyz, /metrics\n",
            )
        start_response(f"{status} {_REASONS.get(status, 'OK')}", headers)
        return [body.encode()]

    def _slack(self, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], str]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            return 413, _text, f"request body must be at most {MAX_BODY} bytes\n"
        raw = environ["wsgi.input"].read(length) if length else b""
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        headers["content-type"] = environ.get("CONTENT_TYPE", "")
        body = raw.decode("utf-8", errors="replace")
        if not self._verifier.is_valid(
            body=body,
            timestamp=headers.get("x-slack-request-timestamp", ""),
            signature=headers.get("x-slack-signature", ""),
        ):
            self.metrics.count("requests_rejected", reason="signature")
            log.warning("refused a request with an invalid or stale Slack signature (401)")
            return 401, _text, "invalid or stale Slack signature\n"
        try:
            payload = parse_body(body, headers["content-type"])
        except Malformed as problem:
            self.metrics.count("requests_rejected", reason="malformed")
            log.warning("refused a malformed Slack request (400): %s", problem)
            return 400, _text, f"malformed Slack request: {problem}\n"
        # Bolt takes an already parsed body only under the name of Socket Mode; the name decides
        # nothing else once signatures are checked here. Its own parser reads a slash command
        # whose text holds the word "payload" as an empty request.
        request = BoltRequest(body=payload, query=environ.get("QUERY_STRING"), headers=headers, mode="socket_mode")
        response = self._bolt.dispatch(request)
        out = [(k, v) for k, values in response.headers.items() for v in values]
        return response.status, out, response.body


class Malformed(ValueError):
    """A signed request deploybot cannot route; the text says what is wrong with it."""


def parse_body(body: str, content_type: str) -> dict[str, Any]:
    """A Slack request's payload: an event's JSON, an interaction's `payload` field or a command's form."""
    if content_type.startswith("application/json") or body.startswith("{"):
        try:
            event = json.loads(body)
        except ValueError:
            raise Malformed("the JSON body does not parse") from None
        if not isinstance(event, dict):
            raise Malformed("the JSON body is not an object")
        return event
    form = dict(parse_qsl(body, keep_blank_values=True))
    if "payload" not in form:
        missing = [f for f in ("command", "user_id", "channel_id") if not form.get(f)]
        if missing:
            raise Malformed(f"slash command lacks {', '.join(missing)}")
        return form
    try:
        payload = json.loads(form["payload"])
    except ValueError:
        raise Malformed("the payload field is not JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("user"), dict) or not payload["user"].get("id"):
        raise Malformed("the payload has no user.id")
    kind = payload.get("type")
    for key in ("container", "channel", "team", "message", "view"):
        if payload.get(key) is not None and not isinstance(payload[key], dict):
            raise Malformed(f"the payload's {key} is not an object")
    if kind == "block_actions":
        actions = payload.get("actions")
        if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
            raise Malformed("block_actions payload has no actions")
        if not actions[0].get("action_id"):
            raise Malformed("the action has no action_id")
    elif kind in ("view_submission", "view_closed") and not isinstance(payload.get("view"), dict):
        raise Malformed(f"{kind} payload has no view")
    return payload


_text = [("Content-Type", "text/plain; charset=utf-8")]
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

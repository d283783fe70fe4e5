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
    ):
        self._bolt = bolt
        self._verifier = SignatureVerifier(signing_secret.reveal())
        self._readiness = readiness
        self._liveness = liveness
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
            problems = self._readiness()
            status, headers, body = (503, _text, "\n".join(problems) + "\n") if problems else (200, _text, "ready\n")
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
        problem, _kind = malformed(body, headers["content-type"])
        if problem:
            self.metrics.count("requests_rejected", reason="malformed")
            log.warning("refused a malformed Slack request (400): %s", problem)
            return 400, _text, f"malformed Slack request: {problem}\n"
        response = self._bolt.dispatch(BoltRequest(body=body, query=environ.get("QUERY_STRING"), headers=headers))
        out = [(k, v) for k, values in response.headers.items() for v in values]
        return response.status, out, response.body


def malformed(body: str, content_type: str) -> tuple[str | None, str]:
    """Say what is wrong with a signed payload Bolt could not route, or None and its kind."""
    if content_type.startswith("application/json") or body.startswith("{"):
        try:
            payload = json.loads(body)
        except ValueError:
            return "the JSON body does not parse", "invalid"
        return (None, str(payload.get("type", "event"))) if isinstance(payload, dict) else ("not an object", "invalid")
    form = dict(parse_qsl(body, keep_blank_values=True))
    if "payload" not in form:
        missing = [f for f in ("command", "user_id", "channel_id") if not form.get(f)]
        return (f"slash command lacks {', '.join(missing)}", "command") if missing else (None, "command")
    try:
        payload = json.loads(form["payload"])
    except ValueError:
        return "the payload field is not JSON", "invalid"
    if not isinstance(payload, dict) or not isinstance(payload.get("user"), dict) or not payload["user"].get("id"):
        return "the payload has no user.id", "invalid"
    kind = str(payload.get("type"))
    for key in ("container", "channel", "team", "message", "view"):
        if key in payload and payload[key] is not None and not isinstance(payload[key], dict):
            return f"the payload's {key} is not an object", kind
    if kind == "block_actions":
        actions = payload.get("actions")
        if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
            return "block_actions payload has no actions", kind
        if not actions[0].get("action_id"):
            return "the action has no action_id", kind
    elif kind in ("view_submission", "view_closed") and not isinstance(payload.get("view"), dict):
        return f"{kind} payload has no view", kind
    return None, kind


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

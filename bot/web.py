"""HTTP surface (WSGI): /slack/events, /api/v1/ (bot.api), /healthz, /readyz, /metrics."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App, BoltRequest

from bot import logs
from bot.config import Secret
from bot.metrics import Metrics
from bot.slack.payloads import Malformed, is_ssl_check, parse_body

log = logging.getLogger(__name__)

MAX_BODY = 2 * 1024 * 1024
MAX_SKEW = 5 * 60  # seconds a signed request stays valid, as Slack advises
StartResponse = Callable[..., Any]


class WebApp:
    """Verifies Slack's signature, rejects malformed payloads, then hands the request to Bolt."""

    def __init__(
        self,
        bolt: App,
        signing_secret: Secret,
        readiness: Callable[[], tuple[list[str], list[str]]],
        gauges: Callable[[], dict[str, float]],
        metrics: Metrics,
        liveness: Callable[[], str | None] = lambda: None,
        api: Callable[[dict[str, Any]], tuple[int, list[tuple[str, str]], str]] | None = None,
    ):
        self._bolt = bolt
        self._secret = signing_secret.reveal().encode()
        self._readiness = readiness
        self._liveness = liveness
        self._gauges = gauges
        self.metrics = metrics
        self._api = api

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        route = (environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/"))
        if route == ("POST", "/slack/events"):
            with logs.request_scope(environ.get("HTTP_X_REQUEST_ID")):
                status, headers, body = self._slack(environ)
        elif route[1].startswith("/api/") and self._api is not None:
            with logs.request_scope(environ.get("HTTP_X_REQUEST_ID")):
                status, headers, body = self._api(environ)
        elif route == ("GET", "/healthz"):
            problem = self._liveness()
            status, headers, body = (503, _text, problem + "\n") if problem else (200, _text, "ok\n")
        elif route == ("GET", "/readyz"):
            problems, notices = self._readiness()
            status = 503 if problems else 200
            headers, body = _text, "\n".join(problems or ["ready", *notices]) + "\n"
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
        if is_ssl_check(body, headers["content-type"]):
            return 200, _text, ""  # Slack checking the certificate: nothing to do, nothing to verify
        if not self._signed(raw, headers):
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

    def _signed(self, raw: bytes, headers: dict[str, str]) -> bool:
        """Whether Slack signed these very bytes (v0 HMAC-SHA256) within the last five minutes."""
        timestamp, signature = headers.get("x-slack-request-timestamp", ""), headers.get("x-slack-signature", "")
        # Checked here rather than by slack_sdk's verifier, which raises on a timestamp that is not a
        # number and on a body that is not UTF-8, turning a refusal into a 500.
        if not _TIMESTAMP.fullmatch(timestamp) or abs(time.time() - int(timestamp)) > MAX_SKEW:
            return False
        expected = hmac.new(self._secret, b"v0:" + timestamp.encode() + b":" + raw, hashlib.sha256).hexdigest()
        return hmac.compare_digest(f"v0={expected}".encode(), signature.encode("latin-1"))


_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_text = [("Content-Type", "text/plain; charset=utf-8")]
_REASONS = {
    200: "OK",
    400: "Bad Request",
    201: "Created",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

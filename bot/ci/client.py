"""The pipeline API over HTTP: bearer token, retries with backoff until a deadline, errors as exit codes."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from bot.ci.exits import CiError, Exit
from bot.ci.text import inert

# Connecting and sending are quick or not at all; reading waits for a long poll's answer on top.
_CONNECT, _SEND, _ANSWER = 5.0, 10.0, 15.0
_FIRST_PAUSE, _LONGEST_PAUSE = 0.5, 10.0
_RETRIED = frozenset({429, 500, 502, 503, 504})
_TOKEN_HELP = (
    "check DEPLOYBOT_TOKEN: an operator creates one with `deploybot token create --name NAME --channel CHANNEL`, "
    "and `deploybot token list` shows which exist"
)


class Api:
    """One deploybot's `/api/v1/`, reached with one token; every call retried until its deadline."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.url = url
        self._sleep, self._clock = sleep, clock
        self._http = httpx.Client(
            base_url=f"{url}/api/v1/",
            # Kept out of every message: httpx puts neither headers nor this value in its exceptions.
            headers={"Authorization": f"Bearer {token}", "User-Agent": "deploybot-ci"},
            follow_redirects=False,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        deadline: float,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
        wait: float = 0.0,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """The status and JSON body of a 2xx answer; CiError for a refusal, or when no answer came by `deadline`."""
        started, pause = self._clock(), _FIRST_PAUSE
        timeout = httpx.Timeout(_SEND, connect=_CONNECT, read=wait + _ANSWER)
        while True:
            try:
                response = self._http.request(method, path, json=body, params=params, headers=headers, timeout=timeout)
            except httpx.TransportError as exc:
                problem = f"cannot reach deploybot at {self.url} ({_describe(exc)})"
            else:
                if response.status_code not in _RETRIED:
                    return response.status_code, self._answer(response)
                problem = f"deploybot at {self.url} answered {response.status_code} {_error(response)}"
                if response.status_code == 429:
                    pause = max(pause, _retry_after(response))
            now = self._clock()
            if now + pause > deadline:
                waited = now - started
                raise CiError(f"{problem}; gave up after {waited:.0f} s of retries", Exit.UNREACHABLE)
            self._sleep(pause)
            pause = min(pause * 2, _LONGEST_PAUSE)

    def _answer(self, response: httpx.Response) -> dict[str, Any]:
        """The JSON body of a final answer, or the CiError it stands for."""
        status = response.status_code
        if 300 <= status < 400:
            where = inert(response.headers.get("location", "elsewhere"))
            raise CiError(
                f"{self.url} redirects to {where}: set DEPLOYBOT_URL to the address deploybot answers on", Exit.INVALID
            )
        if status == 401:
            raise CiError(f"deploybot refused the token (401 {_error(response)}): {_TOKEN_HELP}", Exit.UNAUTHORIZED)
        if status == 403:
            raise CiError(f"deploybot refused this token here (403): {_error(response)}", Exit.UNAUTHORIZED)
        if status >= 400:
            raise CiError(f"deploybot refused the request ({status}): {_error(response)}", Exit.INVALID)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise CiError(
                f"{self.url} answered {status} with something other than deploybot's API: "
                "is DEPLOYBOT_URL the address deploybot serves /slack/events on?",
                Exit.INVALID,
            )
        return body


def _error(response: httpx.Response) -> str:
    """The server's one-sentence error, else its status phrase."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return inert(body["error"], 500)
    return inert(response.reason_phrase or "with no explanation")


def _retry_after(response: httpx.Response) -> float:
    """The seconds Retry-After asks for (a number; an HTTP date is taken as a minute)."""
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return 60.0 if value else _FIRST_PAUSE


def _describe(exc: httpx.TransportError) -> str:
    """What went wrong on the wire, in a few words."""
    detail = str(exc).strip()
    kind = {
        httpx.ConnectError: "connection failed",
        httpx.ConnectTimeout: "connecting timed out",
        httpx.ReadTimeout: "no answer in time",
        httpx.RemoteProtocolError: "the connection broke",
    }.get(type(exc), type(exc).__name__)
    return inert(f"{kind}: {detail}" if detail else kind)

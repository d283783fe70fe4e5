"""`deploybot ci` against a scripted API on loopback: retries, exit codes, what it prints and never prints."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from bot.__main__ import main
from bot.ci.cli import default_key
from bot.ci.text import inert, seconds
from tests.test_process import free_port

TOKEN = "dbt_s3cret-token-value-0123456789"
Answer = tuple[int, dict[str, Any], dict[str, str]]


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)


class ScriptedApi:
    """An HTTP server whose every answer comes from `respond(request)`; it keeps what it was sent."""

    def __init__(self, respond: Callable[[Seen], Answer]):
        self.seen: list[Seen] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Seen(
                    self.command,
                    parts.path,
                    {k: v[-1] for k, v in parse_qs(parts.query).items()},
                    {k.lower(): v for k, v in self.headers.items()},
                    json.loads(raw) if raw else None,
                )
                api.seen.append(request)
                status, body, headers = respond(request)
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def item(number: int, status: str = "open", **extra: Any) -> dict[str, Any]:
    return {
        "id": f"item-{number}",
        "number": number,
        "text": f"Item {number}",
        "required": True,
        "status": status,
        "by": None,
        "at": None,
        "reason": None,
        "reported_by": None,
        "evidence_url": None,
        "summary": None,
        "probe": None,
        **extra,
    }


def run_body(items: list[dict[str, Any]], rev: int = 1, status: str = "active") -> dict[str, Any]:
    return {
        "id": 12,
        "version": "v1.4.2",
        "environment": "production",
        "channel": "C100",
        "checklist": "production-deploy",
        "status": status,
        "rev": rev,
        "url": None,
        "phases": [
            {"id": "pre-deployment", "name": "Pre-Deployment", "resolved": False, "items": items[:2]},
            {"id": "deployment", "name": "Deployment", "resolved": False, "items": items[2:]},
        ],
    }


def gate_answer(state: str, items: list[dict[str, Any]], rev: int, status: str = "active") -> Answer:
    waiting = [i for i in items[:2] if i["status"] == "open"]
    failed = [i for i in items[:2] if i["status"] == "failed" or (i["probe"] or {}).get("status") == "failed"]
    gate = {"phase": "pre-deployment", "state": state, "waiting_for": waiting, "failed": failed}
    return 200, {"gate": gate, "run": run_body(items, rev, status)}, {}


@pytest.fixture(autouse=True)
def ci_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("DEPLOYBOT_", "GITHUB_", "CI_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DEPLOYBOT_TOKEN", TOKEN)


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Callable[[Seen], Answer]], ScriptedApi]]:
    servers: list[ScriptedApi] = []

    def serve(respond: Callable[[Seen], Answer]) -> ScriptedApi:
        server = ScriptedApi(respond)
        servers.append(server)
        monkeypatch.setenv("DEPLOYBOT_URL", server.url + "/")
        return server

    yield serve
    for server in servers:
        server.stop()


def outputs(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err
    return captured.out, captured.err


def test_start_sends_the_ci_run_as_key_and_prints_the_run_id_last(
    scripted: Callable[..., ScriptedApi], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter([201, 200])
    api = scripted(lambda _: (next(answers), {"run": run_body([item(1), item(2)])}, {}))
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/shop")
    monkeypatch.setenv("GITHUB_RUN_ID", "4242")
    assert main(["ci", "start", "--version", "v1.4.2", "--environment", "production", "--channel", "C100"]) == 0
    assert main(["ci", "start", "--version", "v1.4.2", "--environment", "production", "--channel", "C100"]) == 0
    out, _ = outputs(capsys)
    lines = out.splitlines()
    assert lines == [
        "started run 12: v1.4.2 to production, active",
        "12",
        "already started for github:acme/shop:4242:production: run 12: v1.4.2 to production, active",
        "12",
    ]
    sent = api.seen[0]
    assert (sent.method, sent.path, sent.headers["authorization"]) == ("POST", "/api/v1/runs", f"Bearer {TOKEN}")
    assert sent.body == {
        "version": "v1.4.2",
        "environment": "production",
        "key": "github:acme/shop:4242:production",
        "channel": "C100",
    }


def test_the_key_comes_from_github_or_gitlab_and_a_retried_job_keeps_it() -> None:
    github = {"GITHUB_REPOSITORY": "acme/shop", "GITHUB_RUN_ID": "7", "GITHUB_RUN_ATTEMPT": "2"}
    assert default_key(github, "staging") == "github:acme/shop:7:staging"
    assert default_key({"CI_PROJECT_ID": "31", "CI_PIPELINE_ID": "900", "CI_JOB_ID": "5"}, "production") == (
        "gitlab:31:900:production"
    )
    assert default_key({}, "production") is None


def test_retries_5xx_and_connection_drops_then_honours_retry_after(
    scripted: Callable[..., ScriptedApi], capsys: pytest.CaptureFixture[str]
) -> None:
    script: list[Answer] = [
        (
            429,
            {"error": "Too many requests for this token: wait 2 s (Retry-After) and try again."},
            {"Retry-After": "2"},
        ),
        (503, {"error": "starting up"}, {}),
        (502, {}, {}),
        (200, {"run": run_body([item(1, "done"), item(2)])}, {}),
    ]
    api = scripted(lambda _: script.pop(0))
    assert main(["ci", "report", "item-1", "done", "--run", "12", "--summary", "412 passed"]) == 0
    out, _ = outputs(capsys)
    assert out == "run 12: #1 Item 1 reported done\n"
    assert [s.body for s in api.seen] == [{"status": "done", "summary": "412 passed"}] * 4
    assert all(s.path == "/api/v1/runs/12/items/item-1" for s in api.seen)
    assert api.seen[1].at - api.seen[0].at >= 2.0  # Retry-After: 2, where the first pause would be 0.5 s


def test_unreachable_after_retries_is_exit_7_within_the_timeout(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOYBOT_URL", f"http://127.0.0.1:{free_port()}")
    assert main(["ci", "deployed", "started", "--run", "12", "--timeout", "2s"]) == 7
    _, err = outputs(capsys)
    assert err.startswith("deploybot ci deployed: cannot reach deploybot at http://127.0.0.1:")
    assert "gave up after" in err


def test_a_server_that_keeps_failing_is_exit_7(
    scripted: Callable[..., ScriptedApi], capsys: pytest.CaptureFixture[str]
) -> None:
    scripted(lambda _: (500, {"error": "database down"}, {}))
    assert main(["ci", "deployed", "started", "--run", "12", "--timeout", "1s"]) == 7
    _, err = outputs(capsys)
    assert "answered 500 database down; gave up after" in err


@pytest.mark.parametrize(
    ("status", "code", "said"),
    [
        (401, 3, "refused the token (401 unauthorized): check DEPLOYBOT_TOKEN"),
        (403, 3, "refused this token here (403): This token touches staging runs only."),
        (400, 2, "refused the request (400): Give"),
        (404, 2, "refused the request (404): Give"),
        (409, 2, "refused the request (409): Give"),
        (413, 2, "refused the request (413): Give"),
    ],
)
def test_refusals_map_to_exit_codes_with_the_servers_sentence(
    scripted: Callable[..., ScriptedApi], capsys: pytest.CaptureFixture[str], status: int, code: int, said: str
) -> None:
    sentence = {401: "unauthorized", 403: "This token touches staging runs only."}.get(status, "Give a reason.")
    api = scripted(lambda _: (status, {"error": sentence}, {}))
    assert main(["ci", "report", "7", "na", "--reason", "no S3", "--run", "12"]) == code
    _, err = outputs(capsys)
    assert said in err and len(api.seen) == 1  # a refusal is not retried


def test_hostile_error_text_from_the_server_stays_one_inert_line(
    scripted: Callable[..., ScriptedApi], capsys: pytest.CaptureFixture[str]
) -> None:
    scripted(lambda _: (400, {"error": "bad\n::error::pwned\x1b[31m\u202e"}, {}))
    assert main(["ci", "deployed", "started", "--run", "12"]) == 2
    _, err = outputs(capsys)
    assert err.count("\n") == 1 and "\x1b" not in err and "\u202e" not in err
    assert "bad\\u000a::error::pwned\\u001b[31m\\u202e" in err


@pytest.mark.parametrize(
    ("argv", "env", "code", "said"),
    [
        (["report", "item-1", "na", "--run", "12"], {}, 2, "na needs --reason"),
        (
            ["report", "item-1", "done", "--run", "12", "--evidence-url", "javascript:x"],
            {},
            2,
            "--evidence-url must start",
        ),
        (["report", "item-1", "done", "--run", "12", "--summary", "x" * 201], {}, 2, "--summary must be one line"),
        (["report", "item-1", "done"], {}, 2, "which run? give --run ID"),
        (["report", "item-1", "done"], {"DEPLOYBOT_RUN": "twelve"}, 2, "DEPLOYBOT_RUN 'twelve' is not a run id"),
        (["gate", "--run", "12", "--timeout", "soon"], {}, 2, "--timeout 'soon' is not a duration"),
        (["start", "--version", "v1", "--environment", "production"], {}, 2, "no --key, and no CI run id"),
        (["gate", "--run", "12"], {"DEPLOYBOT_URL": ""}, 2, "DEPLOYBOT_URL is not set"),
        (["gate", "--run", "12"], {"DEPLOYBOT_URL": "deploybot.example.com"}, 2, "is not an http(s) address"),
        (["gate", "--run", "12"], {"DEPLOYBOT_TOKEN": ""}, 3, "DEPLOYBOT_TOKEN is not set"),
        (
            ["gate", "--run", "12"],
            {"DEPLOYBOT_TOKEN": TOKEN + " x"},
            3,
            "DEPLOYBOT_TOKEN holds spaces or characters",
        ),
    ],
)
def test_wrong_arguments_are_one_line_and_send_nothing(
    scripted: Callable[..., ScriptedApi],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    env: dict[str, str],
    code: int,
    said: str,
) -> None:
    api = scripted(lambda _: (500, {}, {}))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["ci", *argv]) == code
    _, err = outputs(capsys)
    assert said in err and err.count("\n") == 1
    assert api.seen == []


def test_the_gate_prints_what_it_waits_for_and_each_change_then_opens(
    scripted: Callable[..., ScriptedApi], capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = "Mallory\n::add-mask::x\x1b]0;title\x07"
    script = [
        gate_answer("waiting", [item(1), item(2, reported_by="ci"), item(3)], rev=4),
        gate_answer("waiting", [item(1), item(2, reported_by="ci"), item(3)], rev=4),  # the wait ran out
        gate_answer(
            "waiting",
            [
                item(1, "done", by={"id": "U0ALICE001", "name": "Alice Smith"}, at="2026-12-07T10:00:05+00:00"),
                item(2, reported_by="ci"),
                item(3, "done", by={"id": "U0BOB", "name": None}),
            ],
            rev=6,
        ),
        gate_answer(
            "open",
            [
                item(1, "done", by={"id": "U0ALICE001", "name": "Alice Smith"}, at="2026-12-07T10:00:05+00:00"),
                item(2, "na", reported_by="ci", by={"id": "ci:1", "name": hostile}, reason="no tests\r\nhere"),
                item(3, "done", by={"id": "U0BOB", "name": None}),
            ],
            rev=7,
        ),
    ]
    api = scripted(lambda _: script.pop(0))
    assert main(["ci", "gate", "--run", "12", "--phase", "pre-deployment", "--timeout", "10m"]) == 0
    out, _ = outputs(capsys)
    assert out.splitlines() == [
        "run 12: v1.4.2 to production, active",
        "waiting for 2 item(s) of Pre-Deployment (and the phases before it):",
        "  #1 Item 1",
        "  #2 Item 2 (reported by ci)",
        "10:00:05Z done  #1 Item 1  by Alice Smith (U0ALICE001)",
        "  1 item(s) of Pre-Deployment (and the phases before it) left",
        "n/a  #2 Item 2  by Mallory\\u000a::add-mask::x\\u001b]0;title\\u0007 (ci:1): no tests\\u000d\\u000ahere",
        "gate open: every required item of Pre-Deployment (and the phases before it) is done or N/A",
    ]
    assert all(s.headers["connection"] == "close" for s in api.seen)  # no idle connection held between polls
    polls = [(s.path, s.query) for s in api.seen]
    assert polls[0] == ("/api/v1/runs/12/gate", {"phase": "pre-deployment", "wait": "0"})
    assert polls[1] == ("/api/v1/runs/12/gate", {"phase": "pre-deployment", "after": "4", "wait": "30"})
    assert polls[2][1]["after"] == "4" and polls[3][1]["after"] == "6"


@pytest.mark.parametrize(
    ("state", "items", "status", "code", "said"),
    [
        (
            "failed",
            [item(1, "failed", summary="3 tests failed"), item(2)],
            "active",
            5,
            "gate closed: #1 Item 1 failed: 3 tests failed",
        ),
        (
            "failed",
            [item(1, probe={"status": "failed", "detail": "expired 2 days ago"}), item(2)],
            "active",
            5,
            "gate closed: #1 Item 1 failed: probe: expired 2 days ago",
        ),
        ("failed", [item(1), item(2)], "rolled_back", 4, "gate closed: run 12 was rolled back"),
        ("failed", [item(1), item(2)], "failed", 4, "gate closed: run 12 failed"),
        ("aborted", [item(1), item(2)], "aborted", 4, "gate closed: run 12 was aborted"),
        ("open", [item(1, "done"), item(2, "na")], "completed", 0, "gate open"),
    ],
)
def test_the_gate_verdicts_and_their_exit_codes(
    scripted: Callable[..., ScriptedApi],
    capsys: pytest.CaptureFixture[str],
    state: str,
    items: list[dict[str, Any]],
    status: str,
    code: int,
    said: str,
) -> None:
    scripted(lambda _: gate_answer(state, items, rev=3, status=status))
    assert main(["ci", "gate", "--run", "12", "--phase", "pre-deployment"]) == code
    out, _ = outputs(capsys)
    assert out.splitlines()[-1].startswith(said)


def test_the_gate_times_out_with_exit_6_naming_what_is_left(
    scripted: Callable[..., ScriptedApi], capsys: pytest.CaptureFixture[str]
) -> None:
    def held(request: Seen) -> Answer:
        time.sleep(float(request.query["wait"]))  # the server holds the poll as long as asked
        return gate_answer("waiting", [item(1), item(2)], rev=3)

    api = scripted(held)
    assert main(["ci", "gate", "--run", "12", "--phase", "pre-deployment", "--timeout", "1s"]) == 6
    out, _ = outputs(capsys)
    assert (
        out.splitlines()[-1]
        == "timed out after 1s, still waiting for #1, #2 of Pre-Deployment (and the phases before it)"
    )
    assert [s.query["wait"] for s in api.seen] == ["0", "1"]


def test_text_helpers() -> None:
    assert seconds("30m") == 1800 and seconds("1h30m") == 5400 and seconds("90") == 90 and seconds("45s") == 45
    with pytest.raises(ValueError, match="write it as 90"):
        seconds("m")
    assert inert("a" * 300).endswith("…") and len(inert("a" * 300)) == 200
    assert inert("\u2028x\u2029") == "\\u2028x\\u2029"


def test_a_gate_answered_at_once_without_a_change_is_not_polled_in_a_loop(
    scripted: Callable[..., ScriptedApi], capsys: pytest.CaptureFixture[str]
) -> None:
    # What a replica with no room for another waiting gate does: the same answer, at once.
    api = scripted(lambda _: gate_answer("waiting", [item(1), item(2)], rev=3))
    assert main(["ci", "gate", "--run", "12", "--phase", "pre-deployment", "--timeout", "4s"]) == 6
    outputs(capsys)
    assert len(api.seen) <= 5  # pauses of 1, 2 and 4 s; without them, hundreds of requests

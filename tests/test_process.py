"""The real `deploybot run` process: refuses to start without tokens, serves, survives kill -9, stops on SIGTERM."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import create_engine, select

from bot.models import ItemState
from bot.slack import ids
from tests.conftest import ROOT, SIGNING_SECRET
from tests.fake_slack import FakeSlack
from tests.slack_requests import SLASH_COMMAND, SlackUser, sign
from tests.test_slack_flow import CHANNEL, item_block


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bot_env(database_url: str, fake: FakeSlack, port: int, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DEPLOYBOT_", "DATABASE_URL"))},
        "SLACK_BOT_TOKEN": fake.token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake.url,
        "DATABASE_URL": database_url,
        "DEPLOYBOT_CHECKLISTS": str(ROOT / "checklists"),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        **extra,
    }


class Drained(io.StringIO):
    """A process's output, read as it comes: a full pipe (64 KiB of log lines) would stall every thread that logs.

    `read()` returns what has been read, after waiting for the end of the output (up to 10 s).
    """

    def __init__(self, pipe: IO[str]):
        super().__init__()
        self._lines: list[str] = []
        self._pump = threading.Thread(target=lambda: self._lines.extend(pipe), daemon=True)
        self._pump.start()

    def read(self, size: int | None = -1) -> str:
        self._pump.join(10)
        return "".join(self._lines)


@contextmanager
def deploybot(
    env: dict[str, str], cwd: Path, command: list[str] | None = None, *, until: str = "/readyz"
) -> Iterator[subprocess.Popen[str]]:
    """`deploybot run` (or `command`) until `until` answers 200 (ready); killed afterwards if still running."""
    process = subprocess.Popen(
        command or [sys.executable, "-m", "bot", "run"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    process.stdout = Drained(process.stdout)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[0]
            try:
                if httpx.get(f"http://127.0.0.1:{env['PORT']}{until}").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        else:
            raise AssertionError("deploybot did not become ready")
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_run_without_tokens_names_what_is_missing_and_where(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    result = subprocess.run(
        [sys.executable, "-m", "bot", "run"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "SLACK_BOT_TOKEN: api.slack.com/apps › your app › OAuth & Permissions" in result.stderr
    assert "SLACK_SIGNING_SECRET: api.slack.com/apps › your app › Basic Information" in result.stderr
    assert "manifest.yml" in result.stderr
    assert not (tmp_path / "deploybot.db").exists()


def test_run_refuses_an_invalid_checklist_folder(tmp_path: Path, fake_slack: FakeSlack) -> None:
    (tmp_path / "broken.yml").write_text("id: x\ntitle: X\nphases: []\n")
    env = bot_env(f"sqlite:///{tmp_path}/d.db", fake_slack, free_port(), DEPLOYBOT_CHECKLISTS=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "bot", "run"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "broken.yml:3 › phases: List should have at least 1 item" in result.stderr


def test_an_acknowledged_click_survives_kill_9(tmp_path: Path, fake_slack: FakeSlack, database_url: str) -> None:
    port = free_port()
    # A long render interval keeps the click's update pending when the process dies.
    env = bot_env(database_url, fake_slack, port, DEPLOYBOT_RENDER_INTERVAL="4")
    user = SlackUser(f"http://127.0.0.1:{port}", SIGNING_SECRET)
    with deploybot(env, tmp_path) as process:
        assert user.command("start v1.4.2 production", channel=CHANNEL).status_code == 200
        deadline = time.monotonic() + 20
        while len(fake_slack.calls_of("chat.postMessage")) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        messages = sorted(fake_slack.messages.values(), key=lambda m: m["ts"])
        message, block = item_block(messages, "all-tests-are-passing")
        response = user.click(
            block["accessory"]["action_id"],
            block["accessory"]["value"],
            user="U77",
            channel=CHANNEL,
            message_ts=message["ts"],
            thread_ts=message["thread_ts"],
        )
        assert response.status_code == 200
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    engine = create_engine(database_url)
    with engine.connect() as conn:
        state = conn.execute(
            select(ItemState.status, ItemState.changed_by).where(ItemState.item_id == "all-tests-are-passing")
        ).one()
    engine.dispose()
    assert tuple(state) == ("done", "U77")
    # After a restart the pending render goes out: Slack shows the tick too.
    with deploybot(env, tmp_path):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            _, shown = item_block(list(fake_slack.messages.values()), "all-tests-are-passing")
            if "<@U77>" in shown["text"]["text"]:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the restarted bot never rendered the tick")
    user.http.close()


def test_sigterm_stops_cleanly(tmp_path: Path, fake_slack: FakeSlack) -> None:
    env = bot_env(f"sqlite:///{tmp_path}/d.db", fake_slack, free_port())
    with deploybot(env, tmp_path) as process:
        health = httpx.get(f"http://127.0.0.1:{env['PORT']}/healthz")
        assert health.status_code == 200 and health.text == "ok\n"
        metrics = httpx.get(f"http://127.0.0.1:{env['PORT']}/metrics").text
        assert "deploybot_render_backlog 0" in metrics
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        output = process.stdout.read() if process.stdout else ""
    assert "stopped" in output
    assert fake_slack.token not in output and SIGNING_SECRET not in output


def test_sigterm_finishes_in_flight_requests_and_pending_renders(tmp_path: Path, fake_slack: FakeSlack) -> None:
    port = free_port()
    # Renders of one message at most every 30 s: the click's update is still pending at SIGTERM.
    env = bot_env(f"sqlite:///{tmp_path}/d.db", fake_slack, port, DEPLOYBOT_RENDER_INTERVAL="30")
    user = SlackUser(f"http://127.0.0.1:{port}", SIGNING_SECRET)
    with deploybot(env, tmp_path) as process:
        assert user.command("start v1.4.2 production", channel=CHANNEL).status_code == 200
        deadline = time.monotonic() + 20
        while len(fake_slack.calls_of("chat.postMessage")) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        message, block = item_block(list(fake_slack.messages.values()), "all-tests-are-passing")
        assert (
            user.click(
                ids.ITEM_DONE, block["accessory"]["value"], user="U88", channel=CHANNEL, message_ts=message["ts"]
            ).status_code
            == 200
        )
        # A request still in flight when SIGTERM arrives: opening a modal while Slack answers slowly.
        fake_slack.latency = 1.5
        na = next(b for m in fake_slack.messages.values() for b in m["blocks"] if b.get("block_id") == "part.1")
        button = na["elements"][0]
        answers: list[int] = []
        slow = threading.Thread(
            target=lambda: answers.append(user.click(ids.NA_DIALOG, button["value"], channel=CHANNEL).status_code)
        )
        slow.start()
        time.sleep(0.5)
        stopped_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(httpx.TransportError):  # no longer accepting
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        assert process.wait(10) == 0
        assert time.monotonic() - stopped_at < 10
        slow.join(10)
    assert answers == [200]  # the in-flight request was answered
    assert fake_slack.calls_of("views.open")
    _, shown = item_block(list(fake_slack.messages.values()), "all-tests-are-passing")
    assert "<@U88>" in shown["text"]["text"]  # the pending render went out before exit
    user.http.close()


def raw_request(path: str, body: str, headers: dict[str, str]) -> bytes:
    """One HTTP/1.1 request, as bytes a client has finished sending."""
    lines = [f"POST {path} HTTP/1.1", "Host: deploybot", "Connection: close", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def read_answer(sock: socket.socket) -> tuple[int, str]:
    """The status and body of the answer on `sock`, read to the end (the server closes the connection)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body.decode()


def test_sigterm_answers_every_request_already_sent(tmp_path: Path, fake_slack: FakeSlack) -> None:
    """Requests sent but not yet taken from the port's queue when SIGTERM arrives are answered, not reset."""
    port = free_port()
    env = bot_env(f"sqlite:///{tmp_path}/d.db", fake_slack, port)
    burst = 40
    with deploybot(env, tmp_path) as process:
        sockets: list[socket.socket] = []
        # Stopped, the process cannot take connections: the kernel completes each handshake and
        # queues it, with its request, on the listening port, as it does for a busy server.
        process.send_signal(signal.SIGSTOP)
        try:
            for n in range(burst):
                form = {**SLASH_COMMAND, "command": "/deploy", "text": "help", "user_id": f"U{500 + n}"}
                body = urlencode(form)
                headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(SIGNING_SECRET, body)}
                sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                sock.sendall(raw_request("/slack/events", body, headers))
                sockets.append(sock)
            process.send_signal(signal.SIGTERM)
        finally:
            process.send_signal(signal.SIGCONT)
        answers = []
        for sock in sockets:
            try:
                answers.append(read_answer(sock))
            except OSError as exc:
                answers.append((0, type(exc).__name__))
            finally:
                sock.close()
        assert process.wait(15) == 0
        with pytest.raises(httpx.TransportError):  # the port is closed
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    assert [status for status, _ in answers] == [200] * burst, answers
    assert all("/deploy start" in text for _, text in answers)

"""Running deploybot: Socket Mode, health and metrics endpoints, structured logs without secrets."""

from __future__ import annotations

import io
import json
import logging
import math
import re
import signal
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, make_url, select, text

from bot import logs
from bot.models import Event
from bot.slack import ids
from tests.conftest import POSTGRES_URL, ROOT, SIGNING_SECRET, Running, launched, postgres_schema_url, wait_for
from tests.fake_slack import FakeSlack
from tests.fake_socket_mode import socket_mode_server
from tests.pager_servers import receiver
from tests.slack_requests import SLASH_COMMAND, SlackUser, click_payload
from tests.test_process import bot_env, deploybot, free_port
from tests.test_slack_flow import CHANNEL, click_item, item_block, start

# --- Socket Mode -------------------------------------------------------------------------------------


def test_socket_mode_serves_commands_and_clicks_and_reports_its_socket(tmp_path: Path, fake_slack: FakeSlack) -> None:
    with socket_mode_server() as socket:
        fake_slack.socket_url = socket.url
        port = free_port()
        env = bot_env(f"sqlite:///{tmp_path}/d.db", fake_slack, port, SLACK_APP_TOKEN=fake_slack.app_token)
        with deploybot(env, tmp_path) as process:
            assert socket.connected.wait(20)
            health = httpx.get(f"http://127.0.0.1:{port}/healthz")
            assert health.status_code == 200
            assert "deploybot_socket_mode_connected 1.0" in httpx.get(f"http://127.0.0.1:{port}/metrics").text

            command = {**SLASH_COMMAND, "command": "/deploy", "text": "start v9.9 production", "channel_id": CHANNEL}
            envelope = socket.send("slash_commands", command)
            ack = socket.ack_of(envelope)
            assert ack["envelope_id"] == envelope
            assert ack["payload"]["response_type"] == "ephemeral" and "Run #1 started" in ack["payload"]["text"]

            wait_for(lambda: len(fake_slack.calls_of("chat.postMessage")) >= 4, what="the run's messages")
            messages = sorted(fake_slack.messages.values(), key=lambda m: m["ts"])
            message, block = item_block(messages, "all-tests-are-passing")
            click = click_payload(
                ids.ITEM_DONE,
                block["accessory"]["value"],
                user="U42",
                channel=CHANNEL,
                message_ts=message["ts"],
                thread_ts=message["thread_ts"],
            )
            socket.ack_of(socket.send("interactive", click, accepts_response_payload=False))
            wait_for(
                lambda: (
                    "<@U42>"
                    in item_block(list(fake_slack.messages.values()), "all-tests-are-passing")[1]["text"]["text"]
                ),
                what="the tick to show in Slack",
            )

            # A dropped socket shows in /healthz until the client has reconnected.
            socket.disconnect_all()
            wait_for(lambda: len(socket.connections) >= 2, what="a reconnection")
            wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200, what="health again")
            process.send_signal(signal.SIGTERM)
            assert process.wait(15) == 0
    assert [c.method for c in fake_slack.calls if c.method == "apps.connections.open"]


def test_socket_mode_starts_while_slack_is_down_and_connects_when_it_is_back(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    with socket_mode_server() as socket:
        fake_slack.socket_url = socket.url
        fake_slack.down_until = math.inf  # apps.connections.open and auth.test answer 503
        port = free_port()
        env = bot_env(f"sqlite:///{tmp_path}/d.db", fake_slack, port, SLACK_APP_TOKEN=fake_slack.app_token)
        with deploybot(env, tmp_path, until="/metrics") as process:
            health = httpx.get(f"http://127.0.0.1:{port}/healthz")
            assert health.status_code == 503 and "Socket Mode connection to Slack is down" in health.text
            assert process.poll() is None  # still running, still trying
            fake_slack.down_until = 0.0
            assert socket.connected.wait(60)
            wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200, 30, "health")
            command = {**SLASH_COMMAND, "command": "/deploy", "text": "start v9.9 production", "channel_id": CHANNEL}
            ack = socket.ack_of(socket.send("slash_commands", command))
            assert "Run #1 started" in ack["payload"]["text"]
            process.send_signal(signal.SIGTERM)
            assert process.wait(15) == 0


# --- the database going away -------------------------------------------------------------------------


def test_a_click_lands_after_postgresql_closed_every_pooled_connection(fake_slack: FakeSlack) -> None:
    """A database restart or failover leaves the pool holding dead connections; no click may fail on one."""
    name = f"deploybot-{uuid.uuid4().hex[:8]}"  # tells this app's connections apart in pg_stat_activity
    with contextmanager(postgres_schema_url)() as schema_url:
        url = make_url(schema_url).update_query_dict({"application_name": name}).render_as_string(False)
        with launched(url, fake_slack) as bot:
            messages = start(bot)
            admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                dropped = conn.execute(
                    text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :n"),
                    {"n": name},
                ).scalar_one()
            admin.dispose()
            assert dropped >= 1
            response = click_item(bot, messages, "error-handling-is-in-place")
            assert response.status_code == 200 and response.text == ""
            with bot.app.sessions() as session:
                assert session.scalar(select(Event.user_id).where(Event.kind == "item.done")) == "U200"


# --- metrics -------------------------------------------------------------------------------------------


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert found, f"{name} is not in /metrics"
    return float(found.group(1))


def test_metrics_count_requests_clicks_slack_calls_and_ack_times(running: Running) -> None:
    messages = start(running)
    message, block = item_block(messages, "all-tests-are-passing")
    running.fake.fail("chat.update", status=429, retry_after=0)
    running.slack.click(
        ids.ITEM_DONE,
        block["accessory"]["value"],
        channel=CHANNEL,
        message_ts=message["ts"],
        thread_ts=message["thread_ts"],
    )
    running.slack.click("no.such.action", {"run": 1}, channel=CHANNEL)
    running.slack.post("payload=%7Bnot-json", headers={"X-Slack-Signature": "v0=forged"})
    running.settled()
    text = httpx.get(f"{running.url}/metrics").text
    assert metric(text, 'deploybot_requests_total{kind="command"}') == 1
    assert metric(text, 'deploybot_requests_total{kind="block_actions"}') == 2
    assert metric(text, f'deploybot_clicks_total{{action="{ids.ITEM_DONE}"}}') == 1
    assert metric(text, 'deploybot_clicks_total{action="unknown"}') == 1
    assert metric(text, 'deploybot_requests_rejected_total{reason="signature"}') == 1
    assert metric(text, 'deploybot_slack_api_calls_total{method="chat.postMessage"}') >= 4
    assert metric(text, 'deploybot_slack_api_ratelimited_total{method="chat.update"}') == 1
    assert metric(text, 'deploybot_slack_api_errors_total{error="ratelimited",method="chat.update"}') == 1
    assert metric(text, "deploybot_ack_seconds_count") == 3
    assert metric(text, 'deploybot_ack_seconds_bucket{le="+Inf"}') == 3
    assert metric(text, "deploybot_render_backlog") == 0
    assert "# TYPE deploybot_ack_seconds histogram" in text


def test_metrics_count_every_slack_call_whichever_code_path_makes_it(running: Running) -> None:
    """Listeners' calls (forms, private answers, uploads) are counted like the workers' renders."""
    messages = start(running)
    na = next(b for m in messages for b in m["blocks"] if b.get("block_id") == "part.1")["elements"][0]
    assert running.slack.click(na["action_id"], na["value"], channel=CHANNEL).status_code == 200
    assert running.slack.click("no.such.action", {"run": 1}, channel=CHANNEL).status_code == 200
    export = {"run": 1, "format": "md"}
    parent = messages[0]["ts"]
    assert running.slack.click(ids.EXPORT, export, channel=CHANNEL, message_ts=parent).status_code == 200
    running.told()
    running.settled()
    made = {c.method for c in running.fake.calls}
    assert {"chat.postMessage", "views.open", "files.getUploadURLExternal"} <= made

    def counted() -> dict[str, float]:
        text = httpx.get(f"{running.url}/metrics").text
        return {m: metric(text, f'deploybot_slack_api_calls_total{{method="{m}"}}') for m in made if m in text}

    def every_call_counted() -> bool:
        with running.fake.lock:
            calls = [c.method for c in running.fake.calls]
        return counted() == {m: calls.count(m) for m in set(calls)}

    assert "response_url" in made  # the refusal of the unknown action was answered there

    wait_for(every_call_counted, what=f"every Slack call to be counted (counted {counted()})")


# --- logs ----------------------------------------------------------------------------------------------


def test_http_requests_of_probes_and_pagers_are_not_logged_one_line_each() -> None:
    """httpx logs every request and APScheduler every tick at INFO; they would bury the log."""
    logs.setup("text")
    try:
        for chatty in ("httpx", "apscheduler"):
            assert not logging.getLogger(chatty).isEnabledFor(logging.INFO)
            assert logging.getLogger(chatty).isEnabledFor(logging.WARNING)
    finally:
        for chatty in ("httpx", "apscheduler"):
            logging.getLogger(chatty).setLevel(logging.NOTSET)
        logging.basicConfig(force=True)


def test_the_scrubber_masks_a_secret_that_reaches_a_log_line() -> None:
    stream = io.StringIO()
    logs.setup("json", ["xoxb-very-secret-token"])
    logging.getLogger().handlers[0].stream = stream  # type: ignore[attr-defined]
    logs.scrub(["late-secret-from-yml"])
    try:
        with logs.request_scope("req-1"):
            logging.getLogger("t").error("token %s and %s", "xoxb-very-secret-token", "late-secret-from-yml")
            try:
                raise ValueError("boom xoxb-very-secret-token")
            except ValueError:
                logging.getLogger("t").exception("failed")
    finally:
        logging.basicConfig(force=True)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["message"] == "token ********** and **********" and lines[0]["request_id"] == "req-1"
    assert "xoxb-very-secret-token" not in stream.getvalue() and "boom **********" in lines[1]["message"]


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_log_times_are_iso_8601_in_utc_with_the_offset(log_format: str) -> None:
    stream = io.StringIO()
    logs.setup(log_format)
    logging.getLogger().handlers[0].stream = stream  # type: ignore[attr-defined]
    try:
        logging.getLogger("t").warning("hello")
    finally:
        logging.basicConfig(force=True)
    line = stream.getvalue().strip()
    written = json.loads(line)["time"] if log_format == "json" else line.split(" ", 1)[0]
    at = datetime.fromisoformat(written)
    assert written.endswith("+00:00") and at.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - at) < timedelta(minutes=1)


def test_a_full_run_logs_json_lines_with_request_ids_and_no_secret(tmp_path: Path, fake_slack: FakeSlack) -> None:
    env_file = tmp_path / ".env.production"
    secrets = {
        "JWT_SECRET": "jwt-production-value-9f8e7d6c5b4a39281706f5e4d3c2b1a0",
        "WEBHOOK_SECRET": "whsec-production-value-0a1b2c3d4e5f60718293a4b5c6d7e8f9",
    }
    env_file.write_text("".join(f"{k}={v}\n" for k, v in secrets.items()))
    pd_key, hook_secret = "pd-routing-key-must-not-leak-1234", "hook-secret-must-not-leak-5678"
    with receiver() as pagerduty, receiver(default=200) as hook:
        pagerduty.answer_next(400)  # a failure is logged: it must not carry the key
        hook.answer_next(500)
        config = tmp_path / "deploybot.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "environments": {"production": {"env_file": str(env_file), "development_env_file": "/nonexistent"}},
                    "contacts": {
                        "dba": {
                            "users": ["U0DBA1"],
                            "pagerduty": {"routing_key_env": "PD_KEY", "url": pagerduty.url},
                            "webhook": {"url": hook.url, "secret_env": "HOOK_SECRET"},
                        }
                    },
                }
            )
        )
        checklists = tmp_path / "checklists"
        checklists.mkdir()
        (checklists / "deploy.yml").write_text(
            yaml.safe_dump(
                {
                    "id": "production-deploy",
                    "title": "Deploy",
                    "phases": [
                        {
                            "id": "p",
                            "title": "P",
                            "groups": [
                                {
                                    "id": "g",
                                    "title": "G",
                                    "items": [
                                        {
                                            "id": "secrets-strong",
                                            "text": "Secrets are strong",
                                            "probe": {"kind": "env_file", "path": "${env_file}"},
                                        },
                                        {"id": "tests-pass", "text": "Tests pass"},
                                    ],
                                }
                            ],
                        }
                    ],
                }
            )
        )
        (checklists / "rollback.yml").write_text((ROOT / "checklists" / "rollback.yml").read_text())
        port = free_port()
        env = bot_env(
            f"sqlite:///{tmp_path}/d.db",
            fake_slack,
            port,
            LOG_FORMAT="json",
            DEPLOYBOT_CONFIG=str(config),
            DEPLOYBOT_CHECKLISTS=str(checklists),
            PD_KEY=pd_key,
            HOOK_SECRET=hook_secret,
        )
        user = SlackUser(f"http://127.0.0.1:{port}", SIGNING_SECRET)
        with deploybot(env, tmp_path) as process:
            assert user.command("start v1.0 production", channel=CHANNEL).status_code == 200
            wait_for(lambda: len(fake_slack.calls_of("chat.postMessage")) >= 2, what="the run")
            user.click(ids.ITEM_DONE, {"run": 1, "item": "tests-pass"}, channel=CHANNEL)
            user.command("page dba the database is on fire", channel=CHANNEL)
            wait_for(lambda: len(hook.accepted()) == 1 and pagerduty.received, what="the page's deliveries")
            user.post("command=%2Fdeploy", headers={"X-Slack-Signature": "v0=forged"})
            rollback = user.command("rollback", channel=CHANNEL).json()  # the run completed: roll it back
            assert "Rollback checklist started" in rollback["text"], rollback
            wait_for(lambda: len(fake_slack.calls_of("chat.postMessage")) >= 5, what="the rollback")
            time.sleep(0.5)  # let the workers log what they do with the last changes
            process.send_signal(signal.SIGTERM)
            assert process.wait(15) == 0
            output = process.stdout.read() if process.stdout else ""
        user.http.close()
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]  # every line is one JSON object
    assert lines and all({"time", "level", "logger", "request_id", "message"} <= set(line) for line in lines)
    handled = [line for line in lines if line["logger"] == "bot.slack.listeners" and " answered " in line["message"]]
    assert len(handled) >= 4 and all(re.fullmatch(r"[0-9a-f]{12}", line["request_id"]) for line in handled), [
        (h["request_id"], h["message"]) for h in handled
    ]
    assert len({line["request_id"] for line in handled}) == len(handled)
    assert any("PagerDuty answered 400" in line["message"] for line in lines)  # the failure is told…
    for secret in [fake_slack.token, SIGNING_SECRET, pd_key, hook_secret, *secrets.values()]:
        assert secret not in output  # …and nothing secret is

"""Probes inside runs: background verdicts with evidence in Slack, overrides, re-runs, and `deploybot probe`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from bot.models import Event, ItemState, ProbeResult
from bot.slack import ids
from tests.conftest import ROOT, Running, launched
from tests.fake_slack import FakeSlack
from tests.probe_servers import http_server
from tests.test_probes import SECURE
from tests.test_slack_flow import CHANNEL, all_text, current, item_block


@dataclass
class Target:
    """A service under deployment whose behaviour the test changes as it goes."""

    headers: dict[str, str] = field(default_factory=dict)
    cors_reflects: bool = True
    slow_seconds: float = 1.5

    def route(self, method: str, path: str, request: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if path == "/health":
            return 200, {"Content-Type": "application/json"}, b'{"status": "ok"}'
        if path == "/slow":
            import time

            time.sleep(self.slow_seconds)
            return 200, {}, b"late"
        if path == "/api" and self.cors_reflects and request.get("origin"):
            return 200, {"Access-Control-Allow-Origin": request["origin"]}, b""
        return 200, self.headers, b"home"


CHECKLIST = {
    "id": "production-deploy",
    "title": "Release",
    "phases": [
        {
            "id": "post",
            "title": "Post-Deployment",
            "groups": [
                {
                    "id": "checks",
                    "title": "Checks",
                    "items": [
                        {
                            "id": "health",
                            "text": "Health endpoint returns `200 OK`",
                            "probe": {
                                "kind": "http",
                                "url": "${api_url}/health",
                                "json_field": "status",
                                "json_equals": "ok",
                            },
                        },
                        {
                            "id": "headers",
                            "text": "Security headers are present",
                            "probe": {"kind": "headers", "url": "${api_url}/"},
                        },
                        {
                            "id": "cors",
                            "text": "CORS is blocking unauthorized origins",
                            "probe": {"kind": "cors", "url": "${api_url}/api"},
                        },
                        {
                            "id": "slow",
                            "text": "Static assets load quickly",
                            "probe": {"kind": "http", "url": "${api_url}/slow"},
                        },
                        {"id": "manual", "text": "Dashboard displays correctly"},
                    ],
                }
            ],
        }
    ],
}


@pytest.fixture
def target() -> Iterator[tuple[Target, str]]:
    service = Target()
    with http_server(service.route) as url:
        yield service, url


@pytest.fixture
def probed(tmp_path: Path, fake_slack: FakeSlack, database_url: str, target: tuple[Target, str]) -> Iterator[Running]:
    folder = tmp_path / "checklists"
    folder.mkdir()
    (folder / "production-deploy.yml").write_text(yaml.safe_dump(CHECKLIST))
    (tmp_path / "deploybot.yml").write_text(yaml.safe_dump({"environments": {"production": {"api_url": target[1]}}}))
    with launched(
        database_url, fake_slack, DEPLOYBOT_CHECKLISTS=str(folder), DEPLOYBOT_CONFIG=str(tmp_path / "deploybot.yml")
    ) as bot:
        yield bot


def states(bot: Running) -> dict[str, ItemState]:
    with bot.app.sessions() as session:
        return {s.item_id: s for s in session.scalars(select(ItemState))}


def probes_done(bot: Running) -> None:
    bot.wait_for(lambda: all(s.probe_status != "pending" for s in states(bot).values()), what="every probe to finish")
    bot.settled()


def thread(bot: Running) -> list[dict[str, Any]]:
    parent = next(ts for (_, ts), m in bot.fake.messages.items() if not m["thread_ts"])
    return current(bot, parent)


def test_probes_run_after_the_ack_and_show_their_evidence(probed: Running) -> None:
    answer = probed.slack.command("start v2.0.0 production", channel=CHANNEL)
    assert answer.status_code == 200 and answer.json()["text"].startswith("Run #1 started")
    assert states(probed)["slow"].probe_status == "pending"  # the ack did not wait for the 1.5 s probe
    probed.settled()
    assert "_checking…_" in item_block(thread(probed), "slow")[1]["text"]["text"]

    probes_done(probed)
    messages = thread(probed)
    health = item_block(messages, "health")[1]
    assert health["text"]["text"].startswith("✅ Health endpoint returns `200 OK`  ·  verified by deploybot <!date^")
    assert ":mag: 200 OK in " in health["text"]["text"]
    headers = item_block(messages, "headers")[1]
    assert headers["text"]["text"].startswith(":x: Security headers are present  ·  probe failed <!date^")
    assert "missing or weak: Strict-Transport-Security (HSTS)" in headers["text"]["text"]
    assert headers["accessory"]["type"] == "overflow"
    assert (
        "accessory" in item_block(messages, "manual")[1]
        and item_block(messages, "manual")[1]["accessory"]["action_id"] == ids.ITEM_DONE
    )
    assert ":mag: Probes: 2 passed · 2 failed" in all_text(messages[0])
    with probed.app.sessions() as session:
        results = {r.item_id: r for r in session.scalars(select(ProbeResult))}
        assert set(results) == {"health", "headers", "cors", "slow"}
        assert results["health"].ok and results["health"].evidence["json"] == {"status": "ok"}
        verified = session.scalars(select(Event).where(Event.kind == "item.verified")).all()
        assert {(e.item_id, e.user_id) for e in verified} == {("health", "deploybot"), ("slow", "deploybot")}


def test_override_and_re_run(probed: Running, target: tuple[Target, str]) -> None:
    probed.slack.command("start v2.0.0 production", channel=CHANNEL)
    probes_done(probed)
    messages = thread(probed)

    # Done anyway on the failed headers probe: an override, with who and what the probe said.
    message, block = item_block(messages, "headers")
    done_anyway = next(o for o in block["accessory"]["options"] if json.loads(o["value"])["do"] == "done")
    payload_value = done_anyway["value"]
    assert probed.slack.payload(_overflow(payload_value, "U5", message)).status_code == 200
    probed.settled()
    text = item_block(thread(probed), "headers")[1]["text"]["text"]
    assert text.startswith("✅ Security headers are present  ·  <@U5>")
    assert ":warning: done although its probe failed: missing or weak" in text
    with probed.app.sessions() as session:
        override = session.scalars(select(Event).where(Event.kind == "item.override")).one()
        assert override.user_id == "U5" and override.data["probe_reason"].startswith("missing or weak")

    # The team fixes CORS and re-runs that one probe: it passes and ticks the item.
    service, _ = target
    service.cors_reflects = False
    message, block = item_block(thread(probed), "cors")
    rerun = next(o for o in block["accessory"]["options"] if json.loads(o["value"])["do"] == "rerun")
    assert probed.slack.payload(_overflow(rerun["value"], "U6", message)).status_code == 200
    probes_done(probed)
    assert item_block(thread(probed), "cors")[1]["text"]["text"].startswith(
        "✅ CORS is blocking unauthorized origins  ·  verified by deploybot"
    )

    # Re-run all from the parent: the overridden item keeps its person, now with a passing probe.
    service.headers = dict(SECURE)
    parent = thread(probed)[0]
    rerun_all = next(
        e
        for b in parent["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == ids.RERUN_PROBES
    )
    probed.slack.click(rerun_all["action_id"], rerun_all["value"], user="U7", channel=CHANNEL, message_ts=parent["ts"])
    probes_done(probed)
    after = states(probed)
    assert (after["headers"].status, after["headers"].changed_by, after["headers"].probe_status) == (
        "done",
        "U5",
        "passed",
    )
    with probed.app.sessions() as session:
        reruns = session.scalars(select(Event).where(Event.kind == "probe.rerun")).all()
        assert [(e.user_id, e.item_id, e.data["items"]) for e in reruns] == [("U6", "cors", 1), ("U7", None, 4)]
        assert len(session.scalars(select(ProbeResult)).all()) == 4 + 1 + 4


def test_an_environment_missing_from_the_config_cannot_aim_probes_anywhere(probed: Running) -> None:
    probed.slack.command("start v2.0.0 evil", channel=CHANNEL)
    probed.settled()
    assert all(s.probe_status is None and s.status == "open" for s in states(probed).values())
    parent = thread(probed)[0]
    assert "Probes are off: add environment `evil` to deploybot.yml" in all_text(parent)
    assert ids.RERUN_PROBES not in all_text(parent)
    with probed.app.sessions() as session:
        assert session.scalars(select(ProbeResult)).all() == []


def _overflow(value: str, user: str, message: dict[str, Any]) -> dict[str, Any]:
    from tests.slack_requests import click_payload

    payload = click_payload(
        ids.ITEM_MENU, "", user=user, channel=CHANNEL, message_ts=message["ts"], thread_ts=message["thread_ts"]
    )
    action = payload["actions"][0]
    del action["value"]
    action.update(type="overflow", selected_option={"text": {"type": "plain_text", "text": "x"}, "value": value})
    return payload


def test_deploybot_probe_command(tmp_path: Path, target: tuple[Target, str]) -> None:
    service, url = target
    service.slow_seconds = 0
    folder = tmp_path / "checklists"
    folder.mkdir()
    (folder / "production-deploy.yml").write_text(yaml.safe_dump(CHECKLIST))
    config = tmp_path / "deploybot.yml"
    config.write_text(yaml.safe_dump({"environments": {"production": {"api_url": url}}}))
    env = {**os.environ, "DEPLOYBOT_CHECKLISTS": str(folder), "DEPLOYBOT_CONFIG": str(config)}

    def deploybot(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot", "probe", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
        )

    table = deploybot("--env", "production")
    assert table.returncode == 1, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["item", "kind", "verdict", "ms", "reason"]
    assert lines[1].split()[:3] == ["health", "http", "pass"]
    assert lines[2].split()[:3] == ["headers", "headers", "FAIL"]
    assert lines[-1] == "4 probe(s), 2 failed"

    service.headers, service.cors_reflects = dict(SECURE), False
    as_json = deploybot("--env", "production", "--json")
    assert as_json.returncode == 0
    rows = json.loads(as_json.stdout)
    assert [(r["item"], r["ok"]) for r in rows] == [("health", True), ("headers", True), ("cors", True), ("slow", True)]

    unknown = deploybot("--env", "qa")
    assert (
        unknown.returncode == 2
        and "environment 'qa' is not in" in unknown.stderr
        and "known: production" in unknown.stderr
    )

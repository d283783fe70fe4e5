"""When probes run: an item's probe waits for its phase, and its verdict says which phase it was checked in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from bot import db, export, items, runs
from bot.checklists import load_folder
from bot.models import Event, ItemState, ProbeResult
from bot.probes import Verdict
from bot.slack import ids
from tests.conftest import ROOT, Running, launched
from tests.fake_slack import FakeSlack
from tests.probe_servers import http_server
from tests.test_probe_flow import Target, _overflow
from tests.test_shell_export import shell
from tests.test_slack_flow import CHANNEL, all_text, click_item, current, item_block

HEADERS = {"kind": "headers", "url": "${api_url}/"}
HEALTH = {"kind": "http", "url": "${api_url}/health", "json_field": "status", "json_equals": "ok"}

CHECKLIST = {
    "id": "production-deploy",
    "title": "Release",
    "phases": [
        {
            "id": "pre-deployment",
            "title": "Pre-Deployment",
            "groups": [
                {
                    "id": "setup",
                    "title": "Setup",
                    "items": [
                        {"id": "config", "text": "Configuration answers", "probe": HEALTH},
                        {"id": "backup", "text": "Backup taken"},
                    ],
                }
            ],
        },
        {
            "id": "deployment",
            "title": "Deployment",
            "groups": [{"id": "ship", "title": "Ship", "items": [{"id": "ship", "text": "New version is live"}]}],
        },
        {
            "id": "post-deployment",
            "title": "Post-Deployment",
            "groups": [
                {
                    "id": "verify",
                    "title": "Verify",
                    "items": [
                        {"id": "health", "text": "Health endpoint returns `200 OK`", "probe": HEALTH},
                        {
                            "id": "headers",
                            "text": "Security headers",
                            "probe": {"kind": "headers", "url": "${api_url}/"},
                        },
                        {"id": "dashboard", "text": "Dashboard displays correctly"},
                    ],
                }
            ],
        },
    ],
}
POST = {"health", "headers"}


@pytest.fixture
def phased(tmp_path: Path, fake_slack: FakeSlack, database_url: str) -> Iterator[Running]:
    folder = tmp_path / "checklists"
    folder.mkdir()
    (folder / "production-deploy.yml").write_text(yaml.safe_dump(CHECKLIST))
    with http_server(Target().route) as url:
        (tmp_path / "deploybot.yml").write_text(yaml.safe_dump({"environments": {"production": {"api_url": url}}}))
        with launched(
            database_url,
            fake_slack,
            DEPLOYBOT_CHECKLISTS=str(folder),
            DEPLOYBOT_CONFIG=str(tmp_path / "deploybot.yml"),
        ) as bot:
            yield bot


def states(bot: Running) -> dict[str, ItemState]:
    with bot.app.sessions() as session:
        return {s.item_id: s for s in session.scalars(select(ItemState))}


def results(bot: Running) -> list[ProbeResult]:
    with bot.app.sessions() as session:
        return list(session.scalars(select(ProbeResult).order_by(ProbeResult.id)))


def events(bot: Running, kind: str) -> list[Event]:
    with bot.app.sessions() as session:
        return list(session.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))


def no_probe_pending(bot: Running) -> None:
    bot.wait_for(lambda: all(s.probe_status != "pending" for s in states(bot).values()), what="probes to finish")
    bot.settled()


def thread(bot: Running) -> list[dict[str, Any]]:
    parent = next(ts for (_, ts), m in bot.fake.messages.items() if not m["thread_ts"])
    return current(bot, parent)


def started(bot: Running) -> None:
    assert bot.slack.command("start v2.0.0 production", channel=CHANNEL).status_code == 200
    no_probe_pending(bot)


def test_post_deployment_probes_wait_until_every_earlier_required_item_is_resolved(phased: Running) -> None:
    started(phased)
    after_start = states(phased)
    assert after_start["config"].probe_status == "passed" and after_start["config"].status == "done"
    assert {i: after_start[i].probe_status for i in POST} == {"health": "waiting", "headers": "waiting"}
    assert {r.item_id for r in results(phased)} == {"config"}  # nothing ran against the undeployed service
    messages = thread(phased)
    health = item_block(messages, "health")[1]["text"]["text"]
    assert "verified by deploybot" not in health and "_probe waits for this phase_" in health
    assert ":mag: Probes: 1 passed · 0 failed · 2 waiting for their phase" in all_text(messages[0])

    # Resolving Pre-Deployment opens Deployment, which has no probes: the later ones still wait.
    assert click_item(phased, thread(phased), "backup").status_code == 200
    phased.settled()
    assert {states(phased)[i].probe_status for i in POST} == {"waiting"}

    # The last required item before Post-Deployment resolved: its probes run now.
    assert click_item(phased, thread(phased), "ship", user="U300").status_code == 200
    no_probe_pending(phased)
    after = states(phased)
    assert (after["health"].status, after["health"].changed_by, after["health"].probe_status) == (
        "done",
        "deploybot",
        "passed",
    )
    assert after["headers"].probe_status == "failed" and after["headers"].status == "open"
    assert [(e.data["phase"], e.user_id, e.data["probes"]) for e in events(phased, "phase.opened")] == [
        ("deployment", "U200", 0),
        ("post-deployment", "U300", 2),
    ]

    # The evidence says when and against which phase: in Slack, in the database and in the export.
    checked = {r.item_id: r.open_phase for r in results(phased)}
    assert checked == {"config": 0, "health": 2, "headers": 2}
    text = item_block(thread(phased), "health")[1]["text"]["text"]
    assert ":mag: 200 OK in " in text and "  ·  checked <!date^" in text and ", Post-Deployment open" in text
    failed = item_block(thread(phased), "headers")[1]["text"]["text"]
    assert failed.startswith(":x: Security headers  ·  probe failed <!date^") and "(Post-Deployment open): " in failed
    with phased.app.sessions() as session:
        document = export.record(session, 1)
    probe = next(i["probe"] for i in document["items"] if i["id"] == "health")
    assert probe["open_phase"] == "Post-Deployment" and probe["at"] == after["health"].probe_at.isoformat()  # type: ignore[union-attr]
    assert "(checked " in export.render(document, "md") and ",Post-Deployment,," in export.render(document, "csv")

    # Unticking an earlier item does not close the phase again: the verdict stays, with its phase.
    assert click_item(phased, thread(phased), "ship", user="U300").status_code == 200
    phased.settled()
    kept = states(phased)["health"]
    assert (kept.status, kept.probe_status, kept.probe_phase) == ("done", "passed", 2)


def test_re_run_probes_runs_the_open_phases_and_tells_the_clicker_which_wait(phased: Running) -> None:
    started(phased)
    parent = thread(phased)[0]
    rerun = next(
        e
        for b in parent["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == ids.RERUN_PROBES
    )
    assert (
        phased.slack.click(rerun["action_id"], rerun["value"], user="U7", channel=CHANNEL, message_ts=parent["ts"])
    ).status_code == 200
    no_probe_pending(phased)
    assert [r.item_id for r in results(phased)] == ["config", "config"]
    assert {states(phased)[i].probe_status for i in POST} == {"waiting"}
    told = [c.args for c in phased.told()]
    assert [(t["user"], t["text"]) for t in told] == [
        (
            "U7",
            "Post-Deployment probes wait for its phase: they run once every required item before it is "
            "resolved, or when the deployment is reported.",
        )
    ]
    assert [(e.user_id, e.data) for e in events(phased, "probe.rerun")] == [("U7", {"items": 1, "waiting": 2})]

    # One waiting item's probe asked for directly: refused, said so, nothing queued.
    message, _ = item_block(thread(phased), "health")
    value = json.dumps({"run": 1, "item": "health", "do": "rerun"})
    assert phased.slack.payload(_overflow(value, "U8", message)).status_code == 200
    assert phased.told()[-1].args["text"].endswith("Nothing was re-run.")
    assert states(phased)["health"].probe_status == "waiting" and len(events(phased, "probe.rerun")) == 1


def test_a_reported_deployment_opens_every_phase_from_the_shell(phased: Running, database_url: str) -> None:
    started(phased)
    refused = shell(database_url, "use 1\ndeployed maybe\n")
    assert "Health endpoint returns `200 OK` [probe waiting: runs when its phase opens]" in refused
    assert "! Say how the deployment went: succeeded or failed. Nothing changed." in refused
    assert {states(phased)[i].probe_status for i in POST} == {"waiting"}

    out = shell(database_url, "use 1\ndeployed\n")
    assert "Noted: v2.0.0 is deployed. 2 probe(s) queued; every phase of run #1 is open." in out
    # The running deploybot's probe runner finds them on its next look at the database.
    phased.wait_for(lambda: {states(phased)[i].probe_status for i in POST} == {"passed", "failed"}, what="probes")
    assert states(phased)["backup"].status == "open"  # reporting the deployment ticks nothing
    reported = events(phased, "deployment.reported")
    assert [(e.user_id, e.data) for e in reported] == [("alice", {"outcome": "succeeded", "probes": 2})]
    assert {r.item_id: r.open_phase for r in results(phased) if r.item_id in POST} == {"health": 2, "headers": 2}


def test_a_verdict_taken_before_its_phase_opened_does_not_count(database_url: str) -> None:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    template = load_folder(ROOT / "checklists")["production-deploy"]
    at = datetime(2026, 12, 1, 14, 2, tzinfo=UTC)
    with db.make_sessions(engine).begin() as session:
        run = runs.start(
            session, template, version="v1", environment="production", channel_id="shell", parts=None,
            actor=runs.Actor("alice", at), probes=True,
        )  # fmt: skip
        run_id = run.id
    post = "health-check-endpoint-is-accessible"
    with db.make_sessions(engine).begin() as session:
        items.record_probe(session, run_id, post, Verdict(True, "200 OK in 2 ms", {}, 2.0), "http", at)
    with db.make_sessions(engine)() as session:
        state = session.get(ItemState, (run_id, post))
        assert state is not None
        assert (state.status, state.changed_by, state.probe_status, state.probe_phase) == ("open", None, "waiting", 0)
        result = session.scalars(select(ProbeResult)).one()
        assert result.ok and result.open_phase == 0  # kept as evidence, with the phase it was taken in
        assert [e.kind for e in session.scalars(select(Event).where(Event.item_id == post))] == ["probe.too_early"]
    engine.dispose()


def test_the_shipped_checklists_probe_what_can_be_checked_now(database_url: str) -> None:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    templates = load_folder(ROOT / "checklists")
    actor = runs.Actor("alice", datetime(2026, 12, 1, 9, tzinfo=UTC))
    with db.make_sessions(engine).begin() as session:
        deploy = runs.start(
            session, templates["production-deploy"], version="v1", environment="production", channel_id="C1",
            parts=None, actor=actor, probes=True,
        )  # fmt: skip
        maintenance = runs.start(
            session, templates["maintenance"], version="daily", environment="production", channel_id="C2",
            parts=None, actor=actor, probes=True,
        )  # fmt: skip
        by_phase: dict[str, set[str | None]] = {}
        for phase in templates["production-deploy"].phases:
            probed = {i.id for i in phase.items if i.probe}
            by_phase[phase.id] = {s.probe_status for s in deploy.items if s.item_id in probed}
        assert by_phase == {"pre-deployment": {"pending"}, "deployment": {"waiting"}, "post-deployment": {"waiting"}}
        # A maintenance checklist's phases are cadences: each one's probes run when it is posted.
        assert {s.probe_status for s in maintenance.items if s.probe_status} == {"pending"}
        assert (deploy.open_phase, maintenance.open_phase) == (0, 3)
    engine.dispose()

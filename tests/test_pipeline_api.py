"""The pipeline API over real HTTP: tokens, start by key, item reports, the deployment, Slack's view of them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from bot import export, runs, tokens
from bot.models import Event, ItemState, Run, SlackBudget
from bot.services import utcnow
from tests.conftest import Running, launched
from tests.fake_slack import FakeSlack
from tests.pipeline_client import CHANNEL, Pipeline, make_token
from tests.test_slack_flow import click_item, current, item_block

HOSTILE: list[str] = json.loads((Path(__file__).parent / "fixtures" / "hostile-text.json").read_text())
TESTS = "all-tests-are-passing"


@pytest.fixture
def ci(running: Running) -> Iterator[Pipeline]:
    pipeline = Pipeline(running.url, make_token(running.app.sessions))
    yield pipeline
    pipeline.close()


def started(ci: Pipeline, key: str = "gh-1") -> dict[str, Any]:
    response = ci.start(key=key)
    assert response.status_code == 201, response.text
    run: dict[str, Any] = response.json()["run"]
    return run


def item_of(run: dict[str, Any], item_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(i for p in run["phases"] for i in p["items"] if i["id"] == item_id)
    return found


# --- tokens and refusals -------------------------------------------------------------------------------


def test_a_missing_wrong_or_revoked_token_is_unauthorized_before_any_routing(running: Running) -> None:
    token = make_token(running.app.sessions)
    for presented in (None, "dbt_wrong", token[:-1], token + "x", "x" * 5000):
        anonymous = Pipeline(running.url, presented)
        for response in (
            anonymous.start(),
            anonymous.http.get("/api/v1/nothing-here"),
            anonymous.gate(1),
            anonymous.http.post("/api/v1/runs", content=b"x" * 100_000),
        ):
            assert (response.status_code, response.json()) == (401, {"error": "unauthorized"})
        anonymous.close()
    basic = httpx.get(f"{running.url}/api/v1/runs/1", headers={"Authorization": f"Basic {token}"})
    assert basic.status_code == 401
    good = Pipeline(running.url, token)
    assert good.http.get("/api/v1/nothing-here").status_code == 404
    with running.app.sessions.begin() as session:
        tokens.revoke(session, "github-actions prod", utcnow())
    # No cache: the very next request is refused.
    refused = good.start()
    assert (refused.status_code, refused.json()) == (401, {"error": "unauthorized"})
    good.close()


def test_a_token_touches_only_runs_of_its_channel_and_environment(running: Running, ci: Pipeline) -> None:
    run = started(ci)
    other_channel = Pipeline(running.url, make_token(running.app.sessions, "gitlab other", channel="C200"))
    staging_only = Pipeline(running.url, make_token(running.app.sessions, "gitlab staging", environment="staging"))
    for response in (
        other_channel.http.get(f"/api/v1/runs/{run['id']}"),
        other_channel.report(run["id"], TESTS, status="done"),
        other_channel.gate(run["id"]),
        staging_only.http.get(f"/api/v1/runs/{run['id']}"),
        staging_only.deployed(run["id"], status="succeeded"),
        staging_only.start(key="gh-2"),
        ci.start(key="gh-3", channel="C200"),
    ):
        assert response.status_code == 403, response.text
        assert response.json()["error"].endswith(".") and "token" in response.json()["error"]
    with running.app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 1
        assert session.get_one(ItemState, (run["id"], TESTS)).status == "open"
    other_channel.close()
    staging_only.close()


def test_bad_requests_say_what_is_wrong_and_change_nothing(running: Running, ci: Pipeline) -> None:
    run = started(ci)
    with running.app.sessions() as session:
        rev = session.get_one(Run, run["id"]).rev
    url = f"/api/v1/runs/{run['id']}/items/{TESTS}"
    refusals = [
        (ci.http.post(url, content=b"not json"), 400, "JSON object"),
        (ci.http.post(url, content=b"[1]"), 400, "JSON object"),
        (ci.http.post(url, content=b'{"a":' * 5000 + b"1" + b"}" * 5000), 400, "JSON object"),
        (ci.report(run["id"], TESTS, status="passed"), 400, '"status"'),
        (ci.report(run["id"], TESTS, status="na"), 400, '"reason" is required'),
        (ci.report(run["id"], TESTS, status="done", evidence_url="javascript:alert(1)"), 400, "http"),
        (ci.report(run["id"], TESTS, status="done", evidence_url="file:///etc/passwd"), 400, "http"),
        (ci.report(run["id"], TESTS, status="done", evidence_url="https://x.example/a|b"), 400, "percent-encode"),
        (ci.report(run["id"], TESTS, status="done", summary="one\ntwo"), 400, "one line"),
        (ci.report(run["id"], TESTS, status="done", summary="x" * 201), 400, "200"),
        (ci.report(run["id"], TESTS, status="done", summary="NUL \x00"), 400, "NUL"),
        (ci.report(run["id"], "no-such-item", status="done"), 404, "no item 'no-such-item'"),
        (ci.report(run["id"], "999", status="done"), 404, "a number from 1 to 89"),
        (ci.report(424242, TESTS, status="done"), 404, "does not exist"),
        (ci.deployed(run["id"], status="finished"), 400, '"started", "succeeded" or "failed"'),
        (ci.gate(run["id"], phase="nowhere"), 404, "no phase 'nowhere'"),
        (ci.gate(run["id"], after="abc"), 400, "whole number"),
        (ci.gate(run["id"], wait="soon"), 400, "seconds"),
        (ci.start(key=""), 400, '"key"'),
        (ci.start(key="k", version="v 1"), 400, '"version"'),
        (ci.start(key="k", environment="Prod!"), 400, '"environment"'),
        (ci.start(key="k", checklist="nope"), 400, "production-deploy"),
        (ci.http.post(url, content=b"{" + b" " * (64 * 1024) + b"}"), 413, "64 KiB"),
        (ci.http.get(url), 405, "takes POST"),
    ]
    for response, status, says in refusals:
        assert response.status_code == status, (says, response.text)
        error = response.json()["error"]
        assert says in error and error.endswith("."), error
    with running.app.sessions() as session:
        assert session.get_one(Run, run["id"]).rev == rev
        assert session.scalar(select(func.count()).select_from(Event).where(Event.kind != "run.started")) == 0


def test_each_token_is_rate_limited_across_replicas(database_url: str, fake_slack: FakeSlack) -> None:
    with (
        launched(database_url, fake_slack, DEPLOYBOT_API_PER_MINUTE="8") as one,
        launched(database_url, fake_slack, DEPLOYBOT_API_PER_MINUTE="8") as two,
    ):
        token = make_token(one.app.sessions)
        on_one, on_two = Pipeline(one.url, token), Pipeline(two.url, token)
        other = Pipeline(one.url, make_token(one.app.sessions, "another pipeline"))
        # A burst of a quarter of a minute's worth (2), shared by both replicas through the database.
        assert on_one.http.get("/api/v1/runs/1").status_code == 404
        assert on_two.http.get("/api/v1/runs/1").status_code == 404
        limited = on_one.http.get("/api/v1/runs/1")
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert "wait" in limited.json()["error"]
        assert on_two.http.get("/api/v1/runs/1").status_code == 429
        assert other.http.get("/api/v1/runs/1").status_code == 404  # each token has its own bucket
        with one.app.sessions() as session:
            assert session.scalar(select(func.count()).select_from(SlackBudget)) == 2
        for client in (on_one, on_two, other):
            client.close()


# --- start ---------------------------------------------------------------------------------------------


def test_start_is_idempotent_by_key_and_posts_the_run_to_slack(running: Running, ci: Pipeline) -> None:
    run = started(ci, key="gh-123")
    assert (run["channel"], run["status"], run["checklist"], run["version"]) == (
        CHANNEL,
        "active",
        "production-deploy",
        "v1.4.2",
    )
    assert [p["id"] for p in run["phases"]] == ["pre-deployment", "deployment", "post-deployment"]
    assert item_of(run, TESTS) == {
        "id": TESTS, "number": item_of(run, TESTS)["number"], "text": "All tests are passing", "required": True,
        "status": "open", "by": None, "at": None, "reason": None, "reported_by": "ci", "evidence_url": None,
        "summary": None, "probe": None,
    }  # fmt: skip
    again = ci.start(key="gh-123")
    assert again.status_code == 200 and again.json()["run"]["id"] == run["id"]
    for other_release in ({"version": "v1.4.3"}, {"environment": "staging"}):  # a key reused for another release
        reused = ci.start(key="gh-123", **other_release)
        assert reused.status_code == 409 and "give each release its own key" in reused.json()["error"]
    other = ci.start(key="gh-124")  # another CI run while this one is active in the channel
    assert other.status_code == 409 and "still active" in other.json()["error"]
    running.settled()
    parent = next(m for m in running.fake.messages.values() if not m["thread_ts"])
    started_by = parent["blocks"][1]["fields"][2]["text"]
    assert started_by.startswith("*Started by*\n*CI: github-actions prod* ")  # who, not the token's id
    fetched = ci.http.get(f"/api/v1/runs/{run['id']}").json()["run"]
    assert fetched["url"] == f"https://slack.com/archives/{CHANNEL}/p{parent['ts'].replace('.', '')}"
    with running.app.sessions() as session:
        event = session.scalars(select(Event).where(Event.kind == "run.started")).one()
        assert event.user_id.startswith("ci:") and event.data["checklist"] == "production-deploy"
        assert event.data["key"] == "gh-123"


def test_two_replicas_starting_one_key_at_once_make_one_run_and_both_refuse_a_revoked_token(
    database_url: str, fake_slack: FakeSlack
) -> None:
    with launched(database_url, fake_slack) as one, launched(database_url, fake_slack) as two:
        token = make_token(one.app.sessions)
        pipelines = [Pipeline(one.url, token), Pipeline(two.url, token)]
        for attempt in range(4):
            key = f"gh-race-{attempt}"
            barrier = threading.Barrier(2)
            answers: list[httpx.Response] = []

            def start(pipeline: Pipeline, key: str, barrier: threading.Barrier, answers: list[httpx.Response]) -> None:
                barrier.wait()
                answers.append(pipeline.start(key=key))

            threads = [threading.Thread(target=start, args=(p, key, barrier, answers)) for p in pipelines]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert sorted(a.status_code for a in answers) == [200, 201], [a.text for a in answers]
            assert len({a.json()["run"]["id"] for a in answers}) == 1
            with one.app.sessions.begin() as session:
                run = session.scalars(select(Run).where(Run.pipeline_key == key)).one()
                runs.abort(session, run.id, "next attempt", runs.Actor("U1", utcnow()))
        with one.app.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Run)) == 4
        # A revoke through either replica's database is refused by both at their next request.
        with two.app.sessions.begin() as session:
            tokens.revoke(session, "github-actions prod", utcnow())
        for pipeline in pipelines:
            assert pipeline.http.get("/api/v1/runs/1").status_code == 401
            pipeline.close()


# --- item reports --------------------------------------------------------------------------------------


def test_reports_are_attributed_to_the_pipeline_audited_and_shown_in_slack(running: Running, ci: Pipeline) -> None:
    run = started(ci)
    url = "https://ci.example.com/jobs/42?tab=tests&page=2"
    reported = ci.report(run["id"], TESTS, status="done", evidence_url=url, summary="412 passed, 0 failed")
    assert reported.status_code == 200, reported.text
    item = item_of(reported.json()["run"], TESTS)
    assert (item["status"], item["evidence_url"], item["summary"]) == ("done", url, "412 passed, 0 failed")
    assert item["by"]["name"] == "CI: github-actions prod" and item["by"]["id"].startswith("ci:")
    # By its number, as Slack and the shell count them: N/A with a reason.
    number = item_of(run, "dependencies-are-updated")["number"]
    na = ci.report(run["id"], str(number), status="na", reason="no dependency changed")
    assert item_of(na.json()["run"], "dependencies-are-updated")["status"] == "na"
    failed = ci.report(run["id"], "production-images-are-built-successfully", status="failed", summary="exit 2")
    assert item_of(failed.json()["run"], "production-images-are-built-successfully")["status"] == "failed"
    # A retried report keeps the item and refreshes the evidence.
    assert ci.report(run["id"], TESTS, status="done", evidence_url=url, summary="412 passed").status_code == 200

    with running.app.sessions() as session:
        state = session.get_one(ItemState, (run["id"], TESTS))
        assert state.changed_by is not None and state.changed_by.startswith("ci:")
        events = session.scalars(select(Event).where(Event.item_id.is_not(None)).order_by(Event.id)).all()
        assert [(e.kind, e.item_id) for e in events] == [
            ("item.done", TESTS),
            ("item.na", "dependencies-are-updated"),
            ("item.failed", "production-images-are-built-successfully"),
            ("item.done", TESTS),
        ]
        assert {e.user_id for e in events} == {state.changed_by}
        assert events[0].data == {
            "pipeline": "github-actions prod", "status": "done", "reason": None, "evidence_url": url,
            "summary": "412 passed, 0 failed", "was": "open",
        }  # fmt: skip
        assert events[1].data["reason"] == "no dependency changed"
        document = export.record(session, run["id"])
    exported = next(i for i in document["items"] if i["id"] == TESTS)
    assert exported["report"] == {
        "reported_by": "ci", "status": "done", "by": "CI: github-actions prod", "at": exported["report"]["at"],
        "evidence_url": url, "summary": "412 passed",
    }  # fmt: skip
    assert url in export.render(document, "csv") and "412 passed" in export.render(document, "csv")
    markdown = export.render(document, "md")
    assert "reported done on " in markdown
    assert ": 412 passed (evidence: https\\://ci.example.com/jobs/42?tab=tests\\&page=2)" in markdown

    running.settled()
    parent_ts = next(ts for (ch, ts), m in running.fake.messages.items() if ch == CHANNEL and not m["thread_ts"])
    shown = current(running, parent_ts)
    text = item_block(shown, TESTS)[1]["text"]["text"]
    assert text.startswith("✅ All tests are passing  ·  *CI: github-actions prod* <!date^")
    assert ":link: <https://ci.example.com/jobs/42?tab=tests&amp;page=2|evidence>  ·  _412 passed_" in text
    images = item_block(shown, "production-images-are-built-successfully")[1]["text"]["text"]
    assert images.startswith(":x: Production images are built successfully  ·  *CI: github-actions prod* reported it")
    assert "_exit 2_" in images
    waiting = item_block(shown, "code-is-reviewed-and-approved")[1]["text"]["text"]
    assert waiting == "⬜ Code is reviewed and approved  ·  _waiting for CI_"


def test_a_person_ticking_a_failed_report_is_an_audited_override(running: Running, ci: Pipeline) -> None:
    run = started(ci)
    ci.report(run["id"], TESTS, status="failed", summary="3 failed", evidence_url="https://ci.example.com/9")
    running.settled()
    parent_ts = next(ts for (ch, ts), m in running.fake.messages.items() if ch == CHANNEL and not m["thread_ts"])
    assert click_item(running, current(running, parent_ts), TESTS, user="U0OVERRIDE").status_code == 200
    with running.app.sessions() as session:
        override = session.scalars(select(Event).where(Event.kind == "item.override")).one()
        assert (override.user_id, override.item_id) == ("U0OVERRIDE", TESTS)
        assert override.data == {"reported_by": "ci", "reason": "CI: github-actions prod reported it failed: 3 failed"}
        document = export.record(session, run["id"])
    exported = next(i for i in document["items"] if i["id"] == TESTS)
    assert exported["override"]["by"]["id"] == "U0OVERRIDE" and "3 failed" in exported["override"]["reason"]
    gate = ci.gate(run["id"], phase="pre-deployment").json()["gate"]
    assert gate["failed"] == []  # overridden: no longer holds the gate as failed
    running.settled()
    text = item_block(current(running, parent_ts), TESTS)[1]["text"]["text"]
    assert "<@U0OVERRIDE>" in text and "(override)" in text and "_3 failed_" in text


def test_a_named_pipeline_alone_reports_its_items(running: Running, tmp_path: Path) -> None:
    template = running.app.api._services.templates["production-deploy"] if running.app.api else None
    assert template is not None
    data = template.model_dump(mode="json")
    data["id"] = "named-deploy"
    data["phases"][0]["groups"][0]["items"][0]["reported_by"] = "gitlab prod"
    from bot.checklists import Template

    running.app.api._services.templates["named-deploy"] = Template.model_validate(data)  # type: ignore[union-attr]
    gitlab = Pipeline(running.url, make_token(running.app.sessions, "gitlab prod"))
    github = Pipeline(running.url, make_token(running.app.sessions, "github prod"))
    run = github.start(key="k", checklist="named-deploy").json()["run"]
    first = data["phases"][0]["groups"][0]["items"][0]["id"]
    refused = github.report(run["id"], first, status="done")
    assert refused.status_code == 403 and "'gitlab prod'" in refused.json()["error"]
    assert gitlab.report(run["id"], first, status="done").status_code == 200
    gitlab.close()
    github.close()


def test_hostile_summaries_and_reasons_stay_inert_in_slack(database_url: str, fake_slack: FakeSlack) -> None:
    # Fifty reports in a row: more than a token's burst, so this bot grants many more a minute.
    with launched(database_url, fake_slack, DEPLOYBOT_API_PER_MINUTE="100000") as running:
        ci = Pipeline(running.url, make_token(running.app.sessions))
        _hostile_reports_stay_inert(running, ci)
        ci.close()


def _hostile_reports_stay_inert(running: Running, ci: Pipeline) -> None:
    run = started(ci)
    every = [i["id"] for p in run["phases"] for i in p["items"]]
    kept: dict[str, str] = {}
    for item_id, typed in zip(every, HOSTILE, strict=False):
        response = ci.report(run["id"], item_id, status="na", reason=typed or "-", summary=typed)
        if response.status_code == 200:
            kept[item_id] = typed
        else:
            assert response.status_code in (400, 413) and response.json()["error"].endswith("."), response.text
    assert len(kept) > 10
    running.settled()
    parent_ts = next(ts for (ch, ts), m in running.fake.messages.items() if ch == CHANNEL and not m["thread_ts"])
    from tests.test_hostile_text import foreign_markup, shown_mrkdwn

    for item_id, typed in kept.items():
        text = item_block(current(running, parent_ts), item_id)[1]["text"]["text"]
        assert foreign_markup(text, set()) == [], text
        if typed.strip() and len(typed) < 100:
            assert typed.strip() in shown_mrkdwn(text)


# --- the deployment ------------------------------------------------------------------------------------


def test_a_successful_deployment_opens_every_phase(running: Running, ci: Pipeline) -> None:
    run = started(ci)
    assert ci.deployed(run["id"], status="started", evidence_url="https://ci.example.com/d/1").status_code == 200
    done = ci.deployed(run["id"], status="succeeded", summary="rolled out to 12 pods")
    assert done.status_code == 200 and done.json()["run"]["status"] == "active"
    with running.app.sessions() as session:
        assert session.get_one(Run, run["id"]).open_phase == 2
        kinds = [(e.kind, e.data) for e in session.scalars(select(Event).order_by(Event.id))][1:]
    assert kinds[0] == ("deployment.started", {"evidence_url": "https://ci.example.com/d/1", "summary": None})
    assert kinds[1][0] == "deployment.reported" and kinds[1][1]["outcome"] == "succeeded"
    assert kinds[1][1]["summary"] == "rolled out to 12 pods"


def test_a_failed_deployment_fails_the_run_and_posts_the_rollback_as_slack_does(running: Running, ci: Pipeline) -> None:
    run = started(ci)
    failed = ci.deployed(run["id"], status="failed", summary="helm upgrade timed out")
    assert failed.status_code == 200 and failed.json()["run"]["status"] == "failed"
    assert ci.deployed(run["id"], status="failed").status_code == 200  # a retry changes nothing
    gate = ci.gate(run["id"]).json()["gate"]
    assert gate["state"] == "failed"
    with running.app.sessions() as session:
        failed_run = session.get_one(Run, run["id"])
        assert failed_run.finish_reason == "the deployment failed (CI: github-actions prod): helm upgrade timed out"
        rollback = session.scalars(select(Run).where(Run.rollback_of == run["id"])).one()
        assert rollback.kind == "rollback" and rollback.channel_id == CHANNEL
        kinds = [e.kind for e in session.scalars(select(Event).where(Event.run_id == run["id"]).order_by(Event.id))]
    assert kinds == ["run.started", "deployment.reported", "run.failed"]
    running.settled()
    posted = [m for m in running.fake.messages.values() if not m["thread_ts"]]
    assert any(m["blocks"][0]["text"]["text"].startswith("Rollback") for m in posted)
    assert ci.report(run["id"], TESTS, status="done").status_code == 409

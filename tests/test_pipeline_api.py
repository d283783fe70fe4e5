"""The pipeline API over real HTTP: tokens, start by key, item reports, the deployment, gates."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from bot.models import Event, ItemState, Run
from tests.conftest import Running
from tests.pipeline_client import CHANNEL, Pipeline, make_token


@pytest.fixture
def ci(running: Running) -> Iterator[Pipeline]:
    pipeline = Pipeline(running.url, make_token(running.app.sessions))
    yield pipeline
    pipeline.close()


def test_a_missing_wrong_or_revoked_token_is_unauthorized_before_any_routing(running: Running) -> None:
    from bot import tokens
    from bot.services import utcnow

    token = make_token(running.app.sessions)
    for presented in (None, "dbt_wrong", token[:-1]):
        anonymous = Pipeline(running.url, presented)
        for response in (anonymous.start(), anonymous.http.get("/api/v1/nothing-here"), anonymous.gate(1)):
            assert (response.status_code, response.json()) == (401, {"error": "unauthorized"})
        anonymous.close()
    good = Pipeline(running.url, token)
    assert good.http.get("/api/v1/nothing-here").status_code == 404
    with running.app.sessions.begin() as session:
        tokens.revoke(session, "github-actions prod", utcnow())
    assert (good.start().status_code, good.start().json()) == (401, {"error": "unauthorized"})
    good.close()


def test_start_is_idempotent_by_key_and_reports_are_attributed_to_the_pipeline(running: Running, ci: Pipeline) -> None:
    first = ci.start(key="gh-123")
    assert first.status_code == 201, first.text
    run = first.json()["run"]
    assert (run["channel"], run["status"], run["checklist"]) == (CHANNEL, "active", "production-deploy")
    again = ci.start(key="gh-123")
    assert again.status_code == 200 and again.json()["run"]["id"] == run["id"]

    url = "https://ci.example.com/jobs/42"
    reported = ci.report(run["id"], "all-tests-are-passing", status="done", evidence_url=url, summary="412 passed")
    assert reported.status_code == 200, reported.text
    item = next(i for p in reported.json()["run"]["phases"] for i in p["items"] if i["id"] == "all-tests-are-passing")
    assert item["status"] == "done" and item["evidence_url"] == url and item["summary"] == "412 passed"
    assert item["by"]["name"] == "CI: github-actions prod" and item["reported_by"] == "ci"
    with running.app.sessions() as session:
        state = session.get_one(ItemState, (run["id"], "all-tests-are-passing"))
        assert state.changed_by.startswith("ci:")
        event = session.scalars(select(Event).where(Event.kind == "item.done")).one()
        assert event.user_id == state.changed_by
        assert event.data["evidence_url"] == url and event.data["summary"] == "412 passed"
        assert session.scalar(select(Run.pipeline_key)) == "gh-123"

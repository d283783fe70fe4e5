"""Gates: long polls answered as soon as the run moves, on any replica, without holding a database connection."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
from sqlalchemy import select

from bot import items, runs, tokens
from bot.models import ItemState, Run
from bot.services import utcnow
from tests.conftest import Running, launched, wait_for
from tests.fake_slack import FakeSlack
from tests.pipeline_client import CHANNEL, Pipeline, make_token
from tests.test_slack_flow import click_item, current

PRE = "pre-deployment"


def open_required(running: Running, run_id: int, phase: int = 0) -> list[str]:
    with running.app.sessions() as session:
        return list(
            session.scalars(
                select(ItemState.item_id)
                .where(ItemState.run_id == run_id, ItemState.phase <= phase, ItemState.required)
                .where(ItemState.status == "open")
                .order_by(ItemState.position)
            )
        )


def tick_all_but_last(running: Running, run_id: int) -> str:
    """Tick every required Pre-Deployment item but the last, as people would; return the last one."""
    *first, last = open_required(running, run_id)
    with running.app.sessions.begin() as session:
        for item_id in first:
            items.mark_done(session, run_id, item_id, runs.Actor("U0TICK", utcnow()))
    return last


class Poll(threading.Thread):
    """A gate request in flight, on its own thread."""

    def __init__(self, pipeline: Pipeline, run_id: int, **params: Any):
        super().__init__(daemon=True)
        self.pipeline, self.run_id, self.params = pipeline, run_id, params
        self.answer: httpx.Response | None = None
        self.took = 0.0

    def run(self) -> None:
        began = time.monotonic()
        self.answer = self.pipeline.gate(self.run_id, **self.params)
        self.took = time.monotonic() - began


def waiting(running: Running) -> int:
    assert running.app.api is not None
    return running.app.api.gates.waiting


def test_a_gate_without_after_answers_at_once_with_what_it_waits_for(running: Running) -> None:
    ci = Pipeline(running.url, make_token(running.app.sessions))
    run = ci.start(key="g-1").json()["run"]
    answer = ci.gate(run["id"], phase=PRE, wait=30)
    assert answer.status_code == 200
    gate = answer.json()["gate"]
    assert (gate["phase"], gate["state"], gate["failed"]) == (PRE, "waiting", [])
    assert [i["id"] for i in gate["waiting_for"]] == open_required(running, run["id"])
    assert answer.json()["run"]["rev"] == run["rev"]
    whole = ci.gate(run["id"]).json()["gate"]
    assert whole["phase"] is None and len(whole["waiting_for"]) > len(gate["waiting_for"])
    ci.close()


def test_a_waiting_gate_opens_when_the_last_item_is_ticked_and_fails_on_a_failed_report(running: Running) -> None:
    ci = Pipeline(running.url, make_token(running.app.sessions))
    run = ci.start(key="g-2").json()["run"]
    last = tick_all_but_last(running, run["id"])
    rev = ci.gate(run["id"], phase=PRE).json()["run"]["rev"]
    poll = Poll(ci, run["id"], phase=PRE, after=rev, wait=30)
    poll.start()
    wait_for(lambda: waiting(running) == 1, what="the gate to wait")
    ci.report(run["id"], last, status="done", evidence_url="https://ci.example.com/1")
    poll.join(35)
    assert poll.answer is not None and poll.answer.status_code == 200
    gate = poll.answer.json()["gate"]
    assert (gate["state"], gate["waiting_for"]) == ("open", [])
    assert poll.took < 25  # woken by the change, not by its 30 s running out

    # A later phase's gate fails as soon as an item of it (or before it) is reported failed.
    rev = poll.answer.json()["run"]["rev"]
    later = Poll(ci, run["id"], phase="deployment", after=rev, wait=30)
    later.start()
    wait_for(lambda: waiting(running) == 1, what="the gate to wait")
    ci.report(run["id"], "production-images-are-built-successfully", status="failed", summary="exit 2")
    later.join(35)
    assert later.answer is not None
    failed = later.answer.json()["gate"]
    assert failed["state"] == "failed" and [i["id"] for i in failed["failed"]] == [
        "production-images-are-built-successfully"
    ]
    assert failed["failed"][0]["summary"] == "exit 2"
    ci.close()


def test_gates_beyond_the_bound_answer_at_once_and_waiting_ones_hold_no_connection(
    database_url: str, fake_slack: FakeSlack
) -> None:
    with launched(database_url, fake_slack, DEPLOYBOT_GATE_WAITERS="8") as bot:
        ci = Pipeline(bot.url, make_token(bot.app.sessions))
        run = ci.start(key="g-3").json()["run"]
        rev = ci.gate(run["id"]).json()["run"]["rev"]
        held = [Poll(ci, run["id"], after=rev, wait=30) for _ in range(8)]
        for poll in held:
            poll.start()
        wait_for(lambda: waiting(bot) == 8, what="eight gates to wait")
        # The fourth finds no free slot: it answers now, with the same state, and the client polls again.
        beyond = ci.gate(run["id"], after=rev, wait=30)
        assert beyond.status_code == 200 and beyond.json()["gate"]["state"] == "waiting"
        assert waiting(bot) == 8
        # Slack's requests still have their threads.
        assert bot.slack.command("status", channel=CHANNEL).status_code == 200
        # Waiting holds no pooled connection: were it one per gate, eight would stay checked out.
        bot.settled()
        checked_out = []
        for _ in range(20):
            checked_out.append(bot.app.engine.pool.checkedout())  # type: ignore[attr-defined]
            time.sleep(0.01)
        assert min(checked_out) <= 1
        with bot.app.sessions.begin() as session:
            runs.abort(session, run["id"], "enough", runs.Actor("U1", utcnow()))
        for poll in held:
            poll.join(35)
            assert poll.answer is not None and poll.answer.json()["gate"]["state"] == "aborted"
        ci.close()


def test_a_gate_waiting_on_one_replica_opens_when_a_person_ticks_through_another(
    database_url: str, fake_slack: FakeSlack
) -> None:
    with launched(database_url, fake_slack) as a, launched(database_url, fake_slack) as b:
        ci = Pipeline(a.url, make_token(a.app.sessions))
        run = ci.start(key="g-4").json()["run"]
        last = tick_all_but_last(a, run["id"])
        a.settled()
        b.settled()
        rev = ci.gate(run["id"], phase=PRE).json()["run"]["rev"]
        poll = Poll(ci, run["id"], phase=PRE, after=rev, wait=30)
        poll.start()
        wait_for(lambda: waiting(a) == 1, what="the gate to wait on replica A")
        parent_ts = next(ts for (ch, ts), m in fake_slack.messages.items() if ch == CHANNEL and not m["thread_ts"])
        # Replica B gets the signed Slack request; nothing but the database connects it to A.
        assert click_item(b, current(b, parent_ts), last, user="U0LAST").status_code == 200
        poll.join(35)
        assert poll.answer is not None and poll.answer.status_code == 200
        gate = poll.answer.json()["gate"]
        assert gate["state"] == "open" and poll.took < 25
        with a.app.sessions() as session:
            state = session.get_one(ItemState, (run["id"], last))
            assert state.changed_by == "U0LAST" and session.get_one(Run, run["id"]).open_phase >= 1
        ci.close()


def test_a_gate_whose_token_is_revoked_while_it_waits_does_not_open(running: Running) -> None:
    ci = Pipeline(running.url, make_token(running.app.sessions, name="to revoke"))
    other = Pipeline(running.url, make_token(running.app.sessions, name="still live"))
    run = ci.start(key="g-revoked").json()["run"]
    last = tick_all_but_last(running, run["id"])
    rev = ci.gate(run["id"], phase=PRE).json()["run"]["rev"]
    poll = Poll(ci, run["id"], phase=PRE, after=rev, wait=30)
    poll.start()
    wait_for(lambda: waiting(running) == 1, what="the gate to wait")
    with running.app.sessions.begin() as session:
        tokens.revoke(session, "to revoke", utcnow())
    other.report(run["id"], last, status="done")  # the change that would have opened the gate
    poll.join(35)
    assert poll.answer is not None and poll.answer.status_code == 401
    assert poll.answer.json() == {"error": "unauthorized"}
    ci.close()
    other.close()


def test_many_waiting_gates_never_hold_up_their_pipelines_reports(database_url: str, fake_slack: FakeSlack) -> None:
    with launched(database_url, fake_slack, DEPLOYBOT_API_PER_MINUTE="8") as running:
        ci = Pipeline(running.url, make_token(running.app.sessions))
        run = ci.start(key="g-budget").json()["run"]  # one of the token's burst of 2 (a quarter of 8)
        for _ in range(5):  # jobs polling their gates at once: a bucket of their own
            assert ci.gate(run["id"], phase=PRE).status_code == 200
        assert ci.report(run["id"], "all-tests-are-passing", status="done").status_code == 200
        ci.close()

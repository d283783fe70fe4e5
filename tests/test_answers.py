"""Private answers to clicks go through the click's response_url, kept and retried until Slack takes them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from bot.models import Outbox
from tests.cable import Cable
from tests.conftest import Running, ShiftedClock, launched, postgres_schema_url
from tests.fake_slack import FakeSlack
from tests.test_slack_flow import CHANNEL, click_item, start

REFUSED = "Already done by <@U201>"


@pytest.fixture
def shifted(database_url: str, fake_slack: FakeSlack) -> Iterator[tuple[Running, ShiftedClock]]:
    clock = ShiftedClock()
    with launched(database_url, fake_slack, clock=clock) as bot:
        yield bot, clock


def refuse_a_click(running: Running) -> None:
    """U201 ticks an item; U202 clicks the same stale button and must be told who did it."""
    messages = start(running)
    click_item(running, messages, "backend-service-is-running", user="U201")
    assert click_item(running, messages, "backend-service-is-running", user="U202").status_code == 200


def test_an_answer_during_an_outage_arrives_after_slack_recovers(running: Running) -> None:
    # Each answer route fails three times: more than the Web API client's own retries absorb.
    running.fake.fail("response_url", 3, status=503, retry_after=None, error="service_unavailable")
    running.fake.fail("chat.postEphemeral", 3, status=503, retry_after=None, error="service_unavailable")
    refuse_a_click(running)
    told = running.told()
    assert [c.args["user"] for c in told] == ["U202"]
    assert REFUSED in told[0].args["text"] and told[0].method == "response_url"
    assert told[0].args["response_type"] == "ephemeral" and told[0].args["replace_original"] is False
    assert told[0].args["thread_ts"] is not None  # where the click was: in the run's thread
    tries = [c.status for c in running.fake.calls if c.method == "response_url"]
    assert tries == [503, 503, 503, 200]
    with running.app.sessions() as session:
        [row] = session.scalars(select(Outbox).where(Outbox.kind == "answer")).all()
        assert row.sent_at is not None and row.attempts == 3


def test_a_refused_click_where_deploybot_is_not_a_member_is_answered(running: Running) -> None:
    messages = start(running)
    running.fake.not_member.add(CHANNEL)  # e.g. the run was posted there with chat:write.public
    click_item(running, messages, "backend-service-is-running", user="U201")
    click_item(running, messages, "backend-service-is-running", user="U202")
    [told] = running.told()
    assert told.method == "response_url" and told.args["user"] == "U202" and told.args["channel"] == CHANNEL
    assert REFUSED in told.args["text"]
    assert not [c for c in running.fake.calls if c.method == "chat.postEphemeral"]


def test_an_answer_whose_response_url_expired_goes_out_as_an_ephemeral_message(
    shifted: tuple[Running, ShiftedClock],
) -> None:
    running, clock = shifted
    running.fake.fail("response_url", 1000, status=503, retry_after=None, error="service_unavailable")
    refuse_a_click(running)
    running.wait_for(lambda: [c for c in running.fake.calls if c.method == "response_url"], what="a first try")
    clock.advance(minutes=31)  # past the response_url's 30 minutes
    told = running.told()
    assert [(c.method, c.args["user"]) for c in told] == [("chat.postEphemeral", "U202")]
    assert REFUSED in told[0].args["text"]


def test_an_answer_slack_cannot_deliver_is_given_up_not_retried_forever(
    shifted: tuple[Running, ShiftedClock],
) -> None:
    running, clock = shifted
    running.fake.fail("response_url", 1000, status=503, retry_after=None, error="service_unavailable")
    refuse_a_click(running)
    running.wait_for(lambda: [c for c in running.fake.calls if c.method == "response_url"], what="a first try")
    running.fake.not_member.add(CHANNEL)
    clock.advance(minutes=31)
    assert running.told() == []  # given up: nothing is waiting any more
    with running.app.sessions() as session:
        [row] = session.scalars(select(Outbox).where(Outbox.kind == "answer")).all()
        assert row.sent_at is not None


# A worker thread that dies of the outage (the publisher's last look at stop) fails the test too.
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_click_while_the_database_is_down_is_still_answered(fake_slack: FakeSlack) -> None:
    schemas = postgres_schema_url()
    url = next(schemas)
    cable = Cable(make_url(url).port or 5432)
    try:
        with launched(url.replace(f":{make_url(url).port}/", f":{cable.port}/"), fake_slack) as running:
            messages = start(running)
            cable.sever()  # the database stops answering: the click cannot be kept, nor its answer
            response = click_item(running, messages, "all-tests-are-passing")
            assert response.status_code == 200
            said = running.wait_for(lambda: fake_slack.calls_of("response_url"), what="an answer to the click")
            assert "Something went wrong on deploybot's side" in said[0].args["text"]
            assert "nothing was changed" in said[0].args["text"]
    finally:
        cable.close()
        schemas.close()

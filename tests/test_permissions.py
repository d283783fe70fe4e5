"""Permissions in deploybot.yml: who may start, abort, complete anyway, fail, tick a group; refusals audited."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from bot.models import Event, ItemState, Run
from bot.slack import ids
from tests.conftest import Running, launched
from tests.fake_slack import FakeSlack
from tests.slack_requests import select_values
from tests.test_slack_flow import CHANNEL, click_item, start

SECURITY_ITEM = "database-password-is-strong"
CODE_ITEM = "all-tests-are-passing"


@pytest.fixture
def guarded(database_url: str, fake_slack: FakeSlack, tmp_path: Path) -> Iterator[Running]:
    fake_slack.usergroups.update({"S0LEADS": ["U300"], "S0SECURITY": ["U0SEC"]})
    config = tmp_path / "deploybot.yml"
    permissions = {
        "start": ["U0LEAD", "S0LEADS"],
        "abort": ["S0LEADS"],
        "complete_anyway": ["U0LEAD"],
        "fail": ["U0LEAD"],
        "groups": {"security": ["S0SECURITY"]},
    }
    config.write_text(yaml.safe_dump({"permissions": permissions}))
    with launched(database_url, fake_slack, DEPLOYBOT_CONFIG=str(config)) as bot:
        yield bot


def refusals(bot: Running) -> list[Event]:
    with bot.app.sessions() as session:
        return list(session.scalars(select(Event).where(Event.kind == "permission.refused").order_by(Event.id)))


def last_ephemeral(bot: Running) -> str:
    return str(bot.told()[-1].args["text"])


def state(bot: Running, item_id: str) -> tuple[str, str | None]:
    with bot.app.sessions() as session:
        found = session.get(ItemState, (1, item_id))
        assert found is not None
        return found.status, found.changed_by


def test_only_the_listed_people_start_abort_complete_or_fail(guarded: Running) -> None:
    refused = guarded.slack.command("start v1.0 production", user="U100", channel=CHANNEL).json()
    assert refused["response_type"] == "ephemeral"
    assert refused["text"] == (
        "Only <@U0LEAD>, <!subteam^S0LEADS> may start a deployment (deploybot.yml › permissions › start); "
        "nothing changed."
    )
    with guarded.app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 0
    [event] = refusals(guarded)
    assert (event.user_id, event.channel_id, event.data) == (
        "U100",
        CHANNEL,
        {"role": "start", "version": "v1.0", "environment": "production"},
    )

    messages = start(guarded, "start v1.0 production", user="U300")  # a member of S0LEADS
    assert (
        "Only <!subteam^S0LEADS> may abort a run" in guarded.slack.command("abort no", channel=CHANNEL).json()["text"]
    )
    assert "may declare a deployment failed" in guarded.slack.command("fail it broke", channel=CHANNEL).json()["text"]
    assert "may declare a deployment failed" in guarded.slack.command("rollback", channel=CHANNEL).json()["text"]
    button = messages[0]["blocks"][3]["elements"][0]
    assert button["action_id"] == ids.COMPLETE_ANYWAY
    guarded.slack.click(ids.COMPLETE_ANYWAY, button["value"], user="U300", channel=CHANNEL)
    assert last_ephemeral(guarded).startswith("Only <@U0LEAD> may complete a run anyway")
    with guarded.app.sessions() as session:
        run = session.get(Run, 1)
        assert run is not None and run.status == "active"
    assert [e.data["role"] for e in refusals(guarded)] == ["start", "abort", "fail", "fail", "complete_anyway"]
    assert "aborted" in guarded.slack.command("abort wrong version", user="U300", channel=CHANNEL).json()["text"]


def test_a_group_reserved_to_security_is_ticked_only_by_security(guarded: Running) -> None:
    messages = start(guarded, "start v1.0 production", user="U0LEAD")
    assert click_item(guarded, messages, SECURITY_ITEM, user="U200").status_code == 200
    assert last_ephemeral(guarded) == (
        "Only <!subteam^S0SECURITY> may tick the items of *Security* "
        "(deploybot.yml › permissions › groups › security); nothing changed."
    )
    assert state(guarded, SECURITY_ITEM) == ("open", None)
    [event] = refusals(guarded)
    assert event.data == {"role": "group:security", "run": 1, "item": SECURITY_ITEM}

    click_item(guarded, messages, CODE_ITEM, user="U200")  # other groups stay open to everyone
    click_item(guarded, messages, SECURITY_ITEM, user="U0SEC")
    assert state(guarded, CODE_ITEM) == ("done", "U200") and state(guarded, SECURITY_ITEM) == ("done", "U0SEC")

    # N/A through the form is refused the same way, shown in the form.
    answer = guarded.slack.submit(
        ids.NA_VIEW,
        '{"run": 1}',
        select_values("redis-password-is-set", ids.REASON_FIELD, "no redis"),
        user="U200",
    ).json()
    assert answer["response_action"] == "errors" and "Only @S0SECURITY" in answer["errors"]["item"]
    assert state(guarded, "redis-password-is-set") == ("open", None)

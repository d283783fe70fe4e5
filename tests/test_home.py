"""The App Home tab: published when opened, kept current (coalesced) as runs and pages change, within limits."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import func, select

from bot import runs
from bot.checklists import load_template
from bot.models import ItemState
from bot.runs import Actor
from bot.services import utcnow
from bot.slack import ids
from bot.slack.limits import BLOCKS_PER_VIEW, check_view
from tests.conftest import ROOT, Running
from tests.test_concurrency import thirty_items
from tests.test_slack_flow import CHANNEL, click_item, start


def open_home(running: Running, user: str = "U100") -> None:
    event = {
        "token": "verification-token",
        "team_id": "T111",
        "api_app_id": "A111",
        "event": {"type": "app_home_opened", "user": user, "channel": "D0HOME", "tab": "home", "event_ts": "1.2"},
        "type": "event_callback",
        "event_id": f"Ev{time.monotonic_ns()}",
        "event_time": int(time.time()),
    }
    response = running.slack.post(json.dumps(event), content_type="application/json")
    assert response.status_code == 200, response.text


def home_text(running: Running, user: str = "U100") -> str:
    return json.dumps(running.fake.homes.get(user, {}).get("blocks", []), ensure_ascii=False)


def publishes(running: Running, user: str = "U100") -> int:
    return len([c for c in running.fake.calls_of("views.publish") if c.args["user_id"] == user])


def shows(running: Running, text: str, user: str = "U100") -> Any:
    return running.wait_for(lambda: text in home_text(running, user), what=f"the Home tab to show {text!r}")


def test_home_tab_is_published_when_opened_and_follows_the_runs(running: Running) -> None:
    open_home(running)
    shows(running, "*Active runs*\\nNone.")
    assert "Nothing yet." in home_text(running) and "*Open pages*\\nNone." in home_text(running)
    assert "daily" in home_text(running).lower()  # upcoming maintenance reminders

    messages = start(running)
    ten_items = thirty_items(messages)[:10]
    shows(running, "*#1* Deployment v1.4.2 → production in <#C100>")
    with running.app.sessions() as session:
        required = session.scalar(select(func.count()).select_from(ItemState).where(ItemState.required))
    assert f"0/89 · {required} required open · started by <@U100>" in home_text(running)

    before = publishes(running)
    with ThreadPoolExecutor(10) as pool:  # ten clicks within a fraction of a second
        statuses = list(pool.map(lambda item_id: click_item(running, messages, item_id).status_code, ten_items))
    assert statuses == [200] * 10
    shows(running, "10/89")
    running.settled()
    time.sleep(1.2)  # one more Home interval: nothing else is due
    assert publishes(running) - before <= 2  # ten changes, at most one render per second

    button = messages[0]["blocks"][3]["elements"][0]
    running.slack.click(ids.COMPLETE_ANYWAY, button["value"], channel=CHANNEL)
    shows(running, ":warning: completed anyway (")  # not shown as a complete release
    assert "*Active runs*\\nNone." in home_text(running)
    assert publishes(running, "U999") == 0  # never opened it: never published


def test_home_tab_stays_within_slacks_limits_with_many_runs(running: Running) -> None:
    for n in range(25):
        running.slack.command(f"start v{n}.0 production", channel=f"C{n:03d}LIM")
    open_home(running, "U200")
    shows(running, "*#25*", user="U200")
    view = running.fake.homes["U200"]
    assert check_view(view) == [] and len(view["blocks"]) <= BLOCKS_PER_VIEW
    assert "*#6*" in home_text(running, "U200") and "*#5* " not in home_text(running, "U200")  # the newest 20


def test_home_tab_names_terminal_runs_and_rollbacks_for_what_they_are(running: Running) -> None:
    with running.app.sessions.begin() as session:
        deploy = load_template(ROOT / "checklists" / "production-deploy.yml")
        rollback = load_template(ROOT / "checklists" / "rollback.yml")
        actor = Actor("alice", utcnow(), "shell")
        failed = runs.start(session, deploy, version="v2", environment="production", channel_id="shell",
                            parts=None, actor=actor)  # fmt: skip
        runs.fail(session, failed.id, "smoke tests red", actor)
        back = runs.start(session, rollback, version="v2", environment="production", channel_id="shell",
                          parts=None, actor=actor, rollback_of=failed, rollback_to="v1")  # fmt: skip
        runs.abort(session, back.id, "done by hand", actor)
        runs.start(session, deploy, version="v3", environment="production", channel_id="shell", parts=None,
                   actor=actor)  # fmt: skip
    open_home(running)
    shows(running, "Rollback v2 → production · ")
    assert "v3 → production in the terminal (shell)" in home_text(running) and "<#shell>" not in home_text(running)

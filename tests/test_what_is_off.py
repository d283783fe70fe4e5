"""Without deploybot.yml deploybot starts, and says what is off where people look: /readyz and the App Home."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import launched
from tests.fake_slack import FakeSlack
from tests.test_home import home_text, open_home, shows

OFF = "no deploybot.yml: everyone may start, abort, complete anyway, fail and page; no contacts; probes off"


def test_without_deploybot_yml_readyz_and_the_home_tab_say_what_is_off(
    database_url: str, fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default ./deploybot.yml is looked for here, and is absent
    with launched(database_url, fake_slack, DEPLOYBOT_CONFIG="") as bot:
        ready = httpx.get(f"{bot.url}/readyz")
        assert (ready.status_code, ready.text) == (200, f"ready\nnote: {OFF}\n")  # still ready: nothing is broken
        open_home(bot)
        shows(bot, "no deploybot.yml")
        assert f":warning: {OFF}" in home_text(bot)


def test_a_complete_deploybot_yml_leaves_nothing_to_say(
    database_url: str, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    example = Path(__file__).resolve().parent.parent / "deploybot.example.yml"
    with launched(database_url, fake_slack, DEPLOYBOT_CONFIG=str(example)) as bot:
        assert httpx.get(f"{bot.url}/readyz").text == "ready\n"
        open_home(bot)
        shows(bot, "Active runs")
        assert ":warning:" not in home_text(bot)

"""A run keeps the checklist it started with: editing YAML never alters a run in progress."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import ROOT, launched
from tests.fake_slack import FakeSlack
from tests.test_slack_flow import CHANNEL, click_item, current, item_block


def test_editing_yaml_changes_new_runs_only(tmp_path: Path, fake_slack: FakeSlack, database_url: str) -> None:
    folder = tmp_path / "checklists"
    shutil.copytree(ROOT / "checklists", folder)
    with launched(database_url, fake_slack, DEPLOYBOT_CHECKLISTS=str(folder)) as first:
        first.slack.command("start v1.0.0", channel=CHANNEL)
        first.settled()

    yml = folder / "production-deploy.yml"
    yml.write_text(yml.read_text().replace("text: All tests are passing", "text: CI is green on main"))
    with launched(database_url, fake_slack, DEPLOYBOT_CHECKLISTS=str(folder)) as second:
        parent_ts = next(ts for (_, ts), m in fake_slack.messages.items() if not m["thread_ts"])
        click_item(second, current(second, parent_ts), "all-tests-are-passing", user="U1")
        second.settled()
        _, block = item_block(current(second, parent_ts), "all-tests-are-passing")
        assert block["text"]["text"].startswith("✅ All tests are passing")

        second.slack.command("abort switching", channel=CHANNEL)
        second.slack.command("start v1.0.1", channel=CHANNEL)
        second.settled()
        newest = max((ts for (_, ts), m in fake_slack.messages.items() if not m["thread_ts"]), key=float)
        _, block = item_block(current(second, newest), "all-tests-are-passing")
        assert block["text"]["text"].startswith("⬜ CI is green on main")

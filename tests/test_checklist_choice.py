"""Choosing the deploy checklist: `--checklist`, a channel's default in deploybot.yml, help and check."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.app import create_app
from bot.models import Event, Run
from bot.yamlfile import YamlError
from tests.conftest import ROOT, Running, launched, settings_for
from tests.fake_slack import FakeSlack
from tests.test_shell_export import shell

MOBILE = """id: mobile
title: Mobile release
kind: deploy
phases:
  - id: release
    title: Release
    groups: [{id: store, title: Store, items: [{id: submit-build, text: Submit the build}]}]
"""
MOBILE_CHANNEL = "C0MOBILE1"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The shipped checklists plus a second deploy checklist, `mobile`."""
    target = tmp_path / "checklists"
    shutil.copytree(ROOT / "checklists", target)
    (target / "mobile.yml").write_text(MOBILE)
    return target


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "deploybot.yml"
    path.write_text(f"channels:\n  {MOBILE_CHANNEL}:\n    checklist: mobile\n")
    return path


@pytest.fixture
def chooser(database_url: str, fake_slack: FakeSlack, folder: Path, config: Path) -> Iterator[Running]:
    with launched(database_url, fake_slack, DEPLOYBOT_CHECKLISTS=str(folder), DEPLOYBOT_CONFIG=str(config)) as bot:
        yield bot


def said(running: Running, text: str, channel: str = "C0DEPLOY1") -> str:
    response = running.slack.command(text, channel=channel)
    assert response.status_code == 200, response.text
    answer: str = response.json()["text"]
    return answer


def templates_started(running: Running) -> list[tuple[str, str]]:
    with running.app.sessions() as session:
        return [(r.channel_id, r.template_id) for r in session.scalars(select(Run).order_by(Run.id))]


def test_start_runs_the_checklist_named_and_the_channels_default(chooser: Running) -> None:
    answer = said(chooser, "start v1.2 production --checklist mobile")
    assert "(Mobile release)" in answer, answer
    said(chooser, "start v7 staging", channel=MOBILE_CHANNEL)  # the channel's default in deploybot.yml
    said(chooser, "start v8 --checklist=production-deploy", channel="C0OTHER01")
    assert templates_started(chooser) == [
        ("C0DEPLOY1", "mobile"),
        (MOBILE_CHANNEL, "mobile"),
        ("C0OTHER01", "production-deploy"),
    ]
    with chooser.app.sessions() as session:
        started = session.scalars(select(Event).where(Event.kind == "run.started").order_by(Event.id)).first()
        assert started is not None and started.data["checklist"] == "mobile"


def test_an_unknown_checklist_is_answered_with_the_deploy_checklists_and_starts_nothing(chooser: Running) -> None:
    answer = said(chooser, "start v1.2 production --checklist mobil")
    assert "No deploy checklist `mobil`" in answer and "`mobile`, `production-deploy`" in answer, answer
    answer = said(chooser, "start v1.2 --checklist maintenance")  # not a deploy checklist
    assert "No deploy checklist `maintenance`" in answer, answer
    assert "Say which checklist" in said(chooser, "start v1.2 --checklist")
    assert "not an option" in said(chooser, "start v1.2 --checklst mobile")
    with chooser.app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 0


def test_help_lists_the_deploy_checklists_and_this_channels_default(chooser: Running) -> None:
    here = said(chooser, "help", channel=MOBILE_CHANNEL)
    assert "`mobile` (Mobile release) — the default here" in here, here
    assert "`production-deploy` (Production Deployment Checklist)" in here
    elsewhere = said(chooser, "help")
    assert "`production-deploy` (Production Deployment Checklist) — the default here" in elsewhere, elsewhere
    assert "maintenance" not in elsewhere.split("*Deploy checklists*")[1]


def test_the_shell_starts_the_checklist_named(database_url: str, folder: Path) -> None:
    out = shell(database_url, "start v1.2 staging --checklist mobile\n", DEPLOYBOT_CHECKLISTS=str(folder))
    assert "Submit the build" in out, out


def test_a_channel_default_that_is_no_deploy_checklist_is_refused_at_its_line(
    database_url: str, fake_slack: FakeSlack, folder: Path, tmp_path: Path
) -> None:
    config = tmp_path / "bad.yml"
    config.write_text(f"timezone: UTC\nchannels:\n  {MOBILE_CHANNEL}:\n    checklist: mobil\n")
    with pytest.raises(YamlError) as caught:
        create_app(
            settings_for(database_url, fake_slack, DEPLOYBOT_CHECKLISTS=str(folder), DEPLOYBOT_CONFIG=str(config))
        )
    assert str(caught.value) == (
        f"{config}:4 › channels › {MOBILE_CHANNEL} › checklist: 'mobil' is not a deploy checklist "
        "(deploy checklists: mobile, production-deploy)"
    )
    checked = subprocess.run(
        [sys.executable, "-m", "bot", "check", str(folder)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "DEPLOYBOT_CONFIG": str(config)},
        cwd=tmp_path,
    )
    assert checked.returncode == 2 and f"{config}:4 › channels" in checked.stderr, checked.stderr


def test_a_channel_that_is_not_a_channel_id_is_named(tmp_path: Path) -> None:
    from bot.config import load_deploy_config

    config = tmp_path / "deploybot.yml"
    config.write_text("channels:\n  '#deploys': {checklist: mobile}\n")
    with pytest.raises(YamlError, match=r"deploybot\.yml:2 › channels › #deploys: the name must be a Slack channel id"):
        load_deploy_config(config)


def test_check_warns_about_checklists_nothing_starts(folder: Path) -> None:
    (folder / "second-rollback.yml").write_text(
        (folder / "rollback.yml").read_text().replace("id: rollback\n", "id: rollback-b\n", 1)
    )
    (folder / "chores.yml").write_text(MOBILE.replace("id: mobile", "id: chores").replace("deploy", "maintenance"))
    checked = subprocess.run([sys.executable, "-m", "bot", "check", str(folder)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    warnings = [line for line in checked.stdout.splitlines() if line.startswith("warn")]
    assert warnings == [
        "warn  rollback-b: never started: `/deploy fail` and `/deploy rollback` run the first rollback checklist, "
        "rollback",
        "warn  chores: never started: no phase has a `schedule:`, so reminders never post it",
    ], checked.stdout

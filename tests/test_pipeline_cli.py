"""`deploybot token …` and `deploybot check` for pipelines, and a real `deploybot run` never logging a token."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from bot.models import ApiToken
from bot.tokens import digest
from tests.conftest import ROOT
from tests.fake_slack import FakeSlack
from tests.pipeline_client import CHANNEL, Pipeline
from tests.test_process import bot_env, deploybot, free_port

ITEM = """id: t
title: T
phases:
  - id: p
    title: P
    groups:
      - id: g
        title: G
        items:
          - id: a
            text: A
            reported_by: {value}
"""


def token_command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "token", *args], env=env, capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def test_tokens_are_made_listed_and_revoked_and_never_logged(
    tmp_path: Path, fake_slack: FakeSlack, database_url: str
) -> None:
    env = bot_env(database_url, fake_slack, free_port())
    made = token_command(
        env, "create", "--name", "github-actions prod", "--channel", CHANNEL, "--environment", "production"
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("dbt_") and len(token) > 40 and " " not in token
    engine = create_engine(database_url)
    with engine.connect() as conn:
        row = conn.execute(select(ApiToken)).one()
    engine.dispose()
    assert row.secret_hash == digest(token) and token not in str(tuple(row))
    assert (row.name, row.channel_id, row.environment) == ("github-actions prod", CHANNEL, "production")

    again = token_command(env, "create", "--name", "github-actions prod", "--channel", CHANNEL)
    assert again.returncode == 2 and "exists already" in again.stderr and again.stdout == ""
    for bad, says in (
        (["--name", "x<y", "--channel", CHANNEL], "cannot name a token"),
        (["--name", "ci", "--channel", CHANNEL], "'ci' is kept"),
        (["--name", "ok", "--channel", "#deploys"], "not a Slack channel id"),
        (["--name", "ok", "--channel", CHANNEL, "--environment", "Prod"], "not an environment name"),
    ):
        refused = token_command(env, "create", *bad)
        assert refused.returncode == 2 and says in refused.stderr and len(refused.stderr.splitlines()) == 1

    with deploybot(env, tmp_path) as process:
        url = f"http://127.0.0.1:{env['PORT']}"
        good = Pipeline(url, token)
        assert good.start(key="gh-1").status_code == 201
        assert good.report(1, "all-tests-are-passing", status="done", summary="ok").status_code == 200
        assert good.report(1, "nope", status="done").status_code == 404
        wrong = Pipeline(url, token[:-2] + "zz")
        assert wrong.start(key="gh-2").status_code == 401
        listed = token_command(env, "list")
        assert listed.returncode == 0 and "github-actions prod" in listed.stdout and "never" not in listed.stdout
        assert token not in listed.stdout and row.secret_hash not in listed.stdout
        revoked = token_command(env, "revoke", "github-actions prod")
        assert revoked.returncode == 0 and "revoked" in revoked.stdout
        assert good.http.get("/api/v1/runs/1").status_code == 401
        assert token_command(env, "revoke", "nobody").returncode == 2
        assert "revoked" in token_command(env, "list").stdout
        good.close()
        wrong.close()
        process.send_signal(2)
        process.wait(15)
        output = process.stdout.read() if process.stdout else ""
    assert output and token not in output and token[:-2] not in output and token[4:20] not in output


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("'<!channel>'", "names no pipeline: write `ci`"),
        ("''", "names no pipeline"),
        ("[ci]", "reported_by"),
    ],
)
def test_deploybot_check_names_a_bad_reported_by_by_file_and_line(value: str, says: str, tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text(ITEM.format(value=value))
    bad = subprocess.run([sys.executable, "-m", "bot", "check", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "bad.yml:12 › phases[0] › groups[0] › items[0] › reported_by" in bad.stderr and says in bad.stderr


def test_an_item_is_reported_by_a_pipeline_or_checked_by_a_probe_not_both(tmp_path: Path) -> None:
    text = ITEM.format(value="ci") + "            probe: {kind: http, url: 'https://x.example'}\n"
    (tmp_path / "both.yml").write_text(text)
    bad = subprocess.run([sys.executable, "-m", "bot", "check", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 2 and "both.yml:10 › phases[0] › groups[0] › items[0]" in bad.stderr
    assert "checked by a probe or reported by a pipeline, not both" in bad.stderr
    (tmp_path / "both.yml").write_text(ITEM.format(value="github-actions prod"))
    ok = subprocess.run([sys.executable, "-m", "bot", "check", str(tmp_path)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr


def test_the_shipped_checklist_marks_what_a_pipeline_knows() -> None:
    from bot.checklists import load_folder

    template = load_folder(ROOT / "checklists")["production-deploy"]
    assert sorted(i.id for i in template.items if i.reported_by == "ci") == [
        "all-tests-are-passing",
        "code-is-reviewed-and-approved",
        "database-migrations-are-run",
        "dependencies-are-updated",
        "no-hardcoded-secrets-in-code",
        "production-images-are-built-successfully",
    ]

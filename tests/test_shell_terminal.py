"""`deploybot shell` in a real pseudo-terminal: history across sessions, Tab completion, questions asked."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pexpect
import pytest
import yaml

from tests.conftest import ROOT
from tests.test_shell import EXAMPLE_CONFIG
from tests.test_shell_export import shell as piped

PROMPT = "deploybot>"
UP = "\x1b[A"
TAB = "\t"


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    config["environments"] = {"production": config["environments"]["production"]}  # staging: no probes
    (tmp_path / "deploybot.yml").write_text(yaml.safe_dump(config))
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "DEPLOYBOT_USER": "alice",
        "DEPLOYBOT_CHECKLISTS": str(ROOT / "checklists"),
        "DEPLOYBOT_CONFIG": str(tmp_path / "deploybot.yml"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "TERM": "xterm",
        # pexpect answers no cursor-position request; without this prompt_toolkit waits and warns.
        "PROMPT_TOOLKIT_NO_CPR": "1",
    }


def terminal(env: dict[str, str]) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable, ["-m", "bot", "shell"], env=env, cwd=str(ROOT), encoding="utf-8", timeout=60,
        dimensions=(40, 140),
    )  # fmt: skip
    child.expect("you are alice")
    child.expect(PROMPT)
    return child


def run(child: pexpect.spawn, keys: str, answer: str) -> None:
    """Type keys (ending in Enter), wait for `answer` and the next prompt."""
    child.send(keys)
    child.expect_exact(answer)
    child.expect(PROMPT)


def complete(child: pexpect.spawn, typed: str, rest: str) -> None:
    """Type the start of a word and Tab; wait until the rest of it is typed in."""
    child.send(typed + TAB)
    child.expect_exact(rest)


def leave(child: pexpect.spawn) -> None:
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_up_recalls_the_previous_line_in_this_session_and_the_next(env: dict[str, str], tmp_path: Path) -> None:
    child = terminal(env)
    run(child, "use 99\r", "Run #99 does not exist. 'list' shows the recent runs.")
    run(child, UP + "\r", "Run #99 does not exist.")  # the line came back: the same answer again
    leave(child)
    history = tmp_path / "state" / "deploybot" / "shell_history"
    assert "+use 99" in history.read_text()
    assert oct(history.stat().st_mode & 0o777) == "0o600"

    again = terminal(env)
    run(again, UP + "\r", "Run #99 does not exist.")  # kept in the file under XDG_STATE_HOME
    leave(again)


def test_the_history_file_is_where_deploybot_history_says(env: dict[str, str], tmp_path: Path) -> None:
    child = terminal({**env, "DEPLOYBOT_HISTORY": str(tmp_path / "mine")})
    run(child, "list\r", "no runs yet")
    leave(child)
    assert "+list" in (tmp_path / "mine").read_text()


def test_tab_completes_commands_teams_cadences_and_shows_item_texts(env: dict[str, str]) -> None:
    child = terminal(env)
    # A unique completion is typed in for you: Enter then runs the whole command.
    complete(child, "conta", "cts")
    run(child, "\r", "Emergency contacts")
    complete(child, "remind wee", "kly")
    run(child, "\r", "Posted the weekly maintenance checklist as run #1")
    run(child, "start v1 staging\r", "note: Probes are off for 'staging'")
    child.send("tick 7" + TAB)
    child.expect_exact("Strong secrets are generated")  # the item's text beside its number
    run(child, "\r", "done: 7. Strong secrets are generated (JWT, webhook, passwords)")
    complete(child, "page secu", "rity")
    run(child, ' "keys leaked"\r', "page #1 for security queued; no deploybot is running to deliver it")
    child.send("use " + TAB)
    child.expect_exact("Deployment v1 → staging · in progress")  # recent runs, described
    run(child, "2\r", "Run #2 · Deployment v1 → staging: in progress")
    leave(child)


def test_complete_anyway_at_a_terminal_asks_for_the_reason(env: dict[str, str], database_url: str) -> None:
    child = terminal(env)
    run(child, "start v1 staging\r", "Probes are off")
    child.send("complete-anyway\r")
    child.expect_exact("88 required item(s) are open:")
    child.expect_exact("Reason (empty: keep going):")
    run(child, "\r", "Not completed: a reason is needed to complete anyway. Nothing changed.")
    child.send("complete-anyway\r")
    child.expect_exact("Reason (empty: keep going):")
    run(child, "Slack is down, checked by hand\r", "completed anyway with 88 required item(s) open")
    leave(child)
    out = piped(database_url, "use 1\nstatus\n", DEPLOYBOT_CONFIG=env["DEPLOYBOT_CONFIG"])
    assert "COMPLETED ANYWAY by alice after 0 min: Slack is down, checked by hand" in out


def test_piped_input_gets_no_prompt_and_no_terminal_escapes(env: dict[str, str], database_url: str) -> None:
    out = piped(
        database_url,
        "start v1 staging\ntick 3-5\nna 10 '\x1b[2J\x1b]0;owned\x07 <!channel>'\nstatus\ncomplete-anyway\ncontacts\n",
        DEPLOYBOT_CONFIG=env["DEPLOYBOT_CONFIG"],
    )
    assert PROMPT not in out and "\x1b" not in out and "\x07" not in out
    assert "10. [n/a] AWS S3 credentials are configured (if using S3) (optional) — alice" in out
    assert "\\u001b[2J\\u001b]0;owned\\u0007 <!channel>" in out
    assert "! 85 required item(s) are open. Say why you complete anyway" in out

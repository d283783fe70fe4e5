"""Set-up mistakes, tried as a newcomer would: one line naming what is wrong and what to change, exit status 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import POSTGRES_URL, ROOT, postgres_schema_url
from tests.fake_slack import FakeSlack
from tests.test_process import bot_env, deploybot, free_port

SEED = ROOT / "tests" / "fixtures" / "production-deployment-checklist.md"
PASSWORD = "hunter2-Secret-9f8e7d"
# Nothing listens on port 1 of loopback: the connection is refused at once.
UNREACHABLE = f"postgresql+psycopg://deploy:{PASSWORD}@127.0.0.1:1/deploybot"


def cli(*args: str, cwd: Path, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """`deploybot …` as a newcomer runs it: no Slack or deploybot variables beyond those given."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DEPLOYBOT_", "DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env={**clean, "DEPLOYBOT_CHECKLISTS": str(ROOT / "checklists"), **env},
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed command printed, after checking it failed with status 2 and no traceback."""
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


SLACK = {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "test-signing-secret", "PORT": "0"}


@pytest.mark.parametrize("command", [["run"], ["shell"], ["db", "upgrade"]])
def test_an_unreachable_database_is_one_line_without_its_password(tmp_path: Path, command: list[str]) -> None:
    # HOST and PORT keep `run` from claiming a real port; it fails before serving anyway.
    result = cli(*command, cwd=tmp_path, DATABASE_URL=UNREACHABLE, HOST="127.0.0.1", **SLACK)
    line = one_line(result)
    assert line.startswith("cannot use the database at postgresql+psycopg://deploy:***@127.0.0.1:1/deploybot: ")
    assert "Connection refused" in line and line.endswith("check DATABASE_URL")
    assert PASSWORD not in result.stdout + result.stderr


def test_a_password_given_as_a_url_parameter_is_hidden_too(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://deploy@127.0.0.1:1/deploybot?password={PASSWORD}"
    result = cli("db", "upgrade", cwd=tmp_path, DATABASE_URL=url)
    shown = "postgresql+psycopg://deploy@127.0.0.1:1/deploybot?password=***"
    assert one_line(result).startswith(f"cannot use the database at {shown}: ")
    assert PASSWORD not in result.stdout + result.stderr


def test_a_host_that_is_no_address_is_one_line(tmp_path: Path, fake_slack: FakeSlack) -> None:
    env = {**bot_env(f"sqlite:///{tmp_path}/d.db", fake_slack, 0), "HOST": "999.1.1.1"}
    result = subprocess.run(
        [sys.executable, "-m", "bot", "run"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert one_line(result) == "cannot listen on 999.1.1.1:0: not an address this machine has; check HOST"


def test_a_missing_postgresql_database_is_named(tmp_path: Path) -> None:
    missing = make_url(POSTGRES_URL).set(database=f"nope_{uuid.uuid4().hex[:8]}", password=PASSWORD)
    result = cli("db", "upgrade", cwd=tmp_path, DATABASE_URL=missing.render_as_string(hide_password=False))
    if "Connection refused" in result.stderr:
        pytest.skip("PostgreSQL not reachable")
    line = one_line(result)
    assert f'database "{missing.database}" does not exist' in line and "DATABASE_URL" in line
    assert PASSWORD not in line


def test_a_sqlite_file_in_a_missing_folder_is_named(tmp_path: Path) -> None:
    line = one_line(cli("db", "upgrade", cwd=tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/no/such/dir/d.db"))
    assert "unable to open database file" in line and "DATABASE_URL" in line


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://u:p@localhost/db", "DATABASE_URL names mysql, which deploybot does not support"),
        ("not a url", "DATABASE_URL is not a database URL"),
    ],
)
def test_an_unsupported_database_url_is_named(tmp_path: Path, url: str, expected: str) -> None:
    assert one_line(cli("db", "upgrade", cwd=tmp_path, DATABASE_URL=url)).startswith(expected)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from postgres_schema_url()


def test_the_heroku_form_postgres_url_is_postgresql(tmp_path: Path, postgres_url: str) -> None:
    heroku = "postgres://" + postgres_url.partition("://")[2]
    result = cli("db", "upgrade", cwd=tmp_path, DATABASE_URL=heroku)
    assert result.returncode == 0, result.stderr
    assert "is up to date" in result.stdout
    shell = cli("shell", cwd=tmp_path, stdin="start v1.0 staging\nlist\n", DATABASE_URL=heroku)
    assert "#1 Deployment v1.0 → staging · in progress" in shell.stdout, shell.stderr


def test_a_port_in_use_is_one_line_naming_port(tmp_path: Path, fake_slack: FakeSlack) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = bot_env(f"sqlite:///{tmp_path}/d.db", fake_slack, port)
        result = subprocess.run(
            [sys.executable, "-m", "bot", "run"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
    assert one_line(result) == (
        f"port {port} on 127.0.0.1 is already in use (another deploybot, or another server); "
        "set PORT to a free port, or stop the other process"
    )
    assert not (tmp_path / "d.db").exists()  # it stopped before touching the database


def test_import_of_a_missing_file_is_one_line(tmp_path: Path) -> None:
    assert one_line(cli("import", "checklist.md", cwd=tmp_path)) == (
        "checklist.md: no such file; give the path of a Markdown checklist"
    )


def test_import_of_a_section_without_tasks_names_the_sections_that_have_some(tmp_path: Path) -> None:
    line = one_line(cli("import", str(SEED), "--section", "Emergency Contacts", cwd=tmp_path))
    assert line == (
        f"{SEED}: section Emergency Contacts has no tasks (`- [ ] task` or `1. step` lines); sections with tasks: "
        "Pre-Deployment, Deployment, Post-Deployment, Ongoing Maintenance, Rollback Plan"
    )
    (tmp_path / "notes.md").write_text("# Notes\n\n## Contacts\n\nAsk Sam.\n")
    assert one_line(cli("import", "notes.md", cwd=tmp_path)).startswith("notes.md: no tasks in the Markdown")


def test_an_explicitly_named_missing_config_stops_run_and_shell(tmp_path: Path) -> None:
    for command in (["run"], ["shell"]):
        line = one_line(cli(*command, cwd=tmp_path, DEPLOYBOT_CONFIG="missing.yml", **SLACK))
        assert line.startswith("missing.yml does not exist: DEPLOYBOT_CONFIG names it.")
    assert not (tmp_path / "deploybot.db").exists()


def test_start_up_says_what_is_off_and_no_library_noise(tmp_path: Path, fake_slack: FakeSlack) -> None:
    port = free_port()
    env = bot_env(f"sqlite:///{tmp_path}/d.db", fake_slack, port, DEPLOYBOT_CHECKLISTS=str(ROOT / "checklists"))
    with deploybot(env, tmp_path) as process:
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz")
        process.terminate()
        process.wait(30)
        output = process.stdout.read() if process.stdout else ""
    off = "no deploybot.yml: everyone may start, abort, complete anyway, fail and page; no contacts; probes off"
    assert ready.status_code == 200 and ready.text.startswith("ready\n") and f"note: {off}\n" in ready.text
    assert f"WARNING bot.app [-] {off}" in output
    assert "will be unused" not in output and "Context impl" not in output, output
    assert "Running upgrade  -> 0001" in output  # a migration it ran is worth its line
    # The shell's first line is its greeting: nothing before the prompt.
    shell = cli("shell", cwd=tmp_path, stdin="quit\n", DATABASE_URL=f"sqlite:///{tmp_path}/s.db")
    assert shell.returncode == 0 and shell.stderr == "", shell.stderr
    assert shell.stdout.startswith("deploybot shell — you are")

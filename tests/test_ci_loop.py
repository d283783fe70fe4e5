"""The whole pipeline loop with the real `deploybot ci` against two `deploybot run` replicas on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from bot.models import ItemState, Message, Run
from tests.conftest import SIGNING_SECRET, postgres_schema_url, wait_for
from tests.fake_slack import FakeSlack
from tests.slack_requests import SlackUser
from tests.test_process import bot_env, deploybot, free_port
from tests.test_scale_out import messages_of, tick
from tests.test_slack_flow import CHANNEL

PERSON = "U0ALICE001"
HOSTILE_REASON = "no S3 here\n::set-output name=gate::open\x1b[2J\u202e <!channel>"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from postgres_schema_url()


def ci_env(url: str, token: str, **extra: str) -> dict[str, str]:
    """A CI job's environment: GitHub's run id, deploybot's address and token, nothing of the bot's own."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("DEPLOYBOT_", "GITHUB_", "CI_", "SLACK_"))}
    return {
        **keep,
        "DEPLOYBOT_URL": url,
        "DEPLOYBOT_TOKEN": token,
        "GITHUB_REPOSITORY": "acme/shop",
        "GITHUB_RUN_ID": "4242",
        **extra,
    }


def ci(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "ci", *args], env=env, capture_output=True, text=True, timeout=120
    )


def make_token(database_url: str, tmp_path: Path, channel: str = CHANNEL) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEPLOYBOT_", "SLACK_"))}
    made = subprocess.run(
        [sys.executable, "-m", "bot", "token", "create", "--name", "github-actions prod", "--channel", channel],
        env={**env, "DATABASE_URL": database_url},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    return made.stdout.splitlines()[-1]


class Gate:
    """`deploybot ci gate` running in the background, its output read line by line as it comes."""

    def __init__(self, env: dict[str, str], *args: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", "ci", "gate", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        assert self.process.stdout is not None
        stdout = self.process.stdout
        self._reader = threading.Thread(target=lambda: self.lines.extend(stdout), daemon=True)
        self._reader.start()

    def said(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def finish(self) -> tuple[int, str, str]:
        code = self.process.wait(60)
        self._reader.join(10)
        assert self.process.stderr is not None
        return code, "".join(self.lines), self.process.stderr.read()


def posted(database_url: str, run_id: int) -> bool:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        shown = conn.scalars(select(Message.ts).where(Message.run_id == run_id)).all()
    engine.dispose()
    return bool(shown) and all(shown)


def gate_json(url: str, token: str, run_id: int, phase: str) -> dict:
    answer = httpx.get(
        f"{url}/api/v1/runs/{run_id}/gate", params={"phase": phase}, headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_the_pipeline_loop_end_to_end_across_two_replicas(
    tmp_path: Path, fake_slack: FakeSlack, postgres_url: str
) -> None:
    with ExitStack() as stack:
        ports = [free_port(), free_port()]
        for port in ports:
            stack.enter_context(deploybot(bot_env(postgres_url, fake_slack, port), tmp_path))
        first, second = (f"http://127.0.0.1:{port}" for port in ports)
        token = make_token(postgres_url, tmp_path)
        on_first, on_second = ci_env(first, token), ci_env(second, token)

        # Started twice (a retried job, through the other replica): one run.
        started = ci(on_first, "start", "--version", "v7.0.0", "--environment", "production")
        assert started.returncode == 0, started.stderr
        run_id = int(started.stdout.splitlines()[-1])
        again = ci(on_second, "start", "--version", "v7.0.0", "--environment", "production")
        assert again.returncode == 0 and again.stdout.splitlines()[-1] == str(run_id), again.stderr
        assert (
            "started run" in started.stdout and "already started for github:acme/shop:4242:production" in again.stdout
        )
        engine = create_engine(postgres_url)
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Run)) == 1
        with_run = {"DEPLOYBOT_RUN": str(run_id)}

        # What CI verified.
        evidence = "https://ci.example.com/acme/shop/runs/4242"
        for item in ("all-tests-are-passing", "code-is-reviewed-and-approved", "dependencies-are-updated"):
            reported = ci({**on_first, **with_run}, "report", item, "done", "--evidence-url", evidence)
            assert reported.returncode == 0, reported.stderr
        reported = ci(
            {**on_second, **with_run}, "report", "no-hardcoded-secrets-in-code", "done", "--summary", "gitleaks clean"
        )
        assert reported.returncode == 0 and "reported done" in reported.stdout, reported.stderr
        with engine.connect() as conn:
            rows = conn.execute(select(ItemState.item_id, ItemState.status).where(ItemState.run_id == run_id)).all()
            states = {item_id: status for item_id, status in rows}
        assert states["all-tests-are-passing"] == states["no-hardcoded-secrets-in-code"] == "done"

        # The gate waits on the first replica; a person ticks the rest through the second.
        wait_for(lambda: posted(postgres_url, run_id), timeout=30, what="the run's messages to be posted")
        waiting = [item["id"] for item in gate_json(first, token, run_id, "pre-deployment")["gate"]["waiting_for"]]
        assert "all-tests-are-passing" not in waiting and len(waiting) > 3
        gate = Gate({**on_first, **with_run}, "--phase", "pre-deployment", "--timeout", "5m")
        wait_for(lambda: gate.said("waiting for"), timeout=30, what="the gate to say what it waits for")
        assert gate.said(f"waiting for {len(waiting)} item(s) of Pre-Deployment")
        messages = messages_of(fake_slack)
        person = SlackUser(second, SIGNING_SECRET)
        optional = "aws-s3-credentials-are-configured-if-using-s3"
        na = ci({**on_second, **with_run}, "report", optional, "na", "--reason", HOSTILE_REASON)
        assert na.returncode == 0, na.stderr
        for item in waiting:
            assert gate.process.poll() is None, "the gate ended before the last item was ticked"
            assert tick(person, run_id, messages, item, PERSON) == 200
        code, output, errors = gate.finish()
        assert code == 0, errors
        assert (
            output.splitlines()[-1]
            == "gate open: every required item of Pre-Deployment (and the phases before it) is done or N/A"
        )
        last = next(
            i
            for p in gate_json(first, token, run_id, "pre-deployment")["run"]["phases"]
            for i in p["items"]
            if i["id"] == waiting[-1]
        )
        assert f"done  #{last['number']} {last['text']}  by {PERSON}" in output
        # Hostile text stays on its own line, inert: no escape, no line a CI could read as a command.
        assert "\x1b" not in output and "\u202e" not in output
        assert all(not line.startswith("::") for line in output.splitlines())
        assert (
            "n/a  #" in output and "no S3 here\\u000a::set-output name=gate::open\\u001b[2J\\u202e <!channel>" in output
        )

        deployed = ci({**on_second, **with_run}, "deployed", "succeeded", "--evidence-url", evidence)
        assert deployed.returncode == 0 and "deployment succeeded reported" in deployed.stdout, deployed.stderr

        # Exit codes a pipeline branches on.
        timed_out = ci({**on_first, **with_run}, "gate", "--phase", "post-deployment", "--timeout", "2s")
        assert timed_out.returncode == 6 and "timed out after 2s, still waiting for #" in timed_out.stdout
        wrong = ci({**on_first, **with_run, "DEPLOYBOT_TOKEN": "dbt_not-a-token"}, "gate", "--phase", "pre-deployment")
        assert wrong.returncode == 3 and "refused the token (401 unauthorized)" in wrong.stderr
        assert "dbt_not-a-token" not in wrong.stdout + wrong.stderr

        assert person.command(f"abort #{run_id} staging was broken", user=PERSON, channel=CHANNEL).status_code == 200
        wait_for(
            lambda: gate_json(first, token, run_id, "post-deployment")["run"]["status"] == "aborted", what="the abort"
        )
        aborted = ci({**on_first, **with_run}, "gate", "--phase", "post-deployment", "--timeout", "1m")
        assert aborted.returncode == 4 and f"gate closed: run {run_id} was aborted" in aborted.stdout

        second_run = ci(
            {**on_second, "GITHUB_RUN_ID": "4243"}, "start", "--version", "v7.0.1", "--environment", "production"
        )
        assert second_run.returncode == 0, second_run.stderr
        with_second = {"DEPLOYBOT_RUN": second_run.stdout.splitlines()[-1]}
        failed = ci({**on_first, **with_second}, "report", "all-tests-are-passing", "failed", "--summary", "3 failed")
        assert failed.returncode == 0, failed.stderr
        gate_failed = ci({**on_second, **with_second}, "gate", "--phase", "pre-deployment", "--timeout", "1m")
        assert gate_failed.returncode == 5, gate_failed.stderr
        assert "gate closed: #" in gate_failed.stdout and "All tests are passing failed: 3 failed" in gate_failed.stdout

        for output in (started, again, reported, na, deployed, timed_out, aborted, failed, gate_failed):
            assert token not in output.stdout + output.stderr
        engine.dispose()

    unreachable = ci({**ci_env(first, token), **with_run}, "gate", "--phase", "pre-deployment", "--timeout", "3s")
    assert unreachable.returncode == 7 and "cannot reach deploybot at " + first in unreachable.stderr
    assert token not in unreachable.stdout + unreachable.stderr

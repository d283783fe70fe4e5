"""The container: the Dockerfile is linted and its entrypoint, environment and health check work outside Docker."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT, SIGNING_SECRET
from tests.fake_slack import FakeSlack
from tests.test_process import deploybot, free_port

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    """The arguments of every `name` instruction, with continuation lines joined."""
    joined = DOCKERFILE.replace("\\\n", " ")
    return [m.group(1).strip() for m in re.finditer(rf"^{name}\s+(.*)$", joined, re.MULTILINE)]


def test_the_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(["hadolint", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_is_multi_stage_slim_unprivileged_and_checks_its_checklists() -> None:
    stages = instructions("FROM")
    assert len(stages) >= 2 and all("slim" in s for s in stages)
    [user] = instructions("USER")
    assert user.isdigit() and int(user) > 0
    assert "deploybot check /app/checklists" in instructions("RUN")[-2]
    [health] = instructions("HEALTHCHECK")
    assert "/healthz" in health


def test_the_entrypoint_serves_and_passes_its_own_health_check(tmp_path: Path, fake_slack: FakeSlack) -> None:
    """Run ENTRYPOINT + CMD with the image's ENV (paths moved to this machine), then the HEALTHCHECK command."""
    [entrypoint], [cmd] = instructions("ENTRYPOINT"), instructions("CMD")
    command = json.loads(entrypoint) + json.loads(cmd)
    assert command == ["deploybot", "run"]
    image_env = dict(shlex.split(pair)[0].split("=", 1) for pair in re.findall(r"(\w+=\S+)", instructions("ENV")[0]))
    assert image_env["DATABASE_URL"] == "sqlite:////data/deploybot.db"
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DEPLOYBOT_", "DATABASE_URL"))},
        **image_env,
        "DEPLOYBOT_CHECKLISTS": str(ROOT / "checklists"),
        "DATABASE_URL": f"sqlite:///{tmp_path}/deploybot.db",
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "SLACK_BOT_TOKEN": fake_slack.token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake_slack.url,
    }
    executable = Path(sys.executable).parent / command[0]
    with deploybot(env, tmp_path, [str(executable), *command[1:]]) as process:
        check = json.loads(instructions("HEALTHCHECK")[0].split("CMD", 1)[1])
        healthy = subprocess.run(check, env=env, capture_output=True, text=True, timeout=10)
        assert healthy.returncode == 0, healthy.stderr
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0


def test_compose_runs_deploybot_on_postgres_with_secrets_from_env() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    bot, postgres = compose["services"]["deploybot"], compose["services"]["postgres"]
    assert bot["depends_on"]["postgres"]["condition"] == "service_healthy" and "healthcheck" in postgres
    assert bot["environment"]["DATABASE_URL"].startswith("postgresql+psycopg://deploybot:${POSTGRES_PASSWORD}@postgres")
    assert bot["env_file"] == ".env"  # tokens never live in the compose file
    text = (ROOT / "docker-compose.yml").read_text()
    assert "xoxb-" not in text and "SLACK_SIGNING_SECRET:" not in text
    assert "pgdata:/var/lib/postgresql/data" in postgres["volumes"]

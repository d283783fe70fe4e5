"""deploybot.yml: validated with file:line errors; the example defines every variable the shipped probes use."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.checklists import load_folder
from bot.config import ConfigError, DeployConfig, Secret, Settings, deploy_config, load_deploy_config, what_is_off
from bot.yamlfile import YamlError

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_defines_every_variable_the_shipped_probes_use() -> None:
    config = load_deploy_config(ROOT / "deploybot.example.yml")
    assert set(config.environments) == {"production", "staging"}
    used = set()
    for template in load_folder(ROOT / "checklists").values():
        for item in template.items:
            if item.probe is not None:
                used |= set(re.findall(r"\$\{([a-z_]+)\}", item.probe.model_dump_json()))
    assert used
    for name, variables in config.environments.items():
        assert used <= set(variables), f"{name} lacks {used - set(variables)}"
    # Secrets come from the environment, never from the file.
    assert config.variables("production")["database_url"] == "${env:PRODUCTION_DATABASE_URL}"
    assert set(config.contacts) == {"oncall", "devops", "dba", "security"}
    assert config.contacts["oncall"].pagerduty is not None


def test_a_missing_config_is_an_empty_one(tmp_path: Path) -> None:
    assert load_deploy_config(tmp_path / "nope.yml") == DeployConfig()


def test_a_config_named_by_deploybot_config_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert deploy_config(Settings.from_env({})) == DeployConfig()  # the default ./deploybot.yml is optional
    assert deploy_config(Settings.from_env({"DEPLOYBOT_CONFIG": ""})) == DeployConfig()
    with pytest.raises(ConfigError, match=r"^missing\.yml does not exist: DEPLOYBOT_CONFIG names it\. Fix the path"):
        deploy_config(Settings.from_env({"DEPLOYBOT_CONFIG": "missing.yml"}))


def test_what_a_config_leaves_off_is_said_in_one_sentence(tmp_path: Path) -> None:
    assert what_is_off(DeployConfig(), tmp_path / "deploybot.yml") == (
        "no deploybot.yml: everyone may start, abort, complete anyway, fail and page; no contacts; probes off"
    )
    partial = DeployConfig.model_validate(
        {"permissions": {"start": ["U0LEAD1"], "fail": ["U0LEAD1"]}, "environments": {"production": {}}}
    )
    (tmp_path / "deploybot.yml").write_text("{}\n")
    assert what_is_off(partial, tmp_path / "deploybot.yml") == (
        f"{tmp_path / 'deploybot.yml'}: everyone may abort, complete anyway and page; no contacts"
    )
    assert what_is_off(load_deploy_config(ROOT / "deploybot.example.yml"), ROOT / "deploybot.example.yml") is None


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_database_url_in_the_heroku_form_is_postgresql(scheme: str) -> None:
    settings = Settings.from_env({"DATABASE_URL": f"{scheme}://u:pw@db.example.com:5432/deploybot"})
    assert settings.database_url == "postgresql+psycopg://u:pw@db.example.com:5432/deploybot"
    assert settings.database_url_masked == "postgresql+psycopg://u:***@db.example.com:5432/deploybot"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DATABASE_URL": "mysql://u:pw@h/db"}, "DATABASE_URL names mysql, which deploybot does not support"),
        ({"DATABASE_URL": "::::"}, "DATABASE_URL is not a database URL"),
        ({"PORT": "70000"}, "PORT must be a TCP port from 0 to 65535, not 70000"),
        ({"PORT": "abc"}, "PORT must be a TCP port from 0 to 65535, not 'abc'"),
        ({"DEPLOYBOT_THREADS": "many"}, "DEPLOYBOT_THREADS must be a count of threads, at least 1, not 'many'"),
        ({"DEPLOYBOT_THREADS": "0"}, "DEPLOYBOT_THREADS must be a count of threads, at least 1, not 0"),
        ({"DEPLOYBOT_RENDER_INTERVAL": "-5"}, "DEPLOYBOT_RENDER_INTERVAL must be seconds, at least 0, not -5"),
    ],
)
def test_unusable_settings_are_named(env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "environments:\n  production:\n    api_url: https://x\n  Prod Env: {}\n",
            r"bad\.yml:4 › environments › Prod Env: the name must be a slug",
        ),
        ("environment:\n  production: {}\n", r"bad\.yml:1 › environment: unknown field"),
        ("environments:\n  production:\n    api_url: [1, 2]\n", r"bad\.yml:3 › environments › production › api_url"),
        (
            "contacts:\n  dba:\n    users: [U0DBA1]\n    next: oncal\n",
            r"contacts › dba › next: unknown team 'oncal' \(teams: dba\)",
        ),
        (
            "contacts:\n  dba:\n    name: Database Admin\n",
            r"bad\.yml:2 › contacts › dba: a team needs at least one of users",
        ),
        ("contacts:\n  dba:\n    users: [bob]\n", r"bad\.yml:3 › contacts › dba › users\[0\]: must be a Slack user id"),
        (
            "contacts:\n  dba:\n    users: [U0DBA1]\n    ack_timeout: soon\n",
            r"bad\.yml:4 › contacts › dba › ack_timeout: must be a duration such as 90s",
        ),
        (
            "contacts:\n  dba:\n    users: [U0DBA1]\n    pagerduty: {routing_key: abc}\n",
            r"bad\.yml:4 › contacts › dba › pagerduty › routing_key: unknown field",
        ),
        (
            "permissions:\n  page: [everyone]\n",
            r"bad\.yml:2 › permissions › page\[0\]: must be a Slack user id \(U… or W…\) or user group id",
        ),
    ],
)
def test_invalid_config_names_file_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "bad.yml").write_text(text)
    with pytest.raises(YamlError) as caught:
        load_deploy_config(tmp_path / "bad.yml")
    assert re.search(expected, str(caught.value)), str(caught.value)


def test_settings_never_show_secrets() -> None:
    settings = Settings.from_env(
        {
            "SLACK_BOT_TOKEN": "xoxb-secret-value",
            "SLACK_SIGNING_SECRET": "sig-secret",
            "PRODUCTION_DATABASE_URL": "postgresql://u:pw-secret@h/db",
        }
    )
    shown = repr(settings) + str(settings.slack_bot_token)
    assert "xoxb-secret-value" not in shown and "sig-secret" not in shown and "pw-secret" not in shown
    assert settings.slack_bot_token.reveal() == "xoxb-secret-value"
    assert repr(Secret("x")) == "Secret('**********')"
